//! POSIX behaviour of a real VexFS mount, one test per area.
//!
//! Method: each test formats a fresh image, serves it with `vexfsd`, and exercises one area
//! through the kernel's FUSE client. Where a result must come from the daemon rather than the
//! kernel's caches, the test remounts and checks again. Every test ends with a clean unmount
//! (daemon exit 0) and `vexfs fsck` exit 0. Without root or `/dev/fuse` each test prints SKIP.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vexfs_tests::content::{self, Rng};
use vexfs_tests::sys::{self, Time, UserOp};
use vexfs_tests::{
    assert_fsck_clean, expect_errno, require_root_and_fuse, run, tree, wait_until, Mount, MountOptions, TestVolume,
    GIB, KIB, MIB,
};

fn volume(size_bytes: u64) -> TestVolume {
    TestVolume::create(size_bytes).expect("creating a test volume with vexfs mkfs")
}

fn mount(volume: &TestVolume) -> Mount<'_> {
    Mount::start(volume, &MountOptions::default()).expect("starting vexfsd")
}

/// Unmounts cleanly and requires a clean fsck.
fn finish(mount: Mount<'_>, volume: &TestVolume) {
    mount.unmount().expect("clean unmount");
    assert_fsck_clean(volume, "after a clean unmount");
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .unwrap_or_else(|e| panic!("read {len} bytes at {offset} of {}: {e}", path.display()));
    buf
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if let Some(at) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!("{what}: first difference at byte {at}: found {:#04x}, expected {:#04x}", actual[at], expected[at]);
    }
}

fn assert_zeros(bytes: &[u8], what: &str) {
    if let Some(at) = bytes.iter().position(|&b| b != 0) {
        panic!("{what}: byte {at} is {:#04x}, expected zero", bytes[at]);
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display())).ino()
}

fn fsync_dir(path: &Path) {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .unwrap_or_else(|e| panic!("fsync of directory {}: {e}", path.display()));
}

fn syncfs(path: &Path) {
    File::open(path).and_then(|dir| sys::syncfs(&dir)).unwrap_or_else(|e| panic!("syncfs {}: {e}", path.display()));
}

fn free_bytes(root: &Path) -> u64 {
    sys::statvfs(root).expect("statvfs").free_bytes()
}

// ---- files ---------------------------------------------------------------------------------

#[test]
fn create_open_read_write_append() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let dir = mnt.path().join("basic");
    fs::create_dir(&dir).expect("mkdir");
    let text = dir.join("a.txt");
    let gap = dir.join("gap.bin");
    let big = dir.join("big.bin");
    let big_data = content::content(1, 1, 3_000_017);

    fs::write(&text, b"hello").expect("create and write");
    assert_eq!(read(&text), b"hello");
    let mut appender = OpenOptions::new().append(true).open(&text).expect("open O_APPEND");
    appender.write_all(b", world").expect("append");
    // O_APPEND writes land at the end whatever the file offset says.
    appender.seek(SeekFrom::Start(0)).expect("seek");
    appender.write_all(b"!").expect("append after seek");
    drop(appender);
    assert_eq!(read(&text), b"hello, world!");
    expect_errno(
        OpenOptions::new().write(true).create_new(true).open(&text),
        libc::EEXIST,
        "O_CREAT|O_EXCL on an existing file",
    );
    expect_errno(File::open(dir.join("missing")), libc::ENOENT, "open of a missing file");
    fs::write(&text, b"short").expect("rewrite with O_TRUNC");
    assert_eq!(read(&text), b"short", "O_TRUNC dropped the old bytes");

    let file =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&gap).expect("create gap.bin");
    file.write_all_at(b"xyz", 10_000).expect("pwrite past EOF");
    assert_eq!(file.metadata().expect("fstat").len(), 10_003);
    drop(file);
    let gap_bytes = read(&gap);
    assert_zeros(&gap_bytes[..10_000], "gap before a pwrite past EOF");
    assert_eq!(&gap_bytes[10_000..], b"xyz");

    let mut file = File::create(&big).expect("create big.bin");
    for chunk in big_data.chunks(12_345) {
        file.write_all(chunk).expect("write chunk");
    }
    drop(file);
    let mut rng = Rng::new(11);
    for _ in 0..50 {
        let offset = rng.below(big_data.len() as u64) as usize;
        let len = (rng.range(1, 70_000) as usize).min(big_data.len() - offset);
        assert_bytes(
            &read_at(&big, offset as u64, len),
            &big_data[offset..offset + len],
            "read back of big.bin at a random offset",
        );
    }

    let mnt = mnt.remount().expect("remount");
    assert_eq!(read(&text), b"short", "a.txt after remount");
    assert_eq!(read(&gap).len(), 10_003, "gap.bin after remount");
    assert_bytes(&read(&big), &big_data, "big.bin after remount");
    finish(mnt, &vol);
}

#[test]
fn truncate_shrinks_and_grows() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let path = mnt.path().join("t.bin");
    let data = content::content(2, 1, MIB as usize);
    fs::write(&path, &data).expect("write 1 MiB");

    let file = OpenOptions::new().read(true).write(true).open(&path).expect("open");
    file.set_len(1000).expect("shrink to 1000");
    assert_eq!(file.metadata().expect("fstat").len(), 1000);
    assert_bytes(&read(&path), &data[..1000], "after shrinking to 1000");

    // Growing again must expose zeros, never the old bytes past the cut.
    file.set_len(MIB + 5).expect("grow to 1 MiB + 5");
    let grown = read(&path);
    assert_eq!(grown.len() as u64, MIB + 5);
    assert_bytes(&grown[..1000], &data[..1000], "kept prefix after growing");
    assert_zeros(&grown[1000..], "grown region");

    // A cut in the middle of a block, then a write beyond it.
    let tail = 3 * 4096 + 100;
    fs::write(&path, &data).expect("rewrite 1 MiB");
    file.set_len(tail).expect("shrink mid-block");
    file.write_all_at(b"end", 5 * 4096).expect("write past the cut");
    let after = read(&path);
    assert_eq!(after.len() as u64, 5 * 4096 + 3);
    assert_bytes(&after[..tail as usize], &data[..tail as usize], "prefix");
    assert_zeros(&after[tail as usize..5 * 4096], "between the cut and the new write");
    file.set_len(0).expect("truncate to 0");
    assert_eq!(read(&path).len(), 0);
    file.write_all_at(&data[..5000], 0).expect("write after truncate to 0");
    file.sync_all().expect("fsync");
    drop(file);

    let mnt = mnt.remount().expect("remount");
    assert_bytes(&read(&path), &data[..5000], "after remount");
    finish(mnt, &vol);
}

