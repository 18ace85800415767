//! Bounds and hostile input through the mount: each bound of `docs/COLLECTIONS.md` ("Limits") is
//! exceeded once and must give its clear error, and each input that used to panic or hang the
//! daemon must now be refused; after each, the daemon must still serve (a later request works,
//! and it stops cleanly on SIGTERM at the end).
//!
//! Method: a running vexfsd on a small volume; raw writes to query files and to the insert stream
//! with `pwrite` (their errno checked), the CLI for the rest. The daemon's resident memory is read
//! from /proc before and after the query-file bound, to show the bound holds memory, not only
//! sizes. Without root or `/dev/fuse` each test prints SKIP (fails under `CI=true`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vexfs_format::ioctl::BatchHeader;
use vexfs_tests::{
    args, fvecs_bytes, require_root_and_fuse, vexfs_fails, vexfs_ok, Mount, MountOptions, TestVolume, MIB,
};
use zerocopy::IntoBytes;

fn resident_bytes(mount: &Mount<'_>) -> u64 {
    let pid = mount.pid().expect("a running daemon");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn errno_of<T>(result: std::io::Result<T>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(error) => error.raw_os_error().unwrap_or(-1),
    }
}

/// The daemon still answers: a stat and a k-NN search of `coll`.
fn still_serves(coll: &Path) {
    fs::metadata(coll).expect("stat after the refusal");
    vexfs_ok(&args!["search", coll, "--vector", "1,1,1,1", "-k", "1"]);
}

fn demo(mount: &Mount<'_>) -> std::path::PathBuf {
    let coll = mount.path().join("demo");
    vexfs_ok(&args!["collection", "create", &coll, "--dim", "4", "--metric", "l2"]);
    let file = mount.volume().dir().join("demo.fvecs");
    fs::write(&file, fvecs_bytes(4, &[1.0; 40])).expect("writing vectors");
    vexfs_ok(&args!["insert", &coll, &file]);
    coll
}

#[test]
fn bad_collection_parameters_are_refused_and_the_daemon_serves_on() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(128 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    let coll = demo(&mount);
    // The chunk size that panicked a daemon thread and hung its caller.
    let notes = mount.path().join("notes");
    vexfs_fails(
        &args!["collection", "create", &notes, "--embed", "--chunk-bytes", "10"],
        "collection create",
        &["refused"],
    );
    assert!(mount.log().contains("chunk size 10 is not in 64..=1048576"), "{}", mount.log());
    vexfs_fails(
        &args!["collection", "create", &notes, "--embed", "--chunk-bytes", "100", "--chunk-overlap", "100"],
        "collection create",
        &["refused"],
    );
    vexfs_fails(
        &args!["collection", "create", &notes, "--dim", "70000", "--metric", "l2"],
        "collection create",
        &["1..=65536"],
    );
    vexfs_fails(
        &args!["collection", "create", &notes, "--dim", "4", "--metric", "l2", "--shards", "65"],
        "collection create",
        &["65 shards"],
    );
    assert!(!notes.exists(), "a refused create leaves no directory");
    still_serves(&coll);
    mount.stop_with_signal(libc::SIGTERM).expect("SIGTERM stops the daemon cleanly");
}

#[test]
fn ids_near_the_top_are_refused_instead_of_wrapping() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(128 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    let coll = demo(&mount);
    // One vector per batch on the insert stream, with the id given or assigned.
    let insert = |id: Option<u64>| -> i32 {
        let stream = OpenOptions::new().write(true).open(coll.join(".vexfs-insert")).expect("opening the stream");
        let mut batch = BatchHeader::new(4, 1, id.is_some()).as_bytes().to_vec();
        batch.extend(id.map(u64::to_le_bytes).into_iter().flatten());
        batch.extend(std::iter::repeat_n(2.0f32.to_le_bytes(), 4).flatten());
        errno_of(stream.write_at(&batch, 0))
    };
    // u64::MAX is above the largest id; i64::MAX is the largest.
    assert_eq!(insert(Some(u64::MAX)), libc::EINVAL);
    assert!(mount.log().contains("above the largest id"), "{}", mount.log());
    assert_eq!(insert(Some(i64::MAX as u64)), 0);
    // The counter would pass the top: the insert is refused (ENOSPC), nothing is replaced.
    assert_eq!(insert(None), libc::ENOSPC);
    assert!(mount.log().contains("assigned ids are used up"), "{}", mount.log());
    let stats: serde_json::Value = serde_json::from_str(&vexfs_ok(&args!["stats", &coll, "--json"])).expect("JSON");
    assert_eq!(stats["vectors"], 11, "{stats}");
    let found = vexfs_ok(&args!["search", &coll, "--vector", "1,1,1,1", "-k", "10", "--json"]);
    assert_eq!(found.matches("\"distance\": 0").count(), 10, "the first ten are still there: {found}");
    mount.unmount().expect("unmounting");
}

