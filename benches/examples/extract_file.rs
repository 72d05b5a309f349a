//! Synthetic `/all` responses on disk, and `plexcache-plex` extraction timed on saved
//! responses: the Rust side of `python/run_extract_comparison.sh`, which runs
//! `python/plexapi_baseline.py` on the same files.
//!
//! ```text
//! cargo run --release -p plexcache-benches --example extract_file -- write DIR [ITEMS...]
//! cargo run --release -p plexcache-benches --example extract_file -- time [--repeat N] FILE...
//! ```
//!
//! `write` writes `DIR/all_{ITEMS}.json` and `DIR/all_{ITEMS}.xml` (default 10000 and 50000
//! items; `plexcache_plex::synthetic::Spec::new(ITEMS)`, seed 1). `time` reads each file into
//! memory, then extracts it `--repeat` times (default 10) with `extract_items` and prints one
//! JSON object per file with the same fields as `plexapi_baseline.py`:
//! `{"file", "bytes", "items", "best_seconds", "median_seconds", "mb_per_s", "items_per_s",
//! "mean_cpu_seconds"}` (MB = 10^6 bytes; rates from the best wall-clock run;
//! `mean_cpu_seconds` is the process's user + system CPU time per run, from `/proc/self/stat`,
//! `null` where that is not available: on a loaded machine it moves less than wall time).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use plexcache_plex::extract_items;
use plexcache_plex::synthetic::{Spec, generate_json, generate_xml};

fn usage() -> ExitCode {
    eprintln!("usage: extract_file write DIR [ITEMS...] | extract_file time [--repeat N] FILE...");
    ExitCode::from(2)
}

fn write(args: &[String]) -> ExitCode {
    let Some((dir, rest)) = args.split_first() else {
        return usage();
    };
    let dir = PathBuf::from(dir);
    let mut sizes = Vec::new();
    for a in rest {
        match a.parse::<usize>() {
            Ok(n) => sizes.push(n),
            Err(_) => return usage(),
        }
    }
    if sizes.is_empty() {
        sizes = vec![10_000, 50_000];
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for n in sizes {
        let spec = Spec::new(n);
        for (ext, bytes) in [("json", generate_json(&spec)), ("xml", generate_xml(&spec))] {
            let path = dir.join(format!("all_{n}.{ext}"));
            if let Err(e) = std::fs::write(&path, &bytes) {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("{} ({} bytes)", path.display(), bytes.len());
        }
    }
    ExitCode::SUCCESS
}

fn time(args: &[String]) -> ExitCode {
    let mut repeat = 10usize;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--repeat" {
            match it.next().and_then(|a| a.parse().ok()) {
                Some(n) => repeat = n,
                None => return usage(),
            }
        } else {
            files.push(PathBuf::from(arg));
        }
    }
    if files.is_empty() {
        return usage();
    }
    for path in files {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        let mut runs = Vec::with_capacity(repeat.max(1));
        let mut items = 0;
        let cpu_before = cpu_seconds();
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            let page = match extract_items(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            items = page.items.len();
            drop(page);
            runs.push(started.elapsed().as_secs_f64());
        }
        let cpu = match (cpu_before, cpu_seconds()) {
            (Some(a), Some(b)) => format!("{:.6}", (b - a) / runs.len() as f64),
            _ => "null".to_owned(),
        };
        runs.sort_by(f64::total_cmp);
        let best = runs[0];
        let median = runs[runs.len() / 2];
        println!(
            "{{\"file\":{:?},\"bytes\":{},\"items\":{},\"best_seconds\":{:.6},\"median_seconds\":{:.6},\"mb_per_s\":{:.3},\"items_per_s\":{:.1},\"mean_cpu_seconds\":{}}}",
            path.display().to_string(),
            bytes.len(),
            items,
            best,
            median,
            bytes.len() as f64 / 1e6 / best,
            items as f64 / best,
            cpu,
        );
    }
    ExitCode::SUCCESS
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, assuming the
/// usual 100 clock ticks per second), `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest` (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((cmd, rest)) if cmd == "write" => write(rest),
        Some((cmd, rest)) if cmd == "time" => time(rest),
        _ => usage(),
    }
}