#[test]
fn unlinked_open_file_stays_readable_and_frees_space_on_close() {
    if !require_root_and_fuse() {
        return;
    }
    const FILE_LEN: u64 = 32 * MIB;
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let path = root.join("doomed.bin");
    let data = content::content(3, 1, FILE_LEN as usize);
    let free_empty = free_bytes(&root);

    let mut file = File::create(&path).expect("create");
    file.write_all(&data).expect("write 32 MiB");
    file.sync_all().expect("fsync");
    drop(file);
    let mut free_full = 0;
    wait_until(Duration::from_secs(15), "statfs to show 32 MiB in use", || {
        syncfs(&root);
        free_full = free_bytes(&root);
        Ok(free_empty.saturating_sub(free_full) >= FILE_LEN * 3 / 4)
    })
    .unwrap_or_else(|e| panic!("{e:#}: free {free_empty} before, {free_full} after the write"));

    let file = OpenOptions::new().read(true).write(true).open(&path).expect("open");
    fs::remove_file(&path).expect("unlink while open");
    expect_errno(fs::symlink_metadata(&path), libc::ENOENT, "lstat after unlink");
    assert!(!names_in(&root).contains("doomed.bin"), "unlinked name still listed");
    let meta = file.metadata().expect("fstat of the open, unlinked file");
    assert_eq!(meta.nlink(), 0, "nlink of an unlinked file");
    assert_eq!(meta.len(), FILE_LEN);
    let mut back = Vec::new();
    (&file).read_to_end(&mut back).expect("read through the open fd");
    assert_bytes(&back, &data, "content through the open fd");
    file.write_all_at(b"still writable", 0).expect("write through the open fd");
    let mut head = [0u8; 14];
    file.read_exact_at(&mut head, 0).expect("read back");
    assert_eq!(&head, b"still writable");
    drop(file);

    let mut free_now = 0;
    wait_until(Duration::from_secs(20), "the space to come back after close", || {
        syncfs(&root);
        free_now = free_bytes(&root);
        Ok(free_now.saturating_sub(free_full) >= FILE_LEN * 3 / 4)
    })
    .unwrap_or_else(|e| panic!("{e:#}: free {free_full} while open, {free_now} after close"));
    finish(mnt, &vol);
}

// ---- directories ---------------------------------------------------------------------------

#[test]
fn mkdir_and_rmdir() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let d = root.join("d");
    fs::DirBuilder::new().mode(0o750).create(&d).expect("mkdir");
    let meta = fs::metadata(&d).expect("stat");
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o750, "mode of mkdir 0750");
    expect_errno(fs::create_dir(&d), libc::EEXIST, "mkdir of an existing dir");
    fs::create_dir(d.join("sub")).expect("mkdir sub");
    fs::write(d.join("sub/f"), b"x").expect("create sub/f");
    expect_errno(fs::remove_dir(d.join("sub")), libc::ENOTEMPTY, "rmdir of a non-empty dir");
    expect_errno(fs::remove_dir(&d), libc::ENOTEMPTY, "rmdir of a dir with a subdir");
    expect_errno(fs::remove_dir(d.join("sub/f")), libc::ENOTDIR, "rmdir of a file");
    expect_errno(fs::remove_file(&d), libc::EISDIR, "unlink of a directory");
    expect_errno(fs::create_dir(root.join("nope/x")), libc::ENOENT, "mkdir under a missing dir");
    expect_errno(fs::create_dir(d.join("sub/f/x")), libc::ENOTDIR, "mkdir under a file");

    let mut deep = root.join("deep");
    for level in 0..20 {
        deep = deep.join(format!("level-{level}"));
    }
    fs::create_dir_all(&deep).expect("mkdir -p 20 levels");
    fs::write(deep.join("leaf"), b"leaf").expect("file at the bottom");

    fs::remove_file(d.join("sub/f")).expect("unlink sub/f");
    fs::remove_dir(d.join("sub")).expect("rmdir sub");
    fs::remove_dir(&d).expect("rmdir d");
    expect_errno(fs::metadata(&d), libc::ENOENT, "stat after rmdir");

    let mnt = mnt.remount().expect("remount");
    assert!(!d.exists(), "removed dir is back after remount");
    assert_eq!(read(&deep.join("leaf")), b"leaf", "deep file after remount");
    fs::remove_dir_all(root.join("deep")).expect("rm -r deep");
    assert_eq!(names_in(&root), BTreeSet::new(), "root after removing everything");
    finish(mnt, &vol);
}

#[test]
fn readdir_lists_every_entry_with_its_type() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let dir = mnt.path().join("list");
    fs::create_dir(&dir).expect("mkdir");
    let mut expected = BTreeMap::new();
    for i in 0..50 {
        let name = format!("file-{i:02}");
        fs::write(dir.join(&name), i.to_string()).expect("create file");
        expected.insert(name, libc::DT_REG);
    }
    for i in 0..5 {
        let name = format!("dir-{i}");
        fs::create_dir(dir.join(&name)).expect("mkdir");
        expected.insert(name, libc::DT_DIR);
    }
    for i in 0..2 {
        let name = format!("link-{i}");
        symlink("file-00", dir.join(&name)).expect("symlink");
        expected.insert(name, libc::DT_LNK);
    }
    fs::create_dir(dir.join("empty")).expect("mkdir empty");
    expected.insert("empty".to_string(), libc::DT_DIR);

    let check = |when: &str| {
        let mut stream = sys::DirStream::open(&dir).expect("opendir");
        let mut seen = BTreeMap::new();
        let mut dots = 0;
        while let Some(entry) = stream.next_entry().expect("readdir") {
            if entry.name == "." || entry.name == ".." {
                dots += 1;
                continue;
            }
            let stat_ino = ino(&dir.join(&entry.name));
            assert_eq!(entry.ino, stat_ino, "{when}: d_ino of {} vs stat", entry.name);
            assert!(seen.insert(entry.name.clone(), entry.kind).is_none(), "{when}: {} listed twice", entry.name);
        }
        assert_eq!(dots, 2, "{when}: . and .. are listed once each");
        assert_eq!(seen, expected, "{when}: names and d_type");
        let mut empty = sys::DirStream::open(&dir.join("empty")).expect("opendir empty");
        assert_eq!(empty.read_names(10).expect("readdir empty"), Vec::<String>::new(), "{when}: empty dir");
    };
    check("before remount");
    let mnt = mnt.remount().expect("remount");
    check("after remount");
    finish(mnt, &vol);
}