#[test]
fn query_files_are_bounded_in_size_count_and_memory() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(128 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    let coll = demo(&mount);
    let queries = coll.join(".vexfs-query");
    let open =
        |name: &str| OpenOptions::new().read(true).write(true).create(true).truncate(true).open(queries.join(name));
    // The reproduction: one byte far out grew the daemon by the offset. Now 16 MiB is the most.
    let far = open("far").expect("creating a query file");
    assert_eq!(errno_of(far.write_at(b"x", 64 * MIB - 1)), libc::EFBIG);
    assert_eq!(errno_of(far.write_at(b"x", 16 * MIB)), libc::EFBIG);
    drop(far);
    fs::remove_file(queries.join("far")).expect("unlink");
    // Eight files of 16 MiB fill one user's 128 MiB; a ninth byte is refused.
    let before = resident_bytes(&mount);
    let files: Vec<File> = (0..8).map(|i| open(&format!("q{i}")).expect("creating a query file")).collect();
    for file in &files {
        file.write_at(b"x", 16 * MIB - 1).expect("a 16 MiB query file fits");
    }
    let ninth = open("q8").expect("creating a ninth file");
    assert_eq!(errno_of(ninth.write_at(b"x", 0)), libc::EDQUOT);
    let grown = resident_bytes(&mount).saturating_sub(before);
    assert!(grown < 200 * MIB, "the daemon grew by {grown} bytes for 128 MiB of query files");
    drop((files, ninth));
    // At most 64 query files per user.
    for i in 9..64 {
        open(&format!("q{i}")).expect("creating a query file");
    }
    assert_eq!(errno_of(open("q64")), libc::EDQUOT);
    // Removing them gives the share back.
    for i in 0..64 {
        fs::remove_file(queries.join(format!("q{i}"))).expect("unlink");
    }
    open("again")
        .expect("creating a query file after freeing")
        .write_all(b"{\"vector\": [1, 1, 1, 1], \"k\": 1}\n")
        .expect("writing a query");
    let mut answer = String::new();
    File::open(queries.join("again")).expect("open").read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("{\"query\": 0, \"results\": [{\"id\": "), "{answer}");
    // k beyond the largest is an error line, not a huge answer; so is a result set past 4 Mi.
    let mut big = b"{\"vector\": [1, 1, 1, 1], \"k\": 10001}\n".to_vec();
    for _ in 0..420 {
        big.extend_from_slice(b"{\"vector\": [1, 1, 1, 1], \"k\": 10000}\n");
    }
    open("big").expect("creating a query file").write_all(&big).expect("writing queries");
    let mut answer = String::new();
    File::open(queries.join("big")).expect("open").read_to_string(&mut answer).expect("read");
    assert!(answer.lines().next().is_some_and(|l| l.contains("is a whole number in 1..=10000")), "{answer:.300}");
    assert!(answer.lines().nth(1).is_some_and(|l| l.contains("at most 4194304 per request")), "{answer:.300}");
    still_serves(&coll);
    mount.unmount().expect("unmounting");
}

