//! The SQLite cache on real network mounts: one directory mounted twice with sshfs over
//! loopback (`sshfs -o passive` talking to `/usr/lib/openssh/sftp-server` through a pipe
//! pair: no sshd, no keys). Two mounts behave like two machines: each has its own page cache
//! and its own locks, so they are two lock domains.
//!
//! * two domains, two processes each, a soak (`PLEXCACHE_SHARES_SECS`, default 20 s): the
//!   second domain gets the clear error while the first holds the lease, then works after
//!   it is released; no other error, `check()` clean, acknowledged writes readable;
//! * one domain, four processes: no error at all;
//! * a holder killed with SIGKILL: the other domain takes over after the timeout and every
//!   acknowledged write is there;
//! * a holder paused (SIGSTOP) past the timeout and resumed: it stops before writing.
//! * two mounts racing to take over a dead holder's lease: one holder, the other refused.
//!
//! The tests skip with a notice where FUSE, sshfs or the SFTP server is missing, unless
//! `PLEXCACHE_REQUIRE_SHARES=1`. Every mount is unmounted when its test ends, and a watchdog
//! unmounts and aborts a test that runs too long, so a dead mount cannot hang CI.
//!
//! `PLEXCACHE_SHARES_UNPROTECTED=1` runs the two-domain soak against the unprotected path
//! (`fs_kind(Local)`: WAL, no lease, both domains at once), to show that the test catches
//! the damage the lease prevents; it is not part of CI.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plexcache_core::{Cache, Error, EvictionPolicy};
use plexcache_sqlite::{FsChoice, SqliteBackend, SqliteBuilder};

const REQUIRE_ENV: &str = "PLEXCACHE_REQUIRE_SHARES";
const WORKER_ENV: &str = "PLEXCACHE_SHARES_WORKER";
const SECS_ENV: &str = "PLEXCACHE_SHARES_SECS";
const UNPROTECTED_ENV: &str = "PLEXCACHE_SHARES_UNPROTECTED";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// The lease timeout of these tests (the default is 90 s).
const LEASE_TIMEOUT: Duration = Duration::from_secs(6);
const SIZE_LIMIT: u64 = 256 * 1024;

fn soak_secs() -> f64 {
    std::env::var(SECS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0)
}

fn unprotected() -> bool {
    std::env::var(UNPROTECTED_ENV).is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------------------------
// Mounts

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

/// Why shares cannot be tested here, if they cannot.
fn missing() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    if which("sshfs").is_none() {
        return Some("sshfs is not installed".into());
    }
    if which("fusermount3").is_none() && which("fusermount").is_none() {
        return Some("fusermount3 is not installed (fuse3)".into());
    }
    if !Path::new(SFTP_SERVER).exists() {
        return Some(format!("{SFTP_SERVER} is missing (openssh-sftp-server)"));
    }
    None
}

fn mounted(point: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let point = point.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(point.as_str()))
}