#[test]
fn readdir_offsets_stay_valid_while_entries_change() {
    if !require_root_and_fuse() {
        return;
    }
    const ENTRIES: usize = 3000;
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let dir = mnt.path().join("offsets");
    fs::create_dir(&dir).expect("mkdir");
    // Long names make the listing span many getdents buffers and FUSE readdir replies.
    let name = |i: usize| format!("entry-with-a-fairly-long-name-to-fill-buffers-{i:05}");
    let originals: BTreeSet<String> = (0..ENTRIES).map(name).collect();
    for entry in &originals {
        File::create(dir.join(entry)).expect("create entry");
    }

    let mut stream = sys::DirStream::open(&dir).expect("opendir");
    let mut seen = stream.read_names(500).expect("readdir");
    let cookie = stream.tell();
    let batch = stream.read_names(200).expect("readdir after telldir");
    stream.seek(cookie);
    let replay = stream.read_names(200).expect("readdir after seekdir");
    assert_eq!(batch, replay, "seekdir(telldir()) replays the same entries");
    seen.extend(batch.iter().cloned());
    seen.extend(stream.read_names(300).expect("readdir"));

    // Remove some entries already returned and some not yet returned, and add new ones.
    let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
    let removed_seen: BTreeSet<String> = seen_set.iter().step_by(10).cloned().collect();
    let unseen: Vec<String> = originals.difference(&seen_set).cloned().collect();
    let removed_unseen: BTreeSet<String> = unseen.iter().step_by(20).cloned().collect();
    for entry in removed_seen.iter().chain(&removed_unseen) {
        fs::remove_file(dir.join(entry)).expect("unlink during iteration");
    }
    let added: BTreeSet<String> = (0..200).map(|i| format!("added-{i:03}")).collect();
    for entry in &added {
        File::create(dir.join(entry)).expect("create during iteration");
    }
    seen.extend(stream.read_names(usize::MAX).expect("readdir to the end"));

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &seen {
        *counts.entry(entry).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(duplicates.is_empty(), "entries returned twice: {duplicates:?}");
    let untouched: BTreeSet<String> =
        originals.difference(&removed_unseen).filter(|entry| !removed_seen.contains(*entry)).cloned().collect();
    let skipped: Vec<_> = untouched.iter().filter(|entry| !counts.contains_key(entry.as_str())).collect();
    assert!(
        skipped.is_empty(),
        "{} untouched entries never returned, e.g. {:?}",
        skipped.len(),
        &skipped[..skipped.len().min(5)]
    );

    // A cookie taken before the changes still works after them.
    stream.seek(cookie);
    let resumed = stream.read_names(usize::MAX).expect("readdir from the old cookie");
    let resumed_set: BTreeSet<&String> = resumed.iter().collect();
    assert_eq!(resumed.len(), resumed_set.len(), "duplicates after seekdir to an old cookie");
    let missing: Vec<_> =
        batch.iter().filter(|entry| !removed_seen.contains(*entry) && !resumed_set.contains(entry)).collect();
    assert!(missing.is_empty(), "entries after the old cookie not returned again: {missing:?}");
    drop(stream);

    let expected: BTreeSet<String> = untouched.union(&added).cloned().collect();
    assert_eq!(names_in(&dir), expected, "final listing");
    finish(mnt, &vol);
}

// ---- rename --------------------------------------------------------------------------------

#[test]
fn rename_plain() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    fs::create_dir(root.join("sub")).expect("mkdir sub");
    fs::write(root.join("a"), b"A").expect("create a");
    let a_ino = ino(&root.join("a"));

    fs::rename(root.join("a"), root.join("b")).expect("rename a b");
    expect_errno(fs::metadata(root.join("a")), libc::ENOENT, "old name after rename");
    assert_eq!(read(&root.join("b")), b"A");
    assert_eq!(ino(&root.join("b")), a_ino, "rename keeps the inode");
    fs::rename(root.join("b"), root.join("sub/c")).expect("rename across dirs");
    assert_eq!(ino(&root.join("sub/c")), a_ino);

    fs::create_dir(root.join("d1")).expect("mkdir d1");
    fs::write(root.join("d1/inner"), b"inner").expect("create d1/inner");
    fs::rename(root.join("d1"), root.join("d2")).expect("rename dir");
    assert_eq!(read(&root.join("d2/inner")), b"inner");
    fs::rename(root.join("d2"), root.join("sub/d3")).expect("move dir to another parent");
    assert_eq!(ino(&root.join("sub/d3/..")), ino(&root.join("sub")), ".. of a moved dir points to its new parent");
    expect_errno(
        fs::rename(root.join("sub"), root.join("sub/d3/into-itself")),
        libc::EINVAL,
        "rename of a dir into its own subtree",
    );
    fs::rename(root.join("sub/c"), root.join("sub/c")).expect("rename onto itself");
    assert_eq!(read(&root.join("sub/c")), b"A");
    expect_errno(fs::rename(root.join("missing"), root.join("x")), libc::ENOENT, "rename of a missing name");

    let mnt = mnt.remount().expect("remount");
    assert_eq!(names_in(&root), BTreeSet::from(["sub".to_string()]));
    assert_eq!(names_in(&root.join("sub")), BTreeSet::from(["c".to_string(), "d3".to_string()]));
    assert_eq!(read(&root.join("sub/d3/inner")), b"inner");
    assert_eq!(ino(&root.join("sub/c")), a_ino, "inode number after remount");
    finish(mnt, &vol);
}

#[test]
fn rename_over_existing_targets() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    fs::write(root.join("x"), b"new").expect("create x");
    fs::write(root.join("y"), b"old").expect("create y");
    let x_ino = ino(&root.join("x"));
    let old_y = File::open(root.join("y")).expect("open y");

    fs::rename(root.join("x"), root.join("y")).expect("rename over a file");
    assert_eq!(read(&root.join("y")), b"new");
    assert_eq!(ino(&root.join("y")), x_ino);
    expect_errno(fs::metadata(root.join("x")), libc::ENOENT, "source after rename");
    let mut old = Vec::new();
    (&old_y).read_to_end(&mut old).expect("read replaced file through open fd");
    assert_eq!(old, b"old", "replaced file stays readable through an open fd");
    assert_eq!(old_y.metadata().expect("fstat").nlink(), 0);
    drop(old_y);

    fs::create_dir(root.join("d")).expect("mkdir d");
    fs::write(root.join("d/f"), b"f").expect("create d/f");
    fs::create_dir(root.join("empty")).expect("mkdir empty");
    fs::create_dir(root.join("full")).expect("mkdir full");
    fs::write(root.join("full/g"), b"g").expect("create full/g");
    expect_errno(
        fs::rename(root.join("d"), root.join("full")),
        libc::ENOTEMPTY,
        "rename of a dir over a non-empty dir",
    );
    expect_errno(fs::rename(root.join("y"), root.join("empty")), libc::EISDIR, "rename of a file over a dir");
    expect_errno(fs::rename(root.join("d"), root.join("y")), libc::ENOTDIR, "rename of a dir over a file");
    fs::rename(root.join("d"), root.join("empty")).expect("rename of a dir over an empty dir");
    assert_eq!(read(&root.join("empty/f")), b"f");

    // Two names of one inode: rename(2) does nothing and both names remain.
    fs::hard_link(root.join("y"), root.join("y2")).expect("link y y2");
    fs::rename(root.join("y"), root.join("y2")).expect("rename between hard links");
    assert!(root.join("y").exists() && root.join("y2").exists());

    let mnt = mnt.remount().expect("remount");
    let expected: BTreeSet<String> = ["empty", "full", "y", "y2"].iter().map(|s| s.to_string()).collect();
    assert_eq!(names_in(&root), expected);
    assert_eq!(read(&root.join("empty/f")), b"f");
    assert_eq!(read(&root.join("full/g")), b"g");
    assert_eq!(fs::metadata(root.join("y")).expect("stat y").nlink(), 2);
    finish(mnt, &vol);
}

