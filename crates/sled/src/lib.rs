//! sled backend for plexcache.
