//! Serves a synthetic library from the fake Plex Media Server until killed, for timing
//! `plexcache sync` end to end:
//!
//! ```sh
//! cargo run --release -p plexcache-testsupport --example serve_fake_pms -- 50000 &
//! # prints: http://127.0.0.1:PORT token
//! plexcache sync --server http://127.0.0.1:PORT --token token --library Movies
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;

use plexcache_testsupport::fake_pms::FakePms;

fn main() {
    let items: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of items"))
        .unwrap_or(50_000);
    let pms = FakePms::builder("token")
        .synthetic_library(1, "Movies", items)
        .start_blocking()
        .expect("start the fake server");
    println!("{} {}", pms.url(), pms.token());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}