#[test]
fn rename_noreplace() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    fs::write(root.join("a"), b"A").expect("create a");
    fs::write(root.join("b"), b"B").expect("create b");
    expect_errno(
        sys::renameat2(&root.join("a"), &root.join("b"), libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "RENAME_NOREPLACE onto an existing name",
    );
    assert_eq!(read(&root.join("a")), b"A", "source untouched after EEXIST");
    assert_eq!(read(&root.join("b")), b"B", "target untouched after EEXIST");
    sys::renameat2(&root.join("a"), &root.join("c"), libc::RENAME_NOREPLACE)
        .expect("RENAME_NOREPLACE onto a free name");
    assert_eq!(read(&root.join("c")), b"A");
    expect_errno(fs::metadata(root.join("a")), libc::ENOENT, "source after rename");

    let mnt = mnt.remount().expect("remount");
    assert_eq!(names_in(&root), BTreeSet::from(["b".to_string(), "c".to_string()]));
    finish(mnt, &vol);
}

#[test]
fn rename_exchange() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    fs::write(root.join("f"), b"file content").expect("create f");
    fs::create_dir(root.join("d")).expect("mkdir d");
    fs::write(root.join("d/inner"), b"inner").expect("create d/inner");
    let (f_ino, d_ino) = (ino(&root.join("f")), ino(&root.join("d")));

    sys::renameat2(&root.join("f"), &root.join("d"), libc::RENAME_EXCHANGE)
        .expect("RENAME_EXCHANGE of a file and a dir");
    assert!(fs::metadata(root.join("f")).expect("stat f").is_dir());
    assert_eq!(read(&root.join("f/inner")), b"inner");
    assert_eq!(read(&root.join("d")), b"file content");
    assert_eq!(ino(&root.join("f")), d_ino, "inode now at f");
    assert_eq!(ino(&root.join("d")), f_ino, "inode now at d");

    // Across directories: the dir's .. must follow it.
    fs::create_dir(root.join("p")).expect("mkdir p");
    fs::write(root.join("p/leaf"), b"leaf").expect("create p/leaf");
    sys::renameat2(&root.join("f"), &root.join("p/leaf"), libc::RENAME_EXCHANGE)
        .expect("RENAME_EXCHANGE across directories");
    assert_eq!(read(&root.join("f")), b"leaf");
    assert_eq!(read(&root.join("p/leaf/inner")), b"inner");
    assert_eq!(ino(&root.join("p/leaf/..")), ino(&root.join("p")), ".. of an exchanged dir points to its new parent");
    expect_errno(
        sys::renameat2(&root.join("f"), &root.join("absent"), libc::RENAME_EXCHANGE),
        libc::ENOENT,
        "RENAME_EXCHANGE with a missing target",
    );

    let mnt = mnt.remount().expect("remount");
    assert_eq!(read(&root.join("f")), b"leaf");
    assert_eq!(read(&root.join("d")), b"file content");
    assert_eq!(read(&root.join("p/leaf/inner")), b"inner");
    assert_eq!(ino(&root.join("p/leaf")), d_ino);
    finish(mnt, &vol);
}

// ---- links ---------------------------------------------------------------------------------

#[test]
fn hard_links() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let (f, g, h) = (root.join("f"), root.join("g"), root.join("sub/h"));
    fs::create_dir(root.join("sub")).expect("mkdir sub");
    fs::write(&f, b"shared").expect("create f");
    fs::hard_link(&f, &g).expect("link f g");
    fs::hard_link(&f, &h).expect("link f sub/h");
    for path in [&f, &g, &h] {
        let meta = fs::metadata(path).expect("stat");
        assert_eq!(meta.nlink(), 3, "nlink of {}", path.display());
        assert_eq!(meta.ino(), ino(&f), "inode of {}", path.display());
    }
    OpenOptions::new().write(true).open(&g).and_then(|file| file.write_all_at(b"SHARED", 0)).expect("write through g");
    assert_eq!(read(&f), b"SHARED", "write through one name is seen through another");
    expect_errno(fs::hard_link(root.join("sub"), root.join("dirlink")), libc::EPERM, "link of a dir");
    expect_errno(fs::hard_link(&f, &g), libc::EEXIST, "link onto an existing name");
    expect_errno(fs::hard_link(root.join("none"), root.join("n2")), libc::ENOENT, "link of a missing file");
    fs::remove_file(&f).expect("unlink f");
    assert_eq!(fs::metadata(&g).expect("stat g").nlink(), 2);

    let mnt = mnt.remount().expect("remount");
    assert_eq!(fs::metadata(&g).expect("stat g").nlink(), 2, "nlink after remount");
    assert_eq!(ino(&g), ino(&h));
    fs::remove_file(&h).expect("unlink h");
    assert_eq!(fs::metadata(&g).expect("stat g").nlink(), 1);
    assert_eq!(read(&g), b"SHARED");
    finish(mnt, &vol);
}

