//! Third-party conformance suites against a real VexFS mount.
//!
//! - pjdfstest (the Rust rewrite, pinned by `scripts/setup.sh`) runs as root inside the mount
//!   with `tests/pjdfstest.toml`; any failure, or an expected failure that passes, fails the
//!   test. What the configuration leaves out is listed with reasons in `docs/TESTING.md`.
//! - fsx applies seeded random sequences of reads, writes, mmap, truncates, fallocate, hole
//!   punches, copy_file_range and more to one file, checking every read against its own model.
//!   Each run's seed is printed with any failure, for replay.
//!
//! Both end with a clean unmount and `vexfs fsck` exit 0.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vexfs_tests::{
    assert_fsck_clean, bin_dir, find_tool, mount_at, require_root_and_fuse, run, CmdOutput, Mount, MountOptions,
    TestVolume, GIB,
};

const PJDFSTEST_TIMEOUT: Duration = Duration::from_secs(1200);
const FSX_TIMEOUT: Duration = Duration::from_secs(900);
/// fsx operations per seed: `VEXFS_FSX_OPS`, default 20000.
const FSX_OPS_DEFAULT: u64 = 20_000;

fn config_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Where full tool output is kept after the scratch directories are gone.
fn report_path(name: &str) -> PathBuf {
    let dir =
        bin_dir().parent().map(|target| target.join("test-reports")).unwrap_or_else(|| PathBuf::from("test-reports"));
    fs::create_dir_all(&dir).expect("creating the test report directory");
    dir.join(name)
}

fn save_report(name: &str, output: &CmdOutput) -> PathBuf {
    let path = report_path(name);
    let mut file = fs::File::create(&path).expect("creating a report file");
    write!(file, "{output}").expect("writing a report file");
    path
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip a CSI sequence: ESC [ parameters final-byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines naming failed pjdfstest cases, each with the indented message lines after it.
fn pjdfstest_failures(text: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if !(line.trim_end().ends_with("FAILED") || line.contains("PASSED UNEXPECTEDLY")) {
            continue;
        }
        let mut block = line.trim_end().to_string();
        while let Some(next) = lines.peek() {
            if !next.starts_with('\t') && !next.starts_with("  ") {
                break;
            }
            if block.lines().count() < 6 {
                block.push('\n');
                block.push_str(next);
            }
            lines.next();
        }
        failures.push(block);
    }
    failures
}

#[test]
fn pjdfstest_suite() {
    if !require_root_and_fuse() {
        return;
    }
    let pjdfstest = find_tool("pjdfstest", "VEXFS_PJDFSTEST").expect("locating pjdfstest");
    let vol = TestVolume::create(2 * GIB).expect("creating a test volume");
    let mnt = Mount::start(&vol, &MountOptions::default()).expect("starting vexfsd");
    let work = mnt.path().join("pjdfstest");
    fs::create_dir(&work).expect("mkdir in the mount");
    fs::set_permissions(mnt.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&work, fs::Permissions::from_mode(0o755)).expect("chmod");
    // A directory on the host file system, for the EXDEV cases.
    let secondary = vol.dir().join("secondary-fs");
    fs::create_dir(&secondary).expect("mkdir on the host");

    let started = Instant::now();
    let output = run(
        Command::new(&pjdfstest)
            .arg("-c")
            .arg(config_path("pjdfstest.toml"))
            .arg("-p")
            .arg(&work)
            .arg("-s")
            .arg(&secondary)
            .current_dir(&work)
            .env("NO_COLOR", "1"),
        PJDFSTEST_TIMEOUT,
    )
    .expect("running pjdfstest");
    let report = save_report("pjdfstest.log", &output);
    let text = strip_ansi(&output.stdout);
    let summary = text.lines().find(|line| line.starts_with("Summary:")).unwrap_or("<no summary line>").to_string();
    eprintln!("pjdfstest: {summary} in {:?}", started.elapsed());
    assert!(
        mount_at(mnt.path()).expect("mount table").is_some(),
        "the VexFS mount vanished during pjdfstest (daemon crash?); output in {}",
        report.display()
    );
    let failures = pjdfstest_failures(&text);
    assert!(
        output.success() && failures.is_empty(),
        "pjdfstest: {summary}\n{}\n\nfull output: {}\nstderr:\n{}",
        failures.join("\n"),
        report.display(),
        output.stderr.trim_end()
    );
    assert!(summary.contains(" passed") && !summary.contains(" 0 passed"), "pjdfstest ran no test: {summary}");
    mnt.unmount().expect("clean unmount");
    assert_fsck_clean(&vol, "after pjdfstest");
}

fn fsx_ops() -> u64 {
    match std::env::var("VEXFS_FSX_OPS") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("VEXFS_FSX_OPS={text:?} is not a number")),
        Err(_) => FSX_OPS_DEFAULT,
    }
}

