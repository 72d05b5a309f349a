//! A `redis-server` of a test's own: started on a free loopback port in a temporary directory,
//! killed on drop. Used by the Redis backend's tests, the CLI's and the workspace's.
//!
//! When `redis-server` is not installed, [`RedisServer::start`] prints a notice and returns
//! `None` (the test returns early), unless `PLEXCACHE_REQUIRE_REDIS=1`, which makes it panic
//! instead, so that CI cannot skip Redis silently.
//!
//! ```no_run
//! # async fn demo() {
//! use plexcache_testsupport::redis_server::RedisServer;
//! let Some(server) = RedisServer::start() else { return }; // not installed: skipped
//! let backend = plexcache_redis::RedisBackend::connect(server.url()).await.unwrap();
//! # }
//! ```

// Test support: failing loudly (a server that cannot start) is the point.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `redis-server` can be run. Missing: panics under `PLEXCACHE_REQUIRE_REDIS=1`,
/// otherwise prints a notice and returns false (the caller returns early).
pub fn redis_available() -> bool {
    tool_available(
        "redis-server",
        "install it (Debian: apt-get install redis-server)",
    )
}

/// Whether `program --version` runs. Missing: panics under `PLEXCACHE_REQUIRE_REDIS=1`
/// (saying how to install it), otherwise prints a notice and returns false.
pub(crate) fn tool_available(program: &str, install: &str) -> bool {
    match Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        _ => {
            if std::env::var("PLEXCACHE_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!(
                    "PLEXCACHE_REQUIRE_REDIS=1 but {program} is not installed (or does not run); {install}"
                );
            }
            eprintln!("skipping: {program} not installed");
            false
        }
    }
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its data directory.
    pub dir: PathBuf,
    password: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

/// How a server is started.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Append-only file with fsync on every write, so data survives a kill.
    pub durable: bool,
    /// `requirepass`.
    pub password: Option<String>,
}

impl RedisServer {
    /// A throwaway server (no persistence) in its own temporary directory, or `None` when
    /// redis-server is missing (see [`redis_available`]).
    pub fn start() -> Option<Self> {
        if !redis_available() {
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut server = Self::spawn(&dir, free_port(), &ServerOptions::default());
        server._tmp = Some(tmp);
        Some(server)
    }

    /// A server on `port` with its data in `dir`.
    pub fn spawn(dir: &Path, port: u16, opts: &ServerOptions) -> Self {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(dir)
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if opts.durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(pw) = &opts.password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd.spawn().expect("start redis-server");
        let mut server = Self {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            password: opts.password.clone(),
            _tmp: None,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers PING (authenticating first when it has a password).
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut req = String::new();
        if let Some(pw) = &self.password {
            req.push_str(&format!("AUTH {pw}\r\n"));
        }
        req.push_str("PING\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64];
        while !String::from_utf8_lossy(&buf).contains("PONG") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if String::from_utf8_lossy(&buf).contains("-LOADING") {
                return false;
            }
        }
        true
    }

    /// `redis://[:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one inline command (for example `DBSIZE`) to the server on `port` and returns the
/// raw reply, or `None` when it does not answer.
pub fn send(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
