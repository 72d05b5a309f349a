//! A lease file that gives one *lock domain* the use of a store on a network file system.
//!
//! Advisory locks cannot be trusted on network file systems: two mounts of one share (two
//! machines, or one machine mounting it twice) each keep their own locks and their own page
//! cache, so SQLite's locking, and any lock file, protect nothing between them. The lease
//! relies only on what such file systems do keep atomic: creating a file exclusively
//! (`O_EXCL`) and renaming a file.
//!
//! * The holder is a **lock domain**: the machine's boot id plus the device id of the mount
//!   the share is reached through. Two mounts of one share, even on one machine, are two
//!   domains; the processes using one mount are one domain (their locks and page cache are
//!   common) and share the lease. They hold a shared advisory lock on `<db>.lease-lock`
//!   through that mount; the last one to close, which alone can take that lock exclusively,
//!   removes the lease.
//! * `<db>.lease` (mode 0600) names the domain, host, mount, process, start time, a renewal
//!   counter and the renewer's `CLOCK_BOOTTIME`. A free lease is taken by creating the file
//!   exclusively. Every process of the holding domain renews it every
//!   [`LeaseConfig::renew_every`] by writing a new version to a temporary file and renaming
//!   it over the lease, so its content changes at every renewal.
//! * Before every use of the store a process checks, in memory, that its domain's last
//!   successful renewal is younger than half of [`LeaseConfig::timeout`] on its own clock
//!   ([`Lease::check`]); otherwise it stops with an error, and its renewal thread renews only
//!   while that holds.
//! * A lease whose content does not change for the timeout, measured on the taker's own
//!   monotonic clock (clocks of different machines are never compared), is stale. The taker
//!   renames it to a name of its own (of two racing takers only one rename succeeds),
//!   checks that what it moved is what it watched, and creates a new lease exclusively.
//! * The lease is read by opening and reading the file, never by `stat`, so that attribute
//!   caches do not hide a renewal; the timeout (default [`DEFAULT_LEASE_TIMEOUT`]) exceeds
//!   the usual attribute cache times (NFS up to 60 s, sshfs 20 s).
//!
//! The protocol assumes that no process pauses for more than half the timeout inside one
//! operation (between its check and the end of the store call), and that the file system
//! makes exclusive create and rename atomic (NFSv3 and later, SMB, sshfs's SFTP server do).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::fskind::FsInfo;
use crate::{Error, Result};

/// How long a lease may go without renewal before another domain takes it over: 90 s.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(90);

/// The first line of a lease file.
const MAGIC: &str = "plexcache-lease 1";

/// The lease's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A lease unchanged for this long is taken over (default [`DEFAULT_LEASE_TIMEOUT`]).
    pub timeout: Duration,
    /// How often each process of the holding domain renews (default a ninth of the timeout).
    pub renew_every: Duration,
    /// How long taking the lease may wait for a holder that shows no renewal (default the
    /// timeout plus two renewal intervals: long enough to take over a dead holder's lease).
    /// A renewal seen while waiting ends the wait with [`Error::InUse`] at once.
    pub wait: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self::with_timeout(DEFAULT_LEASE_TIMEOUT)
    }
}

impl LeaseConfig {
    /// Settings for `timeout` (at least 100 ms), the other values derived from it.
    pub fn with_timeout(timeout: Duration) -> Self {
        let timeout = timeout.max(Duration::from_millis(100));
        let renew_every = timeout / 9;
        Self {
            timeout,
            renew_every,
            wait: timeout + renew_every * 2,
        }
    }

    /// How long a lease released by another domain is watched before it is taken: a third
    /// of the timeout (30 s by default, more than sshfs's 20 s attribute cache), so that
    /// this mount's caches no longer hold that domain's last writes.
    fn settle(&self) -> Duration {
        self.timeout / 3
    }

    /// How long a new lease is left before it is read back to confirm it (see
    /// `Shared::create`).
    fn confirm(&self) -> Duration {
        (self.renew_every / 4).clamp(Duration::from_millis(5), Duration::from_millis(500))
    }

