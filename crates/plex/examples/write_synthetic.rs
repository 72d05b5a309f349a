//! Writes synthetic `/all` responses to files, e.g. for `benches/python/plexapi_baseline.py`:
//! `cargo run --release -p plexcache-plex --features synthetic --example write_synthetic -- DIR [ITEMS...]`
//! writes `DIR/all_{ITEMS}.json` and `DIR/all_{ITEMS}.xml` (default: 10000 and 50000 items).
use std::path::PathBuf;

use plexcache_plex::synthetic::{Spec, generate_json, generate_xml};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: write_synthetic DIR [ITEMS...]");
        std::process::exit(2);
    };
    let mut sizes: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![10_000, 50_000];
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(1);
    }
    for n in sizes {
        let spec = Spec::new(n);
        for (ext, bytes) in [("json", generate_json(&spec)), ("xml", generate_xml(&spec))] {
            let path = dir.join(format!("all_{n}.{ext}"));
            match std::fs::write(&path, &bytes) {
                Ok(()) => println!("{} ({} bytes)", path.display(), bytes.len()),
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    std::process::exit(1);
                }
            }
        }
    }
}
