//! The small engine benchmark under `cargo test`, so it does not rot. Skips without fio.

use std::time::Duration;

use vexfs_benches::{checksums, engine, have_program, table};

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
