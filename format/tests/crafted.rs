//! fsck over crafted images: volumes whose bytes were written to mislead the reader, with valid
//! checksums (crc32c is no defence against someone who means it).
//!
//! Goal: every count, address and length fsck reads is checked against the volume layout and the
//! device before it sizes an allocation or names a block to read: a crafted image is refused or
//! reported, naming the block, in bounded time and memory, and never panics.
//!
//! Method: build a small volume in memory from mkfs's blocks (a one-leaf tree holding the root
//! directory and one regular file with one extent), change one thing, and run `fsck::check`. A
//! test that regressed would allocate terabytes (the process aborts) or report nothing.

use vexfs_format::bitmap;
use vexfs_format::block::{self, BlockAddr, BLOCK_SIZE, BLOCK_SIZE_U64};
use vexfs_format::fsck::{self, FsckError, Report};
use vexfs_format::inode::{file_type, InodeRecord, Timestamp, DIR_FIRST_INDEX, ROOT_INO};
use vexfs_format::items::{self, DirEntry, Extent, FILE_BLOCKS_MAX};
use vexfs_format::journal::{self, Image, JournalRegion};
use vexfs_format::key::{ItemKind, Key};
use vexfs_format::mkfs::{self, Layout, MkfsParams, MIN_BLOCKS, ROOT_BLOCK};
use vexfs_format::node;
use vexfs_format::root::VolumeRoot;
use vexfs_format::superblock::{Superblock, VolumeState, SUPERBLOCK_SLOTS};
use vexfs_format::FormatError;

const VOLUME_BYTES: u64 = MIN_BLOCKS * BLOCK_SIZE_U64;
const FILE: u64 = 16;
const NOW: Timestamp = Timestamp { sec: 1_700_000_000, nsec: 0 };

fn layout() -> Layout {
    Layout::for_size(VOLUME_BYTES).expect("layout")
}

/// The items of a volume whose root directory holds one file, `f`, with one data block.
fn items(extent: Extent) -> Vec<(Key, Vec<u8>)> {
    let root = InodeRecord {
        mode: file_type::DIRECTORY | 0o755,
        nlink: 2,
        size: 1,
        dir_next_index: DIR_FIRST_INDEX + 1,
        parent: ROOT_INO,
        ..InodeRecord::default()
    };
    let file = InodeRecord { mode: file_type::REGULAR | 0o644, nlink: 1, size: 4096, blocks: 1, ..Default::default() };
    let dtype = file_type::dirent_type(file.mode);
    let entry = DirEntry { child: FILE, index: DIR_FIRST_INDEX, dtype, name: b"f".to_vec() };
    let mut items = vec![
        (Key::new(ROOT_INO, ItemKind::Inode, 0), root.encode().to_vec()),
        (Key::new(ROOT_INO, ItemKind::DirEntry, items::name_hash(b"f")), items::encode_dir_entries(&[entry])),
        (Key::new(ROOT_INO, ItemKind::DirIndex, DIR_FIRST_INDEX), items::encode_dir_index(FILE, dtype, b"f")),
        (Key::new(FILE, ItemKind::Inode, 0), file.encode().to_vec()),
        (Key::new(FILE, ItemKind::Extent, 0), extent.encode().to_vec()),
    ];
    items.sort_by_key(|(key, _)| *key);
    items
}

fn good_extent() -> Extent {
    Extent { start: layout().first_free.0, length: 1, flags: 0 }
}

