//! `PlexCache` cache-aside over the PMS client: a miss fetches through the client once (single
//! flight), hits send no request, errors are shared and findable, TTL expiry refetches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use plexcache_core::ManualClock;
use plexcache_memory::MemoryBackend;
use plexcache_plex::client::{ClientError, PlexClient};
use plexcache_plex::{PlexCache, extract_items};
use plexcache_testsupport::fake_pms::{FakePms, Fault, FaultRule};

const TOKEN: &str = "cache-token-P0o9";
const MOVIES_341: &[u8] = include_bytes!("fixtures/full/movies_all_341.plex-api-spec.json");

async fn setup() -> (FakePms, PlexClient) {
    let pms = FakePms::builder(TOKEN)
        .recorded_fixtures()
        .start()
        .await
        .unwrap();
    let client = PlexClient::builder(pms.url(), TOKEN)
        .page_size(100)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    (pms, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fetch_once() {
    let (pms, client) = setup().await;
    let cache = PlexCache::new(MemoryBackend::new()).unwrap();
    // Slow the first page a little so that every caller arrives while the fetch runs.
    pms.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_millis(500)))
            .on("/library/sections")
            .times(1),
    );
    let calls = (0..20).map(|_| cache.library_items_via(&client, "Movies"));
    let results = futures::future::join_all(calls).await;
    let expected = extract_items(MOVIES_341).unwrap().items;
    for r in results {
        assert_eq!(r.unwrap(), expected);
    }
    assert_eq!(
        pms.count_path("/library/sections/1/all"),
        4,
        "one set of pages"
    );
    assert_eq!(pms.request_count(), 1 + 4, "one section lookup, 4 pages");
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.session.fetches, 1);
    assert_eq!(stats.session.coalesced, 19);

    // A hit sends nothing.
    pms.clear_requests();
    let again = cache
        .library_items_via_with_progress(&client, "Movies", |_, _| panic!("no progress on a hit"))
        .await
        .unwrap();
    assert!(!again.from_server);
    assert_eq!(again.items.len(), 341);
    assert_eq!(pms.request_count(), 0);
}

#[tokio::test]
async fn progress_and_origin_are_reported() {
    let (pms, client) = setup().await;
    let cache = PlexCache::new(MemoryBackend::new()).unwrap();
    let mut progress = Vec::new();
    let fetched = cache
        .library_items_via_with_progress(&client, "Movies", |done, total| {
            progress.push((done, total));
        })
        .await
        .unwrap();
    assert!(fetched.from_server);
    assert_eq!(progress.last(), Some(&(341, Some(341))));
    assert_eq!(progress.len(), 4);
    assert_eq!(pms.request_count(), 5);
    assert_eq!(
        cache.library_items("Movies").await.unwrap().unwrap(),
        fetched.items
    );
}

#[tokio::test]
async fn expired_entries_are_fetched_again_and_refresh_always_fetches() {
    let (pms, client) = setup().await;
    let clock = ManualClock::starting_now();
    let cache = PlexCache::builder(MemoryBackend::new())
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.library_items_via(&client, "TV Shows").await.unwrap();
    cache.library_items_via(&client, "TV Shows").await.unwrap();
    assert_eq!(pms.request_count(), 2, "sections + one page, then a hit");
    clock.advance(Duration::from_secs(3601));
    cache.library_items_via(&client, "TV Shows").await.unwrap();
    assert_eq!(
        pms.request_count(),
        4,
        "expired after an hour: fetched again"
    );

    let items = cache
        .refresh_library_via(&client, "TV Shows", |_, _| {})
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(pms.request_count(), 6, "refresh fetches even when fresh");
}

#[tokio::test]
async fn searches_are_cached_per_library_and_title() {
    let (pms, client) = setup().await;
    let cache = PlexCache::new(MemoryBackend::new()).unwrap();
    let first = cache.search_via(&client, "Movies", "the").await.unwrap();
    let requests = pms.request_count();
    assert!(requests >= 2, "a section lookup and the search pages");
    let second = cache.search_via(&client, "Movies", "the").await.unwrap();
    assert_eq!(first, second);
    assert_eq!(pms.request_count(), requests, "a hit");
    cache.search_via(&client, "Movies", "The").await.unwrap();
    assert!(pms.request_count() > requests, "another title, another key");
    assert_eq!(cache.search("Movies", "the").await.unwrap().unwrap(), first);
    // Invalidation drops it.
    cache.invalidate_library("Movies").await.unwrap();
    assert_eq!(cache.search("Movies", "the").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_are_shared_and_not_cached() {
    let (pms, client) = setup().await;
    let cache = PlexCache::new(MemoryBackend::new()).unwrap();
    pms.add_fault(
        FaultRule::new(Fault::Status(401))
            .on("/library/sections")
            .times(1)
            .delayed(Duration::from_millis(300)),
    );
    let calls = (0..10).map(|_| cache.library_items_via(&client, "Movies"));
    for r in futures::future::join_all(calls).await {
        let e = r.unwrap_err();
        let found = ClientError::find(&e).expect("the client error is in the chain");
        assert!(
            matches!(found, ClientError::Unauthorized { .. }),
            "{found:?}"
        );
    }
    assert_eq!(pms.request_count(), 1, "one fetch, its error shared");
    // The error was not cached: the next call fetches (and succeeds).
    assert_eq!(
        cache
            .library_items_via(&client, "Movies")
            .await
            .unwrap()
            .len(),
        341
    );
    // An unknown library is an error naming the libraries there are.
    let e = cache.library_items_via(&client, "Music").await.unwrap_err();
    match ClientError::find(&e) {
        Some(ClientError::SectionNotFound { available, .. }) => {
            assert_eq!(available.len(), 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(cache.library_items("Music").await.unwrap().is_none());
}