#[test]
fn symlinks() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    fs::write(root.join("target"), b"through the link").expect("create target");
    symlink("target", root.join("l")).expect("symlink");
    assert_eq!(fs::read_link(root.join("l")).expect("readlink"), PathBuf::from("target"));
    assert!(fs::symlink_metadata(root.join("l")).expect("lstat").file_type().is_symlink());
    assert_eq!(read(&root.join("l")), b"through the link");

    symlink("nowhere", root.join("dangling")).expect("dangling symlink");
    expect_errno(fs::metadata(root.join("dangling")), libc::ENOENT, "stat through a dangling link");
    fs::symlink_metadata(root.join("dangling")).expect("lstat of a dangling link");

    let long: String = "segment/".repeat(500);
    assert_eq!(long.len(), 4000);
    symlink(&long, root.join("long")).expect("symlink with a 4000-byte target");
    assert_eq!(fs::read_link(root.join("long")).expect("readlink long"), PathBuf::from(&long));
    assert_eq!(fs::symlink_metadata(root.join("long")).expect("lstat").len(), 4000);

    fs::create_dir(root.join("dir")).expect("mkdir");
    fs::write(root.join("dir/file"), b"in dir").expect("create dir/file");
    symlink("dir", root.join("dirlink")).expect("symlink to dir");
    assert_eq!(read(&root.join("dirlink/file")), b"in dir");
    expect_errno(symlink("x", root.join("l")), libc::EEXIST, "symlink onto an existing name");
    symlink("loop2", root.join("loop1")).expect("symlink loop1");
    symlink("loop1", root.join("loop2")).expect("symlink loop2");
    expect_errno(File::open(root.join("loop1")), libc::ELOOP, "open of a symlink loop");

    let mnt = mnt.remount().expect("remount");
    assert_eq!(fs::read_link(root.join("l")).expect("readlink"), PathBuf::from("target"));
    assert_eq!(fs::read_link(root.join("long")).expect("readlink long after remount"), PathBuf::from(&long));
    assert_eq!(read(&root.join("dirlink/file")), b"in dir");
    finish(mnt, &vol);
}

// ---- attributes and permissions ------------------------------------------------------------

fn mtime(path: &Path) -> (i64, i64) {
    let meta = fs::metadata(path).expect("stat");
    (meta.mtime(), meta.mtime_nsec())
}

fn ctime(path: &Path) -> (i64, i64) {
    let meta = fs::metadata(path).expect("stat");
    (meta.ctime(), meta.ctime_nsec())
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

#[test]
fn chmod_chown_utimens() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let f = root.join("f");
    fs::write(&f, b"attributes").expect("create");

    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).expect("chmod 0640");
    assert_eq!(fs::metadata(&f).expect("stat").mode() & 0o7777, 0o640);
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).expect("chown 1234:5678");
    let meta = fs::metadata(&f).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).expect("chmod 04755");
    assert_eq!(fs::metadata(&f).expect("stat").mode() & 0o7777, 0o4755);

    let atime = Time::At { sec: 1_000_000_000, nsec: 123_456_789 };
    let mtime_set = Time::At { sec: 1_500_000_000, nsec: 987_654_321 };
    sys::utimens(&f, atime, mtime_set).expect("utimensat with explicit times");
    let meta = fs::metadata(&f).expect("stat");
    assert_eq!((meta.atime(), meta.atime_nsec()), (1_000_000_000, 123_456_789), "atime");
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_500_000_000, 987_654_321), "mtime");
    let before = now_secs();
    sys::utimens(&f, Time::Omit, Time::Now).expect("utimensat OMIT/NOW");
    let after = now_secs();
    let meta = fs::metadata(&f).expect("stat");
    assert_eq!((meta.atime(), meta.atime_nsec()), (1_000_000_000, 123_456_789), "UTIME_OMIT kept atime");
    assert!(
        (before - 1..=after + 1).contains(&meta.mtime()),
        "UTIME_NOW set mtime {} outside [{before}, {after}]",
        meta.mtime()
    );

    // Changes of ctime and mtime; a 1.1 s pause keeps this independent of timestamp granularity.
    let ctime_before = ctime(&f);
    let mtime_before = mtime(&f);
    thread::sleep(Duration::from_millis(1100));
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).expect("chmod 0644");
    assert!(ctime(&f) > ctime_before, "chmod updates ctime");
    assert_eq!(mtime(&f), mtime_before, "chmod leaves mtime");
    OpenOptions::new().write(true).open(&f).and_then(|file| file.write_all_at(b"A", 0)).expect("write");
    assert!(mtime(&f) > mtime_before, "write updates mtime");

    let mnt = mnt.remount().expect("remount");
    let meta = fs::metadata(&f).expect("stat after remount");
    assert_eq!(meta.mode() & 0o7777, 0o644, "mode after remount");
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "owner after remount");
    assert_eq!((meta.atime(), meta.atime_nsec()), (1_000_000_000, 123_456_789), "atime after remount");
    finish(mnt, &vol);
}

const NOBODY: u32 = 65534;

fn as_nobody(op: &UserOp) -> i32 {
    sys::run_as(NOBODY, NOBODY, op).expect("forking a child as uid 65534")
}

fn errno_text(code: i32) -> String {
    if code == 0 {
        "success".to_string()
    } else {
        std::io::Error::from_raw_os_error(code).to_string()
    }
}

fn assert_as_nobody(op: UserOp, expected: i32, what: &str) {
    let got = as_nobody(&op);
    assert_eq!(got, expected, "as uid 65534: {what}: got {}, expected {}", errno_text(got), errno_text(expected));
}

#[test]
fn permission_checks_for_another_user() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod root 0755");
    let dir = root.join("perm");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    let root_file = dir.join("root-file");
    fs::write(&root_file, b"root's").expect("create");
    fs::set_permissions(&root_file, fs::Permissions::from_mode(0o644)).expect("chmod 0644");

    let reach = as_nobody(&UserOp::stat(&root_file));
    assert_eq!(
        reach,
        0,
        "uid 65534 cannot stat a 0644 file in 0755 directories ({}): the mount must let \
         other users in (allow_other) and check permissions itself or with default_permissions",
        errno_text(reach)
    );
    assert_as_nobody(UserOp::open_read(&root_file), 0, "read a 0644 file it does not own");
    assert_as_nobody(UserOp::chmod(&root_file, 0o777), libc::EPERM, "chmod a file it does not own");
    assert_as_nobody(UserOp::open_write(&root_file), libc::EACCES, "write a 0644 file it does not own");
    assert_as_nobody(UserOp::create(&dir.join("new")), libc::EACCES, "create in a 0755 root dir");
    assert_as_nobody(UserOp::unlink(&root_file), libc::EACCES, "unlink in a 0755 root dir");

    let own = dir.join("own-read-only");
    fs::write(&own, b"nobody's").expect("create");
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).expect("chown to 65534");
    fs::set_permissions(&own, fs::Permissions::from_mode(0o444)).expect("chmod 0444");
    assert_as_nobody(UserOp::open_write(&own), libc::EACCES, "write its own 0444 file");
    assert_as_nobody(UserOp::chmod(&own, 0o644), 0, "chmod its own file");
    assert_as_nobody(UserOp::chown(&own, 0, 0), libc::EPERM, "give its file to root");

    let shared = dir.join("shared-rw");
    fs::write(&shared, b"rw").expect("create");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o666)).expect("chmod 0666");
    let explicit = Time::At { sec: 1_000, nsec: 0 };
    assert_as_nobody(
        UserOp::utimens(&shared, explicit, explicit),
        libc::EPERM,
        "set explicit times on a writable file it does not own",
    );
    assert_as_nobody(
        UserOp::utimens(&shared, Time::Now, Time::Now),
        0,
        "set times to now on a writable file it does not own",
    );

    let sticky = root.join("sticky");
    fs::create_dir(&sticky).expect("mkdir sticky");
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    fs::write(sticky.join("roots"), b"r").expect("create");
    fs::set_permissions(sticky.join("roots"), fs::Permissions::from_mode(0o666)).expect("chmod");
    assert_as_nobody(UserOp::unlink(&sticky.join("roots")), libc::EPERM, "unlink another user's file in a sticky dir");
    assert_as_nobody(UserOp::create(&sticky.join("mine")), 0, "create in a 1777 dir");
    let mine = fs::metadata(sticky.join("mine")).expect("stat the file it created");
    assert_eq!((mine.uid(), mine.gid()), (NOBODY, NOBODY), "owner of a new file");
    assert_as_nobody(UserOp::unlink(&sticky.join("mine")), 0, "unlink its own file in a sticky dir");

    let mnt = mnt.remount().expect("remount");
    assert_eq!(fs::metadata(&sticky).expect("stat").mode() & 0o7777, 0o1777);
    assert_as_nobody(UserOp::open_write(&root_file), libc::EACCES, "write after remount");
    finish(mnt, &vol);
}

