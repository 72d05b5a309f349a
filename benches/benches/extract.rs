//! Extraction throughput of `plexcache-plex` on synthetic `/library/sections/{id}/all`
//! responses (`plexcache_plex::synthetic`, seed 1), JSON and XML, 10,000 and 50,000 items.
//!
//! Each benchmark extracts the whole response from a byte slice with `extract_items` (format
//! detection included), as a caller does with a downloaded body. Criterion reports both
//! items/s and bytes/s (`Throughput::ElementsAndBytes`; its byte rates are binary: MiB/s).
//! The peak-memory figures come from `examples/extract_peak.rs`, the python-plexapi comparison
//! from `python/run_extract_comparison.sh`.
//!
//! `cargo bench -p plexcache-benches --bench extract`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use plexcache_plex::synthetic::{Spec, generate};
use plexcache_plex::{Format, extract_items};

fn bench(c: &mut Criterion) {
    for format in [Format::Json, Format::Xml] {
        let mut g = c.benchmark_group(format!("extract_{format}").to_lowercase());
        // One iteration of the 50,000-item response takes a few hundred milliseconds:
        // flat sampling keeps the group within a few seconds.
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        for items in [10_000usize, 50_000] {
            let spec = Spec::new(items);
            let bytes = generate(&spec, format);
            // Check once, outside the measurement, that the whole response is extracted.
            let page = extract_items(&bytes).expect("synthetic response extracts");
            assert_eq!(page.items.len(), items);
            drop(page);
            g.throughput(Throughput::ElementsAndBytes {
                elements: items as u64,
                bytes: bytes.len() as u64,
            });
            g.bench_with_input(BenchmarkId::from_parameter(items), &bytes, |b, bytes| {
                b.iter(|| extract_items(black_box(bytes)).expect("extract"));
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
