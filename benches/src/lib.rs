//! Shared workloads for the plexcache benchmarks: deterministic, Plex-shaped data and key
//! distributions, so every backend's bench measures the same thing.

pub mod harness;
pub mod plexdata;
pub mod workload;
