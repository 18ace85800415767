//! Goal: the io_uring backend keeps the `Storage` contract against the real kernel, on an image
//! file on a disk file system (not tmpfs, so `O_DIRECT` really bypasses the page cache) and, when
//! running as root with `losetup`, on loop devices.
//!
//! Method: every block written carries a pattern derived from its index and a generation number,
//! so a read-back detects lost, stale and misdirected writes. Two threads write and read disjoint
//! random block sets in batches larger than the ring, mixing arena, multi-block and heap buffers;
//! the device is then reopened to read the data again. Contract violations must panic before any
//! I/O; locking, geometry and refusals are checked against what the kernel reports.
//!
//! Tests that need root, `losetup`, `mkfs.ext4` or `mount` print why they skip and pass (and fail
//! under `CI=true`).

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vexfs_daemon::io::{Arena, Device, DeviceError, DeviceKind, DeviceOptions, IoBuf, Ring, UringStorage};
use vexfs_daemon::storage::{ReadOp, Storage, WriteOp};

const BLOCK: usize = 4096;
const BLOCK_U64: u64 = BLOCK as u64;
const MIB: u64 = 1 << 20;
const ARENA_SIZE: usize = 16 << 20;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A directory on a disk file system: `VEXFS_TEST_DIR`, else /tmp unless that is tmpfs.
fn test_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VEXFS_TEST_DIR") {
        return PathBuf::from(dir);
    }
    let tmp = PathBuf::from("/tmp");
    if is_tmpfs(&tmp) {
        PathBuf::from("/var/tmp")
    } else {
        tmp
    }
}

fn is_tmpfs(path: &Path) -> bool {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statfs writes into a zeroed struct of plain integers.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is writable.
    let status = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    status == 0 && stat.f_type == libc::TMPFS_MAGIC
}

/// An image file, removed on drop.
struct TempImage {
    path: PathBuf,
}

