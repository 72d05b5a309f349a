//! The whole conformance suite against a test-started redis-server (one per check, each store
//! on its own key prefix). Skipped with a notice when redis-server is not installed, unless
//! `PLEXCACHE_REQUIRE_REDIS=1`.

mod common;

plexcache_core::conformance_tests!({
    match common::RedisFactory::start() {
        Some(factory) => factory,
        None => return,
    }
});
