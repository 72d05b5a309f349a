//! The fake server's HTTP side: accepting connections, faults, the token check and routing.

use std::io;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};

use super::render::{
    container_json, container_xml, item_to_json, json_doc_to_xml, query_pairs, title_matches,
};
use super::{Content, FakeLibrary, Fault, RecordedRequest, Shared};
use plexcache_plex::synthetic;

type Body = BoxBody<Bytes, io::Error>;

/// Accepts connections until the task is aborted (which also aborts every connection).
pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// How `/all` honours the paging headers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paging {
    Honour,
    IgnoreStart { report_offset: bool },
    Ignore,
}

/// What to do to a normal answer's body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mangle {
    None,
    DropMidBody,
    Truncate,
}

struct Req {
    path: String,
    query: Vec<(String, String)>,
    start: Option<u64>,
    size: Option<u64>,
    json: bool,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, io::Error> {
    let headers = req.headers();
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().map(str::to_owned);
    let query = raw_query.as_deref().map(query_pairs).unwrap_or_default();
    let header_str =
        |h: &HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let number = |name: &str| {
        header_str(headers, name)
            .or_else(|| {
                query
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let start = number("X-Plex-Container-Start");
    let size = number("X-Plex-Container-Size");
    let token_in_query = query
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("X-Plex-Token"));
    let token_ok = headers
        .get("X-Plex-Token")
        .is_some_and(|v| v.as_bytes() == shared.token.as_bytes());
    let accept = header_str(headers, "accept");
    let json = accept.as_deref().is_some_and(|a| a.contains("json"));
    let (fault, delay) = match shared.next_fault(&path) {
        Some((fault, delay)) => (Some(fault), delay),
        None => (None, None),
    };
    let record = RecordedRequest {
        method: req.method().as_str().to_owned(),
        path: path.clone(),
        query: raw_query.map(|q| redact_query(&q)),
        container_start: start,
        container_size: size,
        accept,
        token_ok,
        token_in_query,
        client_identifier: header_str(headers, "X-Plex-Client-Identifier"),
        product: header_str(headers, "X-Plex-Product"),
        version: header_str(headers, "X-Plex-Version"),
        fault: fault.clone(),
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(record);

    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut paging = Paging::Honour;
    let mut mangle = Mangle::None;
    match fault {
        None => {}
        Some(Fault::Status(code)) => return status_page(code, None),
        Some(Fault::StatusRetryAfter(code, secs)) => return status_page(code, Some(secs)),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::CloseConnection) => {
            return Err(io::Error::other("fake PMS: closing the connection"));
        }
        Some(Fault::Html) => return html(StatusCode::OK, NOT_PMS_HTML),
        Some(Fault::DropMidBody) => mangle = Mangle::DropMidBody,
        Some(Fault::TruncatedBody) => mangle = Mangle::Truncate,
        Some(Fault::IgnoreContainerStart { report_offset }) => {
            paging = Paging::IgnoreStart { report_offset };
        }
        Some(Fault::IgnorePaging) => paging = Paging::Ignore,
        Some(Fault::Endless {
            total_size,
            per_page,
            keyed,
        }) => {
            let body = endless_page(start.unwrap_or(0), size, total_size, per_page, keyed, json);
            return answer(body, json, Mangle::None);
        }
        Some(Fault::Redirect(location)) => {
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .body(full(Bytes::new()))
                .map_err(io::Error::other);
        }
    }

    let r = Req {
        path,
        query,
        start,
        size,
        json,
    };
    if r.path == "/identity" {
        let body = br#"{"MediaContainer":{"size":0,"claimed":true,"machineIdentifier":"fake-pms","version":"1.41.0.0000-fake"}}"#;
        return answer(body.to_vec(), r.json, mangle);
    }
    if !token_ok {
        return html(StatusCode::UNAUTHORIZED, UNAUTHORIZED_HTML);
    }
    match route(shared, &r, paging) {
        Some(body) => answer(body, r.json, mangle),
        None => html(StatusCode::NOT_FOUND, NOT_FOUND_HTML),
    }
}

/// The body of a route, in JSON or XML as asked; `None` for 404.
fn route(shared: &Shared, r: &Req, paging: Paging) -> Option<Vec<u8>> {
    if let Some((_, body)) = shared.routes.iter().find(|(p, _)| *p == r.path) {
        return Some(in_format(body.clone(), r.json));
    }
    let segments: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["library", "sections"] => Some(sections(shared, r.json)),
        ["library", "sections", id, rest @ ("all" | "search")] => {
            let library = shared
                .libraries
                .iter()
                .find(|l| id.parse::<u32>().ok() == Some(l.id))?;
            let filter = r.param("title").or_else(|| {
                if *rest == "search" {
                    r.param("query")
                } else {
                    None
                }
            });
            Some(listing(library, r, filter, paging))
        }
        ["library", "metadata", rk] => {
            let (library, entry) = find_item(shared, rk)?;
            let mut attrs = Map::new();
            attrs.insert("size".into(), Value::from(1));
            attrs.insert("librarySectionID".into(), Value::from(library.id));
            attrs.insert(
                "librarySectionTitle".into(),
                Value::from(library.title.clone()),
            );
            Some(render(&attrs, "Metadata", std::iter::once(&entry), r.json))
        }
        ["library", "metadata", rk, "children"] => {
            let (library, _) = find_item(shared, rk)?;
            let mut attrs = Map::new();
            attrs.insert("size".into(), Value::from(0));
            attrs.insert("librarySectionID".into(), Value::from(library.id));
            Some(render(&attrs, "Metadata", std::iter::empty(), r.json))
        }
        _ => None,
    }
}

/// A page of a library, filtered by title.
fn listing(library: &FakeLibrary, r: &Req, filter: Option<&str>, paging: Paging) -> Vec<u8> {
    let (start, size) = match paging {
        Paging::Honour => (r.start.unwrap_or(0), r.size),
        Paging::IgnoreStart { .. } => (0, r.size),
        Paging::Ignore => (0, None),
    };
    let report_offset = !matches!(
        paging,
        Paging::IgnoreStart {
            report_offset: false
        }
    );
    match &library.content {
        Content::Synthetic { spec, .. } if filter.is_none() => {
            let total = spec.items;
            let from = usize::try_from(start).unwrap_or(usize::MAX).min(total);
            let n = size
                .map_or(total, |s| usize::try_from(s).unwrap_or(usize::MAX))
                .min(total - from);
            let page = spec.page(from, n, total);
            let format = if r.json {
                plexcache_plex::Format::Json
            } else {
                plexcache_plex::Format::Xml
            };
            synthetic::generate(&page, format)
        }
        Content::Synthetic { .. } => {
            let entries: Vec<Value> = library
                .synthetic_items()
                .iter()
                .filter(|i| filter.is_none_or(|f| title_matches(&i.title, f)))
                .map(item_to_json)
                .collect();
            let mut attrs = Map::new();
            attrs.insert("librarySectionID".into(), Value::from(library.id));
            attrs.insert(
                "librarySectionTitle".into(),
                Value::from(library.title.clone()),
            );
            page_of(&attrs, entries.iter(), start, size, report_offset, r.json)
        }
        Content::Entries { attrs, entries } => {
            let filtered = entries.iter().filter(|e| {
                filter.is_none_or(|f| {
                    e.get("title")
                        .and_then(Value::as_str)
                        .is_some_and(|t| title_matches(t, f))
                })
            });
            page_of(attrs, filtered, start, size, report_offset, r.json)
        }
    }
}

/// A page of [`Fault::Endless`].
fn endless_page(
    start: u64,
    size: Option<u64>,
    total_size: Option<u64>,
    per_page: Option<u64>,
    keyed: bool,
    json: bool,
) -> Vec<u8> {
    let asked = size.unwrap_or(50);
    let n = per_page.map_or(asked, |p| p.min(asked));
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            let index = start.saturating_add(i);
            let mut entry = Map::new();
            if keyed {
                entry.insert("ratingKey".into(), Value::from(index.to_string()));
                entry.insert(
                    "key".into(),
                    Value::from(format!("/library/metadata/{index}")),
                );
            }
            entry.insert("type".into(), Value::from("movie"));
            entry.insert("title".into(), Value::from(format!("Endless {index}")));
            Value::Object(entry)
        })
        .collect();
    let mut attrs = Map::new();
    attrs.insert("size".into(), Value::from(n));
    attrs.insert("offset".into(), Value::from(start));
    if let Some(total) = total_size {
        attrs.insert("totalSize".into(), Value::from(total));
    }
    render(&attrs, "Metadata", entries.iter(), json)
}

