//! End-to-end tests of `plexcache sync` against a fake Plex Media Server on a loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use assert_cmd::Command;
use plexcache_testsupport::fake_pms::{FakePms, Fault, FaultRule};

const TOKEN: &str = "tok-SECRET-5up3r";

fn plexcache(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("plexcache").unwrap();
    // A directory the command creates itself (0700), so no permission warning is printed.
    cmd.arg("--cache-dir").arg(dir.join("cache"));
    for var in [
        "PLEXCACHE_BACKEND",
        "PLEXCACHE_CACHE_DIR",
        "PLEXCACHE_TOKEN",
        "PLEXCACHE_SERVER",
    ] {
        cmd.env_remove(var);
    }
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
fn sync_fetches_then_serves_from_the_cache() {
    let pms = FakePms::builder(TOKEN)
        .recorded_fixtures()
        .start_blocking()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sync = |extra: &[&str]| {
        json(
            plexcache(dir.path())
                .args([
                    "sync",
                    "--server",
                    &pms.url(),
                    "--library",
                    "Movies",
                    "--page-size",
                    "100",
                ])
                .args(extra)
                .env("PLEXCACHE_TOKEN", TOKEN),
        )
    };
    let first = sync(&[]);
    assert_eq!(first["items"], 341);
    assert_eq!(first["fetched"], 1);
    assert_eq!(
        pms.count_path("/library/sections/1/all"),
        4,
        "341 items in pages of 100"
    );

    let second = sync(&[]);
    assert_eq!(second["served_from_cache"], 1);
    assert_eq!(
        pms.count_path("/library/sections/1/all"),
        4,
        "no new page requests"
    );

    let third = sync(&["--refresh"]);
    assert_eq!(third["fetched"], 1);
    assert_eq!(pms.count_path("/library/sections/1/all"), 8);

    // The synced data is there, with matches, and nowhere holds the token.
    let items = json(plexcache(dir.path()).args(["get", "library", "Movies"]));
    assert_eq!(items.as_array().unwrap().len(), 341);
    let path = items[5]["file_paths"][0].as_str().unwrap().to_owned();
    json(plexcache(dir.path()).args(["get", "match", "Movies", &path]));
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "token on disk"
        );
    }
}

#[test]
fn sync_all_libraries_by_default() {
    let pms = FakePms::builder(TOKEN)
        .recorded_fixtures()
        .start_blocking()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = json(plexcache(dir.path()).args(["sync", "--server", &pms.url(), "--token", TOKEN]));
    assert!(s["libraries"].as_array().unwrap().len() >= 2, "{s}");
}

#[test]
fn sync_errors_are_one_line_and_never_show_the_token() {
    let pms = FakePms::builder(TOKEN)
        .recorded_fixtures()
        .fault(FaultRule::new(Fault::Status(500)).on("/library/sections/1/all"))
        .start_blocking()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--token".into(),
                "wrong-token".into(),
                "--library".into(),
                "Movies".into(),
            ],
            "token",
        ),
        (
            vec![
                "--token".into(),
                TOKEN.into(),
                "--library".into(),
                "Nope".into(),
            ],
            "Nope",
        ),
        (
            vec![
                "--token".into(),
                TOKEN.into(),
                "--library".into(),
                "Movies".into(),
            ],
            "500",
        ),
    ];
    for (args, expect) in cases {
        let out = plexcache(dir.path())
            .args(["sync", "--server", &pms.url()])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains(TOKEN), "token leaked: {err}");
        // Retries may be logged as warnings before it; the error itself is one last line.
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{err}");
        assert_eq!(err.matches("error: ").count(), 1, "one error line: {err}");
    }
    // Unreachable server.
    let out = plexcache(dir.path())
        .args(["sync", "--server", "http://127.0.0.1:9", "--token", TOKEN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains(TOKEN) && err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn help_does_not_show_the_token_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = plexcache(dir.path())
        .args(["sync", "--help"])
        .env("PLEXCACHE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN));
}

/// The token can come from a file or standard input; only `--token` (an argument other users
/// can read with `ps`) gets a warning, once, without the token.
#[test]
fn the_token_comes_from_a_file_or_stdin_and_an_argument_warns() {
    let pms = FakePms::builder(TOKEN)
        .recorded_fixtures()
        .start_blocking()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sync = || {
        let mut cmd = plexcache(dir.path());
        cmd.args(["sync", "--server", &pms.url(), "--library", "TV Shows"])
            .arg("--json");
        cmd
    };
    let ok = |out: std::process::Output| -> String {
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{err}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["libraries"][0]["library"], "TV Shows", "{summary}");
        assert!(!err.contains(TOKEN), "token shown: {err}");
        err
    };

    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let err = ok(sync().arg("--token-file").arg(&file).output().unwrap());
    assert!(!err.contains("warning"), "{err}");

    let err = ok(sync()
        .args(["--token-file", "-", "--refresh"])
        .write_stdin(format!("  {TOKEN}\r\n"))
        .output()
        .unwrap());
    assert!(!err.contains("warning"), "{err}");

    let err = ok(sync().env("PLEXCACHE_TOKEN", TOKEN).output().unwrap());
    assert!(!err.contains("warning"), "{err}");
    // The file wins over the environment.
    ok(sync()
        .env("PLEXCACHE_TOKEN", "stale-token")
        .args(["--refresh", "--token-file"])
        .arg(&file)
        .output()
        .unwrap());

    let err = ok(sync().args(["--token", TOKEN]).output().unwrap());
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(
        err.contains("--token") && err.contains("PLEXCACHE_TOKEN") && err.contains("--token-file"),
        "{err}"
    );

    // Usage errors: both, or neither.
    let out = sync()
        .args(["--token", TOKEN, "--token-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sync().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--token-file"), "{err}");

    // An empty or missing file is a one-line error naming the file.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for path in [empty, dir.path().join("missing")] {
        let out = sync().arg("--token-file").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    // A file holding more than the token is refused without showing it.
    let two = dir.path().join("two-lines");
    std::fs::write(&two, format!("{TOKEN}\nsecond-line-secret\n")).unwrap();
    let out = sync().arg("--token-file").arg(&two).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !err.contains(TOKEN) && !err.contains("second-line-secret"),
        "{err}"
    );
}