    fn poll(&self) -> Duration {
        (self.renew_every / 2).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    fn half_ns(&self) -> u64 {
        u64::try_from((self.timeout / 2).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// `<db>.lease`.
pub fn lease_path(db: &Path) -> PathBuf {
    suffixed(db, ".lease")
}

/// `<db>.lease-lock`: the advisory lock of the processes of one domain.
pub fn domain_lock_path(db: &Path) -> PathBuf {
    suffixed(db, ".lease-lock")
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Who holds a lease, as its file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// The lock domain: boot id and mount device id.
    pub domain: String,
    /// The host name of the process that took the lease.
    pub host: String,
    /// The mount point the holder reaches the share through.
    pub mount: String,
    /// The process that took (or last took over) the lease.
    pub pid: u32,
    /// When the lease was taken, in milliseconds since the Unix epoch (the holder's clock).
    pub since_ms: u64,
    /// Renewals since then.
    pub renewals: u64,
}

impl LeaseHolder {
    /// `host X, mount Y, since T`.
    pub fn describe(&self) -> String {
        format!(
            "host {}, mount {}, since {}",
            self.host,
            self.mount,
            format_utc(self.since_ms)
        )
    }
}

/// A lease file as read.
#[derive(Debug, Clone)]
struct Parsed {
    holder: LeaseHolder,
    renewed_ns: u64,
    /// Released by its domain's last process: free, once other mounts' caches have expired.
    released: bool,
}

fn parse(bytes: &[u8]) -> Option<Parsed> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut get = std::collections::HashMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(' ') {
            get.insert(k, v);
        }
    }
    let holder = LeaseHolder {
        domain: (*get.get("domain")?).to_owned(),
        host: (*get.get("host")?).to_owned(),
        mount: (*get.get("mount")?).to_owned(),
        pid: get.get("pid")?.parse().ok()?,
        since_ms: get.get("since")?.parse().ok()?,
        renewals: get.get("renewals")?.parse().ok()?,
    };
    // The end marker: a file cut short while being written is not a valid lease.
    get.get("end")?;
    Some(Parsed {
        holder,
        renewed_ns: get.get("renewed")?.parse().ok()?,
        released: get.contains_key("released"),
    })
}

/// Reads who holds the lease of the database `db`, without taking it (for `stats` and
/// `check` in a domain that does not hold it). `None`: no lease file.
pub fn read_holder(db: &Path) -> Result<Option<LeaseHolder>> {
    let path = lease_path(db);
    match std::fs::read(&path) {
        Ok(bytes) if parse(&bytes).is_some_and(|p| p.released) => Ok(None),
        Ok(bytes) => Ok(Some(parse(&bytes).map(|p| p.holder).unwrap_or_else(|| {
            LeaseHolder {
                domain: "unknown".into(),
                host: "unknown (the lease file is being written or is not plexcache's)".into(),
                mount: "unknown".into(),
                pid: 0,
                since_ms: 0,
                renewals: 0,
            }
        }))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, "reading the lease file", e)),
    }
}

/// A time in milliseconds since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC`.
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The clock shared by the processes of one lock domain: `CLOCK_BOOTTIME` on Linux (it
/// counts time suspended, so a suspended holder does not think its lease young), the
/// monotonic clock on other Unix systems.
fn clock_ns() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    #[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    #[cfg(unix)]
    {
        u64::try_from(t.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
    }
    #[cfg(not(unix))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// This machine's boot id; elsewhere than Linux a value of this process alone (each process
/// is then its own domain, which is safe but does not let processes share a lease).
fn boot_id() -> String {
    #[cfg(target_os = "linux")]
    if let Ok(id) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_owned();
        }
    }
    format!("process-{}-{:x}", std::process::id(), token())
}

fn host_name() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".into())
    }
}

/// A value unlikely to repeat: for temporary file names.
fn token() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut seed = Vec::with_capacity(32);
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    seed.extend_from_slice(&n.to_le_bytes());
    seed.extend_from_slice(&clock_ns().to_le_bytes());
    seed.extend_from_slice(&unix_ms().to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&seed)
}

/// Who this process is, as written in the lease.
#[derive(Debug, Clone)]
struct Me {
    domain: String,
    host: String,
    mount: String,
}

impl Me {
    fn render(&self, since_ms: u64, renewals: u64, renewed_ns: u64) -> String {
        self.render_as(since_ms, renewals, renewed_ns, "")
    }

