//! The core conformance suite against the exclusive, write-back mode (the default commit
//! interval), with real reopen: the same rules as the shared mode.
#![allow(missing_docs)]

mod common;

plexcache_core::conformance_tests!(crate::common::SqliteFactory::<
    plexcache_sqlite::ExclusiveSqliteBackend,
>::of_mode(plexcache_sqlite::Offload::Auto, |b| b));

/// The exclusive mode with every call on the blocking pool.
mod offload_always {
    plexcache_core::conformance_tests!(crate::common::SqliteFactory::<
        plexcache_sqlite::ExclusiveSqliteBackend,
    >::of_mode(plexcache_sqlite::Offload::Always, |b| b));
}

/// The exclusive mode with a 64-byte inline limit: nearly every `put` is a deferred one (the
/// row written after the call returns).
mod deferred_rows {
    plexcache_core::conformance_tests!(crate::common::SqliteFactory::<
        plexcache_sqlite::ExclusiveSqliteBackend,
    >::of_mode(plexcache_sqlite::Offload::Auto, |b| b
        .inline_read_limit(64)));
}
