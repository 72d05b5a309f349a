//! Test support for plexcache's own tests; not published. What the published crates' users
//! call stays in those crates (the synthetic library generator, which `plexcache bench`
//! ships, is `plexcache_plex::synthetic`).
//!
//! - [`fake_pms`]: a fake Plex Media Server on a loopback port, with paging, a token check,
//!   recorded requests and injected faults.
//! - [`redis_server`]: a `redis-server` of a test's own on a free loopback port; skipped with a
//!   notice where none is installed, a failure under `PLEXCACHE_REQUIRE_REDIS=1`.

pub mod fake_pms;
pub mod redis_server;
