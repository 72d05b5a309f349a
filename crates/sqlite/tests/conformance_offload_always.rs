//! The core conformance suite with every call on the blocking pool (`Offload::Always`).
#![allow(missing_docs)]

mod common;

plexcache_core::conformance_tests!(crate::common::SqliteFactory::new(
    plexcache_sqlite::Offload::Always
));
