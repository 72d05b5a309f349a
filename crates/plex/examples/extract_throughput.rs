//! Rough extraction throughput on synthetic `/all` responses (the real figures come from the
//! criterion benches). Run with
//! `cargo run --release -p plexcache-plex --features synthetic --example extract_throughput [ITEMS]`.
use std::time::Instant;

use plexcache_plex::synthetic::{Spec, generate};
use plexcache_plex::{Format, extract_items, extract_items_from_reader};

fn main() {
    let items: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let spec = Spec::new(items);
    for format in [Format::Json, Format::Xml] {
        let started = Instant::now();
        let bytes = generate(&spec, format);
        let generated = started.elapsed();
        let mut best = f64::MAX;
        let mut best_reader = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let page = match extract_items(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{format}: {e}");
                    return;
                }
            };
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(page.items.len(), items);
            let t = Instant::now();
            let streamed = extract_items_from_reader(std::io::BufReader::new(&bytes[..]));
            best_reader = best_reader.min(t.elapsed().as_secs_f64());
            assert!(streamed.is_ok());
        }
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "{format}: {items} items, {mb:.1} MB (generated in {:.2} s); slice: {:.1} ms, {:.0} MB/s, {:.0} items/s; reader: {:.1} ms, {:.0} MB/s",
            generated.as_secs_f64(),
            best * 1e3,
            mb / best,
            items as f64 / best,
            best_reader * 1e3,
            mb / best_reader,
        );
    }
}
