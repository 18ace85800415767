//! Bad input and hostile conditions: each must give a clear error and a non-zero exit, never a
//! panic, and must leave existing volumes and mounts intact.
//!
//! Covered: mkfs on a too-small device and over an existing volume; vexfsd on a missing
//! device, a device that is not VexFS, a device another vexfsd serves, a missing mount point
//! and a busy one; a corrupted metadata block (fsck names it, reads fail with EIO or the mount
//! is refused); a superblock claiming more blocks than the image holds (fsck and vexfsd refuse it
//! with both numbers, in bounded time and address space); and a full volume (ENOSPC without
//! corruption, and recovery after deletes).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use std::process::Command;

use vexfs_format::mkfs::Layout;
use vexfs_format::superblock::{Superblock, SUPERBLOCK_SLOTS};
use vexfs_format::BLOCK_SIZE;
use vexfs_tests::content;
use vexfs_tests::sys;
use vexfs_tests::{
    assert_fsck_clean, assert_no_panic, binaries, fsck, mkfs, mount_at, require_root_and_fuse, run,
    run_vexfsd_expecting_refusal, CmdOutput, Mount, MountOptions, ScratchDir, TestVolume, GIB, MIB,
};

/// How long vexfsd may take to refuse bad input.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

fn scratch() -> ScratchDir {
    ScratchDir::new("vexfs-bad-input-").expect("creating a scratch directory")
}

fn volume(size_bytes: u64) -> TestVolume {
    TestVolume::create(size_bytes).expect("creating a test volume with vexfs mkfs")
}

/// Asserts a refusal: non-zero exit, something on stderr, no panic.
fn assert_refused(output: &CmdOutput, what: &str) {
    assert_no_panic(&output.combined(), what);
    assert!(!output.success(), "{what}: succeeded, expected a refusal:\n{output}");
    assert!(!output.stderr.trim().is_empty(), "{what}: failed without a message on stderr:\n{output}");
}

fn refuse_vexfsd(device: &Path, dir: &Path, what: &str) -> CmdOutput {
    let output =
        run_vexfsd_expecting_refusal(device, dir, &[], REFUSAL_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_refused(&output, what);
    output
}

fn zero_file(path: &Path, len: u64) {
    File::create(path)
        .and_then(|file| file.set_len(len))
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
}

#[test]
fn mkfs_refuses_a_too_small_device() {
    if !require_root_and_fuse() {
        return;
    }
    let scratch = scratch();
    let tiny = scratch.path().join("tiny.img");
    zero_file(&tiny, MIB);
    let output = mkfs(&tiny, MIB, false).expect("running vexfs mkfs");
    assert_refused(&output, "vexfs mkfs on a 1 MiB file");
    let missing = scratch.path().join("new-tiny.img");
    let output = mkfs(&missing, MIB, false).expect("running vexfs mkfs");
    assert_refused(&output, "vexfs mkfs --size 1M of a new image");
}

#[test]
fn mkfs_refuses_an_existing_volume_without_force() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(64 * MIB);
    let output = mkfs(vol.path(), 64 * MIB, false).expect("running vexfs mkfs");
    assert_refused(&output, "vexfs mkfs over an existing volume without --force");
    assert_fsck_clean(&vol, "after a refused mkfs");
    let output = mkfs(vol.path(), 64 * MIB, true).expect("running vexfs mkfs --force");
    assert!(output.success(), "vexfs mkfs --force failed:\n{output}");
    assert_fsck_clean(&vol, "after mkfs --force");
}

#[test]
fn vexfsd_refuses_a_missing_device() {
    if !require_root_and_fuse() {
        return;
    }
    let scratch = scratch();
    let dir = scratch.path().join("mnt");
    fs::create_dir(&dir).expect("mkdir");
    let device = scratch.path().join("no-such-device.img");
    let output = refuse_vexfsd(&device, &dir, "vexfsd on a missing device");
    assert!(output.stderr.contains("no-such-device.img"), "the error does not name the missing device:\n{output}");
    assert!(!device.exists(), "vexfsd created the missing device");
}

/// Puts the `enable_uring` module parameter back when dropped, even if the test fails.
struct RestoreParameter {
    path: PathBuf,
    value: String,
}

impl Drop for RestoreParameter {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.value);
    }
}

