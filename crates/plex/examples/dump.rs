//! Prints what extraction finds in PMS response files (a debugging aid).
use std::io::BufReader;

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                continue;
            }
        };
        match plexcache_plex::extract_items(&bytes) {
            Ok(page) => {
                println!(
                    "== {path}: {} items, {} entries, offset {:?}, totalSize {:?}, size {:?}, section {:?}",
                    page.items.len(),
                    page.entries,
                    page.offset,
                    page.total_size,
                    page.size,
                    page.library_section_id
                );
                for item in &page.items {
                    println!("  {item:?}");
                }
            }
            Err(e) => println!("== {path}: error: {e}"),
        }
        if let Ok(file) = std::fs::File::open(&path) {
            let streamed = plexcache_plex::extract_items_from_reader(BufReader::new(file));
            let same = matches!((&streamed, plexcache_plex::extract_items(&bytes)), (Ok(a), Ok(b)) if *a == b);
            if !same {
                println!("  reader result differs: {streamed:?}");
            }
        }
        if let Ok(sections) = plexcache_plex::extract_sections(&bytes) {
            for s in sections {
                println!("  section {s:?}");
            }
        }
    }
}
