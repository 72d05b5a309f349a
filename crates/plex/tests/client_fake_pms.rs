//! The PMS client against the fake PMS: sections, paging, formats, search, metadata, children,
//! headers, and servers that page wrongly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use plexcache_plex::client::{ClientError, PlexClient, PlexClientBuilder};
use plexcache_plex::{Format, ItemKind, extract_items};
use plexcache_testsupport::fake_pms::{FakePms, Fault, FaultRule};

const TOKEN: &str = "fake-token-Zq8x3";
const MOVIES_341: &[u8] = include_bytes!("fixtures/full/movies_all_341.plex-api-spec.json");

fn client(pms: &FakePms) -> PlexClientBuilder {
    PlexClient::builder(pms.url(), TOKEN)
        .timeout(Duration::from_secs(20))
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(10))
}

async fn recorded() -> FakePms {
    FakePms::builder(TOKEN)
        .recorded_fixtures()
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn sections_come_from_the_recorded_response() {
    let pms = recorded().await;
    let c = client(&pms).build().unwrap();
    let sections = c.sections().await.unwrap();
    let names: Vec<(u32, &str)> = sections.iter().map(|s| (s.id, s.title.as_str())).collect();
    assert_eq!(names, [(3, "4K Movies"), (1, "Movies"), (2, "TV Shows")]);
    assert_eq!(sections[0].kind, ItemKind::Movie);
    assert_eq!(
        sections[0].locations,
        ["/volume1/Media/Movies_HQ", "/volume1/Media/downloads_hq"]
    );
    assert_eq!(c.section_by_name("tv shows").await.unwrap().id, 2);
    match c.section_by_name("Music").await {
        Err(ClientError::SectionNotFound { name, available }) => {
            assert_eq!(name, "Music");
            assert_eq!(available, ["4K Movies", "Movies", "TV Shows"]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_library_is_paged_until_total_size() {
    let pms = recorded().await;
    let c = client(&pms).page_size(100).build().unwrap();
    let mut calls = Vec::new();
    let items = c
        .library_items_with_progress(1, |done, total| calls.push((done, total)))
        .await
        .unwrap();
    let expected = extract_items(MOVIES_341).unwrap().items;
    assert_eq!(
        items, expected,
        "same items, same order as the whole response"
    );
    assert_eq!(
        calls,
        [
            (100, Some(341)),
            (200, Some(341)),
            (300, Some(341)),
            (341, Some(341))
        ]
    );
    let reqs = pms.requests();
    assert_eq!(reqs.len(), 4, "341 items in pages of 100: 4 requests");
    let pages: Vec<(Option<u64>, Option<u64>)> = reqs
        .iter()
        .map(|r| (r.container_start, r.container_size))
        .collect();
    assert_eq!(
        pages,
        [
            (Some(0), Some(100)),
            (Some(100), Some(100)),
            (Some(200), Some(100)),
            (Some(300), Some(100))
        ]
    );
    for r in &reqs {
        assert_eq!(r.path, "/library/sections/1/all");
        assert!(r.token_ok && !r.token_in_query);
        assert_eq!(r.query, None, "paging and token travel in headers");
        assert_eq!(r.accept.as_deref(), Some("application/json"));
        assert_eq!(r.product.as_deref(), Some("plexcache"));
        assert_eq!(r.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert!(
            r.client_identifier
                .as_deref()
                .is_some_and(|id| id.starts_with("plexcache-"))
        );
    }
}

#[tokio::test]
async fn a_page_size_that_divides_the_library_stops_on_total_size() {
    let pms = FakePms::builder(TOKEN)
        .synthetic_library(7, "Films", 300)
        .start()
        .await
        .unwrap();
    let c = client(&pms).page_size(100).build().unwrap();
    let items = c.library_items(7).await.unwrap();
    assert_eq!(items, pms.library(7).unwrap().expected_items().unwrap());
    assert_eq!(pms.request_count(), 3, "no fourth, empty page");
    // And a single page when the library fits.
    pms.clear_requests();
    let c = client(&pms).page_size(1_000).build().unwrap();
    assert_eq!(c.library_items(7).await.unwrap().len(), 300);
    assert_eq!(pms.request_count(), 1);
}

#[tokio::test]
async fn an_empty_library_is_one_request() {
    let pms = FakePms::builder(TOKEN)
        .synthetic_library(4, "Empty", 0)
        .start()
        .await
        .unwrap();
    let c = client(&pms).page_size(100).build().unwrap();
    assert!(c.library_items(4).await.unwrap().is_empty());
    assert_eq!(pms.request_count(), 1);
    let page = c.library_page(4, 0, 0).await.unwrap();
    assert_eq!(page.total_size, Some(0));
}

#[tokio::test]
async fn a_single_page_can_be_asked_for() {
    let pms = recorded().await;
    let c = client(&pms).build().unwrap();
    let count = c.library_page(1, 0, 0).await.unwrap();
    assert_eq!((count.items.len(), count.total_size), (0, Some(341)));
    let page = c.library_page(1, 300, 100).await.unwrap();
    assert_eq!(page.items.len(), 41);
    assert_eq!(page.offset, Some(300));
    assert!(!page.has_more());
    assert_eq!(
        page.items,
        extract_items(MOVIES_341).unwrap().items[300..].to_vec()
    );
}

#[test]
fn client_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let c = PlexClient::new("http://127.0.0.1:1", TOKEN).unwrap();
    send(&c.sections());
    send(&c.library_items(1));
    send(&c.library_items_with_progress(1, |_, _| {}));
    send(&c.search("Movies", "x"));
    send(&c.metadata("1"));
    let cache = plexcache_plex::PlexCache::new(plexcache_memory::MemoryBackend::new()).unwrap();
    send(&cache.library_items_via(&c, "Movies"));
    send(&cache.search_via(&c, "Movies", "x"));
}

#[tokio::test]
async fn xml_is_requested_and_extracted_too() {
    let pms = recorded().await;
    let json = client(&pms).page_size(150).build().unwrap();
    let xml = client(&pms)
        .page_size(150)
        .format(Format::Xml)
        .build()
        .unwrap();
    assert_eq!(
        xml.library_items(1).await.unwrap(),
        json.library_items(1).await.unwrap()
    );
    assert_eq!(
        xml.library_items(3).await.unwrap(),
        json.library_items(3).await.unwrap()
    );
    assert_eq!(
        xml.sections().await.unwrap(),
        json.sections().await.unwrap()
    );
    assert_eq!(
        xml.children("89").await.unwrap(),
        json.children("89").await.unwrap()
    );
    let accepts: HashSet<Option<String>> = pms.requests().into_iter().map(|r| r.accept).collect();
    assert!(accepts.contains(&Some("application/xml".to_owned())));
}

#[tokio::test]
async fn a_50000_item_library_is_fetched_in_flat_pages() {
    let pms = FakePms::builder(TOKEN)
        .synthetic_library(9, "Big", 50_000)
        .start()
        .await
        .unwrap();
    let c = client(&pms).page_size(2_000).build().unwrap();
    let mut pages = 0;
    let items = c
        .library_items_with_progress(9, |_, total| {
            pages += 1;
            assert_eq!(total, Some(50_000));
        })
        .await
        .unwrap();
    assert_eq!(pages, 25);
    assert_eq!(pms.request_count(), 25);
    assert_eq!(items.len(), 50_000);
    let expected = pms.library(9).unwrap().expected_items().unwrap();
    assert!(items == expected, "the synthetic library, in order");
    let unique: HashSet<&str> = items.iter().map(|i| i.rating_key.as_str()).collect();
    assert_eq!(unique.len(), 50_000);
    assert!(
        pms.requests()
            .iter()
            .all(|r| r.container_size == Some(2_000))
    );
}

#[tokio::test]
async fn search_filters_a_section_by_title() {
    let pms = recorded().await;
    let c = client(&pms).page_size(100).build().unwrap();
    let by_name = c.search("Movies", "the").await.unwrap();
    let by_id = c.search(1, "THE").await.unwrap();
    assert_eq!(by_name, by_id);
    let expected: Vec<_> = extract_items(MOVIES_341)
        .unwrap()
        .items
        .into_iter()
        .filter(|i| i.title.to_lowercase().contains("the"))
        .collect();
    assert!(expected.len() > 100, "spans several pages");
    assert_eq!(by_id, expected);
    let searches: Vec<_> = pms
        .requests()
        .into_iter()
        .filter(|r| r.path == "/library/sections/1/all")
        .collect();
    assert!(
        searches
            .iter()
            .all(|r| matches!(r.query.as_deref(), Some("title=the" | "title=THE")))
    );
    assert!(
        c.search(1, "no such title at all")
            .await
            .unwrap()
            .is_empty()
    );
    // Titles with spaces, `&` and Unicode are sent percent-encoded.
    let one = &expected[0].title;
    let found = c.search(1, one).await.unwrap();
    assert!(found.iter().any(|i| i.title == one));
    // A synthetic library too.
    let hits = c.search("4K Movies", "a").await.unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|i| i.title.to_lowercase().contains('a')));
}

#[tokio::test]
async fn metadata_and_children() {
    let pms = recorded().await;
    let c = client(&pms).build().unwrap();
    let movie = c.metadata("159637").await.unwrap();
    assert_eq!(
        movie.file_paths.len(),
        3,
        "2 versions, the second in 2 parts"
    );
    let show = c.metadata("10401").await.unwrap();
    assert_eq!(show.kind, ItemKind::Show);
    assert!(!show.file_paths.is_empty(), "a show's Location");
    let from_all = c.metadata("28550").await.unwrap();
    assert_eq!(from_all.rating_key, "28550");
    assert_eq!(from_all.library_section_id, Some(1));

    let seasons = c.children("22").await.unwrap();
    assert!(seasons.iter().all(|s| s.kind == ItemKind::Season));
    assert_eq!(
        seasons.len(),
        2,
        "the 'All episodes' directory is not an item"
    );
    let episodes = c.children("89").await.unwrap();
    assert!(
        episodes
            .iter()
            .all(|e| e.kind == ItemKind::Episode && !e.file_paths.is_empty())
    );
    assert!(c.children("28550").await.unwrap().is_empty(), "a movie");

    match c.metadata("999999999").await {
        Err(e @ ClientError::NotFound { .. }) => {
            assert!(e.is_not_found());
            assert!(e.to_string().contains("999999999"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.children("999999999").await,
        Err(ClientError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_unknown_section_is_not_found() {
    let pms = recorded().await;
    let c = client(&pms).build().unwrap();
    match c.library_items(42).await {
        Err(e @ ClientError::NotFound { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("library section 42"), "{msg}");
            assert!(msg.contains("/library/sections/42/all"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.request_count(), 1, "404 is not retried");
}

#[tokio::test]
async fn a_server_that_ignores_paging_entirely_is_read_once() {
    let pms = FakePms::builder(TOKEN)
        .recorded_fixtures()
        .fault(FaultRule::new(Fault::IgnorePaging))
        .start()
        .await
        .unwrap();
    let c = client(&pms).page_size(100).build().unwrap();
    let items = c.library_items(1).await.unwrap();
    assert_eq!(items.len(), 341);
    assert_eq!(
        pms.request_count(),
        1,
        "everything came in the first answer"
    );
}

#[tokio::test]
async fn a_server_that_ignores_the_start_is_an_error_not_a_loop() {
    for report_offset in [true, false] {
        let pms = FakePms::builder(TOKEN)
            .recorded_fixtures()
            .fault(FaultRule::new(Fault::IgnoreContainerStart {
                report_offset,
            }))
            .start()
            .await
            .unwrap();
        let c = client(&pms).page_size(100).build().unwrap();
        match c.library_items(1).await {
            Err(e @ ClientError::Paging { .. }) => {
                assert!(e.to_string().contains("/library/sections/1/all"), "{e}");
            }
            other => panic!("report_offset {report_offset}: {other:?}"),
        }
        assert_eq!(pms.request_count(), 2, "stopped at the second page");
    }
}

#[tokio::test]
async fn the_fake_server_also_runs_on_its_own_thread() {
    let pms = std::thread::spawn(|| {
        FakePms::builder(TOKEN)
            .synthetic_library(1, "Movies", 10)
            .start_blocking()
            .unwrap()
    })
    .join()
    .unwrap();
    let c = client(&pms).build().unwrap();
    assert_eq!(c.section_by_name("Movies").await.unwrap().id, 1);
    assert_eq!(c.library_items(1).await.unwrap().len(), 10);
    assert_eq!(pms.request_count(), 2);
    drop(pms); // stops the thread
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_kept() {
    let pms = recorded().await;
    let c = PlexClient::builder(format!("{}/", pms.url()), TOKEN)
        .build()
        .unwrap();
    assert_eq!(c.sections().await.unwrap().len(), 3);
    let prefixed = PlexClient::builder(format!("{}/plex", pms.url()), TOKEN)
        .max_retries(0)
        .build()
        .unwrap();
    assert!(matches!(
        prefixed.sections().await,
        Err(ClientError::NotFound { .. })
    ));
    assert_eq!(pms.requests()[1].path, "/plex/library/sections");
}