#[test]
fn vexfsd_refuses_fuse_uring_when_the_kernel_has_it_off() {
    if !require_root_and_fuse() {
        return;
    }
    let parameter = PathBuf::from("/sys/module/fuse/parameters/enable_uring");
    let Ok(value) = fs::read_to_string(&parameter) else {
        eprintln!("SKIP vexfsd_refuses_fuse_uring_when_the_kernel_has_it_off: this kernel has no FUSE-over-io_uring");
        return;
    };
    let _restore = RestoreParameter { path: parameter.clone(), value: value.trim().to_owned() };
    fs::write(&parameter, "N").expect("turning enable_uring off");
    let vol = volume(64 * MIB);
    let scratch = scratch();
    let dir = scratch.path().join("mnt");
    fs::create_dir(&dir).expect("mkdir");
    let what = "vexfsd --fuse-transport uring with enable_uring off";
    let output = run_vexfsd_expecting_refusal(vol.path(), &dir, &["--fuse-transport", "uring"], REFUSAL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_refused(&output, what);
    assert!(output.stderr.contains("enable_uring"), "the error does not say how to enable it:\n{output}");
}

#[test]
fn vexfsd_refuses_a_device_that_is_not_vexfs() {
    if !require_root_and_fuse() {
        return;
    }
    let scratch = scratch();
    let dir = scratch.path().join("mnt");
    fs::create_dir(&dir).expect("mkdir");
    let device = scratch.path().join("zeros.img");
    zero_file(&device, 64 * MIB);
    refuse_vexfsd(&device, &dir, "vexfsd on a file of zeros");
    let mut bytes = Vec::new();
    File::open(&device).and_then(|mut file| file.read_to_end(&mut bytes)).expect("reading the device back");
    assert!(bytes.iter().all(|&b| b == 0), "vexfsd wrote to a device it refused");
}

#[test]
fn vexfsd_refuses_a_device_in_use() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(256 * MIB);
    let first = Mount::start(&vol, &MountOptions::default()).expect("starting vexfsd");
    fs::write(first.path().join("f"), b"first daemon").expect("write");
    let second_dir = vol.dir().join("second-mnt");
    fs::create_dir(&second_dir).expect("mkdir");
    refuse_vexfsd(vol.path(), &second_dir, "a second vexfsd on a device in use");
    assert_eq!(fs::read(first.path().join("f")).expect("read through the first mount"), b"first daemon");
    first.unmount().expect("clean unmount of the first daemon");
    assert_fsck_clean(&vol, "after the refused second daemon");
}

#[test]
fn vexfsd_refuses_a_missing_mount_point() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(256 * MIB);
    let dir = vol.dir().join("no-such-dir");
    refuse_vexfsd(vol.path(), &dir, "vexfsd with a missing mount point");
    assert_fsck_clean(&vol, "after the refused mount");
}

#[test]
fn vexfsd_refuses_a_busy_mount_point() {
    if !require_root_and_fuse() {
        return;
    }
    let first_vol = volume(256 * MIB);
    let second_vol = volume(256 * MIB);
    let first = Mount::start(&first_vol, &MountOptions::default()).expect("starting vexfsd");
    fs::write(first.path().join("f"), b"first").expect("write");
    refuse_vexfsd(second_vol.path(), first.path(), "vexfsd on a mount point that is already a mount");
    assert_eq!(fs::read(first.path().join("f")).expect("read"), b"first");
    first.unmount().expect("clean unmount");
    assert_fsck_clean(&first_vol, "the mounted volume");
    assert_fsck_clean(&second_vol, "the refused volume");
}

// ---- corruption ----------------------------------------------------------------------------

/// Every directory entry name starts with this, so blocks holding them can be found.
const MARKER: &[u8] = b"VEXFS-CORRUPTION-MARKER-";
const SCAN_BLOCK: usize = 4096;

/// Byte offsets of every `SCAN_BLOCK`-aligned block of `image` that holds `MARKER`, with the
/// position of the first marker inside it.
fn marker_blocks(image: &Path) -> Vec<(u64, usize)> {
    let mut file = File::open(image).expect("opening the image");
    let mut found = Vec::new();
    let mut buf = vec![0u8; SCAN_BLOCK];
    let mut offset = 0u64;
    loop {
        match file.read_exact(&mut buf) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(err) => panic!("reading the image: {err}"),
        }
        if let Some(at) = buf.windows(MARKER.len()).position(|w| w == MARKER) {
            found.push((offset, at));
        }
        offset += SCAN_BLOCK as u64;
    }
    found
}

/// Numbers a report may use for a block at byte `offset`: the offset itself and its index in
/// units from 512 bytes to 16 KiB. Numbers below 16 are left out: they would match by chance.
fn block_numbers(offset: u64) -> BTreeSet<u64> {
    let mut numbers = BTreeSet::from([offset]);
    for unit in [512, 4096, 8192, 16384] {
        numbers.insert(offset / unit);
    }
    numbers.retain(|&n| n >= 16);
    numbers
}

