//! [`PlexCache`]: library items, search results and path matches by library name, over any
//! backend.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use plexcache_core::{
    BatchReport, BoxError, Cache, CacheBackend, CacheBuilder, Clock, EvictionPolicy, Result, Stats,
    Ttl, WriteBatch, codec,
};

use crate::item::PlexItem;
use crate::keys::{self, KeyKind};
use crate::listing::{Listing, ListingRef};
use crate::view::LibraryView;

/// The default TTL of library data: one hour, as the Python tool had it.
pub const DEFAULT_LIBRARY_TTL: Duration = Duration::from_secs(3600);

/// Builds a [`PlexCache`].
#[derive(Debug)]
pub struct PlexCacheBuilder<B> {
    inner: CacheBuilder<B>,
    library_ttl: Ttl,
    search_ttl: Ttl,
    match_ttl: Ttl,
}

impl<B: CacheBackend> PlexCacheBuilder<B> {
    /// Defaults: every kind of entry lives one hour, 100 MiB, least recently stored.
    pub fn new(backend: B) -> Self {
        let hour = Ttl::After(DEFAULT_LIBRARY_TTL);
        Self {
            inner: Cache::builder(backend).default_ttl(DEFAULT_LIBRARY_TTL),
            library_ttl: hour,
            search_ttl: hour,
            match_ttl: hour,
        }
    }

    /// TTL of library listings (`library:{name}:all`). Default one hour.
    pub fn library_ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.library_ttl = ttl.into();
        self
    }

    /// TTL of search results (`search:{name}:{title}`). Default one hour.
    pub fn search_ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.search_ttl = ttl.into();
        self
    }

    /// TTL of path matches (`match:{name}:{path}`). Default one hour.
    pub fn match_ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.match_ttl = ttl.into();
        self
    }

    /// Hard bound on logical bytes. Default 100 MiB.
    pub fn size_limit(mut self, bytes: u64) -> Self {
        self.inner = self.inner.size_limit(bytes);
        self
    }

    /// Eviction order. Default least recently stored.
    pub fn eviction_policy(mut self, policy: EvictionPolicy) -> Self {
        self.inner = self.inner.eviction_policy(policy);
        self
    }

    /// Time source (a [`ManualClock`](plexcache_core::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.inner = self.inner.clock(clock);
        self
    }

    /// Any other [`Cache`] setting.
    pub fn configure(mut self, f: impl FnOnce(CacheBuilder<B>) -> CacheBuilder<B>) -> Self {
        self.inner = f(self.inner);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Result<PlexCache<B>> {
        Ok(PlexCache {
            cache: self.inner.build()?,
            library_ttl: self.library_ttl,
            search_ttl: self.search_ttl,
            match_ttl: self.match_ttl,
        })
    }
}

/// Plex data by library name, over any [`CacheBackend`], with a one-hour default TTL.
///
/// Library listings, search results and path matches are stored under the keys of
/// [`keys`](crate::keys); [`PlexCache::invalidate_library`] drops all three kinds for one library.
/// The `*_or_fetch` helpers are cache-aside with single-flight: concurrent misses on one key run
/// one fetch.
///
/// ```
/// use plexcache_plex::{ItemKind, PlexCache, PlexItem};
/// use plexcache_memory::MemoryBackend;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = PlexCache::new(MemoryBackend::new())?;
/// let items = cache
///     .library_items_or_fetch("Movies", || async {
///         // Fetch from the server here (see the `client` feature).
///         Ok::<_, std::io::Error>(vec![PlexItem {
///             rating_key: "1".into(),
///             key: "/library/metadata/1".into(),
///             title: "Alien".into(),
///             kind: ItemKind::Movie,
///             file_paths: vec!["/movies/Alien (1979)/Alien.mkv".into()],
///             year: Some(1979),
///             updated_at: None,
///             library_section_id: Some(1),
///         }])
///     })
///     .await?;
/// cache.index_matches("Movies", &items).await?;
/// let hit = cache.match_path("Movies", "/movies/Alien (1979)/Alien.mkv").await?;
/// assert_eq!(hit.flatten().map(|i| i.title), Some("Alien".into()));
/// # Ok::<(), plexcache_core::Error>(())
/// # }).unwrap();
/// ```
pub struct PlexCache<B> {
    cache: Cache<B>,
    library_ttl: Ttl,
    search_ttl: Ttl,
    match_ttl: Ttl,
}

impl<B: CacheBackend> std::fmt::Debug for PlexCache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlexCache")
            .field("cache", &self.cache)
            .field("library_ttl", &self.library_ttl)
            .field("search_ttl", &self.search_ttl)
            .field("match_ttl", &self.match_ttl)
            .finish()
    }
}

impl<B> Clone for PlexCache<B> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            library_ttl: self.library_ttl,
            search_ttl: self.search_ttl,
            match_ttl: self.match_ttl,
        }
    }
}

impl<B: CacheBackend> PlexCache<B> {
    /// A cache with the defaults (one hour, 100 MiB, least recently stored).
    pub fn new(backend: B) -> Result<Self> {
        PlexCacheBuilder::new(backend).build()
    }

