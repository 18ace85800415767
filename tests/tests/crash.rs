//! Crash consistency: whatever fsync acknowledged survives `kill -9` of vexfsd.
//!
//! Method: per iteration, `crash_writer` (src/bin/crash_writer.rs) works in a fresh directory of
//! the mount and records each step in a log on the host file system only after fsyncing every
//! file the step touched and the directory. At a random moment (50-1500 ms) the test kills
//! vexfsd with SIGKILL, then the writer, detaches the dead mount, requires `vexfs fsck` to exit
//! 0, mounts again and checks the mount against the log: every committed file exists with the
//! logged length and content hash, and every committed deletion is absent. Names of a step
//! that had begun but not committed may hold either state and are not checked.
//!
//! `VEXFS_CRASH_ITERATIONS` sets the iterations per variant (default 10). The seed of a run is
//! printed, and `VEXFS_CRASH_SEED` replays it (the kill moments still vary with timing).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vexfs_tests::content::{self, Rng};
use vexfs_tests::{assert_fsck_clean, require_root_and_fuse, wait_child, Mount, MountOptions, TestVolume, GIB};

const ITERATIONS_DEFAULT: u64 = 10;
const KILL_DELAY_MS_MIN: u64 = 50;
const KILL_DELAY_MS_MAX: u64 = 1500;
/// Iteration directories older than this many iterations are removed to bound disk use.
const ITERATIONS_KEPT: u64 = 2;
const WRITER_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn iterations() -> u64 {
    match std::env::var("VEXFS_CRASH_ITERATIONS") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("VEXFS_CRASH_ITERATIONS={text:?} is not a number")),
        Err(_) => ITERATIONS_DEFAULT,
    }
}

fn base_seed() -> u64 {
    match std::env::var("VEXFS_CRASH_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("VEXFS_CRASH_SEED={text:?} is not a number")),
        Err(_) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
            now.as_secs() ^ u64::from(now.subsec_nanos()) << 20
        }
    }
}

/// What a writer's log says is durable.
#[derive(Debug, Default)]
struct Durable {
    /// Name to `Some((len, hash))` for a file, `None` for a committed deletion.
    files: BTreeMap<String, Option<(u64, u64)>>,
    /// Names touched by a step that began but did not commit.
    in_flight: BTreeSet<String>,
    steps_committed: u64,
}

/// Parses the writer's log (format in src/bin/crash_writer.rs). A last line without its
/// newline was cut short by the kill and is ignored.
fn parse_log(text: &str) -> Result<Durable, String> {
    let mut durable = Durable::default();
    let mut pending: Vec<(String, Option<(u64, u64)>)> = Vec::new();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    for (number, line) in complete.lines().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let bad = || format!("log line {}: {line:?}", number + 1);
        match fields.as_slice() {
            ["T", _step, names @ ..] => {
                pending.clear();
                durable.in_flight = names.iter().map(|name| name.to_string()).collect();
            }
            ["P", name, len, hash] => {
                let len = len.parse().map_err(|_| bad())?;
                let hash = hash.parse().map_err(|_| bad())?;
                pending.push((name.to_string(), Some((len, hash))));
            }
            ["D", name] => pending.push((name.to_string(), None)),
            ["C", _step] => {
                durable.files.extend(pending.drain(..));
                durable.in_flight.clear();
                durable.steps_committed += 1;
            }
            _ => return Err(bad()),
        }
    }
    Ok(durable)
}

/// Checks the directory against the log; returns the number of committed steps.
fn verify(dir: &Path, log: &Path, context: &str) -> u64 {
    let text = fs::read_to_string(log).unwrap_or_default();
    let durable = parse_log(&text).unwrap_or_else(|e| panic!("{context}: bad writer log: {e}"));
    for (name, state) in &durable.files {
        if durable.in_flight.contains(name) {
            continue;
        }
        let path = dir.join(name);
        match state {
            Some((len, hash)) => {
                let data = fs::read(&path)
                    .unwrap_or_else(|e| panic!("{context}: {name}, fsynced before the crash, cannot be read: {e}"));
                assert_eq!(data.len() as u64, *len, "{context}: length of {name}, fsynced before the crash");
                assert_eq!(
                    content::hash(&data),
                    *hash,
                    "{context}: content of {name} ({len} bytes) differs from what was fsynced"
                );
            }
            None => assert!(
                fs::symlink_metadata(&path).is_err(),
                "{context}: {name} was deleted and the deletion fsynced, but it exists again"
            ),
        }
    }
    durable.steps_committed
}

fn fsync_dir(path: &Path) {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .unwrap_or_else(|e| panic!("fsync of directory {}: {e}", path.display()));
}