/// Decimal and `0x` hexadecimal numbers appearing in `text`.
fn numbers_in(text: &str) -> BTreeSet<u64> {
    let mut numbers = BTreeSet::new();
    for token in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let parsed = match token.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => token.parse().ok(),
        };
        numbers.extend(parsed);
    }
    numbers
}

#[test]
fn corrupted_metadata_block_is_detected() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(256 * MIB);
    let mnt = Mount::start(&vol, &MountOptions::default()).expect("starting vexfsd");
    let dir = mnt.path().join("marked");
    fs::create_dir(&dir).expect("mkdir");
    let names: Vec<String> = (0..400).map(|i| format!("{}{i:04}", String::from_utf8_lossy(MARKER))).collect();
    for name in &names {
        File::create(dir.join(name)).expect("create a marked entry");
    }
    for i in 0..20u64 {
        fs::write(mnt.path().join(format!("data-{i}")), content::content(9, i, 100_000)).expect("write data");
    }
    mnt.unmount().expect("clean unmount");
    assert_fsck_clean(&vol, "before corrupting");

    let blocks = marker_blocks(vol.path());
    assert!(
        !blocks.is_empty(),
        "no {SCAN_BLOCK}-byte block of the image holds a directory entry name in plain bytes; \
         this test needs another way to find a metadata block"
    );
    let image = OpenOptions::new().read(true).write(true).open(vol.path()).expect("opening the image");
    for &(offset, at) in &blocks {
        // Flip the bytes of one entry name: live, checksummed metadata in any layout.
        let position = offset + at as u64;
        let mut bytes = [0u8; 8];
        image.read_exact_at(&mut bytes, position).expect("read");
        for byte in &mut bytes {
            *byte ^= 0xFF;
        }
        image.write_all_at(&bytes, position).expect("corrupt");
    }
    image.sync_all().expect("fsync the image");
    drop(image);

    let (code, output) = fsck(&vol).expect("running vexfs fsck");
    assert_no_panic(&output, "vexfs fsck on a corrupted volume");
    assert_eq!(
        code,
        1,
        "vexfs fsck after corrupting {} block(s) at {:?}: exit {code}, expected 1:\n{output}",
        blocks.len(),
        blocks.iter().map(|b| b.0).collect::<Vec<_>>()
    );
    let mentioned = numbers_in(&output);
    let named = blocks.iter().any(|&(offset, _)| !block_numbers(offset).is_disjoint(&mentioned));
    assert!(
        named,
        "vexfs fsck does not name a corrupted block (byte offsets {:?}):\n{output}",
        blocks.iter().map(|b| b.0).collect::<Vec<_>>()
    );

    let remounted = Mount::start(&vol, &MountOptions::default());
    match remounted {
        Err(err) => {
            let text = format!("{err:#}");
            assert_no_panic(&text, "vexfsd on a corrupted volume");
            eprintln!("vexfsd refused the corrupted volume: {text}");
        }
        Ok(mnt) => {
            let errors = read_everything(&mnt.path().join("marked"), &names);
            assert!(
                mount_at(mnt.path()).expect("mount table").is_some(),
                "vexfsd died while reading a corrupted directory:\n{}",
                mnt.log()
            );
            assert_no_panic(&mnt.log(), "vexfsd reading a corrupted directory");
            assert!(
                errors.iter().any(|e| sys::errno(e) == libc::EIO),
                "reading the corrupted directory gave no EIO (errors: {errors:?})"
            );
            let unexpected: Vec<_> = errors.iter().filter(|e| sys::errno(e) != libc::EIO).collect();
            assert!(unexpected.is_empty(), "a corrupted directory must fail with EIO, not {unexpected:?}");
            mnt.unmount().expect("clean unmount after reading corrupted metadata");
        }
    }
}

/// Lists `dir` and stats each expected name, collecting the errors.
fn read_everything(dir: &Path, names: &[String]) -> Vec<io::Error> {
    let mut errors = Vec::new();
    match fs::read_dir(dir) {
        Err(err) => errors.push(err),
        Ok(entries) => errors.extend(entries.filter_map(Result::err)),
    }
    for name in names {
        if let Err(err) = fs::metadata(dir.join(name)) {
            errors.push(err);
        }
    }
    errors
}

// ---- a full volume -------------------------------------------------------------------------

const FILL_CHUNK: u64 = MIB;

