//! The engine over crafted and failing volumes: nothing read from the device is trusted, and a
//! device that fails a data write leaves the engine read-only.
//!
//! Goal: a volume whose bytes were written to mislead (valid checksums, lying counts and
//! addresses) makes mount refuse, or the operation that meets the lie fail with a corruption
//! error naming the block, without a panic, an allocation sized by the lie, or a write outside
//! the data area; and a failed data write latches the engine as a failed commit does.
//!
//! Method: format an in-memory device (`SimStorage`), change one thing in its image (re-sealing
//! what it changes), open the engine on it and drive the engine API; compare the image before
//! and after where nothing may be written.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FixedClock, Rng};
use vexfs_daemon::engine::fs::Creds;
use vexfs_daemon::engine::{Engine, EngineError, EngineHandle, EngineOptions};
use vexfs_daemon::errno::Errno;
use vexfs_daemon::io::sim::SimStorage;
use vexfs_format::bitmap;
use vexfs_format::block::{self, MetaHeader};
use vexfs_format::inode::ROOT_INO;
use vexfs_format::items::{Extent, FILE_BLOCKS_MAX};
use vexfs_format::journal::{self, Image, JournalRegion};
use vexfs_format::key::{ItemKind, Key};
use vexfs_format::mkfs::Layout;
use vexfs_format::node::{self, InternalRef, LeafRef};
use vexfs_format::superblock::{Superblock, VolumeState, SUPERBLOCK_SLOTS};
use vexfs_format::{BlockAddr, BLOCK_SIZE};

const VOLUME_BYTES: u64 = 32 << 20;

fn fresh_image() -> Vec<u8> {
    common::fresh_image(VOLUME_BYTES, [4; 16], "crafted")
}

fn options() -> EngineOptions {
    EngineOptions { cache_bytes: 16 << 20, commit_interval: Duration::from_secs(3600) }
}

fn layout() -> Layout {
    Layout::for_size(VOLUME_BYTES).expect("layout")
}

fn block_of(image: &[u8], addr: u64) -> &[u8] {
    &image[addr as usize * BLOCK_SIZE..(addr as usize + 1) * BLOCK_SIZE]
}

fn put_block(image: &mut [u8], addr: BlockAddr, block: &[u8]) {
    let at = addr.byte_offset() as usize;
    image[at..at + BLOCK_SIZE].copy_from_slice(block);
}

fn try_open(image: Vec<u8>) -> (Arc<SimStorage>, Result<Engine<Arc<SimStorage>>, EngineError>) {
    let sim = Arc::new(SimStorage::from_image(image));
    let engine = Engine::open(Arc::clone(&sim), Arc::new(FixedClock), options());
    (sim, engine)
}

/// 2^40 blocks is 4 PiB; 2^52 + n blocks is 2^64 + 4096 n bytes, which wraps to the device's own
/// size in 64-bit arithmetic. Sizing the allocator by either would take terabytes.
#[test]
fn mount_refuses_a_block_count_beyond_the_device() {
    let device_blocks = VOLUME_BYTES / BLOCK_SIZE as u64;
    for block_count in [1u64 << 40, (1 << 52) + device_blocks] {
        let mut image = fresh_image();
        common::rewrite_superblocks(&mut image, |sb| {
            let layout = Layout::for_block_count(block_count, sb.journal_blocks).expect("a layout for the count");
            (sb.block_count, sb.bitmap_start, sb.bitmap_blocks) =
                (block_count, layout.bitmap_start, layout.bitmap_blocks);
        });
        let before = image.clone();
        let (sim, result) = try_open(image);
        let Err(error) = result else { panic!("block count {block_count}: the engine opened the volume") };
        let text = error.to_string();
        assert!(
            text.contains(&block_count.to_string()) && text.contains(&device_blocks.to_string()),
            "block count {block_count}: the refusal does not give both sizes: {text}"
        );
        assert!(sim.image() == before, "block count {block_count}: the refused mount wrote to the device");
    }
}

