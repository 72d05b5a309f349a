//! "The other process" of a multi-process test: the running test binary started again to run
//! one test function of its own (which does nothing unless an environment variable tells it
//! what to do), with its output read line by line on a thread so that waits can time out.
//!
//! ```no_run
//! use plexcache_testsupport::child::Child;
//!
//! // In the test binary: `#[test] fn child() { let Ok(mode) = std::env::var("MY_CHILD") else {
//! // return }; ... println!("READY"); ... }`
//! let mut other = Child::spawn("child", &[("MY_CHILD", "hold".to_string())]);
//! other.wait_for("READY");
//! other.kill();
//! ```

// Test support: a child that does not behave is a failed test, on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long [`Child::wait_for`] waits for a line.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// A copy of this test binary running one of its tests; killed when dropped.
pub struct Child {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Child {
    /// Runs the test named `test` (exact match, output not captured) of the running test
    /// binary, with `env` set; its stdin is a pipe ([`Child::send_line`]).
    pub fn spawn(test: &str, env: &[(&str, String)]) -> Child {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child process");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Child { child, lines }
    }

    /// Waits (at most a minute) for a line containing `marker`; returns what follows the
    /// marker on that line, trimmed. libtest prints "test child ... " without a newline
    /// before the child's own output, so the marker need not start the line.
    pub fn wait_for(&mut self, marker: &str) -> String {
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    if let Some(at) = line.find(marker) {
                        return line[at + marker.len()..].trim().to_owned();
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("the child process did not print {marker}: {e}");
                }
            }
        }
    }

    /// Waits (at most a minute) for the child's next line; `None` once its output has ended.
    pub fn next_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(e) => {
                let _ = self.child.kill();
                panic!("the child process printed nothing for a minute: {e}");
            }
        }
    }

    /// Kills the child (SIGKILL on unix), reaps it, and returns the lines it printed that were
    /// not read yet (the last one possibly cut short by the kill).
    pub fn kill_and_drain(&mut self) -> Vec<String> {
        self.kill();
        let mut rest = Vec::new();
        while let Some(line) = self.next_line() {
            rest.push(line);
        }
        rest
    }

    /// Writes a line to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().expect("flush to the child");
    }

    /// Kills the child (SIGKILL on unix) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