/// Writes 1 MiB files with fsync until ENOSPC; returns the paths fully written. Any other
/// error fails the test.
fn fill_until_enospc(dir: &Path, volume_bytes: u64) -> Vec<PathBuf> {
    let files_max = 4 * volume_bytes / FILL_CHUNK;
    let mut written = Vec::new();
    for i in 0..files_max {
        let path = dir.join(format!("fill-{i:04}"));
        let attempt = File::create(&path).and_then(|mut file| {
            file.write_all(&content::content(10, i, FILL_CHUNK as usize))?;
            file.sync_all()
        });
        match attempt {
            Ok(()) => written.push(path),
            Err(err) if sys::errno(&err) == libc::ENOSPC => {
                // The partial file may or may not exist; removing it must work on a full volume.
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => panic!("unlink of a partial file on a full volume: {e}"),
                }
                return written;
            }
            Err(err) => panic!("filling the volume: file {i}: expected ENOSPC, got {err}"),
        }
    }
    panic!("wrote {} MiB to a {} MiB volume without ENOSPC", files_max * FILL_CHUNK / MIB, volume_bytes / MIB);
}

fn check_fill_files(paths: &[PathBuf], when: &str) {
    for path in paths {
        let name = path.file_name().expect("name").to_string_lossy();
        let index: u64 = name["fill-".len()..].parse().expect("index in the name");
        let data = fs::read(path).unwrap_or_else(|e| panic!("{when}: reading {name}: {e}"));
        assert!(data == content::content(10, index, FILL_CHUNK as usize), "{when}: {name} changed");
    }
}

#[test]
fn enospc_leaves_a_consistent_volume_that_recovers() {
    if !require_root_and_fuse() {
        return;
    }
    const VOLUME_BYTES: u64 = 64 * MIB;
    let vol = volume(VOLUME_BYTES);
    let mnt = Mount::start(&vol, &MountOptions::default()).expect("starting vexfsd");
    let dir = mnt.path().join("fill");
    fs::create_dir(&dir).expect("mkdir");
    let written = fill_until_enospc(&dir, VOLUME_BYTES);
    assert!(!written.is_empty(), "not even one 1 MiB file fit on a 64 MiB volume");
    // Small metadata changes on a full volume either work or fail with ENOSPC.
    for result in [fs::create_dir(dir.join("extra-dir")), fs::write(dir.join("extra-file"), b"x")] {
        if let Err(err) = result {
            assert_eq!(sys::errno(&err), libc::ENOSPC, "metadata change on a full volume: {err}");
        }
    }
    check_fill_files(&written, "on the full volume");
    mnt.unmount().expect("clean unmount of a full volume");
    assert_fsck_clean(&vol, "after ENOSPC");

    let mnt = Mount::start(&vol, &MountOptions::default()).expect("mounting the full volume");
    check_fill_files(&written, "after remounting the full volume");
    let (removed, kept): (Vec<_>, Vec<_>) = written.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, path) in &removed {
        fs::remove_file(path).expect("unlink on a full volume");
    }
    let kept: Vec<PathBuf> = kept.into_iter().map(|(_, path)| path).collect();
    File::open(mnt.path()).and_then(|root| sys::syncfs(&root)).expect("syncfs");

    // Freed space may come back only after a commit; retry ENOSPC for a while.
    let again = content::content(10, 9999, 4 * MIB as usize);
    let path = mnt.path().join("after-delete.bin");
    let mut last_err = None;
    for _ in 0..30 {
        let attempt = File::create(&path).and_then(|mut file| {
            file.write_all(&again)?;
            file.sync_all()
        });
        match attempt {
            Ok(()) => {
                last_err = None;
                break;
            }
            Err(err) if sys::errno(&err) == libc::ENOSPC => {
                last_err = Some(err);
                thread::sleep(Duration::from_millis(500));
            }
            Err(err) => panic!("writing after deletes: {err}"),
        }
    }
    if let Some(err) = last_err {
        panic!("a 4 MiB write still fails after deleting {} MiB: {err}", removed.len());
    }
    assert!(fs::read(&path).expect("read back") == again, "file written after the deletes reads back wrong");
    check_fill_files(&kept, "after deleting half");
    mnt.unmount().expect("clean unmount");
    assert_fsck_clean(&vol, "after recovering from ENOSPC");
}

#[test]
fn report_parsing_finds_block_numbers() {
    let text = "inode 12: bad checksum in block 4097 (0x2000)";
    let numbers = numbers_in(text);
    assert!(numbers.contains(&12) && numbers.contains(&4097) && numbers.contains(&0x2000));
    assert!(block_numbers(4096 * 40).contains(&40));
    assert!(block_numbers(4096 * 40).contains(&(4096 * 40)));
    assert!(!block_numbers(4096 * 40).contains(&10), "16 KiB units give 10: too small");
}

