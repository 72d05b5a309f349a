//! End-to-end: the `plexcache` binary over `--backend redis`, against a redis-server this test
//! starts on a free loopback port. Skipped with a notice when redis-server is not installed,
//! unless `PLEXCACHE_REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use plexcache_testsupport::redis_server::{RedisServer, free_port, send};

fn start_server() -> Option<RedisServer> {
    RedisServer::start()
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plex/tests/fixtures")
        .join(rel)
}

fn plexcache(url: Option<&str>) -> Command {
    let mut cmd = Command::cargo_bin("plexcache").unwrap();
    cmd.args(["--backend", "redis"]);
    if let Some(url) = url {
        cmd.args(["--redis-url", url]);
    }
    cmd.env_remove("PLEXCACHE_BACKEND")
        .env_remove("PLEXCACHE_CACHE_DIR")
        .env_remove("PLEXCACHE_REDIS_URL")
        .env_remove("PLEXCACHE_REDIS_PREFIX");
    cmd
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn redis_without_a_url_is_a_usage_error() {
    let out = plexcache(None).arg("stats").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--redis-url"), "{err}");
}

/// A password in `--redis-url` gets one warning (other users can read arguments with `ps`),
/// without the password; the same URL from PLEXCACHE_REDIS_URL, or a URL without a password,
/// gets none. The warning comes before connecting, so no server is needed.
#[test]
fn a_password_in_the_redis_url_argument_warns_once() {
    let port = free_port();
    let with_password = format!("redis://:hunter2@127.0.0.1:{port}");
    let stderr = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "nothing listens on {port}");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = stderr(plexcache(Some(&with_password)).arg("stats"));
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(
        err.contains("--redis-url") && err.contains("PLEXCACHE_REDIS_URL"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    // After a subcommand, and as a user name only (which Redis may take as the password).
    let err = stderr(plexcache(None).args([
        "stats",
        "--redis-url",
        &format!("redis://hunter2@127.0.0.1:{port}"),
    ]));
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let err = stderr(
        plexcache(None)
            .env("PLEXCACHE_REDIS_URL", &with_password)
            .arg("stats"),
    );
    assert!(!err.contains("warning"), "{err}");
    let err = stderr(plexcache(Some(&format!("redis://127.0.0.1:{port}"))).arg("stats"));
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let out = plexcache(Some(&url)).arg("stats").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn import_get_keys_stats_clear_through_redis() {
    let Some(server) = start_server() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}", server.port);
    let summary = json(
        plexcache(Some(&url))
            .args(["import", "--library", "Movies: 4K"])
            .arg(fixture("full/movies_all_341.plex-api-spec.json")),
    );
    assert_eq!(summary["items"], 341);
    let items = json(plexcache(Some(&url)).args(["get", "library", "Movies: 4K"]));
    assert_eq!(items.as_array().unwrap().len(), 341);
    let keys = json(plexcache(Some(&url)).args(["keys", "--prefix", "library:"]));
    assert_eq!(keys.as_array().unwrap().len(), 1);
    // Another prefix is another cache on the same server.
    let other = json(plexcache(Some(&url)).args([
        "--redis-prefix",
        "other:",
        "keys",
        "--prefix",
        "library:",
    ]));
    assert_eq!(other.as_array().unwrap().len(), 0);
    let stats = json(plexcache(Some(&url)).arg("stats"));
    assert_eq!(stats["usage"]["entries"], 1 + 347);
    assert!(
        stats["persistent"]["hits"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let check = json(plexcache(Some(&url)).arg("check"));
    assert_eq!(check["undecodable"], 0, "{check}");
    json(plexcache(Some(&url)).arg("clear"));
    plexcache(Some(&url))
        .args(["get", "library", "Movies: 4K"])
        .assert()
        .code(3);
}

#[test]
fn bench_adds_redis_and_leaves_nothing_behind() {
    let Some(server) = start_server() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}", server.port);
    let mut cmd = Command::cargo_bin("plexcache").unwrap();
    cmd.env_remove("PLEXCACHE_BACKEND")
        .env_remove("PLEXCACHE_REDIS_URL")
        .args([
            "bench",
            "--backends",
            "memory",
            "--items",
            "50",
            "--keys",
            "200",
        ])
        .args([
            "--seconds",
            "0.02",
            "--sync-items",
            "200",
            "--redis-url",
            &url,
        ]);
    let rows = json(&mut cmd);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 10 * 2);
    assert_eq!(rows.iter().filter(|r| r["backend"] == "redis").count(), 10);
    assert!(rows.iter().all(|r| r["ops"].as_u64().unwrap() > 0));
    // Six Redis rows are compared with bare round trips of the same bytes.
    let against_wire: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["backend"] == "redis" && r.get("ratio_to_wire").is_some())
        .collect();
    assert_eq!(against_wire.len(), 6, "{rows:?}");
    for r in against_wire {
        assert!(r["ratio_to_wire"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["wire_ops_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    let dbsize = send(server.port, "DBSIZE").unwrap();
    assert_eq!(dbsize.trim(), ":0", "bench cleaned up after itself");
}