impl TempImage {
    fn new(name: &str, size_bytes: u64) -> TempImage {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file_name = format!("vexfs-io-{}-{n}-{name}.img", std::process::id());
        let path = test_dir().join(file_name);
        std::fs::File::create(&path).unwrap().set_len(size_bytes).unwrap();
        TempImage { path }
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A loop device over an image, detached on drop. None (with a note) when it cannot be made.
struct LoopDevice {
    path: PathBuf,
    _image: TempImage,
}

impl LoopDevice {
    fn attach(name: &str, size_bytes: u64, sector_size: u32) -> Option<LoopDevice> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            common::cannot_run("loop devices need root");
            return None;
        }
        let image = TempImage::new(name, size_bytes);
        let output = Command::new("losetup")
            .args(["--find", "--show", "--sector-size", &sector_size.to_string()])
            .arg(&image.path)
            .output();
        match output {
            Ok(output) if output.status.success() => {
                let path = String::from_utf8(output.stdout).unwrap().trim().into();
                Some(LoopDevice { path, _image: image })
            }
            other => {
                common::cannot_run(&format!("losetup failed: {other:?}"));
                None
            }
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

fn storage_on(path: &Path) -> UringStorage {
    let device = Device::open(path, &DeviceOptions::default()).unwrap();
    UringStorage::new(device, Arena::new(ARENA_SIZE).unwrap()).unwrap()
}

/// The contents of `block` written in `generation`: every u64 word depends on both and on its
/// position, so a block at the wrong address or from another generation never matches.
fn pattern(block: u64, generation: u64, out: &mut [u8]) {
    for (word_index, word) in out.chunks_exact_mut(8).enumerate() {
        let value = mix(block.wrapping_mul(0x1_0000_0001) ^ (generation << 48) ^ word_index as u64);
        word.copy_from_slice(&value.to_le_bytes());
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn assert_pattern(block: u64, generation: u64, data: &[u8]) {
    let mut expected = vec![0; data.len()];
    pattern(block, generation, &mut expected);
    assert!(data == expected, "block {block} does not hold generation {generation}");
}

/// A small deterministic generator for test choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = mix(self.0);
        self.0 % bound
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Batched round trips

/// One extent of a batch: `block_count` blocks from `block`, in one buffer.
struct Extent {
    block: u64,
    block_count: u64,
    buf: IoBuf,
}

/// Picks `count` disjoint random extents of 1 to 3 blocks inside `blocks`, with arena buffers
/// except every seventh, which comes from the heap. The same arguments give the same extents.
fn extents(storage: &UringStorage, blocks: Range<u64>, count: usize, seed: u64) -> Vec<Extent> {
    let mut rng = Rng(seed);
    let mut taken = BTreeSet::new();
    let mut extents = Vec::with_capacity(count);
    while extents.len() < count {
        let block_count = 1 + rng.below(3);
        let block = blocks.start + rng.below(blocks.end - blocks.start - block_count);
        if (block..block + block_count).any(|b| taken.contains(&b)) {
            continue;
        }
        taken.extend(block..block + block_count);
        let len = block_count as usize * BLOCK;
        let heap = extents.len() % 7 == 6;
        let buf = if heap { IoBuf::heap(len) } else { storage.alloc_buffer(len) };
        extents.push(Extent { block, block_count, buf });
    }
    extents
}

/// Writes `extents` in batches of `batch_len`, reads them back shuffled in batches of another
/// size, and checks them.
fn write_then_verify(storage: &UringStorage, extents: &mut [Extent], batch_len: usize, generation: u64) {
    for extent in extents.iter_mut() {
        for (i, chunk) in extent.buf.chunks_exact_mut(BLOCK).enumerate() {
            pattern(extent.block + i as u64, generation, chunk);
        }
    }
    for batch in extents.chunks(batch_len) {
        let ops: Vec<WriteOp> = batch.iter().map(|e| WriteOp { offset: e.block * BLOCK_U64, buf: &e.buf }).collect();
        storage.write_batch(&ops).unwrap();
    }
    for extent in extents.iter_mut() {
        extent.buf.fill(0);
    }
    Rng(generation).shuffle(extents);
    read_and_verify(storage, extents, batch_len + 13, generation);
}

fn read_and_verify(storage: &UringStorage, extents: &mut [Extent], batch_len: usize, generation: u64) {
    for batch in extents.chunks_mut(batch_len) {
        let mut ops: Vec<ReadOp> =
            batch.iter_mut().map(|e| ReadOp { offset: e.block * BLOCK_U64, buf: &mut e.buf }).collect();
        storage.read_batch(&mut ops).unwrap();
    }
    for extent in extents.iter() {
        assert_eq!(extent.buf.len() as u64, extent.block_count * BLOCK_U64);
        for (i, chunk) in extent.buf.chunks_exact(BLOCK).enumerate() {
            assert_pattern(extent.block + i as u64, generation, chunk);
        }
    }
}

/// The blocks of thread `lane`'s half of the device.
fn lane_blocks(storage: &UringStorage, lane: u64) -> Range<u64> {
    let half = storage.geometry().size_bytes / BLOCK_U64 / 2;
    lane * half..(lane + 1) * half
}

/// Two threads write and verify their own half of the device (generation 100 + lane) with their
/// own rings; then this thread reads both halves again in one batch larger than the ring.
fn round_trip_two_threads(storage: &Arc<UringStorage>, extent_count: usize, batch_len: usize) {
    let threads: Vec<_> = (0..2_u64)
        .map(|lane| {
            let storage = Arc::clone(storage);
            std::thread::spawn(move || {
                let blocks = lane_blocks(&storage, lane);
                let mut extents = extents(&storage, blocks, extent_count, lane);
                write_then_verify(&storage, &mut extents, batch_len, 100 + lane);
                storage.flush().unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Each thread's ring closed when the thread exited; the creating thread's ring remains.
    assert_eq!(storage.ring_count(), 1);
    for lane in 0..2 {
        let mut extents = extents(storage, lane_blocks(storage, lane), extent_count, lane);
        read_and_verify(storage, &mut extents, extent_count, 100 + lane);
    }
}

#[test]
fn image_file_round_trip_across_two_threads_and_reopen() {
    let image = TempImage::new("round-trip", 64 * MIB);
    let storage = Arc::new(storage_on(&image.path));
    assert!(storage.device().is_direct());
    round_trip_two_threads(&storage, 400, 300);
    // Dropping the storage closes every ring, so the device can be opened again at once, and
    // the flushed data is there.
    drop(storage);
    let storage = storage_on(&image.path);
    let mut extents = extents(&storage, lane_blocks(&storage, 1), 400, 1);
    read_and_verify(&storage, &mut extents, 64, 101);
}

#[test]
fn a_ring_smaller_than_the_batch_is_refilled() {
    let image = TempImage::new("small-ring", 16 * MIB);
    let device = Device::open(&image.path, &DeviceOptions::default()).unwrap();
    let storage = UringStorage::with_ring_entries(device, Arena::new(ARENA_SIZE).unwrap(), 8).unwrap();
    let mut extents = extents(&storage, 0..16 * MIB / BLOCK_U64, 150, 3);
    write_then_verify(&storage, &mut extents, 150, 5);
    storage.flush().unwrap();
}

#[test]
fn loop_device_round_trip_across_two_threads() {
    let Some(loop_device) = LoopDevice::attach("loop-round-trip", 64 * MIB, 512) else {
        return;
    };
    let storage = Arc::new(storage_on(&loop_device.path));
    assert_eq!(storage.device().kind(), DeviceKind::Block);
    assert!(storage.device().is_direct());
    round_trip_two_threads(&storage, 300, 200);
}

// ---------------------------------------------------------------------------------------------
// Geometry and O_DIRECT

/// The `flags` line of /proc/self/fdinfo/<fd>, in octal as the kernel prints it.
fn fd_flags(fd: i32) -> i32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let line = info.lines().find(|l| l.starts_with("flags:")).unwrap();
    i32::from_str_radix(line["flags:".len()..].trim(), 8).unwrap()
}

#[test]
fn an_image_file_is_opened_with_o_direct_and_measured() {
    // A size that is not whole blocks: the partial last block is not used.
    let image = TempImage::new("geometry", 8 * MIB + 1000);
    let device = Device::open(&image.path, &DeviceOptions::default()).unwrap();
    assert_eq!(device.kind(), DeviceKind::File);
    assert!(device.is_direct(), "{} is not on a file system with O_DIRECT", image.path.display());
    assert_ne!(fd_flags(device.as_raw_fd()) & libc::O_DIRECT, 0, "the kernel has no O_DIRECT flag");
    let geometry = device.geometry();
    assert_eq!(geometry.size_bytes, 8 * MIB);
    assert!([512, 1024, 2048, 4096].contains(&geometry.logical_block_size), "{geometry:?}");
    assert!(geometry.dio_mem_align >= 1 && 4096 % geometry.dio_mem_align == 0, "{geometry:?}");
    eprintln!("image file on {}: {geometry:?}", test_dir().display());
}

#[test]
fn a_file_too_small_for_one_block_is_refused() {
    for size_bytes in [0, 100, 4095] {
        let image = TempImage::new("tiny", size_bytes);
        let error = Device::open(&image.path, &DeviceOptions::default()).unwrap_err();
        assert!(matches!(error, DeviceError::Geometry { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("too small"), "{message}");
        assert!(message.contains(image.path.to_str().unwrap()), "{message}");
    }
}

#[test]
fn paths_that_are_not_devices_are_refused_by_name() {
    let missing = test_dir().join("vexfs-io-no-such-image");
    let error = Device::open(&missing, &DeviceOptions::default()).unwrap_err();
    assert!(matches!(error, DeviceError::NotFound { .. }), "{error}");
    assert!(error.to_string().contains("vexfs-io-no-such-image"), "{error}");
    for path in [test_dir(), PathBuf::from("/dev/null")] {
        let error = Device::open(&path, &DeviceOptions::default()).unwrap_err();
        assert!(matches!(error, DeviceError::NotFileOrBlockDevice { .. }), "{error}");
        assert!(error.to_string().contains(path.to_str().unwrap()), "{error}");
    }
}

#[test]
fn loop_device_geometry_follows_its_sector_size() {
    for sector_size in [512, 4096] {
        let Some(loop_device) = LoopDevice::attach("loop-geometry", 32 * MIB, sector_size) else {
            return;
        };
        let device = Device::open(&loop_device.path, &DeviceOptions::default()).unwrap();
        assert_eq!(device.kind(), DeviceKind::Block);
        assert!(device.is_direct());
        let geometry = device.geometry();
        assert_eq!(geometry.size_bytes, 32 * MIB);
        assert_eq!(geometry.logical_block_size, sector_size);
        assert!(4096 % geometry.dio_mem_align == 0, "{geometry:?}");
        let storage = UringStorage::new(device, Arena::new(ARENA_SIZE).unwrap()).unwrap();
        let mut extents = extents(&storage, 0..32 * MIB / BLOCK_U64, 64, u64::from(sector_size));
        write_then_verify(&storage, &mut extents, 64, 9);
        storage.flush().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Locking

fn assert_in_use(result: Result<Device, DeviceError>, path: &Path) {
    let error = result.unwrap_err();
    assert!(matches!(error, DeviceError::InUse { .. }), "{error}");
    let expected = format!("device {} is in use by another process (already mounted?)", path.display());
    assert_eq!(error.to_string(), expected);
}

#[test]
fn a_second_open_is_refused_while_the_device_is_held() {
    let image = TempImage::new("lock", 4 * MIB);
    let storage = Arc::new(storage_on(&image.path));
    // Give the device a ring in another thread as well; the lock must not depend on which.
    let other = Arc::clone(&storage);
    let thread = std::thread::spawn(move || other.flush().unwrap());
    thread.join().unwrap();
    assert_in_use(Device::open(&image.path, &DeviceOptions::default()), &image.path);
    assert_in_use(Device::open(&image.path, &DeviceOptions::inspect()), &image.path);
    drop(storage);
    // Shared (inspection) opens coexist, and keep a writer out.
    let first = Device::open(&image.path, &DeviceOptions::inspect()).unwrap();
    let second = Device::open(&image.path, &DeviceOptions::inspect()).unwrap();
    assert!(first.is_read_only() && second.is_read_only());
    assert_in_use(Device::open(&image.path, &DeviceOptions::default()), &image.path);
    drop((first, second));
    Device::open(&image.path, &DeviceOptions::default()).unwrap();
}

#[test]
fn an_exclusively_opened_block_device_refuses_a_second_opener() {
    let Some(loop_device) = LoopDevice::attach("loop-lock", 8 * MIB, 512) else {
        return;
    };
    let held = Device::open(&loop_device.path, &DeviceOptions::default()).unwrap();
    assert_in_use(Device::open(&loop_device.path, &DeviceOptions::default()), &loop_device.path);
    drop(held);
    Device::open(&loop_device.path, &DeviceOptions::default()).unwrap();
}

#[test]
fn a_mounted_block_device_is_in_use() {
    let Some(loop_device) = LoopDevice::attach("loop-mounted", 32 * MIB, 512) else {
        return;
    };
    let mount_point = test_dir().join(format!("vexfs-io-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&mount_point).unwrap();
    let mkfs = Command::new("mkfs.ext4").arg("-q").arg(&loop_device.path).status();
    let mount = Command::new("mount").arg(&loop_device.path).arg(&mount_point).status();
    if !(mkfs.is_ok_and(|s| s.success()) && mount.is_ok_and(|s| s.success())) {
        common::cannot_run(&format!("cannot mkfs.ext4 and mount {}", loop_device.path.display()));
        let _ = std::fs::remove_dir(&mount_point);
        return;
    }
    let result = Device::open(&loop_device.path, &DeviceOptions::default());
    let _ = Command::new("umount").arg(&mount_point).status();
    let _ = std::fs::remove_dir(&mount_point);
    assert_in_use(result, &loop_device.path);
}

// ---------------------------------------------------------------------------------------------
// Contract violations panic before any I/O

fn small_storage() -> (TempImage, UringStorage) {
    let image = TempImage::new("contract", MIB);
    let storage = storage_on(&image.path);
    (image, storage)
}

#[test]
#[should_panic(expected = "offset 512 is not a multiple of 4096")]
fn a_misaligned_offset_panics() {
    let (_image, storage) = small_storage();
    let buf = storage.alloc_buffer(BLOCK);
    let _ = storage.write_batch(&[WriteOp { offset: 512, buf: &buf }]);
}

#[test]
#[should_panic(expected = "length 1000 at offset 0 is not a multiple of 4096")]
fn an_odd_length_panics() {
    let (_image, storage) = small_storage();
    let mut buf = storage.alloc_buffer(BLOCK);
    let _ = storage.read_batch(&mut [ReadOp { offset: 0, buf: &mut buf[..1000] }]);
}

#[test]
#[should_panic(expected = "is not 4096-byte aligned")]
fn a_misaligned_buffer_panics() {
    let (_image, storage) = small_storage();
    let mut buf = storage.alloc_buffer(2 * BLOCK);
    let _ = storage.read_batch(&mut [ReadOp { offset: 0, buf: &mut buf[512..512 + BLOCK] }]);
}

#[test]
#[should_panic(expected = "runs past the device end 1048576")]
fn an_operation_past_the_end_panics() {
    let (_image, storage) = small_storage();
    let buf = storage.alloc_buffer(2 * BLOCK);
    let _ = storage.write_batch(&[WriteOp { offset: MIB - BLOCK_U64, buf: &buf }]);
}

#[test]
#[should_panic(expected = "I/O of zero bytes")]
fn an_empty_buffer_panics() {
    let (_image, storage) = small_storage();
    let _ = storage.read_batch(&mut [ReadOp { offset: 0, buf: &mut [] }]);
}

#[test]
#[should_panic(expected = "write to a device opened read-only")]
fn a_write_to_a_read_only_device_panics() {
    let image = TempImage::new("read-only", MIB);
    let device = Device::open(&image.path, &DeviceOptions::inspect()).unwrap();
    let storage = UringStorage::new(device, Arena::new(ARENA_SIZE).unwrap()).unwrap();
    let buf = storage.alloc_buffer(BLOCK);
    let _ = storage.write_batch(&[WriteOp { offset: 0, buf: &buf }]);
}

#[test]
fn a_panicking_batch_leaves_the_storage_usable() {
    let (_image, storage) = small_storage();
    let buf = storage.alloc_buffer(BLOCK);
    let bad = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let good = WriteOp { offset: 0, buf: &buf };
        let _ = storage.write_batch(&[good, WriteOp { offset: 100, buf: &buf }]);
    }));
    assert!(bad.is_err());
    let mut extents = extents(&storage, 0..MIB / BLOCK_U64, 20, 11);
    write_then_verify(&storage, &mut extents, 20, 12);
    let empty: &[WriteOp] = &[];
    storage.write_batch(empty).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Queue-depth API

/// Keeps `depth` random 4 KiB reads in flight through `Ring`, as
/// `fio --ioengine=io_uring --fixedbufs --registerfiles --direct=1 --rw=randread --bs=4k
/// --iodepth=32` does, checking every block's pattern. Returns reads per second.
fn random_reads(storage: &UringStorage, depth: usize, read_count: u64, seed: u64) -> f64 {
    let mut ring = Ring::new(storage.device(), Some(storage.arena()), 64).unwrap();
    assert!(ring.has_fixed_buffers());
    let block_total = storage.geometry().size_bytes / BLOCK_U64;
    let mut rng = Rng(seed);
    let mut completions = Vec::with_capacity(depth);
    let start = Instant::now();
    for _ in 0..depth {
        let block = rng.below(block_total);
        ring.submit_read(storage.alloc_buffer(BLOCK), block * BLOCK_U64, block).unwrap();
    }
    let (mut submitted, mut completed) = (depth as u64, 0);
    while completed < read_count {
        ring.wait_completions(1, &mut completions).unwrap();
        for completion in completions.drain(..) {
            assert_eq!(completion.result.unwrap(), BLOCK);
            let buf = completion.buf.unwrap();
            assert!(buf.is_registered());
            assert_pattern(completion.user_data, 1, &buf);
            completed += 1;
            if submitted < read_count {
                let block = rng.below(block_total);
                ring.submit_read(buf, block * BLOCK_U64, block).unwrap();
                submitted += 1;
            }
        }
    }
    assert_eq!(ring.inflight(), 0);
    completed as f64 / start.elapsed().as_secs_f64()
}

/// Fills the device with generation-1 patterns in 1 MiB writes.
fn fill_device(storage: &UringStorage) {
    let chunk = MIB as usize;
    let mut buf = storage.alloc_buffer(chunk);
    for offset in (0..storage.geometry().size_bytes).step_by(chunk) {
        for (i, block) in buf.chunks_exact_mut(BLOCK).enumerate() {
            pattern(offset / BLOCK_U64 + i as u64, 1, block);
        }
        storage.write_batch(&[WriteOp { offset, buf: &buf }]).unwrap();
    }
    storage.flush().unwrap();
}

/// Small under `cargo test`; `VEXFS_IO_BENCH=1` measures a 1 GiB image (the `large` parameter).
#[test]
fn queue_depth_32_random_reads_through_ring() {
    let large = std::env::var_os("VEXFS_IO_BENCH").is_some();
    let (size_bytes, read_count) = if large { (1024 * MIB, 200_000) } else { (32 * MIB, 4_000) };
    let image = TempImage::new("qd32", size_bytes);
    let storage = storage_on(&image.path);
    fill_device(&storage);
    let iops = random_reads(&storage, 32, read_count, 42);
    eprintln!("QD32 random 4 KiB reads, {} MiB image: {iops:.0} IOPS", size_bytes / MIB);
}

#[test]
fn a_full_ring_hands_the_buffer_back() {
    let (_image, storage) = small_storage();
    let mut ring = Ring::new(storage.device(), Some(storage.arena()), 4).unwrap();
    for block in 0..4 {
        ring.submit_read(storage.alloc_buffer(BLOCK), block * BLOCK_U64, block).unwrap();
    }
    let full = ring.submit_read(storage.alloc_buffer(BLOCK), 0, 99).unwrap_err();
    assert_eq!(full.buf.as_ref().map(|b| b.len()), Some(BLOCK));
    ring.submit().unwrap();
    let mut completions = Vec::new();
    while ring.inflight() > 0 {
        ring.wait_completions(ring.inflight(), &mut completions).unwrap();
    }
    assert_eq!(completions.len(), 4);
    ring.submit_fsync(7).unwrap();
    completions.clear();
    ring.wait_completions(1, &mut completions).unwrap();
    assert_eq!(completions[0].user_data, 7);
    assert!(completions[0].result.is_ok());
}