#[test]
fn marker_scan_finds_blocks_holding_names() {
    let scratch = scratch();
    let image = scratch.path().join("scan.img");
    zero_file(&image, 16 * 4096);
    let file = OpenOptions::new().write(true).open(&image).expect("open");
    file.write_all_at(MARKER, 3 * 4096 + 100).expect("write marker");
    file.write_all_at(MARKER, 9 * 4096).expect("write marker");
    drop(file);
    assert_eq!(marker_blocks(&image), vec![(3 * 4096, 100), (9 * 4096, 0)]);
}

/// The address space the crafted-superblock refusals run in: room for the binaries as they are,
/// a millionth of what sizing anything by a 2^40 or 2^52 block count would take.
const ADDRESS_SPACE_MAX: u64 = 4 * GIB;

/// `program` under `prlimit --as`, so an allocation sized by a lie fails instead of swapping.
fn limited(program: &Path) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={ADDRESS_SPACE_MAX}")).arg("--").arg(program).env("RUST_BACKTRACE", "1");
    cmd
}

/// Rewrites both superblock slots of the image at `path` to claim `block_count` blocks, with the
/// region fields that count implies and valid checksums: only the device size tells the lie.
fn claim_block_count(path: &Path, block_count: u64) {
    let image = OpenOptions::new().read(true).write(true).open(path).expect("opening the image");
    for addr in SUPERBLOCK_SLOTS {
        let mut block = vec![0u8; BLOCK_SIZE];
        image.read_exact_at(&mut block, addr.byte_offset()).expect("reading a superblock");
        let mut sb = Superblock::decode(&block, addr).expect("a valid superblock");
        let layout = Layout::for_block_count(block_count, sb.journal_blocks).expect("a layout for the count");
        (sb.block_count, sb.bitmap_start, sb.bitmap_blocks) = (block_count, layout.bitmap_start, layout.bitmap_blocks);
        image.write_all_at(&sb.encode(), addr.byte_offset()).expect("writing a superblock");
    }
    image.sync_all().expect("fsync the image");
}

/// A refusal that names both sizes, from a process that exited on its own (an allocation failure
/// would abort it with a signal).
fn assert_refused_for_size(output: &CmdOutput, block_count: u64, device_blocks: u64, what: &str) {
    assert_refused(output, what);
    assert!(output.status.code().is_some(), "{what}: ended by a signal, not an exit:\n{output}");
    let text = output.combined();
    assert!(
        text.contains(&block_count.to_string()) && text.contains(&device_blocks.to_string()),
        "{what}: the message does not give the claimed and the real size:\n{output}"
    );
}

/// 2^40 blocks is 4 PiB; 2^52 + n blocks is 2^64 + 4096 n bytes, which wraps to the image's own
/// size in 64-bit arithmetic, so only a check that cannot wrap refuses it.
#[test]
fn a_block_count_beyond_the_device_is_refused_by_fsck_and_vexfsd() {
    if !require_root_and_fuse() {
        return;
    }
    let vol = volume(64 * MIB);
    let scratch = scratch();
    let dir = scratch.path().join("mnt");
    fs::create_dir(&dir).expect("mkdir");
    let binaries = binaries().expect("the VexFS binaries");
    let device_blocks = 64 * MIB / BLOCK_SIZE as u64;
    for block_count in [1u64 << 40, (1 << 52) + device_blocks] {
        claim_block_count(vol.path(), block_count);
        let before = fs::read(vol.path()).expect("reading the image");

        let what = format!("vexfs fsck of a volume claiming {block_count} blocks");
        let mut cmd = limited(&binaries.vexfs);
        cmd.arg("fsck").arg(vol.path());
        let output = run(&mut cmd, REFUSAL_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_refused_for_size(&output, block_count, device_blocks, &what);

        let what = format!("vexfsd on a volume claiming {block_count} blocks");
        let mut cmd = limited(&binaries.vexfsd);
        cmd.arg("--device").arg(vol.path()).arg("--mount").arg(&dir);
        let output = run(&mut cmd, REFUSAL_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_refused_for_size(&output, block_count, device_blocks, &what);
        assert!(mount_at(&dir).expect("reading the mount table").is_none(), "{what}: left a mount");
        assert!(fs::read(vol.path()).expect("reading the image") == before, "{what}: the image was written");
    }
}