    fn render_as(&self, since_ms: u64, renewals: u64, renewed_ns: u64, extra: &str) -> String {
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        format!(
            "{MAGIC}\ndomain {}\nhost {}\nmount {}\npid {}\nsince {since_ms}\nrenewals {renewals}\nrenewed {renewed_ns}\n{extra}end .\n",
            clean(&self.domain),
            clean(&self.host),
            clean(&self.mount),
            std::process::id(),
        )
    }
}

fn private_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Reads the lease file; `None` when it does not exist. A missing file is looked at again a
/// few times over a few tens of milliseconds: a FUSE file system (sshfs) renews by moving the
/// old file away and the new one in, two steps, and a reader on that mount can fall between.
fn read_lease(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    for attempt in 0..5u32 {
        match std::fs::read(path) {
            Ok(b) => return Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if attempt < 4 {
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Creates `path` exclusively with `content`, synced.
fn create_exclusive(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut f = private_options().create_new(true).open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

/// Replaces `path` with `content`: a temporary file, synced, renamed over it.
fn replace(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = suffixed(path, &format!(".tmp-{:x}", token()));
    let written = private_options()
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(content)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A lease file watched by a would-be taker: its content, since when (on this process's
/// monotonic clock), and whether it changed while watched.
struct Watch {
    bytes: Vec<u8>,
    since: Instant,
    changed: bool,
}

/// The outcome of one look at the lease.
enum Look {
    /// This domain holds it now.
    Held,
    /// Someone else holds it; `live` when it was seen changing.
    Busy {
        holder: Option<LeaseHolder>,
        live: bool,
    },
}

struct Shared {
    db: PathBuf,
    path: PathBuf,
    me: Me,
    cfg: LeaseConfig,
    /// The domain's last successful renewal on [`clock_ns`] (0: never).
    last_ns: AtomicU64,
    /// The lease as this process last wrote or joined it.
    since_ms: AtomicU64,
    renewals: AtomicU64,
    /// Why the lease is gone for good (another domain took it over).
    lost: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn held_at(&self, renewed_ns: u64) {
        self.last_ns.fetch_max(renewed_ns, Ordering::AcqRel);
    }

    fn fresh(&self, renewed_ns: u64, now: u64) -> bool {
        now.saturating_sub(renewed_ns) < self.cfg.half_ns()
    }

    /// Creates a new lease (no file there).
    fn create(&self, now: u64) -> std::io::Result<Look> {
        let since = unix_ms();
        let content = self.me.render(since, 0, now);
        match create_exclusive(&self.path, content.as_bytes()) {
            Ok(()) => {
                // Some file systems rename in two steps (a FUSE file system whose lease file
                // is open on the renewer's mount first moves the old file away), so an
                // exclusive create can slip into a renewal's gap and be replaced by it at
                // once. Held only if the file is still this domain's a moment later.
                std::thread::sleep(self.cfg.confirm());
                let confirmed = read_lease(&self.path)?
                    .and_then(|b| parse(&b))
                    .is_some_and(|p| p.holder.domain == self.me.domain && !p.released);
                if !confirmed {
                    return Ok(Look::Busy {
                        holder: None,
                        live: true,
                    });
                }
                self.since_ms.store(since, Ordering::Relaxed);
                self.renewals.store(0, Ordering::Relaxed);
                self.held_at(now);
                tracing::info!(lease = %self.path.display(), "took the lease of the cache on a network file system");
                Ok(Look::Held)
            }
            // Another process created it first: the next look reads it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Look::Busy {
                holder: None,
                live: false,
            }),
            Err(e) => Err(e),
        }
    }

    /// One look at the lease by a process that does not hold it: take a free one, join this
    /// domain's live one, take over a stale one, or report who holds it.
    fn look(&self, watch: &mut Option<Watch>) -> std::io::Result<Look> {
        let now = clock_ns();
        let Some(bytes) = read_lease(&self.path)? else {
            return self.create(now);
        };
        let parsed = parse(&bytes);
        if let Some(p) = &parsed
            && p.holder.domain == self.me.domain
            && !p.released
            && self.fresh(p.renewed_ns, now)
        {
            // Another process of this domain holds it and renewed it recently.
            self.since_ms.store(p.holder.since_ms, Ordering::Relaxed);
            self.renewals.store(p.holder.renewals, Ordering::Relaxed);
            self.held_at(p.renewed_ns);
            return Ok(Look::Held);
        }
        let released = parsed.as_ref().is_some_and(|p| p.released);
        let same_domain = parsed
            .as_ref()
            .is_some_and(|p| p.holder.domain == self.me.domain);
        if released && same_domain {
            // Released through this mount: its caches are this process's own.
            return self.take_over(&bytes, parsed.map(|p| p.holder));
        }
        // A released lease is taken once this mount's caches of the other domain's last
        // writes have expired; a held one once it has not changed for the timeout.
        let patience = if released {
            self.cfg.settle()
        } else {
            self.cfg.timeout
        };
        let holder = parsed.map(|p| p.holder);
        match watch {
            Some(w) if w.bytes == bytes => {
                if w.since.elapsed() >= patience {
                    return self.take_over(&bytes, holder);
                }
                Ok(Look::Busy {
                    holder,
                    live: w.changed,
                })
            }
            _ => {
                let changed = watch.is_some();
                *watch = Some(Watch {
                    bytes,
                    since: Instant::now(),
                    changed,
                });
                Ok(Look::Busy {
                    holder,
                    live: changed,
                })
            }
        }
    }

    /// Takes over a lease that did not change for the timeout.
    fn take_over(&self, watched: &[u8], holder: Option<LeaseHolder>) -> std::io::Result<Look> {
        let aside = suffixed(&self.path, &format!(".stale-{:x}", token()));
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => {}
            // Another taker moved it first: the next look sees what it made of it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Look::Busy {
                    holder,
                    live: false,
                });
            }
            Err(e) => return Err(e),
        }
        let moved = std::fs::read(&aside);
        let _ = std::fs::remove_file(&aside);
        let moved = moved?;
        if moved != watched {
            // It changed after the last look (a renewal at the last moment): put it back.
            let _ = create_exclusive(&self.path, &moved);
            return Ok(Look::Busy { holder, live: true });
        }
        let look = self.create(clock_ns())?;
        if matches!(look, Look::Held) {
            tracing::warn!(
                lease = %self.path.display(),
                previous = holder.as_ref().map_or_else(|| "unknown".to_owned(), LeaseHolder::describe),
                timeout_s = self.cfg.timeout.as_secs_f64(),
                "took over a lease that was not renewed within its timeout"
            );
        }
        Ok(look)
    }

    /// One renewal by a process of the holding domain. Returns `false` when this domain no
    /// longer holds the lease (then the caller goes back to [`Shared::look`]).
    fn renew(&self) -> std::io::Result<bool> {
        let now = clock_ns();
        let Some(bytes) = read_lease(&self.path)? else {
            // Removed by hand, or moved by a taker: another domain may write from now on.
            self.lose("the lease file disappeared (removed, or taken over)".into());
            return Ok(false);
        };
        let Some(p) = parse(&bytes) else {
            return Ok(false);
        };
        if p.holder.domain != self.me.domain || p.released {
            self.lose(format!(
                "the lease was taken over through {} (lock domain {})",
                p.holder.describe(),
                p.holder.domain
            ));
            return Ok(false);
        }
        if !self.fresh(p.renewed_ns.max(self.last_ns.load(Ordering::Acquire)), now) {
            return Ok(false);
        }
        let renewals = p.holder.renewals.saturating_add(1);
        let content = self.me.render(p.holder.since_ms, renewals, now);
        replace(&self.path, content.as_bytes())?;
        self.renewals.store(renewals, Ordering::Relaxed);
        self.since_ms.store(p.holder.since_ms, Ordering::Relaxed);
        self.held_at(now);
        Ok(true)
    }

    /// Another domain may have written since: this process never uses the store again
    /// (its connections and this mount's caches may hold what that domain overwrote).
    fn lose(&self, why: String) {
        tracing::error!(lease = %self.path.display(), "{why}");
        *self.lost.lock() = Some(why);
    }

    /// Whether the lease file still names this domain (only then may a process that fell
    /// behind take it up again: no other domain can have written meanwhile).
    fn still_ours(&self) -> std::io::Result<bool> {
        Ok(read_lease(&self.path)?
            .and_then(|b| parse(&b))
            .is_some_and(|p| p.holder.domain == self.me.domain))
    }

    fn check(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().clone() {
            return Err(Error::InUse {
                path: self.db.clone(),
                detail: format!("{why}; this process stopped using the cache. {}", ADVICE),
            });
        }
        let last = self.last_ns.load(Ordering::Acquire);
        let now = clock_ns();
        if !self.fresh(last, now) {
            let age = Duration::from_nanos(now.saturating_sub(last));
            return Err(Error::InUse {
                path: self.db.clone(),
                detail: format!(
                    "the lease of this cache on a network file system was last renewed {:.1} s ago, more than half its timeout of {:.1} s (the process was paused, or the share was unreachable); the cache is not used until the lease is renewed",
                    age.as_secs_f64(),
                    self.cfg.timeout.as_secs_f64()
                ),
            });
        }
        Ok(())
    }
}

/// What to do instead, in every "in use" message of the lease.
const ADVICE: &str = "A SQLite cache on a network file system serves one machine (one mount) at a time: to share a cache between machines use the Redis backend; otherwise give each machine its own cache directory, on a local disk where possible";

/// A held lease: renewed by a background thread, released when the last process of the
/// domain drops it. See the [module documentation](self).
pub struct Lease {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    domain_lock: Option<File>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("path", &self.shared.path)
            .field("domain", &self.shared.me.domain)
            .finish_non_exhaustive()
    }
}

