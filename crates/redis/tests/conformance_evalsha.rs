//! The whole conformance suite with the scripts run by `EVALSHA` (as on a server without
//! Redis Functions, before 7.0) instead of as functions of the library (`FCALL`). Skipped with
//! a notice when redis-server is not installed, unless `PLEXCACHE_REQUIRE_REDIS=1`.

mod common;

plexcache_core::conformance_tests!({
    match common::RedisFactory::start_eval() {
        Some(factory) => factory,
        None => return,
    }
});
