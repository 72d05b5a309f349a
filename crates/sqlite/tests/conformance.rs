//! The core conformance suite against the SQLite backend with the default offload mode
//! (short reads inline, writes on the blocking pool), with real reopen.
#![allow(missing_docs)]

mod common;

plexcache_core::conformance_tests!(crate::common::SqliteFactory::new(
    plexcache_sqlite::Offload::Auto
));