    /// A builder.
    pub fn builder(backend: B) -> PlexCacheBuilder<B> {
        PlexCacheBuilder::new(backend)
    }

    /// Wraps an existing [`Cache`]; its default TTL applies to every kind.
    pub fn from_cache(cache: Cache<B>) -> Self {
        Self {
            cache,
            library_ttl: Ttl::Default,
            search_ttl: Ttl::Default,
            match_ttl: Ttl::Default,
        }
    }

    /// The underlying typed cache.
    pub fn cache(&self) -> &Cache<B> {
        &self.cache
    }

    /// Every item of a library, if cached and fresh, owned. Built from the
    /// [`library_view`](PlexCache::library_view), so repeated calls while the listing is
    /// unchanged read nothing from the store (the memory tier holds the view).
    pub async fn library_items(&self, library: &str) -> Result<Option<Vec<PlexItem>>> {
        Ok(self.library_view(library).await?.map(|v| v.to_vec()))
    }

    /// The library's listing as a [`LibraryView`]: the stored bytes checked once, items
    /// borrowing their strings from them. The fastest way to read a large library; the view
    /// is shared with the memory tier, so repeated calls while the listing is unchanged (in
    /// any process: the store's change token is checked on every call) return the same `Arc`.
    ///
    /// ```
    /// use plexcache_plex::{ItemKind, PlexCache, PlexItem};
    /// use plexcache_memory::MemoryBackend;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = PlexCache::new(MemoryBackend::new())?;
    /// let item = PlexItem {
    ///     rating_key: "1".into(),
    ///     key: "/library/metadata/1".into(),
    ///     title: "Alien".into(),
    ///     kind: ItemKind::Movie,
    ///     file_paths: vec!["/movies/Alien.mkv".into()],
    ///     year: Some(1979),
    ///     updated_at: None,
    ///     library_section_id: Some(1),
    /// };
    /// cache.set_library_items("Movies", &[item]).await?;
    /// let view = cache.library_view("Movies").await?.unwrap();
    /// for item in view.iter() {
    ///     assert_eq!(item.title, "Alien"); // a &str into the stored bytes
    /// }
    /// assert_eq!(view.find_by_path("/movies/Alien.mkv").map(|i| i.rating_key), Some("1"));
    /// # Ok::<(), plexcache_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn library_view(&self, library: &str) -> Result<Option<Arc<LibraryView>>> {
        self.cache
            .get_decoded(&keys::library_key(library), |key, bytes| {
                LibraryView::from_envelope(key, bytes.clone())
            })
            .await
    }

    /// The item of a library's listing that has `path` among its file paths, through the
    /// [`library_view`](PlexCache::library_view) (no per-path entries needed). `None` when the
    /// listing is not cached or no item has the path.
    pub async fn find_by_path(&self, library: &str, path: &str) -> Result<Option<PlexItem>> {
        Ok(self
            .library_view(library)
            .await?
            .and_then(|v| v.find_by_path(path).map(|i| i.to_owned())))
    }

    /// The item of a library's listing with this `ratingKey`, through the view.
    pub async fn find_by_rating_key(
        &self,
        library: &str,
        rating_key: &str,
    ) -> Result<Option<PlexItem>> {
        Ok(self
            .library_view(library)
            .await?
            .and_then(|v| v.find_by_rating_key(rating_key).map(|i| i.to_owned())))
    }

    /// Replaces everything cached for a library in one atomic write (a sync): its listing,
    /// and with `with_matches` a match entry for every file path; the library's stale search
    /// results and matches go in the same write. Readers in any process see the old library
    /// or the new one, never a mix. The listing and its matches are never evicted to make room
    /// for each other; when they do not fit under the size limit together, nothing is written
    /// ([`Error::BatchTooLarge`](plexcache_core::Error::BatchTooLarge)) and the old library
    /// stays.
    pub async fn replace_library(
        &self,
        library: &str,
        items: &[PlexItem],
        with_matches: bool,
    ) -> Result<BatchReport> {
        let mut batch = WriteBatch::new();
        for prefix in keys::library_prefixes(library) {
            batch.remove_prefix(prefix);
        }
        batch.set_borrowed(
            &keys::library_key(library),
            &ListingRef::new(items),
            self.library_ttl,
        )?;
        if with_matches {
            self.add_matches(&mut batch, library, items)?;
        }
        self.cache.write_batch(batch).await
    }

    fn add_matches(&self, batch: &mut WriteBatch, library: &str, items: &[PlexItem]) -> Result<()> {
        // In key order (stable: of two items with one path, the later still wins), so that
        // the backend appends them to its key index as well as to its table.
        let mut matches: Vec<(String, &PlexItem)> = items
            .iter()
            .flat_map(|item| {
                item.file_paths
                    .iter()
                    .map(move |path| (keys::match_key(library, path), item))
            })
            .collect();
        matches.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, item) in &matches {
            batch.set_borrowed(key, &Some(*item), self.match_ttl)?;
        }
        Ok(())
    }

    /// Every item of a library, shared: repeated calls while the stored list is unchanged
    /// return the same `Arc` without decoding the list again (see
    /// [`Cache::get_shared`](plexcache_core::Cache::get_shared)); each call still checks the
    /// store, so a list rewritten by another process or invalidated is never served stale.
    /// Prefer it to [`PlexCache::library_items`] for large libraries read often.
    pub async fn library_items_shared(&self, library: &str) -> Result<Option<Arc<Vec<PlexItem>>>> {
        self.cache
            .get_decoded(&keys::library_key(library), |key, bytes| {
                codec::decode::<Listing>(key, bytes).map(|l| l.0)
            })
            .await
    }

    /// Stores every item of a library.
    pub async fn set_library_items(&self, library: &str, items: &[PlexItem]) -> Result<()> {
        self.cache
            .set_borrowed(
                &keys::library_key(library),
                &ListingRef::new(items),
                self.library_ttl,
            )
            .await
    }

    /// Stores a library listing given as a [`ListingRef`], for callers whose items are
    /// borrowed ([`ListingRef::from_refs`]) rather than owned [`PlexItem`]s.
    pub async fn set_library_listing(&self, library: &str, listing: &ListingRef<'_>) -> Result<()> {
        self.cache
            .set_borrowed(&keys::library_key(library), listing, self.library_ttl)
            .await
    }

    /// The cached items of a library, or `fetch`'s result stored and returned (single-flight).
    pub async fn library_items_or_fetch<F, Fut, E>(
        &self,
        library: &str,
        fetch: F,
    ) -> Result<Vec<PlexItem>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Vec<PlexItem>, E>>,
        E: Into<BoxError>,
    {
        let listing: Listing = self
            .cache
            .get_or_fetch(&keys::library_key(library), self.library_ttl, || async {
                fetch().await.map(Listing)
            })
            .await?;
        Ok(listing.0)
    }

    /// The cached results of a title search in a library.
    pub async fn search(&self, library: &str, title: &str) -> Result<Option<Vec<PlexItem>>> {
        self.cache.get(&keys::search_key(library, title)).await
    }

    /// Stores the results of a title search.
    pub async fn set_search(&self, library: &str, title: &str, items: &[PlexItem]) -> Result<()> {
        self.cache
            .set_borrowed(&keys::search_key(library, title), items, self.search_ttl)
            .await
    }

    /// The cached results of a title search, or `fetch`'s result stored and returned
    /// (single-flight).
    pub async fn search_or_fetch<F, Fut, E>(
        &self,
        library: &str,
        title: &str,
        fetch: F,
    ) -> Result<Vec<PlexItem>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Vec<PlexItem>, E>>,
        E: Into<BoxError>,
    {
        self.cache
            .get_or_fetch(&keys::search_key(library, title), self.search_ttl, fetch)
            .await
    }

    /// The cached match of a local file path: `None` when not cached, `Some(None)` when it is
    /// cached that no item has this path, `Some(Some(item))` for a match.
    pub async fn match_path(&self, library: &str, path: &str) -> Result<Option<Option<PlexItem>>> {
        self.cache.get(&keys::match_key(library, path)).await
    }

    /// Stores the match of a local file path (`None`: no item has it).
    pub async fn set_match(
        &self,
        library: &str,
        path: &str,
        item: Option<&PlexItem>,
    ) -> Result<()> {
        self.cache
            .set_borrowed(&keys::match_key(library, path), &item, self.match_ttl)
            .await
    }

    /// Stores a match entry for every file path of every item, in one atomic write. Returns
    /// how many were written. [`PlexCache::replace_library`] does this and the listing
    /// together.
    pub async fn index_matches(&self, library: &str, items: &[PlexItem]) -> Result<u64> {
        let mut batch = WriteBatch::new();
        self.add_matches(&mut batch, library, items)?;
        if batch.is_empty() {
            return Ok(0);
        }
        Ok(self.cache.write_batch(batch).await?.written)
    }

    /// Drops the listing, every search result and every path match of one library (and of no
    /// other library, whatever its name). Returns how many entries were removed.
    pub async fn invalidate_library(&self, library: &str) -> Result<u64> {
        let mut removed = 0;
        for kind in KeyKind::ALL {
            removed += self.cache.remove_prefix(&kind.prefix(library)).await?;
        }
        Ok(removed)
    }

    /// Counters and usage.
    pub async fn stats(&self) -> Result<Stats> {
        self.cache.stats().await
    }

    /// Purges expired entries; returns how many.
    pub async fn expire(&self) -> Result<u64> {
        self.cache.expire().await
    }

    /// Writes counters and makes every acknowledged write durable.
    pub async fn flush(&self) -> Result<()> {
        self.cache.flush().await
    }
}

/// The default cache directory, `<platform data dir>/plexcache/cache/` (for example
/// `~/.local/share/plexcache/cache` on Linux), created with mode 0700 if missing.
pub fn default_cache_dir() -> Result<PathBuf> {
    let base = dirs::data_dir().ok_or_else(|| {
        plexcache_core::Error::Config(
            "no platform data directory (is HOME set?); pass a cache directory explicitly".into(),
        )
    })?;
    let dir = base.join("plexcache").join("cache");
    plexcache_core::fs::create_private_dir(&dir)?;
    Ok(dir)
}