/// Writes one committed transaction at the journal's tail holding `block` as the image of `home`,
/// and marks the volume mounted, as a crash before the checkpoint leaves it.
fn journal_image(image: &mut [u8], home: u64, block: &[u8]) {
    let slot = SUPERBLOCK_SLOTS[0];
    let sb = Superblock::decode(block_of(image, slot.0), slot).expect("a valid slot");
    let region = JournalRegion { start: sb.journal_start, blocks: sb.journal_blocks, volume_id: sb.volume_id() };
    let images = [Image { home: BlockAddr(home), block }];
    for (addr, block) in journal::encode_transaction(&region, sb.journal_tail, sb.journal_tail_seq, &images) {
        put_block(image, addr, &block);
    }
    common::rewrite_superblocks(image, |sb| sb.state = VolumeState::Mounted);
}

/// The tree root leaf of `image`, sealed as the next transaction would seal it.
fn tree_root_image(image: &[u8]) -> Vec<u8> {
    let mut leaf = block_of(image, layout().tree_root.0).to_vec();
    block::seal(&mut leaf, 1);
    leaf
}

#[test]
fn mount_refuses_a_journal_image_whose_home_is_not_a_metadata_block() {
    let layout = layout();
    let clean = fresh_image();
    let leaf = tree_root_image(&clean);
    // The control: the same transaction with its proper home is replayed.
    let mut control = clean.clone();
    journal_image(&mut control, layout.tree_root.0, &leaf);
    let (_sim, opened) = try_open(control);
    let engine = opened.unwrap_or_else(|error| panic!("the control transaction did not replay: {error}"));
    engine.close().expect("close");

    let ring_image = layout.journal_start.0 + 1;
    let cases = [
        (0, "a superblock slot"),
        (1, "a superblock slot"),
        (layout.journal_start.0, "a block of the journal"),
        (layout.bitmap_start.0 - 1, "a block of the journal"),
        (layout.block_count, "outside the volume"),
        (u64::MAX / 4096 + 1, "outside the volume"),
    ];
    for (home, what) in cases {
        let mut crafted = clean.clone();
        journal_image(&mut crafted, home, &leaf);
        let before = crafted.clone();
        let (sim, opened) = try_open(crafted);
        let Err(error) = opened else { panic!("home {home}: the engine replayed the transaction") };
        assert!(matches!(error, EngineError::Corrupt(_)), "home {home}: {error}");
        let text = error.to_string();
        assert!(text.contains(&format!("block {ring_image}:")), "home {home}: the ring block is not named: {text}");
        assert!(text.contains(&format!("home block {home}")) && text.contains(what), "home {home}: {text}");
        assert!(sim.image() == before, "home {home}: the refused replay wrote to the device");
    }
}