/// The state of a held lease, for statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The holder (this process's domain) as written in the lease.
    pub holder: LeaseHolder,
    /// Whether this process may use the store now (see [`Lease::check`]).
    pub valid: bool,
    /// Milliseconds since the domain's last renewal, on this process's clock.
    pub renewed_ms_ago: u64,
}

impl Lease {
    /// Takes the lease of the database `db` for this process's lock domain (the boot id and
    /// the device of `fs`'s mount), waiting up to [`LeaseConfig::wait`] for a holder that
    /// shows no renewal.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] naming the holder (host, mount, since when) when another domain
    /// holds a live lease; [`Error::Io`] when the lease file cannot be read or written.
    pub fn acquire(db: &Path, fs: &FsInfo, cfg: LeaseConfig) -> Result<Self> {
        let path = lease_path(db);
        let me = Me {
            domain: format!("{}/{}", boot_id(), fs.device_id()),
            host: host_name(),
            mount: fs
                .mount_point
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |m| m.display().to_string()),
        };
        let domain_lock = take_domain_lock(db, cfg.wait)?;
        let shared = Arc::new(Shared {
            db: db.to_path_buf(),
            path,
            me,
            cfg,
            last_ns: AtomicU64::new(0),
            since_ms: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            lost: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let started = Instant::now();
        let mut watch = None;
        loop {
            let look = shared
                .look(&mut watch)
                .map_err(|e| Error::io(&shared.path, "reading or writing the lease file", e))?;
            match look {
                Look::Held => break,
                Look::Busy { holder, live } => {
                    let waited = started.elapsed();
                    if live || waited >= cfg.wait {
                        return Err(busy_error(&shared, holder.as_ref(), live, waited));
                    }
                }
            }
            std::thread::sleep(cfg.poll());
        }
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("plexcache-lease".into())
            .spawn(move || renew_loop(&thread_shared))
            .map_err(|e| Error::io(&shared.path, "starting the lease renewal thread", e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            domain_lock,
        })
    }

    /// Whether this process may use the store now: its domain holds the lease and renewed it
    /// less than half the timeout ago. In memory; call it before every use of the store.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] saying why the lease is not held.
    pub fn check(&self) -> Result<()> {
        self.shared.check()
    }

    /// The advisory lock file of this process's domain (`<db>.lease-lock`), locked shared
    /// for the lease's life; `None` on a file system without advisory locks. Taking it
    /// exclusively (then back to shared) tells that no other process of the domain has the
    /// store open: the store's own recovery uses it to move a damaged file aside.
    pub fn domain_lock(&self) -> Option<&File> {
        self.domain_lock.as_ref()
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// This process's lock domain.
    pub fn domain(&self) -> &str {
        &self.shared.me.domain
    }

    /// The lease's settings.
    pub fn config(&self) -> LeaseConfig {
        self.shared.cfg
    }

    /// The holder and the age of the last renewal.
    pub fn status(&self) -> LeaseStatus {
        let s = &self.shared;
        let last = s.last_ns.load(Ordering::Acquire);
        LeaseStatus {
            holder: LeaseHolder {
                domain: s.me.domain.clone(),
                host: s.me.host.clone(),
                mount: s.me.mount.clone(),
                pid: std::process::id(),
                since_ms: s.since_ms.load(Ordering::Relaxed),
                renewals: s.renewals.load(Ordering::Relaxed),
            },
            valid: s.check().is_ok(),
            renewed_ms_ago: u64::try_from(
                Duration::from_nanos(clock_ns().saturating_sub(last)).as_millis(),
            )
            .unwrap_or(u64::MAX),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        // The last process of the domain (the only one that can lock exclusively) removes the
        // lease, so that another domain need not wait for it to expire.
        let Some(lock) = self.domain_lock.take() else {
            return;
        };
        if lock.try_lock().is_err() || self.shared.check().is_err() {
            return;
        }
        let ours = std::fs::read(&self.shared.path)
            .ok()
            .and_then(|b| parse(&b))
            .filter(|p| p.holder.domain == self.shared.me.domain && !p.released);
        if let Some(p) = ours {
            // Marked released rather than removed: another domain takes it after
            // `settle`, when its mount's caches of this domain's writes have expired.
            let content = self.shared.me.render_as(
                p.holder.since_ms,
                p.holder.renewals.saturating_add(1),
                clock_ns(),
                "released 1\n",
            );
            match replace(&self.shared.path, content.as_bytes()) {
                Ok(()) => {
                    tracing::debug!(lease = %self.shared.path.display(), "released the lease")
                }
                Err(e) => {
                    tracing::debug!(lease = %self.shared.path.display(), error = %e, "cannot release the lease; it expires on its own")
                }
            }
        }
    }
}

fn busy_error(s: &Shared, holder: Option<&LeaseHolder>, live: bool, waited: Duration) -> Error {
    let who = holder.map_or_else(
        || "another process (its lease file is being written)".to_owned(),
        |h| format!("{} (lock domain {})", h.describe(), h.domain),
    );
    let state = if live {
        "its lease is being renewed".to_owned()
    } else {
        format!(
            "no renewal seen in {:.1} s; a lease unchanged for {:.1} s is taken over",
            waited.as_secs_f64(),
            s.cfg.timeout.as_secs_f64()
        )
    };
    Error::InUse {
        path: s.db.clone(),
        detail: format!("the cache is in use through {who}; {state}. {ADVICE}"),
    }
}

/// Opens `<db>.lease-lock` and takes a shared lock on it: the membership of this process in
/// its domain. `None` when the file system has no advisory locks (the lease then expires
/// after the last process closes instead of being removed).
fn take_domain_lock(db: &Path, wait: Duration) -> Result<Option<File>> {
    let path = domain_lock_path(db);
    let file = crate::fs::open_lock_file(&path)
        .map_err(|e| Error::io(&path, "creating the lease's lock file", e))?;
    match crate::fs::lock_file(&file, crate::fs::LockMode::Shared, wait) {
        crate::fs::LockOutcome::Held => Ok(Some(file)),
        // A process of this domain held it exclusively (releasing the lease) the whole wait.
        crate::fs::LockOutcome::Busy => Err(Error::InUse {
            path: db.to_path_buf(),
            detail: format!(
                "a process on this mount held {} exclusively for {:.1} s",
                path.display(),
                wait.as_secs_f64()
            ),
        }),
        crate::fs::LockOutcome::Unsupported(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no advisory locks; the lease will expire instead of being released");
            Ok(None)
        }
    }
}

/// Renews while this domain holds the lease; when it does not (lost, or not renewed within
/// half the timeout), looks at it as a taker would until it holds it again or is stopped.
fn renew_loop(s: &Shared) {
    let mut holding = true;
    let mut watch = None;
    while !s.stop.load(Ordering::Acquire) {
        let pause = if holding {
            s.cfg.renew_every
        } else {
            s.cfg.poll()
        };
        std::thread::park_timeout(pause);
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        if holding {
            match s.renew() {
                Ok(true) => {}
                Ok(false) => {
                    holding = false;
                    watch = None;
                }
                Err(e) => {
                    tracing::warn!(lease = %s.path.display(), error = %e, "cannot renew the lease; will retry")
                }
            }
        } else if s.lost.lock().is_some() {
            return;
        } else {
            match s.still_ours() {
                Ok(true) => {}
                Ok(false) => {
                    s.lose("the lease no longer names this machine and mount".into());
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %s.path.display(), error = %e, "cannot read the lease; will retry");
                    continue;
                }
            }
            match s.look(&mut watch) {
                Ok(Look::Held) => {
                    holding = true;
                    watch = None;
                }
                Ok(Look::Busy { .. }) => {}
                Err(e) => {
                    tracing::warn!(lease = %s.path.display(), error = %e, "cannot read the lease; will retry")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fskind::{FsChoice, FsKind};

    fn fs(minor: u32) -> FsInfo {
        FsInfo {
            kind: FsKind::Network,
            detected: FsKind::Network,
            choice: FsChoice::Network,
            fs_type: "test".into(),
            mount_point: Some(PathBuf::from(format!("/mnt/test{minor}"))),
            device: Some((0, minor)),
        }
    }

    fn quick(ms: u64) -> LeaseConfig {
        LeaseConfig::with_timeout(Duration::from_millis(ms))
    }

    #[test]
    fn format_utc_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_764_679_783_000), "2025-12-02 12:49:43 UTC");
    }

    #[test]
    fn one_domain_shares_another_is_refused_with_the_holder() {
        let dir = tempfile_dir("share");
        let db = dir.join("c.db");
        let a = Lease::acquire(&db, &fs(1), quick(600)).unwrap();
        let a2 = Lease::acquire(&db, &fs(1), quick(600)).unwrap();
        a.check().unwrap();
        a2.check().unwrap();
        let err = Lease::acquire(&db, &fs(2), quick(600))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mount /mnt/test1"), "{err}");
        assert!(err.contains("Redis"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(lease_path(&db))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(a);
        // a2 is still open: the lease stays.
        assert!(read_holder(&db).unwrap().is_some());
        drop(a2);
        assert!(
            read_holder(&db).unwrap().is_none(),
            "the last process releases it"
        );
        let started = Instant::now();
        let b = Lease::acquire(&db, &fs(2), quick(600)).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "another domain waits a third of the timeout"
        );
        b.check().unwrap();
        drop(b);
        let started = Instant::now();
        let b2 = Lease::acquire(&db, &fs(2), quick(600)).unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "the same domain takes it back at once"
        );
        drop(b2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dead_holder_is_taken_over_after_the_timeout() {
        let dir = tempfile_dir("dead");
        let db = dir.join("c.db");
        write_dead_lease(&db);
        let started = Instant::now();
        let b = Lease::acquire(&db, &fs(2), quick(400)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(400));
        b.check().unwrap();
        let h = read_holder(&db).unwrap().unwrap();
        assert_eq!(h.mount, "/mnt/test2");
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stale_own_lease_stops_the_process_and_another_domain_takes_it() {
        let dir = tempfile_dir("stale");
        let db = dir.join("c.db");
        let a = Lease::acquire(&db, &fs(1), quick(400)).unwrap();
        // Simulate a paused holder: its renewals stop.
        a.shared.stop.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_millis(250));
        assert!(a.check().is_err(), "stops after half the timeout");
        let b = Lease::acquire(&db, &fs(2), quick(400)).unwrap();
        b.check().unwrap();
        // The old holder's renewal finds the other domain and gives up for good.
        a.shared.stop.store(false, Ordering::Release);
        assert!(!a.shared.renew().unwrap());
        assert!(a.check().unwrap_err().to_string().contains("taken over"));
        drop(a);
        assert!(lease_path(&db).exists(), "a lost lease is not removed");
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn racing_takers_end_with_one_holder() {
        let dir = tempfile_dir("race");
        let db = dir.join("c.db");
        write_dead_lease(&db);
        let handles: Vec<_> = (10..16)
            .map(|minor| {
                let db = db.clone();
                std::thread::spawn(move || Lease::acquire(&db, &fs(minor), quick(300)))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let held: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            held.len(),
            1,
            "{:?}",
            results
                .iter()
                .map(|r| r.as_ref().err().map(ToString::to_string))
                .collect::<Vec<_>>()
        );
        drop(results);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A lease of `db` that nobody renews (a holder killed long ago).
    fn write_dead_lease(db: &Path) {
        let dead = Me {
            domain: "dead-boot/0:9".into(),
            host: "gone".into(),
            mount: "/mnt/gone".into(),
        };
        std::fs::write(lease_path(db), dead.render(1, 3, 5)).unwrap();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "plexcache-lease-{name}-{}-{:x}",
            std::process::id(),
            token()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
