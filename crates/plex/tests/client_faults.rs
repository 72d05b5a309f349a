//! The PMS client against injected faults: retries with backoff where a retry can help,
//! immediate errors a user can act on where it cannot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as _;
use std::time::{Duration, Instant};

use plexcache_plex::ExtractError;
use plexcache_plex::client::{ClientError, PlexClient, PlexClientBuilder};
use plexcache_testsupport::fake_pms::{FakePms, Fault, FaultRule};

const TOKEN: &str = "fault-token-Hk29c";
const ALL: &str = "/library/sections/1/all";

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn client(pms: &FakePms) -> PlexClientBuilder {
    PlexClient::builder(pms.url(), TOKEN)
        .page_size(100)
        .timeout(Duration::from_secs(20))
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
}

async fn server(faults: impl IntoIterator<Item = FaultRule>) -> FakePms {
    let mut b = FakePms::builder(TOKEN).recorded_fixtures();
    for f in faults {
        b = b.fault(f);
    }
    b.start().await.unwrap()
}

#[tokio::test]
async fn server_errors_are_retried_until_they_pass() {
    let pms = server([FaultRule::new(Fault::Status(500)).on(ALL).times(2)]).await;
    let items = client(&pms)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap();
    assert_eq!(items.len(), 341);
    assert_eq!(pms.count_path(ALL), 2 + 4);
    // A failure in the middle of the paging retries that page only.
    let pms = server([FaultRule::new(Fault::Status(503)).on(ALL).after(2).times(3)]).await;
    let items = client(&pms)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap();
    assert_eq!(items.len(), 341);
    let starts: Vec<Option<u64>> = pms.requests().iter().map(|r| r.container_start).collect();
    let s = |n| Some(n);
    assert_eq!(
        starts,
        [s(0), s(100), s(200), s(200), s(200), s(200), s(300)]
    );
}

