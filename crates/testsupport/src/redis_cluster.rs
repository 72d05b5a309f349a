//! A Redis Cluster of a test's own: three masters (no replicas) on free loopback ports, each in
//! its own temporary directory, joined with `redis-cli --cluster create`, killed on drop.
//!
//! Like [`RedisServer::start`](crate::redis_server::RedisServer::start),
//! [`RedisCluster::start`] prints a notice and returns `None` when `redis-server` or
//! `redis-cli` is missing, unless `PLEXCACHE_REQUIRE_REDIS=1`, which makes it panic instead.
//!
//! ```no_run
//! # async fn demo() {
//! use plexcache_testsupport::redis_cluster::RedisCluster;
//! let Some(cluster) = RedisCluster::start() else { return }; // not installed: skipped
//! let backend = plexcache_redis::RedisBackend::connect(cluster.url()).await.unwrap();
//! # }
//! ```

// Test support: failing loudly (a cluster that cannot form) is the point.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::redis_server::{redis_available, tool_available};

/// Masters of a test cluster.
pub const MASTERS: usize = 3;

/// Whether `redis-cli` can be run (it forms the cluster). Missing: panics under
/// `PLEXCACHE_REQUIRE_REDIS=1`, otherwise prints a notice and returns false.
pub fn redis_cli_available() -> bool {
    tool_available(
        "redis-cli",
        "install it (Debian: apt-get install redis-server, or redis-tools)",
    )
}

/// Ports this process has given to cluster nodes (each with its bus port, + 10000), so that
/// clusters started by tests running in parallel never pick each other's ports.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A loopback port that is free, and whose cluster bus port (port + 10000) is free too, and
/// that no other cluster of this process uses.
fn free_cluster_port() -> u16 {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    // Ports below the usual ephemeral range, so that port + 10000 is a valid port as well.
    let mut seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    for _ in 0..1000 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let port = 20_000 + (seed >> 33) as u16 % 10_000;
        if taken
            .iter()
            .any(|&t| t == port || t + 10_000 == port || t == port + 10_000)
        {
            continue;
        }
        let a = TcpListener::bind(("127.0.0.1", port));
        let b = TcpListener::bind(("127.0.0.1", port + 10_000));
        if a.is_ok() && b.is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("no free loopback port pair (p, p + 10000) for a cluster node");
}

/// One node of the cluster.
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A three-master Redis Cluster on loopback, killed on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    durable: bool,
    _tmp: tempfile::TempDir,
}

impl RedisCluster {
    /// A cluster without persistence, or `None` when redis-server or redis-cli is missing.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// A cluster whose nodes keep an append-only file with fsync on every write (so a
    /// restarted node has its data back), or `None` when redis-server or redis-cli is missing.
    pub fn start_durable() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Option<Self> {
        if !redis_available() || !redis_cli_available() {
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::with_capacity(MASTERS);
        for _ in 0..MASTERS {
            let port = free_cluster_port();
            let dir = tmp.path().join(port.to_string());
            std::fs::create_dir_all(&dir).expect("node directory");
            nodes.push(Node {
                port,
                dir,
                child: None,
            });
        }
        let mut cluster = Self {
            nodes,
            durable,
            _tmp: tmp,
        };
        for i in 0..MASTERS {
            cluster.spawn(i);
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok();
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&node.dir)
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        node.child = Some(cmd.spawn().expect("start redis-server (cluster node)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !command(node.port, "PING").is_some_and(|r| r.contains("PONG")) {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "cluster node on port {} exited at start: {status}",
                    node.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "cluster node on port {} did not answer PING within 10 s",
                node.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every node reports `cluster_state:ok` (all slots served).
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.nodes.iter().all(|n| {
                command(n.port, "CLUSTER INFO").is_some_and(|r| r.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test cluster did not reach cluster_state:ok within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`, the backend's cluster URL.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The port of the master serving `key`'s hash slot.
    pub fn owner_of(&self, key: &str) -> u16 {
        for n in &self.nodes {
            if let Some(r) = command(n.port, &format!("EXISTS {key}"))
                && r.starts_with(':')
            {
                return n.port;
            }
        }
        panic!("no node of the test cluster serves {key:?}");
    }

    /// Kills the node on `port` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again (same directory, so the same cluster identity and, when
    /// durable, the same data) and waits for `cluster_state:ok`.
    pub fn restart(&mut self, port: u16) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster");
        self.spawn(i);
        self.wait_ok();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sends one inline command to the node on `port` and returns its raw reply (read until the
/// node stops sending for a moment), or `None` when it does not answer.
pub fn command(port: u16, command: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // Replies end with CRLF; a short read that ends one is the whole reply for the
                // commands used here.
                if n < buf.len() && out.ends_with(b"\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}
