//! The whole conformance suite against the sled backend with default settings.

mod common;

plexcache_core::conformance_tests!(crate::common::SledFactory::new());
