//! sqlite backend for plexcache.