/// mkfs's blocks, then a one-leaf tree of `items` with the counters and bitmap of one data block.
fn image(items: &[(Key, Vec<u8>)]) -> Vec<u8> {
    let params = MkfsParams { size_bytes: VOLUME_BYTES, uuid: [6; 16], now: NOW, label: "x", uid: 0, gid: 0 };
    let (layout, blocks) = mkfs::plan(&params).expect("mkfs");
    let mut image = vec![0u8; VOLUME_BYTES as usize];
    for (addr, block) in blocks {
        put_block(&mut image, addr, &block);
    }
    let borrowed: Vec<(Key, &[u8])> = items.iter().map(|(key, value)| (*key, &value[..])).collect();
    let mut leaf = node::build_leaf(layout.tree_root, &borrowed).expect("the items fit one leaf");
    block::seal(&mut leaf, 0);
    put_block(&mut image, layout.tree_root, &leaf);
    let used = layout.first_free.0 + 1;
    let root = VolumeRoot {
        tree_root: layout.tree_root,
        next_ino: FILE + 1,
        inode_count: 2,
        free_blocks: layout.block_count - used,
        next_generation: 1,
        collection_root: 0,
        index_root: 0,
    };
    let mut root_block = root.build(ROOT_BLOCK);
    block::seal(&mut root_block, 0);
    put_block(&mut image, ROOT_BLOCK, &root_block);
    let mut bitmap_block = bitmap::build(0, layout.bitmap_start, layout.block_count, used);
    block::seal(&mut bitmap_block, 0);
    put_block(&mut image, layout.bitmap_start, &bitmap_block);
    image
}

fn put_block(image: &mut [u8], addr: BlockAddr, block: &[u8]) {
    let at = addr.byte_offset() as usize;
    image[at..at + BLOCK_SIZE].copy_from_slice(block);
}

/// Rewrites both superblock slots through `change`, with valid checksums.
fn rewrite_superblocks(image: &mut [u8], change: impl Fn(&mut Superblock)) {
    for addr in SUPERBLOCK_SLOTS {
        let at = addr.byte_offset() as usize;
        let mut sb = Superblock::decode(&image[at..at + BLOCK_SIZE], addr).expect("a valid slot");
        change(&mut sb);
        image[at..at + BLOCK_SIZE].copy_from_slice(&sb.encode());
    }
}

/// A superblock claiming `block_count` blocks, with the region fields that count implies, so that
/// it decodes: only the device size can tell it is false.
fn claim_block_count(sb: &mut Superblock, block_count: u64) {
    let layout = Layout::for_block_count(block_count, sb.journal_blocks).expect("a layout for the count");
    sb.block_count = block_count;
    sb.bitmap_start = layout.bitmap_start;
    sb.bitmap_blocks = layout.bitmap_blocks;
}

fn check(image: &[u8]) -> Result<Report, FsckError<String>> {
    let mut read = |addr: BlockAddr, buf: &mut [u8]| -> Result<(), String> {
        let at = usize::try_from(addr.byte_offset()).map_err(|e| e.to_string())?;
        let block = image.get(at..at + BLOCK_SIZE).ok_or_else(|| format!("block {addr} is past the end"))?;
        buf.copy_from_slice(block);
        Ok(())
    };
    fsck::check(&mut read, image.len() as u64)
}

fn report(image: &[u8]) -> Report {
    check(image).unwrap_or_else(|error| panic!("fsck could not run: {error}"))
}

#[test]
fn the_starting_volume_is_clean() {
    let report = report(&image(&items(good_extent())));
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.stats.data_blocks, 1);
}

/// 2^40 blocks is 4 PiB; 2^52 + n blocks is 2^64 + 4096 n bytes, which wraps to the device's own
/// size in 64-bit arithmetic. Checking either by allocating would take terabytes.
#[test]
fn a_block_count_beyond_the_device_is_refused_with_both_numbers() {
    let device_blocks = VOLUME_BYTES / BLOCK_SIZE_U64;
    for block_count in [1u64 << 40, (1 << 52) + device_blocks, u64::MAX - 1] {
        let mut crafted = image(&items(good_extent()));
        rewrite_superblocks(&mut crafted, |sb| claim_block_count(sb, block_count));
        let error = check(&crafted).expect_err("fsck accepted a volume larger than its device");
        match &error {
            FsckError::Truncated(FormatError::LargerThanDevice { block_count: said, device_blocks: held, .. }) => {
                assert_eq!((*said, *held), (block_count, device_blocks));
            }
            other => panic!("block count {block_count}: expected a refusal for size, got {other}"),
        }
        let text = error.to_string();
        assert!(
            text.contains(&block_count.to_string()) && text.contains(&device_blocks.to_string()),
            "the message does not give both sizes: {text}"
        );
    }
}