/// Runs fsx with `seed` on a file in `mnt`; panics with the seed and output on failure.
fn run_fsx(fsx: &Path, mnt: &Mount<'_>, artifacts: &Path, seed: u64, label: &str) {
    let file = mnt.path().join(format!("fsx-{label}-{seed}.bin"));
    let ops = fsx_ops();
    let started = Instant::now();
    let output = run(
        Command::new(fsx)
            .arg("-N")
            .arg(ops.to_string())
            .arg("-S")
            .arg(seed.to_string())
            .arg("-f")
            .arg(config_path("fsx.toml"))
            .arg("-P")
            .arg(artifacts)
            .arg(&file)
            .env("NO_COLOR", "1"),
        FSX_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("fsx seed {seed} ({label}): {e:#}"));
    let report = save_report(&format!("fsx-{label}-{seed}.log"), &output);
    eprintln!("fsx seed {seed} ({label}): {ops} operations in {:?}", started.elapsed());
    if !output.success() {
        let text = strip_ansi(&output.combined());
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "fsx failed with seed {seed} ({label}, {ops} operations; replay: fsx -N {ops} -S {seed} \
             -f tests/fsx.toml FILE): {}\n{tail}\nfull output: {}; fsx artifacts in {}",
            output.status,
            report.display(),
            artifacts.display()
        );
    }
}

#[test]
fn fsx_random_operations() {
    if !require_root_and_fuse() {
        return;
    }
    let fsx = find_tool("fsx", "VEXFS_FSX").expect("locating fsx");
    let vol = TestVolume::create(2 * GIB).expect("creating a test volume");
    let artifacts = vol.dir().join("fsx-artifacts");
    fs::create_dir(&artifacts).expect("mkdir");

    let mnt = Mount::start(&vol, &MountOptions::default()).expect("starting vexfsd");
    for seed in [1, 2] {
        run_fsx(&fsx, &mnt, &artifacts, seed, "writeback");
    }
    mnt.unmount().expect("clean unmount");
    assert_fsck_clean(&vol, "after fsx with the writeback cache");

    // The same exerciser with every write going through to the daemon.
    let options = MountOptions { no_writeback_cache: true, ..MountOptions::default() };
    let mnt = Mount::start(&vol, &options).expect("starting vexfsd --no-writeback-cache");
    run_fsx(&fsx, &mnt, &artifacts, 3, "write-through");
    mnt.unmount().expect("clean unmount");
    assert_fsck_clean(&vol, "after fsx without the writeback cache");
}

#[cfg(test)]
mod parsing {
    use super::*;

    #[test]
    fn failures_are_collected_with_their_messages() {
        let text = "chmod::ok_case                ok\n\
                    link::exdev_target            FAILED\n\
                    \tassertion failed\n  left: Ok(())\n\
                    open::x                       ok\n\
                    rename::y      PASSED UNEXPECTEDLY\n\
                    Summary: 2 failed, 0 skipped, 2 passed\n";
        let failures = pjdfstest_failures(text);
        assert_eq!(failures.len(), 2);
        assert!(failures[0].contains("link::exdev_target") && failures[0].contains("left: Ok"));
        assert!(failures[1].contains("rename::y"));
    }

    #[test]
    fn ansi_sequences_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[31mFAILED\u{1b}[0m"), "FAILED");
    }
}
