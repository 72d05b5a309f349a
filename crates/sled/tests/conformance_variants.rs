//! The conformance suite again with the non-default code paths: calls offloaded to tokio's
//! blocking pool, and every value stored in the separate `values` tree.

mod common;

mod spawn_blocking {
    plexcache_core::conformance_tests!(
        crate::common::SledFactory::with(|b| b.spawn_blocking(true))
    );
}

mod separate_values {
    plexcache_core::conformance_tests!(crate::common::SledFactory::with(
        |b| b.separate_values_over(0)
    ));
}