// ---- whole-file-system behaviour -------------------------------------------------------------

#[test]
fn statfs_is_sane_and_tracks_usage() {
    if !require_root_and_fuse() {
        return;
    }
    const FILE_LEN: u64 = 16 * MIB;
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let st = sys::statvfs(&root).expect("statvfs");
    assert!(st.block_size > 0 && st.fragment_size > 0, "block sizes: {st:?}");
    assert!(
        st.total_bytes() <= vol.size_bytes() && st.total_bytes() >= vol.size_bytes() / 2,
        "f_blocks * f_frsize = {} for a {}-byte volume",
        st.total_bytes(),
        vol.size_bytes()
    );
    assert!(st.blocks_free <= st.blocks, "f_bfree > f_blocks: {st:?}");
    assert!(st.blocks_available <= st.blocks_free, "f_bavail > f_bfree: {st:?}");
    assert!(st.blocks_free > st.blocks / 2, "a new volume is mostly free: {st:?}");
    assert!(st.files_free <= st.files, "f_ffree > f_files: {st:?}");
    assert!(st.name_max >= 255, "f_namemax {}", st.name_max);
    let long_name = "n".repeat(255);
    fs::write(root.join(&long_name), b"255").expect("create a 255-byte name");
    expect_errno(fs::write(root.join("n".repeat(256)), b"256"), libc::ENAMETOOLONG, "create a 256-byte name");

    let path = root.join("usage.bin");
    let mut file = File::create(&path).expect("create");
    file.write_all(&content::content(4, 1, FILE_LEN as usize)).expect("write");
    file.sync_all().expect("fsync");
    drop(file);
    let mut used_now = 0;
    wait_until(Duration::from_secs(15), "statfs to count a 16 MiB file", || {
        syncfs(&root);
        used_now = st.free_bytes().saturating_sub(free_bytes(&root));
        Ok(used_now >= FILE_LEN * 3 / 4)
    })
    .unwrap_or_else(|e| panic!("{e:#}: only {used_now} bytes more in use"));
    let on_file = sys::statvfs(&path).expect("statvfs on a file");
    assert_eq!(on_file.blocks, st.blocks, "statvfs on a file sees the same volume");

    fs::remove_file(&path).expect("unlink");
    wait_until(Duration::from_secs(20), "statfs to count the file freed", || {
        syncfs(&root);
        Ok(st.free_bytes().saturating_sub(free_bytes(&root)) < FILE_LEN / 4)
    })
    .expect("space returned after unlink");
    finish(mnt, &vol);
}

#[test]
fn fsync_and_fdatasync_survive_kill9() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let a = content::content(5, 1, 100_000);
    let b = content::content(5, 2, 3 * MIB as usize);
    let c = content::content(5, 3, 7_777);

    let mut file = File::create(root.join("a")).expect("create a");
    file.write_all(&a).expect("write a");
    file.sync_all().expect("fsync a");
    let mut file = File::create(root.join("b")).expect("create b");
    file.write_all(&b).expect("write b");
    // fdatasync must also persist the size, which changed.
    file.sync_data().expect("fdatasync b");
    fs::create_dir(root.join("d")).expect("mkdir d");
    let mut file = File::create(root.join("d/c")).expect("create d/c");
    file.write_all(&c).expect("write d/c");
    file.sync_all().expect("fsync d/c");
    fsync_dir(&root.join("d"));
    fsync_dir(&root);

    let mut patched = a.clone();
    patched[50_000..50_005].copy_from_slice(b"PATCH");
    let file = OpenOptions::new().write(true).open(root.join("a")).expect("open a");
    file.write_all_at(b"PATCH", 50_000).expect("overwrite in a");
    file.sync_data().expect("fdatasync a");
    fs::rename(root.join("a"), root.join("a2")).expect("rename a a2");
    fsync_dir(&root);
    drop(file);

    mnt.kill9().expect("kill -9 vexfsd");
    assert_fsck_clean(&vol, "after kill -9");
    let mnt = mount(&vol);
    expect_errno(fs::metadata(root.join("a")), libc::ENOENT, "old name of a after kill -9");
    assert_bytes(&read(&root.join("a2")), &patched, "a2 after kill -9");
    assert_bytes(&read(&root.join("b")), &b, "b after kill -9");
    assert_bytes(&read(&root.join("d/c")), &c, "d/c after kill -9");
    finish(mnt, &vol);
}

