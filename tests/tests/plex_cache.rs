//! `PlexCache` over every backend: real PMS responses extracted, cached, read back, expired and
//! invalidated, with the same results everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexcache_core::{CacheBackend, ManualClock, Ttl};
use plexcache_plex::{PlexCache, PlexItem, extract_items, keys};

fn fixture(rel: &str) -> Vec<u8> {
    let path = format!(
        "{}/../crates/plex/tests/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn movies() -> Vec<PlexItem> {
    extract_items(&fixture("full/movies_all_341.plex-api-spec.json"))
        .unwrap()
        .items
}

fn shows() -> Vec<PlexItem> {
    extract_items(&fixture("xml/hubs_search.plexdevices.xml"))
        .unwrap()
        .items
}

async fn exercise<B: CacheBackend>(backend: B) {
    let clock = ManualClock::starting_now();
    let cache = PlexCache::builder(backend)
        .clock(clock.clone())
        .build()
        .unwrap();
    let movies = movies();
    assert_eq!(movies.len(), 341);

    // Library listings round-trip exactly, including Unicode and multi-part file lists.
    assert_eq!(cache.library_items("Movies").await.unwrap(), None);
    cache.set_library_items("Movies", &movies).await.unwrap();
    cache
        .set_library_items("Movies 4K", &movies[..10])
        .await
        .unwrap();
    cache.set_library_items("TV: Kids", &shows()).await.unwrap();
    assert_eq!(
        cache.library_items("Movies").await.unwrap().as_deref(),
        Some(&movies[..])
    );
    assert_eq!(
        cache.library_items("TV: Kids").await.unwrap(),
        Some(shows())
    );
    // The shared form: equal to the stored list, decoded once while it is unchanged.
    let shared = cache.library_items_shared("Movies").await.unwrap().unwrap();
    assert_eq!(&shared[..], &movies[..]);
    let again = cache.library_items_shared("Movies").await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&shared, &again));

    // Search results and path matches, with ':' and '%' in every component.
    let hits: Vec<PlexItem> = movies
        .iter()
        .filter(|m| m.title.contains(':'))
        .cloned()
        .collect();
    assert!(!hits.is_empty(), "the fixture has titles with ':'");
    cache
        .set_search("Movies", "Star Wars: Episode %1", &hits)
        .await
        .unwrap();
    cache.set_search("Movies", "nothing", &[]).await.unwrap();
    assert_eq!(
        cache
            .search("Movies", "Star Wars: Episode %1")
            .await
            .unwrap(),
        Some(hits.clone())
    );
    assert_eq!(
        cache.search("Movies", "nothing").await.unwrap(),
        Some(vec![])
    );
    assert_eq!(
        cache
            .search("Movies", "Star Wars: Episode %2")
            .await
            .unwrap(),
        None
    );
    let indexed = cache.index_matches("Movies", &movies).await.unwrap();
    assert_eq!(
        indexed,
        movies
            .iter()
            .map(|m| m.file_paths.len() as u64)
            .sum::<u64>()
    );
    let multi = movies
        .iter()
        .find(|m| m.file_paths.len() > 1)
        .expect("a multi-file movie");
    for path in &multi.file_paths {
        let got = cache.match_path("Movies", path).await.unwrap();
        assert_eq!(got, Some(Some(multi.clone())), "{path}");
    }
    cache
        .set_match("Movies", "/not/in/plex.mkv", None)
        .await
        .unwrap();
    assert_eq!(
        cache
            .match_path("Movies", "/not/in/plex.mkv")
            .await
            .unwrap(),
        Some(None)
    );
    assert_eq!(
        cache.match_path("Movies", "/unknown.mkv").await.unwrap(),
        None
    );

    // invalidate_library drops all three kinds for that library and nothing else.
    let removed = cache.invalidate_library("Movies").await.unwrap();
    assert_eq!(removed, 1 + 2 + indexed + 1);
    assert_eq!(cache.library_items("Movies").await.unwrap(), None);
    assert_eq!(cache.search("Movies", "nothing").await.unwrap(), None);
    assert_eq!(cache.library_items_shared("Movies").await.unwrap(), None);
    assert_eq!(
        cache
            .match_path("Movies", &multi.file_paths[0])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        cache
            .library_items("Movies 4K")
            .await
            .unwrap()
            .map(|v| v.len()),
        Some(10)
    );
    assert!(cache.library_items("TV: Kids").await.unwrap().is_some());
    let left = cache.cache().keys("", 100).await.unwrap();
    assert_eq!(
        left,
        vec![
            keys::library_key("Movies 4K"),
            keys::library_key("TV: Kids")
        ]
    );

    // The one-hour default TTL.
    clock.advance(Duration::from_secs(3599));
    assert!(cache.library_items("Movies 4K").await.unwrap().is_some());
    assert!(
        cache
            .library_items_shared("Movies 4K")
            .await
            .unwrap()
            .is_some()
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.library_items("Movies 4K").await.unwrap(), None);
    assert_eq!(cache.library_items_shared("Movies 4K").await.unwrap(), None);

    // Cache-aside with single-flight: 20 concurrent callers, one fetch. The fetch ends once
    // the 19 others have joined it (an event, not a time), so the counts below are exact.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, calls, movies) = (cache.clone(), calls.clone(), movies.clone());
        tasks.push(tokio::spawn(async move {
            let watcher = cache.clone();
            cache
                .library_items_or_fetch("Movies", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let deadline = std::time::Instant::now() + Duration::from_secs(60);
                    while std::time::Instant::now() < deadline
                        && watcher.stats().await.map_or(0, |s| s.session.coalesced) < 19
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Ok::<_, std::io::Error>(movies)
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 341);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let again = cache
        .search_or_fetch("Movies", "x", || async { Ok::<_, std::io::Error>(vec![]) })
        .await
        .unwrap();
    assert!(again.is_empty());

    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.session.fetches, 2);
    assert_eq!(stats.session.coalesced, 19);
    cache.flush().await.unwrap();
}

/// A value stored by an older `PlexItem` shape reads as a miss, not garbage.
async fn old_item_schema_is_a_miss<B: CacheBackend>(backend: B) {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct OldItem {
        rating_key: String,
        title: String,
    }
    plexcache_core::cache_value!(OldItem, "plexcache.PlexItem", 0);
    let cache = PlexCache::builder(backend).build().unwrap();
    let old = vec![OldItem {
        rating_key: "1".into(),
        title: "Alien".into(),
    }];
    cache
        .cache()
        .set_with_ttl(&keys::library_key("Movies"), &old, Ttl::Never)
        .await
        .unwrap();
    assert_eq!(cache.library_items("Movies").await.unwrap(), None);
    let s = cache.stats().await.unwrap();
    assert_eq!((s.session.decode_failures, s.usage.entries), (1, 0));
}

macro_rules! for_backend {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn plex_cache_round_trip() {
                let (_guard, backend) = $make;
                exercise(backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn old_plex_item_schema_reads_as_a_miss() {
                let (_guard, backend) = $make;
                old_item_schema_is_a_miss(backend).await;
            }
        }
    };
}

for_backend!(memory, ((), plexcache_memory::MemoryBackend::new()));
for_backend!(sqlite, {
    let dir = tempfile::tempdir().unwrap();
    let backend = plexcache_sqlite::SqliteBackend::open(dir.path()).unwrap();
    (dir, backend)
});
for_backend!(sqlite_exclusive, {
    let dir = tempfile::tempdir().unwrap();
    let backend = plexcache_sqlite::SqliteBackend::builder(dir.path())
        .open_exclusive()
        .unwrap();
    (dir, backend)
});
for_backend!(sled, {
    let dir = tempfile::tempdir().unwrap();
    let backend = plexcache_sled::SledBackend::open(dir.path().join("sled")).unwrap();
    (dir, backend)
});
for_backend!(redis, {
    // A redis-server of the test's own; skipped with a notice where none is installed
    // (a failure under PLEXCACHE_REQUIRE_REDIS=1).
    let Some(server) = plexcache_testsupport::redis_server::RedisServer::start() else {
        return;
    };
    let backend = plexcache_redis::RedisBackend::connect(server.url())
        .await
        .unwrap();
    (server, backend)
});