fn page_of<'a>(
    attrs: &Map<String, Value>,
    entries: impl Iterator<Item = &'a Value>,
    start: u64,
    size: Option<u64>,
    report_offset: bool,
    json: bool,
) -> Vec<u8> {
    let all: Vec<&Value> = entries.collect();
    let total = all.len();
    let from = usize::try_from(start).unwrap_or(usize::MAX).min(total);
    let n = size
        .map_or(total, |s| usize::try_from(s).unwrap_or(usize::MAX))
        .min(total - from);
    let mut attrs = attrs.clone();
    attrs.insert("size".into(), Value::from(n));
    attrs.insert("totalSize".into(), Value::from(total));
    if report_offset {
        attrs.insert("offset".into(), Value::from(start));
    }
    render(
        &attrs,
        "Metadata",
        all[from..from + n].iter().copied(),
        json,
    )
}

fn render<'a>(
    attrs: &Map<String, Value>,
    list_key: &str,
    entries: impl Iterator<Item = &'a Value>,
    json: bool,
) -> Vec<u8> {
    if json {
        container_json(attrs, list_key, entries)
    } else {
        container_xml(attrs, list_key, entries)
    }
}

fn sections(shared: &Shared, json: bool) -> Vec<u8> {
    if let Some(body) = &shared.sections {
        return in_format(body.clone(), json);
    }
    let dirs: Vec<Value> = shared
        .libraries
        .iter()
        .map(|l| {
            let mut d = Map::new();
            d.insert("key".into(), Value::from(l.id.to_string()));
            d.insert("type".into(), Value::from(l.kind.clone()));
            d.insert("title".into(), Value::from(l.title.clone()));
            d.insert("uuid".into(), Value::from(format!("fake-section-{}", l.id)));
            d.insert("updatedAt".into(), Value::from(1_700_000_000));
            let locations = l
                .locations
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut o = Map::new();
                    o.insert("id".into(), Value::from(i + 1));
                    o.insert("path".into(), Value::from(p.clone()));
                    Value::Object(o)
                })
                .collect();
            d.insert("Location".into(), Value::Array(locations));
            Value::Object(d)
        })
        .collect();
    let mut attrs = Map::new();
    attrs.insert("size".into(), Value::from(dirs.len()));
    attrs.insert("allowSync".into(), Value::from(false));
    attrs.insert("title1".into(), Value::from("Plex Library"));
    render(&attrs, "Directory", dirs.iter(), json)
}