#[test]
fn fallocate_modes() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let open_rw = |name: &str| {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(root.join(name)).expect("open")
    };

    let f = open_rw("default");
    sys::fallocate(&f, 0, 0, MIB).expect("fallocate mode 0");
    let meta = f.metadata().expect("fstat");
    assert_eq!(meta.len(), MIB, "mode 0 extends the size");
    assert!(meta.blocks() * 512 >= MIB, "fallocate reserved only {} sectors", meta.blocks());
    sys::fallocate(&f, 0, 2 * MIB, MIB).expect("fallocate mode 0 past EOF");
    assert_eq!(f.metadata().expect("fstat").len(), 3 * MIB);
    assert_zeros(&read(&root.join("default")), "fallocated range");

    let g = open_rw("keep-size");
    let head = content::content(6, 1, 4096);
    g.write_all_at(&head, 0).expect("write 4 KiB");
    let blocks_before = g.metadata().expect("fstat").blocks();
    sys::fallocate(&g, libc::FALLOC_FL_KEEP_SIZE, 4096, MIB).expect("fallocate KEEP_SIZE");
    let meta = g.metadata().expect("fstat");
    assert_eq!(meta.len(), 4096, "KEEP_SIZE keeps the size");
    assert!(meta.blocks() >= blocks_before, "KEEP_SIZE released blocks");
    // Growing over the preallocated range must read zeros, not stale disk contents.
    g.set_len(MIB + 4096).expect("grow over the preallocation");
    let grown = read(&root.join("keep-size"));
    assert_bytes(&grown[..4096], &head, "data before the preallocation");
    assert_zeros(&grown[4096..], "preallocated range after growing");

    let h = open_rw("punch");
    let data = content::content(6, 2, MIB as usize);
    h.write_all_at(&data, 0).expect("write 1 MiB");
    h.sync_all().expect("fsync");
    let blocks_before = h.metadata().expect("fstat").blocks();
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    sys::fallocate(&h, punch, 256 * KIB, 256 * KIB).expect("punch an aligned hole");
    sys::fallocate(&h, punch, 1000, 4000).expect("punch an unaligned hole");
    let meta = h.metadata().expect("fstat");
    assert_eq!(meta.len(), MIB, "punching keeps the size");
    assert!(meta.blocks() <= blocks_before, "punching allocated blocks");
    let mut expected = data.clone();
    expected[256 * KIB as usize..512 * KIB as usize].fill(0);
    expected[1000..5000].fill(0);
    assert_bytes(&read(&root.join("punch")), &expected, "after punching holes");
    drop((f, g, h));

    let mnt = mnt.remount().expect("remount");
    assert_bytes(&read(&root.join("punch")), &expected, "punched file after remount");
    assert_eq!(fs::metadata(root.join("keep-size")).expect("stat").len(), MIB + 4096);
    finish(mnt, &vol);
}

#[test]
fn xattrs() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let root = mnt.path().to_path_buf();
    let f = root.join("f");
    fs::write(&f, b"x").expect("create");
    let big = content::content(7, 1, 4000);

    sys::setxattr(&f, "user.small", b"v1", 0).expect("setxattr");
    assert_eq!(sys::getxattr(&f, "user.small").expect("getxattr"), b"v1");
    expect_errno(
        sys::setxattr(&f, "user.small", b"v2", libc::XATTR_CREATE),
        libc::EEXIST,
        "XATTR_CREATE on an existing attribute",
    );
    expect_errno(
        sys::setxattr(&f, "user.absent", b"v", libc::XATTR_REPLACE),
        libc::ENODATA,
        "XATTR_REPLACE on a missing attribute",
    );
    sys::setxattr(&f, "user.small", b"v2", libc::XATTR_REPLACE).expect("XATTR_REPLACE");
    assert_eq!(sys::getxattr(&f, "user.small").expect("getxattr"), b"v2");
    sys::setxattr(&f, "user.empty", b"", libc::XATTR_CREATE).expect("empty value");
    assert_eq!(sys::getxattr(&f, "user.empty").expect("getxattr empty"), b"");

    sys::setxattr(&f, "user.big", &big, 0).expect("setxattr 4000 bytes");
    assert_eq!(sys::getxattr_into(&f, "user.big", &mut []).expect("size query"), 4000);
    assert_eq!(sys::getxattr(&f, "user.big").expect("getxattr 4000 bytes"), big);
    expect_errno(sys::getxattr_into(&f, "user.big", &mut [0u8; 10]), libc::ERANGE, "getxattr into a 10-byte buffer");
    let names: BTreeSet<String> = sys::listxattr(&f).expect("listxattr").into_iter().collect();
    let expected: BTreeSet<String> = ["user.small", "user.empty", "user.big"].iter().map(|s| s.to_string()).collect();
    assert_eq!(names, expected, "listxattr");
    // Many attributes on a second file, so the total stays within common per-inode limits.
    let many = root.join("many");
    fs::write(&many, b"m").expect("create");
    for i in 0..50 {
        let name = format!("user.many.{i:02}");
        sys::setxattr(&many, &name, i.to_string().as_bytes(), 0).expect("setxattr many");
    }
    let names = sys::listxattr(&many).expect("listxattr many");
    assert_eq!(names.len(), 50, "listxattr of 50 attributes: {names:?}");

    sys::removexattr(&f, "user.small").expect("removexattr");
    expect_errno(sys::getxattr(&f, "user.small"), libc::ENODATA, "getxattr after removexattr");
    expect_errno(sys::removexattr(&f, "user.small"), libc::ENODATA, "removexattr of a missing attribute");
    fs::create_dir(root.join("d")).expect("mkdir");
    sys::setxattr(&root.join("d"), "user.on-dir", b"dir value", 0).expect("setxattr on a dir");

    let mnt = mnt.remount().expect("remount");
    assert_eq!(sys::getxattr(&f, "user.big").expect("getxattr after remount"), big);
    assert_eq!(sys::getxattr(&many, "user.many.07").expect("getxattr after remount"), b"7");
    expect_errno(sys::getxattr(&f, "user.small"), libc::ENODATA, "removed attribute after remount");
    assert_eq!(sys::getxattr(&root.join("d"), "user.on-dir").expect("dir xattr after remount"), b"dir value");
    finish(mnt, &vol);
}

// ---- sizes ---------------------------------------------------------------------------------

#[test]
fn large_file_beyond_4gib() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(8 * GIB);
    let mnt = mount(&vol);
    let path = mnt.path().join("large.bin");
    let data = content::content(8, 1, MIB as usize);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("create");
    file.write_all_at(&data, 5 * GIB).expect("write 1 MiB at 5 GiB");
    // Eight bytes straddling 4 GiB catch offsets truncated to 32 bits.
    file.write_all_at(b"STRADDLE", 4 * GIB - 4).expect("write across 4 GiB");
    file.sync_all().expect("fsync");
    drop(file);

    let check = |when: &str| {
        assert_eq!(fs::metadata(&path).expect("stat").len(), 5 * GIB + MIB, "{when}: size");
        assert_bytes(&read_at(&path, 5 * GIB, MIB as usize), &data, when);
        assert_eq!(read_at(&path, 4 * GIB - 4, 8), b"STRADDLE", "{when}: across 4 GiB");
        assert_zeros(&read_at(&path, 0, 65536), "start of the file");
        assert_zeros(&read_at(&path, 4 * GIB + 4, 65536), "after the 4 GiB mark");
        assert_zeros(&read_at(&path, 5 * GIB - 65536, 65536), "just before the data");
    };
    check("before remount");
    let mnt = mnt.remount().expect("remount");
    check("after remount");
    finish(mnt, &vol);
}

