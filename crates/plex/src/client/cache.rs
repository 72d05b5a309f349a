//! Cache-aside over the client: [`PlexCache`] methods that fetch through a [`PlexClient`] on a
//! miss (feature `client`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use plexcache_core::{CacheBackend, Error, Result};

use super::{ClientError, PlexClient, SectionRef};
use crate::cache::PlexCache;
use crate::item::PlexItem;
use crate::keys;

/// The items of a library and where they came from, from
/// [`PlexCache::library_items_via_with_progress`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryFetch {
    /// Every item of the library.
    pub items: Vec<PlexItem>,
    /// True when this call fetched them from the server; false when they came from the cache
    /// (or from a concurrent call's fetch it waited for).
    pub from_server: bool,
}

impl<B: CacheBackend> PlexCache<B> {
    /// The items of the library named `library`: from the cache when fresh, else fetched through
    /// `client` (the section resolved by name with
    /// [`PlexClient::section_by_name`], then every page of its listing) and stored.
    ///
    /// Single-flight: concurrent calls for one library while it is missing run one fetch and
    /// share its result or its error. A cache hit sends no request.
    ///
    /// # Errors
    /// A failed fetch is [`plexcache_core::Error::Fetch`] whose source is the [`ClientError`]
    /// (find it with [`ClientError::find`]); cache errors as usual.
    pub async fn library_items_via(
        &self,
        client: &PlexClient,
        library: &str,
    ) -> Result<Vec<PlexItem>> {
        self.library_items_via_with_progress(client, library, |_, _| {})
            .await
            .map(|f| f.items)
    }

    /// [`library_items_via`](Self::library_items_via), calling `progress(items_so_far, total)`
    /// after each page when it fetches, and telling whether it did.
    ///
    /// # Errors
    /// See [`PlexCache::library_items_via`].
    pub async fn library_items_via_with_progress<F>(
        &self,
        client: &PlexClient,
        library: &str,
        progress: F,
    ) -> Result<LibraryFetch>
    where
        F: FnMut(u64, Option<u64>) + Send,
    {
        let fetched = AtomicBool::new(false);
        let items = self
            .library_items_or_fetch(library, || async {
                fetched.store(true, Ordering::Relaxed);
                let section = client.section_by_name(library).await?;
                client
                    .library_items_with_progress(section.id, progress)
                    .await
            })
            .await?;
        Ok(LibraryFetch {
            items,
            from_server: fetched.load(Ordering::Relaxed),
        })
    }

    /// Fetches the library named `library` through `client` whether or not it is cached, and
    /// stores it (a forced sync). Not single-flight.
    ///
    /// # Errors
    /// See [`PlexCache::library_items_via`].
    pub async fn refresh_library_via<F>(
        &self,
        client: &PlexClient,
        library: &str,
        progress: F,
    ) -> Result<Vec<PlexItem>>
    where
        F: FnMut(u64, Option<u64>) + Send,
    {
        let fetch = async {
            let section = client.section_by_name(library).await?;
            client
                .library_items_with_progress(section.id, progress)
                .await
        };
        let items = fetch
            .await
            .map_err(|e: ClientError| fetch_error(&keys::library_key(library), e))?;
        self.set_library_items(library, &items).await?;
        Ok(items)
    }

    /// The items of the library named `library` whose title contains `title`: from the cache
    /// (`search:{library}:{title}`) when fresh, else fetched with [`PlexClient::search`] and
    /// stored. Single-flight per (library, title).
    ///
    /// # Errors
    /// See [`PlexCache::library_items_via`].
    pub async fn search_via(
        &self,
        client: &PlexClient,
        library: &str,
        title: &str,
    ) -> Result<Vec<PlexItem>> {
        self.search_or_fetch(library, title, || {
            client.search(SectionRef::Name(library), title)
        })
        .await
    }
}

fn fetch_error(key: &str, e: ClientError) -> Error {
    Error::Fetch {
        key: key.to_owned(),
        source: Arc::new(e),
    }
}
