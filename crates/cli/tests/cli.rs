//! End-to-end tests of the `plexcache` binary against recorded PMS responses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plex/tests/fixtures")
        .join(rel)
}

fn plexcache(dir: &Path, backend: &str) -> Command {
    let mut cmd = Command::cargo_bin("plexcache").unwrap();
    cmd.arg("--backend")
        .arg(backend)
        .arg("--cache-dir")
        .arg(dir);
    cmd.env_remove("PLEXCACHE_BACKEND")
        .env_remove("PLEXCACHE_CACHE_DIR")
        .env_remove("PLEXCACHE_REDIS_URL");
    cmd
}

fn stdout_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn import_get_invalidate(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let summary = stdout_json(
        plexcache(d, backend)
            .args(["import", "--library", "Movies: 4K"])
            .arg(fixture("full/movies_all_341.plex-api-spec.json")),
    );
    assert_eq!(summary["items"], 341);
    assert_eq!(summary["matches"], 347);

    let items = stdout_json(plexcache(d, backend).args(["get", "library", "Movies: 4K"]));
    assert_eq!(items.as_array().unwrap().len(), 341);
    assert_eq!(items[0]["kind"], "movie");

    // A path from the listing matches its item.
    let path = items[0]["file_paths"][0].as_str().unwrap().to_owned();
    let m = stdout_json(plexcache(d, backend).args(["get", "match", "Movies: 4K", &path]));
    assert_eq!(m[0]["rating_key"], items[0]["rating_key"]);

    // Raw access by key, escaped as the key scheme says.
    let raw = plexcache(d, backend)
        .args(["get", "key", "library:Movies%3A 4K:all"])
        .output()
        .unwrap();
    assert!(raw.status.success());

    let keys = stdout_json(plexcache(d, backend).args(["keys", "--prefix", "library:"]));
    assert_eq!(keys.as_array().unwrap().len(), 1);

    let stats = stdout_json(plexcache(d, backend).arg("stats"));
    assert_eq!(stats["usage"]["entries"], 1 + 347);
    assert!(
        stats["persistent"]["hits"].as_u64().unwrap() >= 2,
        "{stats}"
    );

    let check = stdout_json(plexcache(d, backend).arg("check"));
    assert_eq!(check["undecodable"], 0);

    let removed = stdout_json(plexcache(d, backend).args(["invalidate", "Movies: 4K"]));
    assert_eq!(removed["removed"], 348);

    // Exit code 3: not found.
    plexcache(d, backend)
        .args(["get", "library", "Movies: 4K"])
        .assert()
        .code(3);
}

#[test]
fn sqlite_import_get_invalidate() {
    import_get_invalidate("sqlite");
}

#[test]
fn sqlite_exclusive_import_get_invalidate() {
    import_get_invalidate("sqlite-exclusive");
}

/// While another process owns the cache in exclusive mode, a command fails at once with one
/// line that says so (exit 1), and works again once the owner is gone.
#[test]
fn a_cache_held_exclusively_elsewhere_is_reported_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let owner = plexcache_sqlite::SqliteBackend::builder(&dir)
        .open_exclusive()
        .unwrap();
    let out = plexcache(&dir, "sqlite").args(["stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exclusive mode"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    drop(owner);
    plexcache(&dir, "sqlite").args(["stats"]).assert().success();
}

#[test]
fn sled_import_get_invalidate() {
    import_get_invalidate("sled");
}

#[test]
fn xml_pages_are_concatenated() {
    let dir = tempfile::tempdir().unwrap();
    let s = stdout_json(
        plexcache(dir.path(), "sqlite")
            .args(["import", "--library", "TV"])
            .arg(fixture("xml/movies_all_page.plexdevices.xml"))
            .arg(fixture("xml/hubs_search.plexdevices.xml")),
    );
    assert!(s["items"].as_u64().unwrap() > 2, "{s}");
    assert_eq!(s["files"], 2);
}

#[test]
fn usage_errors_exit_2_and_bad_input_exits_1_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    plexcache(dir.path(), "sqlite")
        .arg("frobnicate")
        .assert()
        .code(2);
    plexcache(dir.path(), "nosuchbackend")
        .arg("stats")
        .assert()
        .code(2);
    let bad = dir.path().join("not-pms.json");
    std::fs::write(&bad, b"<html><body>502 Bad Gateway</body></html>").unwrap();
    let out = plexcache(dir.path(), "sqlite")
        .args(["import", "--library", "M"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: ") && err.contains("not-pms.json"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn a_corrupt_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plexcache.db"), vec![0x42u8; 8192]).unwrap();
    let out = plexcache(dir.path(), "sqlite")
        .arg("stats")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("plexcache.db"), "names the file: {err}");
}

#[test]
fn cache_dir_is_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("nested").join("cache");
    plexcache(&cache_dir, "sqlite")
        .arg("stats")
        .assert()
        .success();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}

#[test]
fn bench_compares_every_embedded_backend() {
    let dir = tempfile::tempdir().unwrap();
    let rows = stdout_json(plexcache(dir.path(), "sqlite").args([
        "bench",
        "--items",
        "50",
        "--keys",
        "200",
        "--seconds",
        "0.02",
        "--sync-items",
        "300",
    ]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 10 * 4);
    for backend in ["memory", "sqlite", "sqlite-exclusive", "sled"] {
        assert_eq!(rows.iter().filter(|r| r["backend"] == backend).count(), 10);
    }
    for workload in [
        "library list get, view",
        "library list get, tier",
        "sync (extract + replace)",
    ] {
        assert_eq!(rows.iter().filter(|r| r["workload"] == workload).count(), 4);
    }
    for r in rows {
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
        assert!(r["ratio_to_fastest"].as_f64().unwrap() >= 1.0, "{r}");
    }
}

/// Titles and paths from a server are shown with their control characters escaped, so an
/// escape sequence never reaches the terminal; `--json` keeps them exactly (as JSON escapes).
#[test]
fn get_escapes_control_characters_in_human_output() {
    let dir = tempfile::tempdir().unwrap();
    let title = "\u{1b}[31mRed\u{1b}[0m Alert\u{7}";
    let path = "/movies/\u{1b}]0;pwned\u{7}Red Alert.mkv";
    // Written through the library, as an older release (which kept control characters) or
    // another program may have left it: the extractor of this release strips them.
    let item = plexcache_plex::PlexItem {
        rating_key: "7".into(),
        key: "/library/metadata/7".into(),
        title: title.into(),
        kind: plexcache_plex::ItemKind::Movie,
        file_paths: vec![path.into()],
        year: Some(1999),
        updated_at: None,
        library_section_id: Some(1),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let backend = plexcache_sqlite::SqliteBackend::open(dir.path()).unwrap();
            let cache = plexcache_plex::PlexCache::new(backend).unwrap();
            cache.set_library_items("Movies", &[item]).await.unwrap();
            cache.flush().await.unwrap();
        });

    let out = plexcache(dir.path(), "sqlite")
        .args(["get", "library", "Movies"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    assert!(
        stdout.contains(r"\u{1b}[31mRed\u{1b}[0m Alert\u{7}"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r"/movies/\u{1b}]0;pwned\u{7}Red Alert.mkv"),
        "{stdout}"
    );

    let out = plexcache(dir.path(), "sqlite")
        .args(["get", "library", "Movies", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !out.stdout.contains(&0x1b),
        "JSON escapes control characters"
    );
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items[0]["title"], title);
    assert_eq!(items[0]["file_paths"][0], path);
}
