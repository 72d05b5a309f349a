//! What an open found: [`OpenInfo`] and [`Recount`].

use std::path::PathBuf;
use std::time::Duration;

use plexcache_core::Removed;

/// What happened while opening a cache (see [`SledBackend::open_info`](crate::SledBackend::open_info)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenInfo {
    /// Wall time of [`SledBackendBuilder::open`](crate::SledBackendBuilder::open), including any recount.
    pub open_time: Duration,
    /// Whether the store was created by this open.
    pub created: bool,
    /// Set when the previous session did not shut down cleanly and the entry count and byte
    /// total were recomputed by a scan: how long the scan took.
    pub recount: Option<Recount>,
    /// Set when the directory was damaged and [`SledBackendBuilder::recover_corrupt`](crate::SledBackendBuilder::recover_corrupt) moved it
    /// here before starting empty.
    pub recovered_from: Option<PathBuf>,
    /// Set when a [`write_batch`](plexcache_core::CacheBackend::write_batch) was interrupted
    /// (the process died while applying it): what the open removed so that everything the
    /// batch was replacing (its prefixes and keys) reads as absent.
    pub interrupted_batch: Option<Removed>,
    /// The file system the directory is on (always local or unknown: sled refuses network
    /// file systems).
    pub fs: Option<plexcache_core::fskind::FsInfo>,
}

/// The result of recomputing the counters after an unclean shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recount {
    /// How long the scan took.
    pub took: Duration,
    /// Entries found.
    pub entries: u64,
    /// Logical bytes found.
    pub bytes: u64,
    /// Whether the stored counters differed from the scan (and were corrected).
    pub corrected: bool,
}
