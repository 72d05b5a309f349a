//! Differential test: random operation sequences give the same answers from `MemoryBackend`
//! as from the reference `ModelBackend` (the shared driver of
//! `plexcache_testsupport::differential`).

use plexcache_memory::MemoryBackend;
use plexcache_testsupport::differential::{Coverage, Target, run};

#[tokio::test]
async fn memory_matches_model() {
    let mut seen = Coverage::default();
    for seed in 1..=16u64 {
        seen.add(run(Target::new(MemoryBackend::new()), seed, 1_500).await.1);
    }
    seen.assert_complete();
}