fn crash_iterations(mode: &str) {
    if !require_root_and_fuse() {
        return;
    }
    let seed = base_seed();
    let iterations = iterations();
    eprintln!("crash test ({mode}): {iterations} iterations, VEXFS_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let vol = TestVolume::create(2 * GIB).expect("creating a test volume");
    let options = MountOptions::default();
    let mut mnt = Mount::start(&vol, &options).expect("starting vexfsd");
    let started = Instant::now();
    let mut steps_total = 0;
    for iteration in 0..iterations {
        let context = format!("{mode} crash iteration {iteration} (VEXFS_CRASH_SEED={seed})");
        let dir = mnt.path().join(format!("it{iteration:05}"));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{context}: mkdir: {e}"));
        fsync_dir(&dir);
        fsync_dir(mnt.path());
        let log = vol.dir().join(format!("{mode}-{iteration:05}.log"));
        let writer_output = vol.dir().join(format!("{mode}-{iteration:05}.out"));
        let out = File::create(&writer_output).expect("creating the writer's output file");
        let mut writer = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .arg("--dir")
            .arg(&dir)
            .arg("--log")
            .arg(&log)
            .arg("--seed")
            .arg(seed.wrapping_add(iteration).to_string())
            .arg("--mode")
            .arg(mode)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("starting crash_writer");

        let delay = Duration::from_millis(rng.range(KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX));
        if let Some(status) = wait_child(&mut writer, delay).expect("waiting for the writer") {
            let output = fs::read_to_string(&writer_output).unwrap_or_default();
            panic!("{context}: crash_writer stopped ({status}) while vexfsd was alive:\n{output}");
        }
        let pid = mnt.pid().expect("vexfsd is running");
        vexfs_tests::sys::kill(pid, libc::SIGKILL).expect("SIGKILL to vexfsd");
        let _ = writer.kill();
        if wait_child(&mut writer, WRITER_EXIT_TIMEOUT).expect("waiting for the writer").is_none() {
            panic!("{context}: crash_writer did not die within {WRITER_EXIT_TIMEOUT:?}");
        }
        mnt.kill9().unwrap_or_else(|e| panic!("{context}: cleaning up the killed daemon: {e:#}"));

        assert_fsck_clean(&vol, &format!("after kill -9 ({context})"));
        mnt = Mount::start(&vol, &options).unwrap_or_else(|e| panic!("{context}: mounting after the crash: {e:#}"));
        let steps = verify(&dir, &log, &context);
        steps_total += steps;
        eprintln!("{context}: killed after {delay:?}, {steps} steps committed and verified");
        if iteration >= ITERATIONS_KEPT {
            let old = mnt.path().join(format!("it{:05}", iteration - ITERATIONS_KEPT));
            fs::remove_dir_all(&old).unwrap_or_else(|e| panic!("{context}: removing {}: {e}", old.display()));
        }
    }
    assert!(
        iterations == 0 || steps_total > 0,
        "{mode}: no step committed in {iterations} iterations; the crash test checked nothing"
    );
    eprintln!("crash test ({mode}): {iterations} iterations, {steps_total} steps verified in {:?}", started.elapsed());
    mnt.unmount().expect("clean unmount");
    assert_fsck_clean(&vol, &format!("after the {mode} crash iterations"));
}

#[test]
fn crash_during_fsynced_creates() {
    crash_iterations("simple");
}

#[test]
fn crash_during_renames_unlinks_truncates_and_overwrites() {
    crash_iterations("mixed");
}

/// Runs the writer to completion on the host file system and checks its log against the
/// files, so a bug in the writer or the log format shows up without a mount.
#[test]
fn writer_log_matches_files_without_a_crash() {
    for mode in ["simple", "mixed"] {
        let scratch = vexfs_tests::ScratchDir::new("vexfs-writer-").expect("scratch dir");
        let dir = scratch.path().join("files");
        fs::create_dir(&dir).expect("mkdir");
        let log = scratch.path().join("log");
        let status = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .args(["--seed", "7", "--mode", mode, "--steps-max", "120", "--dir"])
            .arg(&dir)
            .arg("--log")
            .arg(&log)
            .status()
            .expect("running crash_writer");
        assert!(status.success(), "crash_writer --mode {mode} failed: {status}");
        let steps = verify(&dir, &log, &format!("{mode} without a crash"));
        assert_eq!(steps, 120, "{mode}: committed steps");
        let text = fs::read_to_string(&log).expect("log");
        let durable = parse_log(&text).expect("log parses");
        let live: BTreeSet<String> =
            durable.files.iter().filter(|(_, state)| state.is_some()).map(|(name, _)| name.clone()).collect();
        let on_disk: BTreeSet<String> = fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(live, on_disk, "{mode}: files on disk vs the log");
    }
}

#[test]
fn log_parser_ignores_uncommitted_and_torn_records() {
    let text = "T 0 a\nP a 3 9\nC 0\nT 1 a b\nP a 4 10\nD b\nC 1\nT 2 a c\nP a 5 11\nP c 1";
    let durable = parse_log(text).expect("parses");
    assert_eq!(durable.steps_committed, 2);
    assert_eq!(durable.files.get("a"), Some(&Some((4, 10))));
    assert_eq!(durable.files.get("b"), Some(&None));
    assert!(!durable.files.contains_key("c"));
    assert_eq!(durable.in_flight, BTreeSet::from(["a".to_string(), "c".to_string()]));
    assert!(parse_log("X what\n").is_err());
}

/// The check must notice lost and altered files, or a passing crash test means nothing.
#[test]
fn verification_detects_lost_and_altered_files() {
    let scratch = vexfs_tests::ScratchDir::new("vexfs-writer-").expect("scratch dir");
    let dir = scratch.path().join("files");
    fs::create_dir(&dir).expect("mkdir");
    let log = scratch.path().join("log");
    let status = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .args(["--seed", "3", "--mode", "simple", "--steps-max", "5", "--dir"])
        .arg(&dir)
        .arg("--log")
        .arg(&log)
        .status()
        .expect("running crash_writer");
    assert!(status.success(), "crash_writer failed: {status}");
    let verify_fails = || std::panic::catch_unwind(|| verify(&dir, &log, "negative check")).is_err();

    let altered = dir.join("f000001");
    let mut data = fs::read(&altered).expect("read");
    data.push(0);
    fs::write(&altered, &data).expect("alter");
    assert!(verify_fails(), "a file one byte longer than logged passed verification");
    data.pop();
    if let Some(byte) = data.first_mut() {
        *byte ^= 1;
        fs::write(&altered, &data).expect("alter");
        assert!(verify_fails(), "a file with a flipped bit passed verification");
    }
    fs::remove_file(&altered).expect("remove");
    assert!(verify_fails(), "a lost file passed verification");
}
