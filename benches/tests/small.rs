//! The small benchmarks under `cargo test`, so they do not rot: the engine (skips without fio) and
//! embedding throughput (skips without the model or the benches/setup.sh venv, and in debug builds).

use std::time::Duration;

use vexfs_benches::{checksums, embed, engine, have_program, table};

#[test]
fn engine_small() {
    if !have_program("fio") {
        println!("SKIP: fio is not installed");
        return;
    }
    let dir = std::path::Path::new("/var/tmp").join(format!("vexfs-bench-test-{}", std::process::id()));
    let mut config = engine::Config::new(true, &dir);
    // Three pairs of three jobs: keep each side short so the test stays well under 20 s.
    config.duration = Duration::from_millis(500);
    let rows = engine::run(&config).expect("small engine benchmark");
    println!("{}", table("fio", &rows));
    println!("{}", checksums(&rows));
    std::fs::remove_dir_all(&dir).expect("remove the test directory");
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row.pairs.len(), 3);
        assert!(row.pairs.iter().all(|(a, b)| a.value > 0.0 && b.value > 0.0), "{row:?}");
    }
}

#[test]
fn embed_small() {
    let dir = std::path::Path::new("/var/tmp").join(format!("vexfs-bench-embed-test-{}", std::process::id()));
    if cfg!(debug_assertions) {
        // Unoptimised candle takes minutes for a handful of chunks; scripts/test.sh runs --release.
        println!("SKIP: the embedding benchmark runs in release builds only (cargo test --release)");
        return;
    }
    let mut config = embed::Config::new(true, &dir);
    if let Some(missing) = embed::missing(&config) {
        println!("SKIP: {missing}");
        return;
    }
    // Two documents (a handful of chunks): the time goes to loading the two models.
    config.documents = 2;
    let outcome = embed::run(&config).expect("small embedding benchmark");
    let rows = std::slice::from_ref(&outcome.row);
    println!("{}\n{}", outcome.corpus, outcome.anchor);
    println!("{}", table("sentence-transformers", rows));
    println!("{}\n{}", embed::AGREEMENT_HEADER, embed::agreement_line(&outcome));
    println!("{}", checksums(rows));
    std::fs::remove_dir_all(&dir).expect("remove the test directory");
    assert_eq!(outcome.row.pairs.len(), 3);
    assert!(outcome.row.pairs.iter().all(|(a, b)| a.value > 0.0 && b.value > 0.0), "{:?}", outcome.row);
    assert!(outcome.chunks >= 2);
    for agreement in &outcome.agreement {
        assert!(agreement.cosine_min > embed::AGREEMENT_TARGET, "VexFS and sentence-transformers: {agreement:?}");
    }
}