#[test]
fn sparse_file_holes_read_zero() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let path = mnt.path().join("sparse.bin");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("create");
    file.write_all_at(&[0x5A], GIB).expect("write 1 byte at 1 GiB");
    file.sync_all().expect("fsync");

    let check = |file: &File, when: &str| {
        let meta = file.metadata().expect("fstat");
        assert_eq!(meta.len(), GIB + 1, "{when}: size");
        assert!(meta.blocks() * 512 <= MIB, "{when}: a 1-byte write at 1 GiB allocated {} bytes", meta.blocks() * 512);
        for offset in [0, 512 * MIB, GIB - 4096] {
            assert_zeros(&read_at(&path, offset, 4096), &format!("{when}: hole at {offset}"));
        }
        assert_eq!(read_at(&path, GIB, 1), [0x5A], "{when}: the written byte");
    };
    check(&file, "before remount");

    match sys::lseek(&file, 0, libc::SEEK_DATA) {
        // The kernel's generic fallback reports all of a file as data when the daemon does
        // not implement lseek; then there is nothing more to check.
        Ok(0) => eprintln!("SEEK_DATA reports data at 0: not supported, not checked"),
        Ok(data_at) => {
            assert!(
                data_at <= GIB && GIB - data_at < MIB,
                "SEEK_DATA from 0 returned {data_at}, expected the block holding offset {GIB}"
            );
            assert_eq!(sys::lseek(&file, 0, libc::SEEK_HOLE).expect("SEEK_HOLE"), 0);
            assert_eq!(
                sys::lseek(&file, data_at, libc::SEEK_HOLE).expect("SEEK_HOLE after data"),
                GIB + 1,
                "the only hole after the data is the one at EOF"
            );
            expect_errno(sys::lseek(&file, GIB + 2, libc::SEEK_DATA), libc::ENXIO, "SEEK_DATA past EOF");
        }
        Err(err) => eprintln!("SEEK_DATA not supported ({err}), not checked"),
    }
    drop(file);

    let mnt = mnt.remount().expect("remount");
    let file = File::open(&path).expect("open after remount");
    check(&file, "after remount");
    drop(file);
    finish(mnt, &vol);
}

#[test]
fn directory_with_100k_entries() {
    if !require_root_and_fuse() {
        return;
    }
    const ENTRIES: usize = 100_000;
    let vol = volume(4 * GIB);
    let mnt = mount(&vol);
    let dir = mnt.path().join("big-dir");
    fs::create_dir(&dir).expect("mkdir");
    let name = |i: usize| format!("f{i:06}");
    let started = Instant::now();
    for i in 0..ENTRIES {
        File::create(dir.join(name(i))).unwrap_or_else(|e| panic!("create entry {i}: {e}"));
    }
    fsync_dir(&dir);
    let created_in = started.elapsed();

    // Remount so lookups go to the daemon, not the kernel's dentry cache.
    let mnt = mnt.remount().expect("remount");
    let mut rng = Rng::new(100);
    let mut slowest = Duration::ZERO;
    let lookups_started = Instant::now();
    for _ in 0..20 {
        let i = rng.below(ENTRIES as u64) as usize;
        let t = Instant::now();
        let meta = fs::metadata(dir.join(name(i))).unwrap_or_else(|e| panic!("stat entry {i}: {e}"));
        slowest = slowest.max(t.elapsed());
        assert!(meta.is_file());
    }
    expect_errno(fs::metadata(dir.join("f100000")), libc::ENOENT, "stat of a name not created");
    assert!(
        lookups_started.elapsed() < Duration::from_secs(2) && slowest < Duration::from_millis(500),
        "20 lookups by name took {:?} (slowest {slowest:?}) in a 100,000-entry directory",
        lookups_started.elapsed()
    );

    let listed = names_in(&dir);
    assert_eq!(listed.len(), ENTRIES, "entries listed");
    assert!(listed.contains("f000000") && listed.contains("f099999"));
    let removal_started = Instant::now();
    for i in 0..ENTRIES {
        fs::remove_file(dir.join(name(i))).unwrap_or_else(|e| panic!("unlink entry {i}: {e}"));
    }
    assert!(names_in(&dir).is_empty(), "directory empty after removing all");
    fs::remove_dir(&dir).expect("rmdir");
    eprintln!("100,000 entries: created in {created_in:?}, removed in {:?}", removal_started.elapsed());
    finish(mnt, &vol);
}

// ---- persistence ---------------------------------------------------------------------------

#[test]
fn copied_tree_survives_remount() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let source = vol.dir().join("source-tree");
    fs::create_dir(&source).expect("mkdir source");
    let bytes = tree::generate(&source, 42, 150).expect("generating the source tree");
    let expected = tree::manifest(&source).expect("manifest of the source");

    let mnt = mount(&vol);
    let copy = mnt.path().join("copy");
    let output = run(Command::new("cp").arg("-r").arg(&source).arg(&copy), Duration::from_secs(600)).expect("cp -r");
    assert!(output.success(), "cp -r failed:\n{output}");
    let check = |when: &str| {
        let actual = tree::manifest(&copy).expect("manifest of the copy");
        let diff = tree::diff(&expected, &actual);
        assert!(diff.is_empty(), "{when}: copy of a {bytes}-byte tree differs:\n{}", diff.join("\n"));
    };
    check("right after cp");
    mnt.unmount().expect("clean unmount");
    assert_fsck_clean(&vol, "after copying the tree");
    let mnt = mount(&vol);
    check("after remount");
    finish(mnt, &vol);
}

#[test]
fn sigterm_and_sigint_unmount_cleanly() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(2 * GIB);
    let mnt = mount(&vol);
    let path = mnt.path().join("f");
    fs::write(&path, b"before SIGTERM").expect("write");
    mnt.stop_with_signal(libc::SIGTERM).expect("SIGTERM: unmount and exit 0");
    assert_fsck_clean(&vol, "after SIGTERM");
    let mnt = mount(&vol);
    assert_eq!(read(&path), b"before SIGTERM", "data written before SIGTERM");
    fs::write(&path, b"before SIGINT").expect("write");
    mnt.stop_with_signal(libc::SIGINT).expect("SIGINT: unmount and exit 0");
    assert_fsck_clean(&vol, "after SIGINT");
    let mnt = mount(&vol);
    assert_eq!(read(&path), b"before SIGINT", "data written before SIGINT");
    finish(mnt, &vol);
}