/// The item with this rating key in any library, as a JSON entry.
fn find_item<'a>(shared: &'a Shared, rk: &str) -> Option<(&'a FakeLibrary, Value)> {
    for library in &shared.libraries {
        match &library.content {
            Content::Entries { entries, .. } => {
                let found = entries.iter().find(|e| match e.get("ratingKey") {
                    Some(Value::String(s)) => s == rk,
                    Some(Value::Number(n)) => n.to_string() == rk,
                    _ => false,
                });
                if let Some(e) = found {
                    return Some((library, e.clone()));
                }
            }
            Content::Synthetic { .. } => {
                if let Some(item) = library
                    .synthetic_items()
                    .iter()
                    .find(|i| i.rating_key == rk)
                {
                    return Some((library, item_to_json(item)));
                }
            }
        }
    }
    None
}

/// A stored body in the format asked for (JSON bodies are converted for XML clients).
fn in_format(body: Vec<u8>, json: bool) -> Vec<u8> {
    if json {
        return body;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(doc) => json_doc_to_xml(&doc).unwrap_or(body),
        Err(_) => body,
    }
}

fn answer(body: Vec<u8>, json: bool, mangle: Mangle) -> Result<Response<Body>, io::Error> {
    let content_type = match plexcache_plex::detect_format(&body) {
        Some(plexcache_plex::Format::Json) => "application/json",
        Some(plexcache_plex::Format::Xml) => "text/xml;charset=utf-8",
        None if json => "application/json",
        None => "text/plain",
    };
    let full_len = body.len();
    let body = Bytes::from(body);
    let half = body.slice(..full_len / 2);
    let response_body: Body = match mangle {
        Mangle::None => full(body),
        Mangle::Truncate => full(half),
        Mangle::DropMidBody => {
            // The first half, flushed to the client, then (a moment later) the connection drops.
            use futures::StreamExt as _;
            let first = futures::stream::iter([Ok::<_, io::Error>(Frame::data(half))]);
            let then_fail = futures::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                Err::<Frame<Bytes>, _>(io::Error::other(
                    "fake PMS: dropping the connection mid-body",
                ))
            });
            BodyExt::boxed(StreamBody::new(first.chain(then_fail)))
        }
    };
    let len = if mangle == Mangle::Truncate {
        full_len / 2
    } else {
        full_len
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .body(response_body)
        .map_err(io::Error::other)
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

const UNAUTHORIZED_HTML: &str =
    "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>";
const NOT_FOUND_HTML: &str =
    "<html><head><title>Not Found</title></head><body><h1>404 Not Found</h1></body></html>";
const NOT_PMS_HTML: &str = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>";

fn html(status: StatusCode, page: &'static str) -> Result<Response<Body>, io::Error> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html")
        .body(full(Bytes::from_static(page.as_bytes())))
        .map_err(io::Error::other)
}

fn status_page(code: u16, retry_after: Option<u64>) -> Result<Response<Body>, io::Error> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page =
        format!("<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>");
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html");
    if let Some(secs) = retry_after {
        builder = builder.header(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    builder
        .body(full(Bytes::from(page)))
        .map_err(io::Error::other)
}

/// The query with any token value replaced.
fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("X-Plex-Token") => format!("{k}=<redacted>"),
            _ => p.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}
