//! Test support for plexcache's own tests; not published. What the published crates' users
//! call stays in those crates (the synthetic library generator, which `plexcache bench`
//! ships, is `plexcache_plex::synthetic`).
//!
//! - [`fake_pms`]: a fake Plex Media Server on a loopback port, with paging, a token check,
//!   recorded requests and injected faults.
//! - [`child`]: the other process of a multi-process test (this test binary running one of
//!   its tests), with timed waits for what it prints.
//! - [`differential`]: the model-differential driver every backend's tests run.
//! - [`library`]: generations of a library for batch tests (whole or mixed, at a glance).
//! - [`redis_server`]: a `redis-server` of a test's own on a free loopback port; skipped with a
//!   notice where none is installed, a failure under `PLEXCACHE_REQUIRE_REDIS=1`.
//! - [`redis_cluster`]: a three-master Redis Cluster of a test's own on loopback ports, skipped
//!   or failed the same way.

pub mod child;
pub mod differential;
pub mod fake_pms;
pub mod library;
pub mod redis_cluster;
pub mod redis_server;
