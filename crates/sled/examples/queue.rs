//! Does sled 0.34 stay fast as a queue (insert at the back, remove from the front)? The
//! expiry and eviction indexes are used exactly like that.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let t = db.open_tree("q").unwrap();
    let live = 10_000u64;
    for i in 0..live {
        t.insert(i.to_be_bytes(), &[][..]).unwrap();
    }
    let mut head = 0u64;
    for round in 0..10 {
        let start = Instant::now();
        for _ in 0..100_000 {
            let (k, _) = t.first().unwrap().unwrap();
            t.remove(k).unwrap();
            t.insert((head + live).to_be_bytes(), &[][..]).unwrap();
            head += 1;
        }
        let el = start.elapsed();
        let s = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(t.first().unwrap());
        }
        println!(
            "round {round}: {:?} per pop+push, first() {:?}, {} pushed",
            el / 100_000,
            s.elapsed() / 1000,
            head
        );
    }
}