#[test]
fn mount_refuses_a_journal_image_that_is_not_the_block_it_names() {
    let layout = layout();
    let clean = fresh_image();
    // The tree root's image filed under the volume root's address: a valid tag, a wrong block.
    let mut crafted = clean.clone();
    journal_image(&mut crafted, vexfs_format::mkfs::ROOT_BLOCK.0, &tree_root_image(&clean));
    let before = crafted.clone();
    let (sim, opened) = try_open(crafted);
    let Err(error) = opened else { panic!("the engine replayed a misfiled image") };
    assert!(matches!(error, EngineError::Corrupt(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains(&layout.tree_root.to_string()), "the misfiled block is not named: {text}");
    assert!(sim.image() == before, "the refused replay wrote to the device");
}

const CREDS: Creds = Creds { uid: 0, gid: 0 };
/// Bytes of the file the extent tests craft: three blocks, one extent.
const FILE_BYTES: usize = 3 * BLOCK_SIZE;

fn open(image: Vec<u8>) -> (Arc<SimStorage>, Engine<Arc<SimStorage>>) {
    let (sim, opened) = try_open(image);
    (sim, opened.unwrap_or_else(|error| panic!("open the volume: {error}")))
}

/// A volume whose root directory holds `f` (three blocks of data, one extent, in the tree root
/// leaf) and, with `more_files`, that many empty files besides (enough splits the root).
fn volume_with_file(more_files: usize) -> (Vec<u8>, u64) {
    let (sim, engine) = open(fresh_image());
    let handle = engine.handle();
    let ino = handle.mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, CREDS).expect("create").ino;
    let data: Vec<u8> = (0..FILE_BYTES).map(|_| Rng(7).next() as u8).collect();
    handle.write(ino, 0, &data).expect("write");
    for index in 0..more_files {
        handle.mknod(ROOT_INO, format!("more-{index}").as_bytes(), libc::S_IFREG | 0o644, 0, CREDS).expect("create");
    }
    engine.close().expect("close");
    (sim.image(), ino)
}

/// Rewrites block `addr` of `image` through `change`, sealed again as a checkpoint would.
fn rewrite_block(image: &mut [u8], addr: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let mut block = block_of(image, addr).to_vec();
    let generation = MetaHeader::read(&block).generation.get();
    change(&mut block);
    block::seal(&mut block, generation);
    put_block(image, BlockAddr(addr), &block);
}

/// Rebuilds the tree root leaf of `image` with its items passed through `change`.
fn rewrite_root_leaf(image: &mut [u8], change: impl FnOnce(&mut Vec<(Key, Vec<u8>)>)) {
    let root = layout().tree_root;
    rewrite_block(image, root.0, |block| {
        let leaf = LeafRef::parse(block, root).expect("the tree root is one leaf");
        let mut items: Vec<(Key, Vec<u8>)> = leaf.items().map(|item| (item.key, item.value.to_vec())).collect();
        change(&mut items);
        items.sort_by_key(|(key, _)| *key);
        let borrowed: Vec<(Key, &[u8])> = items.iter().map(|(key, value)| (*key, &value[..])).collect();
        *block = node::build_leaf(root, &borrowed).expect("the items fit");
    });
}

/// Replaces the file's one extent item (at file block 0) by `extent` at file block `offset`.
fn craft_extent(image: &mut [u8], ino: u64, offset: u64, extent: Extent) {
    rewrite_root_leaf(image, |items| {
        let at = items.iter().position(|(key, _)| *key == Key::new(ino, ItemKind::Extent, 0)).expect("the extent");
        items[at] = (Key::new(ino, ItemKind::Extent, offset), extent.encode().to_vec());
    });
}

fn assert_corrupt_naming<T>(result: Result<T, EngineError>, block: u64, what: &str) {
    let Err(error) = result else { panic!("{what}: succeeded on a crafted volume") };
    assert!(matches!(error, EngineError::Corrupt(_)), "{what}: {error}");
    assert_eq!(error.errno(), libc::EIO, "{what}: {error}");
    let text = error.to_string();
    assert!(text.contains(&format!("block {block}:")), "{what}: the error does not name block {block}: {text}");
}

/// Every file operation that meets the extent fails naming the leaf; nothing reaches the device.
/// An extent far along the file is met only by the operations that look that far (`far`).
fn assert_extent_refused(handle: &EngineHandle<Arc<SimStorage>>, sim: &SimStorage, ino: u64, far: bool, what: &str) {
    let leaf = layout().tree_root.0;
    let before = sim.image();
    if !far {
        assert_corrupt_naming(handle.read(ino, 0, FILE_BYTES as u32), leaf, &format!("{what}: read"));
        assert_corrupt_naming(handle.write(ino, 0, &[1; 100]), leaf, &format!("{what}: write"));
        assert_corrupt_naming(handle.write(ino, FILE_BYTES as u64, &[1; 100]), leaf, &format!("{what}: append"));
        assert_corrupt_naming(handle.fallocate(ino, 0, 1 << 20, 0), leaf, &format!("{what}: fallocate"));
    }
    assert_corrupt_naming(handle.truncate(ino, 10), leaf, &format!("{what}: truncate"));
    handle.sync().expect("sync after refused operations");
    assert!(sim.image() == before, "{what}: a refused operation wrote to the device");
}

#[test]
fn an_extent_outside_the_data_area_is_a_corruption_error_naming_its_leaf() {
    let (clean, ino) = volume_with_file(0);
    let layout = layout();
    let extent = |start, length| Extent { start, length, flags: 0 };
    let cases = [
        ("a superblock slot", 0, extent(0, 3)),
        ("the journal", 0, extent(layout.journal_start.0, 3)),
        ("the bitmap", 0, extent(layout.bitmap_start.0, 1)),
        ("the tree root", 0, extent(layout.tree_root.0, 1)),
        ("past the end", 0, extent(layout.block_count - 1, 3)),
        ("past the device, wrapping to the journal when multiplied out", 0, extent((1 << 52) + 3, 3)),
        ("a start whose sum wraps", 0, extent(u64::MAX - 1, 3)),
        ("file blocks past the largest file", FILE_BLOCKS_MAX - 1, extent(layout.first_free.0, 3)),
        ("file blocks whose sum wraps", u64::MAX - 1, extent(layout.first_free.0, 3)),
    ];
    for (what, offset, crafted) in cases {
        let mut image = clean.clone();
        craft_extent(&mut image, ino, offset, crafted);
        let (sim, engine) = open(image);
        assert_extent_refused(&engine.handle(), &sim, ino, offset != 0, what);
    }
}

#[test]
fn a_tree_pointer_outside_the_tree_area_is_a_corruption_error_naming_it() {
    let (clean, _) = volume_with_file(300);
    let layout = layout();
    let root = layout.tree_root;
    let entries: Vec<(Key, BlockAddr)> = {
        let internal = InternalRef::parse(block_of(&clean, root.0), root).expect("300 files split the root");
        internal.entries().collect()
    };
    let level = InternalRef::parse(block_of(&clean, root.0), root).expect("internal").level();
    // The names sort before the file inodes, under children whose pointers are crafted.
    let names: Vec<String> = (0..300).map(|index| format!("more-{index}")).collect();
    // Block 0 the node format itself refuses; the rest only the layout can.
    for target in
        [1, layout.journal_start.0 + 2, layout.bitmap_start.0, layout.block_count + 5, (1 << 52) + 3, u64::MAX]
    {
        let mut image = clean.clone();
        rewrite_block(&mut image, root.0, |block| {
            // The last child keeps its pointer: it holds the orphan list, which mount reads.
            let last = entries.len() - 1;
            let crafted: Vec<(Key, BlockAddr)> = entries
                .iter()
                .enumerate()
                .map(|(index, &(key, child))| (key, if index < last { BlockAddr(target) } else { child }))
                .collect();
            node::build_internal_into(block, root, level, &crafted).expect("entries fit");
        });
        let (sim, engine) = open(image);
        let handle = engine.handle();
        let before = sim.image();
        for name in names.iter().step_by(37) {
            assert_corrupt_naming(handle.lookup(ROOT_INO, name.as_bytes()), target, &format!("pointer to {target}"));
        }
        let created = handle.mknod(ROOT_INO, b"new", libc::S_IFREG | 0o644, 0, CREDS);
        assert_corrupt_naming(created, target, &format!("create under a pointer to {target}"));
        handle.sync().expect("sync after refused operations");
        assert!(sim.image() == before, "pointer to {target}: a refused operation wrote to the device");
    }
}

#[test]
fn a_bitmap_that_marks_a_fixed_region_free_is_refused_when_allocating() {
    let layout = layout();
    let mut image = fresh_image();
    // The journal's blocks marked free and every allocatable block marked in use: the only free
    // blocks the bitmap offers are the journal's.
    rewrite_block(&mut image, layout.bitmap_start.0, |block| {
        let bits = bitmap::bits_mut(block);
        for volume_block in layout.journal_start.0..layout.journal_start.0 + layout.journal_blocks {
            bitmap::set(bits, volume_block as usize, false);
        }
        for volume_block in layout.first_free.0..layout.block_count {
            bitmap::set(bits, volume_block as usize, true);
        }
    });
    let (sim, engine) = open(image);
    let handle = engine.handle();
    let ino = handle.mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, CREDS).expect("create").ino;
    let before = sim.image();
    assert_corrupt_naming(handle.write(ino, 0, &[7; 3 * BLOCK_SIZE]), layout.bitmap_start.0, "write");
    assert_corrupt_naming(handle.fallocate(ino, 0, 1 << 20, 0), layout.bitmap_start.0, "fallocate");
    assert!(sim.image() == before, "a refused allocation wrote to the device");
}