/// Writes one committed transaction at the journal's tail holding `block` as the image of `home`,
/// and marks the volume mounted (a crash left the transaction to replay).
fn journal_image(image: &mut [u8], home: u64, block: &[u8]) {
    let at = SUPERBLOCK_SLOTS[0].byte_offset() as usize;
    let sb = Superblock::decode(&image[at..at + BLOCK_SIZE], SUPERBLOCK_SLOTS[0]).expect("a valid slot");
    let region = JournalRegion { start: sb.journal_start, blocks: sb.journal_blocks, volume_id: sb.volume_id() };
    let images = [Image { home: BlockAddr(home), block }];
    for (addr, block) in journal::encode_transaction(&region, sb.journal_tail, sb.journal_tail_seq, &images) {
        put_block(image, addr, &block);
    }
    rewrite_superblocks(image, |sb| sb.state = VolumeState::Mounted);
}

/// The tree root leaf of `image`, sealed as the next transaction would seal it.
fn tree_root_image(image: &[u8]) -> Vec<u8> {
    let at = layout().tree_root.byte_offset() as usize;
    let mut block = image[at..at + BLOCK_SIZE].to_vec();
    block::seal(&mut block, 1);
    block
}

#[test]
fn a_journal_image_home_outside_the_metadata_blocks_is_reported_and_not_replayed() {
    let layout = layout();
    let clean = image(&items(good_extent()));
    let leaf = tree_root_image(&clean);
    // The control: the same transaction with a proper home replays clean.
    let mut control = clean.clone();
    journal_image(&mut control, layout.tree_root.0, &leaf);
    let replayed = report(&control);
    assert!(replayed.is_clean(), "{:?}", replayed.problems);
    assert_eq!(replayed.stats.journal_transactions, 1);

    let ring_image = layout.journal_start.0 + 1;
    let cases = [
        (0, "a superblock slot"),
        (1, "a superblock slot"),
        (layout.journal_start.0 + 7, "a block of the journal"),
        (layout.block_count, "outside the volume"),
        (u64::MAX, "outside the volume"),
    ];
    for (home, what) in cases {
        let mut crafted = clean.clone();
        journal_image(&mut crafted, home, &leaf);
        let found = report(&crafted);
        let named = found.problems.iter().find(|problem| problem.block == Some(ring_image));
        let Some(problem) = named else { panic!("home {home}: the ring block is not named: {:?}", found.problems) };
        assert!(problem.what.contains(&format!("home block {home}")) && problem.what.contains(what), "{problem}");
    }
}

#[test]
fn an_extent_outside_the_data_area_is_reported_naming_its_leaf() {
    let layout = layout();
    let extent = |start, length| Extent { start, length, flags: 0 };
    let cases = [
        ("a superblock slot", 0, extent(0, 1)),
        ("the journal", 0, extent(layout.journal_start.0, 1)),
        ("the tree root", 0, extent(layout.tree_root.0, 1)),
        ("past the end", 0, extent(layout.block_count - 1, 2)),
        ("a start whose sum wraps", 0, extent(u64::MAX - 1, 3)),
        ("file blocks past the largest file", FILE_BLOCKS_MAX - 1, extent(layout.first_free.0, 2)),
        ("file blocks whose sum wraps", u64::MAX - 1, extent(layout.first_free.0, 3)),
    ];
    for (what, offset, crafted) in cases {
        let mut crafted_items = items(crafted);
        for (key, value) in &mut crafted_items {
            if key.kind == ItemKind::Extent as u8 {
                (*key, *value) = (Key::new(FILE, ItemKind::Extent, offset), crafted.encode().to_vec());
            }
        }
        crafted_items.sort_by_key(|(key, _)| *key);
        let found = report(&image(&crafted_items));
        let named = found.problems.iter().find(|problem| problem.block == Some(layout.tree_root.0));
        let Some(problem) = named else { panic!("{what}: the leaf is not named: {:?}", found.problems) };
        assert_eq!(problem.ino, Some(FILE), "{what}: {problem}");
        assert!(problem.what.contains(&format!("extent at file block {offset}")), "{what}: {problem}");
    }
}
