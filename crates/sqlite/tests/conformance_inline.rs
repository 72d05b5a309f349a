//! The core conformance suite with every call inline (`Offload::Never`).
#![allow(missing_docs)]

mod common;

plexcache_core::conformance_tests!(crate::common::SqliteFactory::new(
    plexcache_sqlite::Offload::Never
));