/// One way of writing file data, on a file of [`FILE_BYTES`].
type WritePath = fn(&EngineHandle<Arc<SimStorage>>, u64) -> Result<(), EngineError>;

fn assert_read_only<T: std::fmt::Debug>(result: Result<T, EngineError>, what: &str) {
    match result {
        Err(EngineError::Failed) => {}
        other => panic!("{what} after a failed data write: {other:?}, expected EROFS"),
    }
}

/// Goal: a data write the device fails latches the engine read-only exactly as a failed commit
/// does, whichever path wrote the data; what was synced before stays readable and reopens.
/// Method: one transient device error (only that write fails, later ones would succeed) during
/// `write`, `write_blocks` and a shrinking `truncate` (which zeroes the tail of the new last
/// block), each on a fresh engine; then every write, create and sync gives EROFS (as every
/// change does until the volume is reopened) while lookups, attributes and reads are served, and
/// the volume reopens as it was synced.
#[test]
fn a_failed_data_write_latches_the_engine_read_only() {
    let (clean, ino) = volume_with_file(0);
    let paths: [(&str, WritePath); 4] = [
        ("write over data", |handle, ino| handle.write(ino, 100, &[3; 5000]).map(drop)),
        ("write into a hole", |handle, ino| handle.write(ino, 1 << 20, &[3; 5000]).map(drop)),
        ("write_blocks", |handle, ino| {
            let mut buf = handle.block_buffer(BLOCK_SIZE);
            buf.fill(0);
            handle.write_blocks(ino, FILE_BYTES as u64, &[&buf[..]], FILE_BYTES as u64 + 1).map(drop)
        }),
        ("truncate into a block", |handle, ino| handle.truncate(ino, 100)),
    ];
    for (what, path) in paths {
        let (sim, engine) = open(clean.clone());
        let handle = engine.handle();
        let (read, range) = handle.read(ino, 0, FILE_BYTES as u32).expect("read");
        let synced = read[range].to_vec();
        sim.fail_one_write_after(0);
        let error = path(&handle, ino).expect_err(what);
        assert_eq!(error.errno(), libc::EIO, "{what}: {error}");
        assert_read_only(handle.write(ino, 0, &[4; 10]), what);
        assert_read_only(handle.mknod(ROOT_INO, b"g", libc::S_IFREG | 0o644, 0, CREDS), what);
        assert_read_only(handle.truncate(ino, 0), what);
        assert_read_only(handle.sync(), what);
        // Read-only, not closed: what changes nothing is still served.
        assert_eq!(handle.getattr(ino).expect("getattr after the latch").record.size, FILE_BYTES as u64, "{what}");
        assert!(handle.lookup(ROOT_INO, b"g").is_err_and(|e| matches!(e, EngineError::NotFound)), "{what}");
        let (read, range) = handle.read(ino, 0, 4096).expect("a read after the latch");
        assert_eq!(range.len(), 4096, "{what}");
        drop(read);
        drop(engine);
        let (_, reopened) = open(sim.image());
        let attr = reopened.handle().getattr(ino).expect("getattr");
        assert_eq!(attr.record.size, FILE_BYTES as u64, "{what}: the failed write changed the size");
        let (read, range) = reopened.handle().read(ino, 0, FILE_BYTES as u32).expect("read");
        if what != "write over data" {
            // An overwrite in place may have reached some of its blocks before the failure.
            assert_eq!(read[range].to_vec(), synced, "{what}: the synced data changed");
        }
    }
}