fn unmount(point: &Path) {
    let tool = if which("fusermount3").is_some() {
        "fusermount3"
    } else {
        "fusermount"
    };
    // Lazy: a busy mount is detached at once and goes away when its last user does.
    let _ = Command::new(tool)
        .args(["-u", "-z"])
        .arg(point)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One sshfs mount of a directory, served by an `sftp-server` process over a pipe pair.
struct Mount {
    point: PathBuf,
    sshfs: std::process::Child,
    sftp: std::process::Child,
}

impl Mount {
    fn new(src: &Path, point: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(point).map_err(|e| e.to_string())?;
        let mut sftp = Command::new(SFTP_SERVER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {SFTP_SERVER}: {e}"))?;
        let to_server = sftp.stdin.take().unwrap();
        let from_server = sftp.stdout.take().unwrap();
        let sshfs = Command::new("sshfs")
            .arg("-f")
            .args(["-o", "passive"])
            .arg(format!("localhost:{}", src.display()))
            .arg(point)
            .stdin(Stdio::from(from_server))
            .stdout(Stdio::from(to_server))
            .stderr(Stdio::null())
            .spawn();
        let sshfs = match sshfs {
            Ok(c) => c,
            Err(e) => {
                let _ = sftp.kill();
                let _ = sftp.wait();
                return Err(format!("starting sshfs: {e}"));
            }
        };
        let mut mount = Mount {
            point: point.to_path_buf(),
            sshfs,
            sftp,
        };
        let started = Instant::now();
        while !mounted(point) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("sshfs did not mount within 10 s".into());
            }
            if let Ok(Some(status)) = mount.sshfs.try_wait() {
                return Err(format!("sshfs exited: {status}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(mount)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        unmount(&self.point);
        let _ = self.sshfs.kill();
        let _ = self.sshfs.wait();
        let _ = self.sftp.kill();
        let _ = self.sftp.wait();
    }
}

/// A directory mounted `n` times, with a watchdog; everything is undone when dropped.
struct Shares {
    mounts: Vec<Mount>,
    src: PathBuf,
    done: Arc<AtomicBool>,
    _base: tempfile::TempDir,
}

impl Shares {
    /// `None` (after a notice) where shares cannot be tested and they are not required.
    fn new(test: &str, n: usize, limit: Duration) -> Option<Shares> {
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
        let skip = |why: String| {
            assert!(!required, "{test}: {why} and {REQUIRE_ENV}=1");
            eprintln!("SKIPPED {test}: {why} (set {REQUIRE_ENV}=1 to make this a failure)");
            None
        };
        if let Some(why) = missing() {
            return skip(why);
        }
        let base = tempfile::tempdir().unwrap();
        let src = base.path().join("share");
        std::fs::create_dir(&src).unwrap();
        let mut mounts = Vec::new();
        for i in 0..n {
            match Mount::new(&src, &base.path().join(format!("mount{i}"))) {
                Ok(m) => mounts.push(m),
                Err(why) => return skip(format!("cannot mount with sshfs: {why}")),
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let points: Vec<PathBuf> = mounts.iter().map(|m| m.point.clone()).collect();
        let flag = Arc::clone(&done);
        let test = test.to_owned();
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < limit {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("{test}: timed out after {limit:?}; unmounting and aborting");
            for p in &points {
                unmount(p);
            }
            std::process::abort();
        });
        Some(Shares {
            mounts,
            src,
            done,
            _base: base,
        })
    }

    fn dir(&self, mount: usize) -> PathBuf {
        self.mounts[mount].point.join("cache")
    }
}

impl Drop for Shares {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// Workers: this test binary started again (see `worker_entry`).

fn builder(dir: &Path) -> SqliteBuilder {
    let b = SqliteBackend::builder(dir);
    if unprotected() {
        b.fs_kind(FsChoice::Local)
    } else {
        b.lease_timeout(LEASE_TIMEOUT)
    }
}

/// `soak|dir|id|secs|retry`: mixed small operations until `secs` have passed; with `retry`,
/// an open refused by the lease is tried again until then.
/// `hold|dir`: opens, then performs one write per `w <n>` line on stdin, answering `ACK <n>`
/// or `ERR <message>`.
#[test]
fn worker_entry() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match parts[0] {
        "soak" => rt.block_on(soak_worker(
            PathBuf::from(parts[1]),
            parts[2].parse().unwrap(),
            Duration::from_secs_f64(parts[3].parse().unwrap()),
            parts[4] == "retry",
        )),
        "hold" => rt.block_on(hold_worker(PathBuf::from(parts[1]))),
        other => panic!("unknown worker mode {other}"),
    }
}

fn is_lease_refusal(e: &Error) -> bool {
    matches!(e, Error::InUse { .. })
}

async fn soak_worker(dir: PathBuf, id: u64, secs: Duration, retry: bool) {
    let deadline = Instant::now() + secs;
    let mut refused = 0u64;
    let backend = loop {
        match builder(&dir)
            .lease_wait(LEASE_TIMEOUT / 2)
            .open_async()
            .await
        {
            Ok(b) => break Some(b),
            Err(e) if is_lease_refusal(&e) => {
                if refused == 0 {
                    println!("REFUSED {}", e.to_string().replace('\n', " "));
                }
                refused += 1;
                if !retry || Instant::now() >= deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => {
                println!("ERROR open: {e}");
                break None;
            }
        }
    };
    let mut ops = 0u64;
    if let Some(backend) = backend {
        println!("OPENED");
        let cache = Cache::builder(backend)
            .size_limit(SIZE_LIMIT)
            .eviction_policy(EvictionPolicy::LeastRecentlyStored)
            .memory_tier_bytes(0)
            .build()
            .unwrap();
        let mut seq = 0u64;
        let mut acked: HashMap<String, Option<String>> = HashMap::new();
        let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        while Instant::now() < deadline {
            // xorshift
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let own = format!("w{id}:{}", x % 24);
            let shared = format!("k:{}", (x >> 8) % 48);
            let r = match (x >> 20) % 10 {
                0..=3 => cache.get::<String>(&shared).await.map(|_| ()),
                4 => cache.get::<String>(&own).await.map(|_| ()),
                5..=6 => {
                    seq += 1;
                    let value = format!("{id}-{seq}-{}", "v".repeat(((x >> 32) % 2000) as usize));
                    let r = cache.set(&own, &value).await;
                    if r.is_ok() {
                        acked.insert(own.clone(), Some(value));
                    }
                    r
                }
                7 => {
                    let value = "s".repeat(((x >> 32) % 3000) as usize);
                    cache.set(&shared, &value).await
                }
                8 => {
                    let r = cache.remove(&own).await.map(|_| ());
                    if r.is_ok() {
                        acked.insert(own.clone(), None);
                    }
                    r
                }
                _ => cache.remove(&shared).await.map(|_| ()),
            };
            ops += 1;
            if let Err(e) = r {
                println!("ERROR {e}");
            }
        }
        if let Err(e) = cache.flush().await {
            println!("ERROR flush: {e}");
        }
        for (k, v) in &acked {
            match v {
                Some(v) => println!("ACK {k} {v}"),
                None => println!("ACK {k}"),
            }
        }
    }
    println!("DONE {ops} {refused}");
}

async fn hold_worker(dir: PathBuf) {
    let backend = match builder(&dir).open_async().await {
        Ok(b) => b,
        Err(e) => {
            println!("ERR open: {e}");
            return;
        }
    };
    let cache = Cache::new(backend);
    println!("OPENED");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Some(n) = line.strip_prefix("w ") else {
            continue;
        };
        match cache.set(&format!("hold:{n}"), &n.to_string()).await {
            Ok(()) => println!("ACK {n}"),
            Err(e) => println!("ERR {}", e.to_string().replace('\n', " ")),
        }
        let _ = std::io::stdout().flush();
    }
}

/// A worker process with its output read on a thread.
struct Worker {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Lines already read by `wait_for`.
    seen: Vec<String>,
}

impl Worker {
    fn spawn(spec: String) -> Worker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
            .env(WORKER_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line containing one of `markers`, with what follows it.
    fn wait_for(&mut self, markers: &[&str], within: Duration) -> (String, String) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    for m in markers {
                        if let Some(at) = line.find(m) {
                            return ((*m).to_owned(), line[at + m.len()..].trim().to_owned());
                        }
                    }
                }
                Err(e) => panic!(
                    "no line with {markers:?} within {within:?}: {e}; output: {:?}",
                    self.seen
                ),
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Every line until the process exits.
    fn finish(mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = std::mem::take(&mut self.seen);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("worker did not finish within {within:?}: {e}");
                }
            }
        }
        let _ = self.child.wait();
        out
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one soak worker reported.
#[derive(Debug, Default)]
struct Report {
    ops: u64,
    refused: u64,
    refusal: Option<String>,
    opened: bool,
    errors: Vec<String>,
    acked: HashMap<String, Option<String>>,
}

fn parse_report(lines: &[String]) -> Report {
    let mut r = Report::default();
    for line in lines {
        // libtest prints "test worker_entry ... " before the worker's first line.
        let line = line.trim_start_matches("test worker_entry ... ");
        if let Some(rest) = line.strip_prefix("REFUSED ") {
            r.refusal = Some(rest.to_owned());
        } else if line == "OPENED" {
            r.opened = true;
        } else if let Some(rest) = line.strip_prefix("ERROR ") {
            r.errors.push(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("ACK ") {
            match rest.split_once(' ') {
                Some((k, v)) => r.acked.insert(k.to_owned(), Some(v.to_owned())),
                None => r.acked.insert(rest.to_owned(), None),
            };
        } else if let Some(rest) = line.strip_prefix("DONE ") {
            let mut it = rest.split(' ');
            r.ops = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            r.refused = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        }
    }
    r
}

/// Opens the cache through `dir`, checks it and every acknowledged write.
fn verify(dir: &Path, reports: &[Report]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = builder(dir).open_async().await.expect("open to verify");
        let cache = Cache::builder(backend)
            .size_limit(SIZE_LIMIT)
            .memory_tier_bytes(0)
            .build()
            .unwrap();
        let report = cache.check().await.expect("check");
        assert!(report.is_ok(), "check() after the soak: {report:?}");
        let mut present = 0;
        for r in reports {
            for (k, v) in &r.acked {
                let got = cache
                    .get::<String>(k)
                    .await
                    .expect("read an acknowledged key");
                // Absent: evicted under the size limit (or removed last); present: the last
                // acknowledged value, never an older one.
                if let Some(got) = got {
                    present += 1;
                    assert_eq!(Some(&got), v.as_ref(), "key {k}");
                }
            }
        }
        eprintln!("verified: check() ok, {present} acknowledged values read back");
    });
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn two_domains_one_at_a_time_never_damage_the_cache() {
    if std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    let secs = soak_secs();
    let limit = Duration::from_secs_f64(secs * 2.0 + 60.0);
    let Some(shares) = Shares::new("two_domains", 2, limit) else {
        return;
    };
    let (a, b) = (shares.dir(0), shares.dir(1));
    let mut workers = Vec::new();
    if unprotected() {
        // Both domains at once, without the lease: what the lease prevents.
        for (i, dir) in [&a, &a, &b, &b].into_iter().enumerate() {
            workers.push(Worker::spawn(format!(
                "soak|{}|{i}|{secs}|once",
                dir.display()
            )));
        }
    } else {
        // Domain A works for the first half; domain B tries from the start, is refused
        // while A holds the lease, and works once A has released it.
        let mut first = Worker::spawn(format!("soak|{}|0|{}|once", a.display(), secs / 2.0));
        first.wait_for(&["OPENED"], Duration::from_secs(30));
        workers.push(first);
        workers.push(Worker::spawn(format!(
            "soak|{}|1|{}|once",
            a.display(),
            secs / 2.0
        )));
        let mut first_b = Worker::spawn(format!("soak|{}|2|{secs}|retry", b.display()));
        first_b.wait_for(&["REFUSED", "OPENED"], Duration::from_secs(30));
        workers.push(first_b);
        workers.push(Worker::spawn(format!(
            "soak|{}|3|{secs}|retry",
            b.display()
        )));
    }
    let reports: Vec<Report> = workers
        .into_iter()
        .map(|w| parse_report(&w.finish(Duration::from_secs_f64(secs + 60.0))))
        .collect();
    for (i, r) in reports.iter().enumerate() {
        eprintln!(
            "worker {i}: {} operations, opened {}, refused {} times, {} errors",
            r.ops,
            r.opened,
            r.refused,
            r.errors.len()
        );
    }
    let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    if !unprotected() {
        assert!(
            reports.iter().all(|r| r.opened && r.ops > 0),
            "every worker worked"
        );
        let refusal = reports[2]
            .refusal
            .as_deref()
            .expect("domain B was refused first");
        assert!(
            refusal.contains("Redis")
                && refusal.contains(&a.parent().unwrap().display().to_string()),
            "the refusal names the holder's mount and what to use instead: {refusal}"
        );
    }
    verify(&a, &reports);
    drop(shares);
}

#[test]
fn one_domain_four_processes_no_errors() {
    if std::env::var(WORKER_ENV).is_ok() || unprotected() {
        return;
    }
    let secs = (soak_secs() / 2.0).max(5.0);
    let Some(shares) = Shares::new("one_domain", 1, Duration::from_secs_f64(secs * 2.0 + 60.0))
    else {
        return;
    };
    let dir = shares.dir(0);
    let workers: Vec<Worker> = (0..4)
        .map(|i| Worker::spawn(format!("soak|{}|{i}|{secs}|retry", dir.display())))
        .collect();
    let reports: Vec<Report> = workers
        .into_iter()
        .map(|w| parse_report(&w.finish(Duration::from_secs_f64(secs + 60.0))))
        .collect();
    let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        reports.iter().all(|r| r.opened && r.refused == 0),
        "{reports:?}"
    );
    eprintln!(
        "one domain: {} operations in {secs} s",
        reports.iter().map(|r| r.ops).sum::<u64>()
    );
    verify(&dir, &reports);
    drop(shares);
}

#[test]
fn a_killed_holder_is_taken_over_and_loses_nothing_acknowledged() {
    if std::env::var(WORKER_ENV).is_ok() || unprotected() {
        return;
    }
    let Some(shares) = Shares::new("killed_holder", 2, Duration::from_secs(120)) else {
        return;
    };
    let (a, b) = (shares.dir(0), shares.dir(1));
    let mut holder = Worker::spawn(format!("hold|{}", a.display()));
    holder.wait_for(&["OPENED"], Duration::from_secs(30));
    for n in 0..20 {
        holder.send(&format!("w {n}"));
        let (m, rest) = holder.wait_for(&["ACK", "ERR"], Duration::from_secs(30));
        assert_eq!((m.as_str(), rest), ("ACK", n.to_string()));
    }
    holder.signal("-KILL");
    drop(holder);
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = builder(&b).open_async().await.expect("take over");
        let took = started.elapsed();
        assert!(
            took >= LEASE_TIMEOUT,
            "taken over after the timeout, not before: {took:?}"
        );
        eprintln!("taken over {took:?} after the kill");
        let cache = Cache::new(backend);
        for n in 0..20 {
            let got = cache.get::<String>(&format!("hold:{n}")).await.unwrap();
            assert_eq!(got, Some(n.to_string()), "acknowledged write {n}");
        }
        assert!(cache.check().await.unwrap().is_ok());
    });
    drop(shares);
}

#[test]
fn a_paused_holder_stops_before_writing() {
    if std::env::var(WORKER_ENV).is_ok() || unprotected() {
        return;
    }
    let Some(shares) = Shares::new("paused_holder", 2, Duration::from_secs(120)) else {
        return;
    };
    let (a, b) = (shares.dir(0), shares.dir(1));
    let mut holder = Worker::spawn(format!("hold|{}", a.display()));
    holder.wait_for(&["OPENED"], Duration::from_secs(30));
    holder.send("w 1");
    assert_eq!(
        holder.wait_for(&["ACK", "ERR"], Duration::from_secs(30)).0,
        "ACK"
    );
    holder.signal("-STOP");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = rt.block_on(async {
        let backend = builder(&b).open_async().await.expect("take over");
        let cache = Cache::new(backend);
        cache.set("taker", &"b".to_string()).await.unwrap();
        cache
    });
    holder.signal("-CONT");
    holder.send("w 2");
    let (m, rest) = holder.wait_for(&["ACK", "ERR"], Duration::from_secs(30));
    assert_eq!(m, "ERR", "the resumed holder must not write: {rest}");
    assert!(rest.contains("lease"), "{rest}");
    rt.block_on(async {
        assert_eq!(cache.get::<String>("hold:2").await.unwrap(), None);
        assert_eq!(
            cache.get::<String>("hold:1").await.unwrap().as_deref(),
            Some("1")
        );
        assert!(cache.check().await.unwrap().is_ok());
    });
    drop(holder);
    drop(cache);
    drop(shares);
    let _ = &b;
}

#[test]
fn detection_sees_sshfs_as_network() {
    if std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    let Some(shares) = Shares::new("detection", 1, Duration::from_secs(60)) else {
        return;
    };
    let info = plexcache_core::fskind::detect(&shares.dir(0), Some(FsChoice::Auto)).unwrap();
    assert!(info.is_network(), "{info:?}");
    assert_eq!(info.fs_type, "fuse.sshfs");
    assert_eq!(
        info.mount_point.as_deref(),
        Some(shares.mounts[0].point.as_path())
    );
    let local = plexcache_core::fskind::detect(&shares.src, Some(FsChoice::Auto)).unwrap();
    assert!(!local.is_network(), "{local:?}");
    // sled and the exclusive mode refuse the share.
    let err = SqliteBackend::builder(shares.dir(0))
        .open_exclusive()
        .unwrap_err();
    assert!(matches!(err, Error::NetworkFileSystem { .. }), "{err}");
    let err = plexcache_sled::SledBackend::builder(shares.dir(0).join("sled"))
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::NetworkFileSystem { .. }), "{err}");
    drop(shares);
}

#[test]
fn two_mounts_racing_for_a_dead_lease_end_with_one_holder() {
    if std::env::var(WORKER_ENV).is_ok() || unprotected() {
        return;
    }
    let Some(shares) = Shares::new("racing_takers", 2, Duration::from_secs(90)) else {
        return;
    };
    // A lease left by a holder that died: nobody renews it.
    let cache = shares.src.join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(
        cache.join("plexcache.share.db.lease"),
        "plexcache-lease 1\ndomain gone-boot/0:1\nhost gone\nmount /mnt/gone\npid 1\nsince 0\nrenewals 0\nrenewed 0\nend .\n",
    )
    .unwrap();
    let takers: Vec<_> = (0..2)
        .map(|i| {
            let dir = shares.dir(i);
            std::thread::spawn(move || builder(&dir).open())
        })
        .collect();
    let results: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
    let held = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert_eq!(held, 1, "exactly one holder; refused: {refused:?}");
    assert!(refused[0].contains("in use through"), "{}", refused[0]);
    drop(results);
    drop(shares);
}
