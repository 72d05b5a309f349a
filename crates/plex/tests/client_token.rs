//! The token never leaves its header: not in any error (Display, Debug, whole source chain), not
//! in `Debug` of the client or builder, not in any log line (every level, including the HTTP
//! libraries' own), not in a URL, not in the cache.
//!
//! One test in its own binary, since it installs a global log subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexcache_memory::MemoryBackend;
use plexcache_plex::PlexCache;
use plexcache_plex::client::{ClientError, PlexClient, PlexClientBuilder};
use plexcache_testsupport::fake_pms::{FakePms, Fault, FaultRule};

const SECRET: &str = "s3cr3t-Tok3n-9f8e7d6c";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Display and Debug of the error and of every source in its chain.
fn everything_shown(e: &(dyn Error + 'static)) -> String {
    let mut out = format!("{e}\n{e:?}\n");
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!("{s}\n{s:?}\n"));
        cur = s.source();
    }
    out
}

fn assert_clean(what: &str, e: &(dyn Error + 'static), shown: &mut Vec<String>) {
    let text = everything_shown(e);
    assert!(!text.contains(SECRET), "{what} leaks the token:\n{text}");
    shown.push(format!("{what}: {e}"));
}

fn fast(url: impl AsRef<str>, token: &str) -> PlexClientBuilder {
    PlexClient::builder(url, token)
        .page_size(100)
        .timeout(Duration::from_secs(10))
        .max_retries(2)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

async fn faulty(fault: Fault) -> FakePms {
    FakePms::builder(SECRET)
        .recorded_fixtures()
        .fault(FaultRule::new(fault))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_shown_logged_or_cached() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();

    let mut shown = Vec::new();
    let mut servers = Vec::new();

    // Debug of the builder and client.
    let builder = fast("http://127.0.0.1:32400", SECRET);
    let debug = format!("{builder:?} {:?}", builder.clone().build().unwrap());
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");

    // Unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = fast(format!("http://127.0.0.1:{port}"), SECRET)
        .build()
        .unwrap();
    let e = c.sections().await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }));
    assert_clean("unreachable", &e, &mut shown);

    // A good server for the paths that need one.
    let pms = FakePms::builder(SECRET)
        .recorded_fixtures()
        .start()
        .await
        .unwrap();
    let good = fast(pms.url(), SECRET).build().unwrap();
    assert_eq!(good.library_items(1).await.unwrap().len(), 341);
    assert!(!good.search("Movies", "the").await.unwrap().is_empty());
    good.metadata("159637").await.unwrap();

    // https:// to a plain-HTTP server: the TLS handshake fails (TLS is set up, with rustls).
    let e = fast(pms.url().replace("http://", "https://"), SECRET)
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .sections()
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("https://127.0.0.1:"), "{e}");
    assert_clean("tls handshake", &e, &mut shown);

    // 401: a server expecting another token (the client's token must not show either).
    let other = FakePms::builder("the-servers-token")
        .recorded_fixtures()
        .start()
        .await
        .unwrap();
    let e = fast(other.url(), SECRET)
        .build()
        .unwrap()
        .sections()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized { .. }));
    assert_clean("401", &e, &mut shown);
    servers.push(other);

    // 404s, no such library, paging.
    let e = good.library_items(99).await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound { .. }));
    assert_clean("404 section", &e, &mut shown);
    let e = good.metadata(SECRET).await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound { .. }));
    assert!(e.to_string().contains("<redacted>"), "{e}");
    assert_clean("404 item named like the token", &e, &mut shown);
    let e = good.section_by_name("Music").await.unwrap_err();
    assert_clean("no such library", &e, &mut shown);

    // Timeout.
    let slow = faulty(Fault::Delay(Duration::from_secs(3))).await;
    let e = fast(slow.url(), SECRET)
        .timeout(Duration::from_millis(150))
        .max_retries(1)
        .build()
        .unwrap()
        .sections()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }));
    assert_clean("timeout", &e, &mut shown);
    servers.push(slow);

    // 5xx and 429 after the retries, 403.
    for (fault, name) in [
        (Fault::Status(500), "500"),
        (Fault::Status(503), "503"),
        (Fault::StatusRetryAfter(429, 0), "429"),
        (Fault::Status(403), "403"),
    ] {
        let s = faulty(fault).await;
        let e = fast(s.url(), SECRET)
            .build()
            .unwrap()
            .sections()
            .await
            .unwrap_err();
        assert_clean(name, &e, &mut shown);
        servers.push(s);
    }

    // Connection closed, reset mid-body.
    for (fault, name) in [
        (Fault::CloseConnection, "connection closed"),
        (Fault::DropMidBody, "dropped mid-body"),
    ] {
        let s = faulty(fault).await;
        let e = fast(s.url(), SECRET)
            .build()
            .unwrap()
            .library_items(1)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Connection { .. }), "{e:?}");
        assert_clean(name, &e, &mut shown);
        servers.push(s);
    }

    // Not a PMS response: HTML, a truncated body.
    for (fault, name) in [
        (Fault::Html, "html"),
        (Fault::TruncatedBody, "truncated body"),
    ] {
        let s = faulty(fault).await;
        let e = fast(s.url(), SECRET)
            .build()
            .unwrap()
            .library_items(1)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::NotPms { .. }), "{e:?}");
        assert_clean(name, &e, &mut shown);
        servers.push(s);
    }

    // A server that ignores paging.
    let s = faulty(Fault::IgnoreContainerStart {
        report_offset: false,
    })
    .await;
    let e = fast(s.url(), SECRET)
        .build()
        .unwrap()
        .library_items(1)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Paging { .. }));
    assert_clean("paging", &e, &mut shown);
    servers.push(s);

    // Redirects: to another origin (with the token in its query) is refused; on the same
    // server it is followed.
    let s = faulty(Fault::Redirect(format!(
        "http://127.0.0.2:{port}/elsewhere?X-Plex-Token={SECRET}"
    )))
    .await;
    let e = fast(s.url(), SECRET)
        .build()
        .unwrap()
        .sections()
        .await
        .unwrap_err();
    match &e {
        ClientError::Redirected { location, .. } => {
            assert_eq!(
                location.as_deref(),
                Some(format!("http://127.0.0.2:{port}/elsewhere").as_str())
            );
        }
        other => panic!("{other:?}"),
    }
    assert_clean("redirect", &e, &mut shown);
    servers.push(s);
    let s = FakePms::builder(SECRET)
        .recorded_fixtures()
        .fault(
            FaultRule::new(Fault::Redirect("/library/sections".into()))
                .on("/moved")
                .times(1),
        )
        .start()
        .await
        .unwrap();
    let moved = fast(format!("{}/moved", s.url()), SECRET).build().unwrap();
    assert_eq!(moved.sections().await.unwrap().len(), 3);
    assert_eq!(
        s.request_count(),
        2,
        "the same-origin redirect was followed"
    );
    assert!(s.requests()[1].token_ok);
    servers.push(s);

    // Bad URLs, including ones that carry the token, and a bad token.
    for url in [
        format!("http://127.0.0.1:32400/?X-Plex-Token={SECRET}"),
        format!("http://{SECRET}@127.0.0.1:32400/?a=1"),
        format!("plex.local:32400/{SECRET}"),
        format!("ftp://plex.local/{SECRET}"),
        format!("http://[{SECRET}"),
        SECRET.to_owned(),
    ] {
        let e = PlexClient::new(&url, SECRET).unwrap_err();
        assert!(matches!(e, ClientError::InvalidUrl { .. }), "{url}: {e:?}");
        assert_clean("bad url", &e, &mut shown);
    }
    let in_path = fast(format!("http://127.0.0.1:{port}/{SECRET}/"), SECRET)
        .build()
        .unwrap();
    assert!(!in_path.base_url().contains(SECRET));
    assert!(!format!("{in_path:?}").contains(SECRET));
    let e = in_path.sections().await.unwrap_err();
    assert_clean("token in the base path", &e, &mut shown);
    let e = PlexClient::new("http://127.0.0.1:32400", format!("{SECRET}\u{1}")).unwrap_err();
    assert!(matches!(e, ClientError::InvalidToken { .. }));
    assert_clean("bad token", &e, &mut shown);

    // Through the cache: the error chain and the stored entries.
    let cache = PlexCache::new(MemoryBackend::new()).unwrap();
    let items = cache.library_items_via(&good, "Movies").await.unwrap();
    assert_eq!(items.len(), 341);
    cache.search_via(&good, "Movies", "alien").await.unwrap();
    cache.index_matches("Movies", &items).await.unwrap();
    let s = faulty(Fault::Status(401)).await;
    let failing = fast(s.url(), SECRET).build().unwrap();
    let e = cache
        .library_items_via(&failing, "TV Shows")
        .await
        .unwrap_err();
    assert!(matches!(
        ClientError::find(&e),
        Some(ClientError::Unauthorized { .. })
    ));
    assert_clean("cache fetch error", &e, &mut shown);
    servers.push(s);
    let keys = cache.cache().keys("", 100_000).await.unwrap();
    assert!(keys.len() > 341);
    for key in &keys {
        assert!(!key.contains(SECRET));
        let (raw, _) = cache.cache().get_raw(key).await.unwrap().unwrap();
        assert!(
            !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{key}"
        );
    }

    // No request carried the token anywhere but its header.
    for s in servers.iter().chain([&pms]) {
        for r in s.requests() {
            assert!(!r.token_in_query, "{r:?}");
            assert!(!r.query.unwrap_or_default().contains(SECRET));
            assert!(!r.path.contains(SECRET) || r.path.contains("/library/metadata/"));
        }
    }

    // Nothing logged it, at any level, from any crate.
    drop(servers);
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("PMS request"),
        "the client logged its requests"
    );
    assert!(logged.contains("retrying"), "and its retries");
    assert!(!logged.contains(SECRET), "the token was logged");
    assert!(
        logged.contains("hyper_util") && logged.contains("reqwest"),
        "the HTTP libraries' own trace logs were captured too"
    );
    assert!(shown.len() >= 20, "{shown:#?}");
}