#[test]
fn insert_stream_headers_are_checked_as_they_arrive() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(128 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    let coll = demo(&mount);
    let stream = || OpenOptions::new().read(true).write(true).open(coll.join(".vexfs-insert")).expect("opening");
    // A header of the wrong dimension is refused with its first 32 bytes, not after the batch.
    let file = stream();
    assert_eq!(errno_of(file.write_at(BatchHeader::new(8, 1_000_000, false).as_bytes(), 0)), libc::EINVAL);
    assert!(mount.log().contains("a batch of dimension 8 for a collection of dimension 4"), "{}", mount.log());
    assert_eq!(errno_of(file.write_at(&[0; 16], 32)), libc::EINVAL, "a refused stream stays refused");
    drop(file);
    // A batch over 128 MiB is refused at its header (EFBIG).
    let file = stream();
    assert_eq!(errno_of(file.write_at(BatchHeader::new(4, 9_000_000, false).as_bytes(), 0)), libc::EFBIG);
    drop(file);
    // Incomplete batches are charged whole at their header: two of 128 MiB fill a user's 256 MiB.
    let before = resident_bytes(&mount);
    let full = BatchHeader::new(4, (128 << 20) / 16 - 2, false);
    let streams: Vec<File> = (0..3).map(|_| stream()).collect();
    streams[0].write_at(full.as_bytes(), 0).expect("the first 128 MiB batch");
    streams[1].write_at(full.as_bytes(), 0).expect("the second");
    assert_eq!(errno_of(streams[2].write_at(full.as_bytes(), 0)), libc::EDQUOT);
    let grown = resident_bytes(&mount).saturating_sub(before);
    assert!(grown < 64 * MIB, "announced batches took {grown} bytes before any arrived");
    drop(streams);
    // Closed streams give their share back; a fresh batch goes through whole.
    let file = stream();
    let mut batch = BatchHeader::new(4, 2, false).as_bytes().to_vec();
    batch.extend(std::iter::repeat_n(0.5f32.to_le_bytes(), 8).flatten());
    file.write_at(&batch, 0).expect("a small batch");
    file.sync_all().expect("fsync of the stream");
    let receipts = String::from_utf8(file.read_at_all(0)).expect("UTF-8 receipts");
    assert!(receipts.starts_with("{\"batch\": 0, \"count\": 2, \"assigned_from\": "), "{receipts}");
    drop(file);
    still_serves(&coll);
    mount.unmount().expect("unmounting");
}

/// Reads a whole special file from `offset` with `pread`.
trait ReadAtAll {
    fn read_at_all(&self, offset: u64) -> Vec<u8>;
}

impl ReadAtAll for File {
    fn read_at_all(&self, mut offset: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0; 4096];
        loop {
            let n = self.read_at(&mut buf, offset).expect("pread");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
            offset += n as u64;
        }
    }
}

#[test]
fn xattrs_and_documents_are_bounded() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(256 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    // An inode's xattr names fit one listxattr buffer (64 KiB with their NULs): 256 names of
    // 255 bytes do, the 257th is refused, and listing them still works.
    let file = mount.path().join("tagged");
    fs::write(&file, b"x").expect("write");
    let name = |i: usize| format!("user.{i:0>250}");
    for i in 0..256 {
        vexfs_tests::sys::setxattr(&file, &name(i), b"v", 0).expect("an xattr within the bound");
    }
    let refused = vexfs_tests::sys::setxattr(&file, &name(256), b"v", 0);
    assert_eq!(errno_of(refused), libc::ENOSPC);
    assert_eq!(vexfs_tests::sys::listxattr(&file).expect("listxattr").len(), 256);
    vexfs_tests::sys::setxattr(&file, &name(3), b"replaced", 0).expect("replacing one is not a new name");

    // A document needing more chunks than are indexed is stored, skipped, and counted.
    let notes = mount.path().join("notes");
    vexfs_ok(&args!["collection", "create", &notes, "--embed", "--chunk-bytes", "64"]);
    let words = "lorem ipsum dolor sit amet ".repeat(5 << 20 >> 5);
    fs::write(notes.join("long.txt"), &words).expect("write a long document");
    fs::write(notes.join("short.txt"), "a short note about bread").expect("write");
    vexfs_ok(&args!["sync", &notes]);
    let stats: serde_json::Value = serde_json::from_str(&vexfs_ok(&args!["stats", &notes, "--json"])).expect("JSON");
    assert_eq!((stats["docs_skipped"].as_u64(), stats["docs_indexed"].as_u64()), (Some(1), Some(1)), "{stats}");
    assert!(mount.log().contains("more than the 65536 indexed"), "{}", mount.log());
    mount.unmount().expect("unmounting");
}