#[tokio::test]
async fn persistent_server_errors_stop_after_the_retries() {
    let pms = server([FaultRule::new(Fault::Status(500))]).await;
    let c = client(&pms).max_retries(3).build().unwrap();
    match c.sections().await {
        Err(e @ ClientError::Status { .. }) => {
            assert_eq!(e.status(), Some(500));
            assert!(e.is_retryable());
            let msg = e.to_string();
            assert!(
                msg.contains("HTTP 500") && msg.contains("4 attempt"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.request_count(), 4, "1 attempt + 3 retries");

    let pms = server([FaultRule::new(Fault::Status(502))]).await;
    let c = client(&pms).max_retries(0).build().unwrap();
    assert!(c.sections().await.is_err());
    assert_eq!(pms.request_count(), 1, "retries disabled");
}

#[tokio::test]
async fn backoff_grows_and_stays_bounded() {
    let pms = server([FaultRule::new(Fault::Status(500))]).await;
    let c = PlexClient::builder(pms.url(), TOKEN)
        .retry_backoff(Duration::from_millis(40), Duration::from_millis(100))
        .max_retries(3)
        .build()
        .unwrap();
    let t = Instant::now();
    assert!(c.sections().await.is_err());
    let took = t.elapsed();
    // Waits of 20-40, 40-80 and 50-100 ms.
    assert!(took >= Duration::from_millis(110), "{took:?}");
    // Only catches unbounded waits; a loaded machine may be slow.
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(c.max_request_time() < Duration::from_secs(60 * 4 + 1));
}

#[tokio::test]
async fn too_many_requests_is_retried_after_the_servers_delay() {
    let pms = server([FaultRule::new(Fault::StatusRetryAfter(429, 1)).times(1)]).await;
    let c = PlexClient::builder(pms.url(), TOKEN)
        .retry_backoff(Duration::from_millis(1), Duration::from_secs(2))
        .build()
        .unwrap();
    let t = Instant::now();
    assert_eq!(c.sections().await.unwrap().len(), 3);
    assert!(t.elapsed() >= Duration::from_millis(900), "Retry-After: 1");
    assert_eq!(pms.request_count(), 2);
}

#[tokio::test]
async fn a_slow_server_times_out_and_is_retried() {
    // Two slow answers, then a normal one.
    let pms = server([FaultRule::new(Fault::Delay(Duration::from_secs(3))).times(2)]).await;
    let c = client(&pms)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert_eq!(c.sections().await.unwrap().len(), 3);
    assert_eq!(pms.request_count(), 3);

    // Always slow (an hour): a timeout error after the retries. Without the timeout this
    // would take hours, so a generous bound tells the two apart on any machine.
    let pms = server([FaultRule::new(Fault::Delay(Duration::from_secs(3600)))]).await;
    let c = client(&pms)
        .timeout(Duration::from_millis(200))
        .max_retries(1)
        .build()
        .unwrap();
    let t = Instant::now();
    match c.sections().await {
        Err(e @ ClientError::Timeout { .. }) => {
            assert!(e.is_retryable());
            let msg = e.to_string();
            assert!(msg.contains("did not answer within 200ms"), "{msg}");
            assert!(msg.contains(&pms.url()), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "bounded: {:?}",
        t.elapsed()
    );
    assert_eq!(pms.request_count(), 2);
}

#[tokio::test]
async fn a_connection_dropped_mid_body_is_retried() {
    let pms = server([FaultRule::new(Fault::DropMidBody).on(ALL).after(1).times(2)]).await;
    let items = client(&pms)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap();
    assert_eq!(items.len(), 341, "no duplicates, nothing lost");
    assert_eq!(pms.count_path(ALL), 4 + 2);

    let pms = server([FaultRule::new(Fault::DropMidBody)]).await;
    let c = client(&pms).max_retries(2).build().unwrap();
    match c.library_items(1).await {
        Err(e @ ClientError::Connection { .. }) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("3 attempt"), "{e}");
            let chain = chain(&e);
            assert!(
                chain.contains("body"),
                "failed while reading the body: {chain}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.request_count(), 3);
}

#[tokio::test]
async fn a_connection_closed_before_answering_is_retried() {
    let pms = server([FaultRule::new(Fault::CloseConnection).times(2)]).await;
    assert_eq!(
        client(&pms)
            .build()
            .unwrap()
            .sections()
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(pms.request_count(), 3);

    let pms = server([FaultRule::new(Fault::CloseConnection)]).await;
    let err = client(&pms)
        .max_retries(1)
        .build()
        .unwrap()
        .sections()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connection { .. }), "{err:?}");
}

#[tokio::test]
async fn a_rejected_token_is_not_retried() {
    let pms = server([]).await;
    let c = PlexClient::builder(pms.url(), "wrong-token")
        .build()
        .unwrap();
    match c.sections().await {
        Err(e @ ClientError::Unauthorized { .. }) => {
            assert_eq!(e.status(), Some(401));
            assert!(!e.is_retryable());
            let msg = e.to_string();
            assert!(msg.contains("rejected the token"), "{msg}");
            assert!(msg.contains("get a new X-Plex-Token"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.request_count(), 1);
    assert!(!pms.requests()[0].token_ok);

    // An injected 401 and 403 behave the same way.
    let pms = server([FaultRule::new(Fault::Status(401))]).await;
    let err = client(&pms).build().unwrap().sections().await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }));
    let pms = server([FaultRule::new(Fault::Status(403))]).await;
    let err = client(&pms).build().unwrap().sections().await.unwrap_err();
    assert!(matches!(err, ClientError::Forbidden { .. }));
    assert_eq!(pms.request_count(), 1);
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    let pms = server([FaultRule::new(Fault::Status(400))]).await;
    match client(&pms).build().unwrap().sections().await {
        Err(e @ ClientError::Status { status: 400, .. }) => assert!(!e.is_retryable()),
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.request_count(), 1);
    let pms = server([FaultRule::new(Fault::Status(404))]).await;
    let err = client(&pms)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(pms.request_count(), 1);
}

#[tokio::test]
async fn an_html_page_is_not_a_pms_response() {
    let pms = server([FaultRule::new(Fault::Html)]).await;
    match client(&pms).build().unwrap().sections().await {
        Err(e @ ClientError::NotPms { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("not a Plex Media Server response"), "{msg}");
            assert!(msg.contains("text/html"), "{msg}");
            let source = e.extract_error().unwrap();
            assert!(e.source().is_some());
            assert!(
                matches!(source, ExtractError::MissingMediaContainer { .. }),
                "{source:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.request_count(), 1, "not retried");
}

#[tokio::test]
async fn a_truncated_body_says_where() {
    let pms = server([FaultRule::new(Fault::TruncatedBody).on(ALL).after(1)]).await;
    match client(&pms).build().unwrap().library_items(1).await {
        Err(e @ ClientError::NotPms { .. }) => {
            let source = e.extract_error().unwrap();
            assert!(e.source().is_some());
            assert!(
                matches!(source, ExtractError::Truncated { .. }),
                "{source:?}"
            );
            let where_ = source.to_string();
            assert!(
                where_.contains("line ") && where_.contains("MediaContainer"),
                "{where_}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_says_so() {
    // A port with nothing listening: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let c = PlexClient::builder(&url, TOKEN)
        .max_retries(2)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    match c.sections().await {
        Err(e @ ClientError::Unreachable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("{url}/library/sections")), "{msg}");
            assert!(msg.contains("3 attempt"), "{msg}");
            assert!(msg.contains("check the address, port and scheme"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_urls_and_tokens_are_refused_up_front() {
    for url in [
        "",
        "plex.local:32400",
        "ftp://plex.local",
        "http://",
        "http://h:1/?x=1",
    ] {
        match PlexClient::new(url, TOKEN) {
            Err(ClientError::InvalidUrl { .. }) => {}
            other => panic!("{url:?}: {other:?}"),
        }
    }
    for token in ["", "   ", "bad\ntoken"] {
        match PlexClient::new("http://127.0.0.1:32400", token) {
            Err(ClientError::InvalidToken { .. }) => {}
            other => panic!("{token:?}: {other:?}"),
        }
    }
}

/// Fault rules for a server whose `/all` pages never end (`Fault::Endless`), then a guard: a
/// client still paging after `guard` requests gets HTTP 410 instead, an error of another kind
/// than the ones the paging tests expect, so a client without bounds fails them quickly.
fn endless(
    total_size: Option<u64>,
    per_page: Option<u64>,
    keyed: bool,
    guard: u64,
) -> [FaultRule; 2] {
    [
        FaultRule::new(Fault::Endless {
            total_size,
            per_page,
            keyed,
        })
        .on(ALL)
        .times(guard),
        FaultRule::new(Fault::Status(410)).on(ALL),
    ]
}

#[tokio::test]
async fn pages_of_entries_without_a_rating_key_stop_the_paging() {
    // Every page holds entries without a ratingKey, at the asked offset, and claims a
    // million items: the first page adds nothing while claiming more.
    for format in [plexcache_plex::Format::Json, plexcache_plex::Format::Xml] {
        let pms = server(endless(Some(1_000_000), None, false, 50)).await;
        let err = client(&pms)
            .page_size(10)
            .format(format)
            .build()
            .unwrap()
            .library_items(1)
            .await
            .unwrap_err();
        match &err {
            ClientError::Paging { detail, .. } => {
                assert!(detail.contains("no item with a ratingKey"), "{detail}");
                assert!(detail.contains("totalSize 1000000"), "{detail}");
            }
            other => panic!("{format:?}: {other:?}"),
        }
        assert!(!err.is_retryable());
        assert_eq!(pms.count_path(ALL), 1, "{format:?}");
    }
}

#[tokio::test]
async fn pages_past_what_total_size_needs_stop_the_paging() {
    // A server that honours the start but sends one new item per page of 100 asked, claiming
    // 1,000 items: 10 pages would do; the client allows 4 more, then stops.
    let pms = server(endless(Some(1_000), Some(1), true, 200)).await;
    let err = client(&pms)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap_err();
    match &err {
        ClientError::Paging { detail, .. } => {
            assert!(detail.contains("14 pages"), "{detail}");
            assert!(detail.contains("1000 items (totalSize)"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.count_path(ALL), 10 + 4);
}

#[tokio::test]
async fn a_claimed_total_size_above_the_item_limit_stops_at_once() {
    let pms = server(endless(Some(1_000_000_000_000), None, true, 50)).await;
    let err = client(&pms)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap_err();
    match &err {
        ClientError::ListingTooLarge { detail, .. } => {
            assert!(detail.contains("claims 1000000000000 items"), "{detail}");
            assert!(detail.contains("max_listing_items"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(pms.count_path(ALL), 1);
}

#[tokio::test]
async fn items_past_the_item_limit_stop_the_paging() {
    // No totalSize, full pages of new items for ever: the third page of 10 passes 25 items.
    let pms = server(endless(None, None, true, 100)).await;
    let err = client(&pms)
        .page_size(10)
        .max_listing_items(25)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap_err();
    match &err {
        ClientError::ListingTooLarge { detail, .. } => {
            assert!(detail.contains("more than 25 items"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pms.count_path(ALL), 3);
}

#[tokio::test]
async fn response_bytes_past_the_byte_limit_stop_the_paging() {
    // No totalSize, full pages of new items for ever, and no item limit in reach.
    let pms = server(endless(None, None, true, 100)).await;
    let err = client(&pms)
        .page_size(10)
        .max_listing_bytes(4_000)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap_err();
    match &err {
        ClientError::ListingTooLarge { detail, .. } => {
            assert!(detail.contains("more than 4000 bytes"), "{detail}");
            assert!(detail.contains("max_listing_bytes"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    // The byte limit, not the guard (100 requests), stopped the paging.
    let requests = pms.count_path(ALL);
    assert!((2..30).contains(&requests), "{requests} requests");
}
