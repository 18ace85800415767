//! fsck over vector collections (format version 2).
//!
//! Goal: a volume with a collection, its shard inode and a log of records checks clean, and each
//! way of breaking one of the collection rules in `docs/FORMAT.md` ("Collections") is reported
//! as the problem it is, naming the inode.
//!
//! Method: build a small volume in memory from mkfs's blocks, replacing the root leaf, volume
//! root and bitmap with ones describing a chosen set of items and data blocks (a one-leaf tree,
//! no journal), then run `fsck::check` over it. Each test starts from the same clean volume and
//! changes one thing.

use vexfs_format::bitmap;
use vexfs_format::block::{self, BlockAddr, BLOCK_SIZE};
use vexfs_format::collection::{self, AttrValue, CollectionRecord, ElemType, Metric};
use vexfs_format::fsck::{self, Report};
use vexfs_format::inode::{
    file_type, InodeRecord, Timestamp, DIR_FIRST_INDEX, INODE_FLAG_ORPHAN, INODE_FLAG_SHARD, ROOT_INO,
};
use vexfs_format::items::{self, DirEntry, Extent};
use vexfs_format::key::{ItemKind, Key, ORPHAN_OBJECT};
use vexfs_format::mkfs::{self, Layout, MkfsParams, MIN_BLOCKS, ROOT_BLOCK};
use vexfs_format::node;
use vexfs_format::root::VolumeRoot;
use vexfs_format::superblock::{Superblock, SUPERBLOCK_SLOTS};

const VOLUME_BYTES: u64 = MIN_BLOCKS * BLOCK_SIZE as u64;
const DIR: u64 = 16;
const SHARD: u64 = 17;
const DIM: u32 = 2;
const NOW: Timestamp = Timestamp { sec: 1_700_000_000, nsec: 0 };

/// A volume described by its items and the data blocks its extents point at.
#[derive(Clone)]
struct Volume {
    format_version: u32,
    items: Vec<(Key, Vec<u8>)>,
    /// (block offset from the first allocatable block, contents).
    data: Vec<(u64, Vec<u8>)>,
}

impl Volume {
    /// The clean starting point: `/c` is a collection of one shard holding `log`.
    fn with_log(log: Vec<u8>) -> Volume {
        let mut volume = Volume { format_version: 2, items: Vec::new(), data: Vec::new() };
        let root = InodeRecord { nlink: 3, size: 1, dir_next_index: DIR_FIRST_INDEX + 1, ..directory(ROOT_INO) };
        volume.put(Key::new(ROOT_INO, ItemKind::Inode, 0), root.encode().to_vec());
        volume.entry(ROOT_INO, b"c", DIR, file_type::DIRECTORY, DIR_FIRST_INDEX);
        volume.put(Key::new(DIR, ItemKind::Inode, 0), directory(ROOT_INO).encode().to_vec());
        volume.set_collection(&[SHARD]);
        volume.file(SHARD, INODE_FLAG_SHARD, 0, log);
        volume
    }

    fn clean() -> Volume {
        Volume::with_log(two_records())
    }

    fn put(&mut self, key: Key, value: Vec<u8>) {
        self.items.retain(|(other, _)| *other != key);
        self.items.push((key, value));
    }

    fn remove(&mut self, key: Key) {
        self.items.retain(|(other, _)| *other != key);
    }

    fn set_collection(&mut self, shards: &[u64]) {
        let record =
            CollectionRecord { dim: DIM, metric: Metric::L2, elem: ElemType::F32, shards: shards.to_vec(), text: None };
        self.put(Key::new(DIR, ItemKind::Collection, 0), collection::encode_collection(&record));
    }

    fn entry(&mut self, dir: u64, name: &[u8], child: u64, mode: u32, index: u64) {
        let dtype = file_type::dirent_type(mode);
        let entry = DirEntry { child, index, dtype, name: name.to_vec() };
        self.put(Key::new(dir, ItemKind::DirEntry, items::name_hash(name)), items::encode_dir_entries(&[entry]));
        self.put(Key::new(dir, ItemKind::DirIndex, index), items::encode_dir_index(child, dtype, name));
    }

    /// A regular file `ino` with `flags` and `contents` in data block `block`.
    fn file(&mut self, ino: u64, flags: u32, block: u64, contents: Vec<u8>) {
        let record = InodeRecord {
            mode: file_type::REGULAR | 0o600,
            flags,
            nlink: 1,
            size: contents.len() as u64,
            blocks: 1,
            ..InodeRecord::default()
        };
        self.put(Key::new(ino, ItemKind::Inode, 0), record.encode().to_vec());
        let layout = layout();
        let extent = Extent { start: layout.first_free.0 + block, length: 1, flags: 0 };
        self.put(Key::new(ino, ItemKind::Extent, 0), extent.encode().to_vec());
        self.data.retain(|(other, _)| *other != block);
        self.data.push((block, contents));
    }

    fn inode(&self, ino: u64) -> InodeRecord {
        let (_, value) = self.items.iter().find(|(key, _)| *key == Key::new(ino, ItemKind::Inode, 0)).expect("inode");
        InodeRecord::decode(value, ino, 0).expect("a valid inode")
    }

    fn edit_inode(&mut self, ino: u64, edit: impl FnOnce(&mut InodeRecord)) {
        let mut record = self.inode(ino);
        edit(&mut record);
        self.put(Key::new(ino, ItemKind::Inode, 0), record.encode().to_vec());
    }

    /// The device image: mkfs's blocks, then a one-leaf tree of the items, the counters and
    /// bitmap that match, and the data blocks.
    fn image(&self) -> Vec<u8> {
        let params = MkfsParams { size_bytes: VOLUME_BYTES, uuid: [5; 16], now: NOW, label: "c", uid: 0, gid: 0 };
        let (layout, blocks) = mkfs::plan(&params).expect("mkfs");
        let mut image = vec![0u8; VOLUME_BYTES as usize];
        let mut write = |addr: BlockAddr, block: &[u8]| {
            let at = addr.byte_offset() as usize;
            image[at..at + BLOCK_SIZE].copy_from_slice(block);
        };
        for (addr, block) in blocks {
            write(addr, &block);
        }
        for (addr, slot) in SUPERBLOCK_SLOTS.iter().zip(0u64..) {
            let mut sb: Superblock = layout.superblock(params.uuid, NOW.sec, params.label);
            (sb.format_version, sb.sequence) = (self.format_version, slot);
            write(*addr, &sb.encode());
        }
        let mut items = self.items.clone();
        items.sort_by_key(|(key, _)| *key);
        let borrowed: Vec<(Key, &[u8])> = items.iter().map(|(key, value)| (*key, &value[..])).collect();
        let mut leaf = node::build_leaf(layout.tree_root, &borrowed).expect("the items fit one leaf");
        block::seal(&mut leaf, 0);
        write(layout.tree_root, &leaf);
        let used = layout.first_free.0 + self.data.iter().map(|(block, _)| block + 1).max().unwrap_or(0);
        let inode_count = items.iter().filter(|(key, _)| key.kind == ItemKind::Inode as u8).count() as u64;
        let highest = items.iter().map(|(key, _)| key.object).filter(|&ino| ino < ORPHAN_OBJECT).max().unwrap_or(0);
        let root = VolumeRoot {
            tree_root: layout.tree_root,
            next_ino: highest + 1,
            inode_count,
            free_blocks: layout.block_count - used,
            next_generation: 1,
            collection_root: 0,
            index_root: 0,
        };
        let mut root_block = root.build(ROOT_BLOCK);
        block::seal(&mut root_block, 0);
        write(ROOT_BLOCK, &root_block);
        let mut bitmap_block = bitmap::build(0, layout.bitmap_start, layout.block_count, used);
        block::seal(&mut bitmap_block, 0);
        write(layout.bitmap_start, &bitmap_block);
        for (block, contents) in &self.data {
            let mut padded = contents.clone();
            padded.resize(BLOCK_SIZE, 0);
            write(BlockAddr(layout.first_free.0 + block), &padded);
        }
        image
    }

    fn check(&self) -> Report {
        let image = self.image();
        let mut read = |addr: BlockAddr, buf: &mut [u8]| -> Result<(), String> {
            let at = addr.byte_offset() as usize;
            let block = image.get(at..at + BLOCK_SIZE).ok_or_else(|| format!("block {addr} is past the end"))?;
            buf.copy_from_slice(block);
            Ok(())
        };
        fsck::check(&mut read, image.len() as u64).unwrap_or_else(|error| panic!("fsck could not run: {error}"))
    }
}

fn layout() -> Layout {
    Layout::for_size(VOLUME_BYTES).expect("layout")
}

fn directory(parent: u64) -> InodeRecord {
    InodeRecord {
        mode: file_type::DIRECTORY | 0o755,
        nlink: 2,
        dir_next_index: DIR_FIRST_INDEX,
        parent,
        atime: NOW,
        mtime: NOW,
        ctime: NOW,
        crtime: NOW,
        ..InodeRecord::default()
    }
}

/// An insert with attributes, then a delete.
fn two_records() -> Vec<u8> {
    let mut log = Vec::new();
    let attrs = vec![vec![("k".to_string(), AttrValue::Int(1))], Vec::new()];
    collection::encode_insert(&mut log, 1, DIM, &[4, 9], &[0.5, 1.5, -2.0, 3.0], &attrs);
    collection::encode_delete(&mut log, 2, &[4]);
    log
}

fn problems(report: &Report) -> Vec<String> {
    report.problems.iter().map(ToString::to_string).collect()
}

/// Asserts that some problem names `ino` and mentions every part of `what`.
fn assert_problem(report: &Report, ino: u64, what: &[&str]) {
    let found = report.problems.iter().any(|p| p.ino == Some(ino) && what.iter().all(|part| p.what.contains(part)));
    assert!(found, "no problem on inode {ino} mentioning {what:?}; problems:\n{}", problems(report).join("\n"));
}

#[test]
fn a_collection_with_a_shard_log_is_clean() {
    let report = Volume::clean().check();
    assert!(report.is_clean(), "{:#?}", problems(&report));
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    let stats = &report.stats;
    assert_eq!((stats.collections, stats.shard_logs, stats.log_records), (1, 1, 2));
    assert_eq!((stats.log_vectors, stats.log_deletes), (2, 1));
    assert_eq!((stats.directories, stats.regular_files), (2, 0), "a shard log is not counted as a file");
}

#[test]
fn a_collection_directory_may_hold_documents() {
    let mut volume = Volume::clean();
    volume.edit_inode(DIR, |dir| (dir.size, dir.dir_next_index) = (1, DIR_FIRST_INDEX + 1));
    volume.entry(DIR, b"doc.txt", 18, file_type::REGULAR, DIR_FIRST_INDEX);
    volume.file(18, 0, 1, b"some text".to_vec());
    let report = volume.check();
    assert!(report.is_clean(), "{:#?}", problems(&report));
    assert_eq!(report.stats.regular_files, 1);
}

#[test]
fn a_corrupt_log_record_is_named_by_collection_shard_and_offset() {
    let log = two_records();
    let (_, first_len) = collection::decode_record(&log, DIM).expect("the first record");
    let mut corrupt = log.clone();
    corrupt[first_len + 70] ^= 0x10;
    let report = Volume::with_log(corrupt).check();
    assert_problem(&report, SHARD, &["collection 16", &format!("record at byte {first_len}"), "checksum"]);
}

#[test]
fn a_record_of_the_wrong_dimension_is_a_problem() {
    let mut log = Vec::new();
    collection::encode_insert(&mut log, 1, DIM + 1, &[1], &[0.0; 3], &[]);
    let report = Volume::with_log(log).check();
    assert_problem(&report, SHARD, &["record at byte 0", "dimension 3, the collection 2"]);
}

#[test]
fn sequence_numbers_must_increase() {
    let mut log = Vec::new();
    collection::encode_delete(&mut log, 5, &[1]);
    collection::encode_delete(&mut log, 5, &[2]);
    let report = Volume::with_log(log).check();
    assert_problem(&report, SHARD, &["record at byte 72", "sequence 5 after 5"]);
}

#[test]
fn ids_must_live_in_their_shard() {
    let mut volume = Volume::clean();
    let mut odd = Vec::new();
    collection::encode_delete(&mut odd, 1, &[3, 4]);
    volume.file(SHARD + 1, INODE_FLAG_SHARD, 1, odd);
    volume.set_collection(&[SHARD, SHARD + 1]);
    // Shard 0 holds ids 4 (fine) and 9 (odd: shard 1's); shard 1 holds 3 (fine) and 4 (shard 0's).
    let report = volume.check();
    assert_problem(&report, SHARD, &["id 9, which belongs to shard 1"]);
    assert_problem(&report, SHARD + 1, &["id 4, which belongs to shard 0"]);
    assert_eq!(report.problems.len(), 2, "{:#?}", problems(&report));
}

#[test]
fn a_log_cut_short_by_a_crash_is_a_note() {
    let log = two_records();
    let cut = log[..log.len() - 8].to_vec();
    let report = Volume::with_log(cut.clone()).check();
    assert!(report.is_clean(), "{:#?}", problems(&report));
    assert!(report.notes.iter().any(|note| note.contains("incomplete record")), "{:?}", report.notes);
    // A log cut inside the first header as well.
    let report = Volume::with_log(log[..40].to_vec()).check();
    assert!(report.is_clean(), "{:#?}", problems(&report));
    assert_eq!(report.stats.log_records, 0);
}

#[test]
fn a_log_longer_than_a_read_checks_clean() {
    // fsck reads a log 1 MiB at a time: a record larger than that, then many records that cross
    // block and read boundaries.
    let mut log = Vec::new();
    let dim = DIM as usize;
    let mut ids_total = 0;
    for (seq, count) in
        [(0u64, 100_000usize), (1, 3), (2, 1000), (3, 5)].into_iter().chain((4..60).map(|seq| (seq, 2000)))
    {
        let ids: Vec<u64> = (0..count as u64).collect();
        let vectors: Vec<f32> = (0..count * dim).map(|i| (i as f32) * 0.25 + seq as f32).collect();
        collection::encode_insert(&mut log, seq, DIM, &ids, &vectors, &[]);
        ids_total += count as u64;
    }
    assert!(log.len() > 2 << 20, "the log spans several reads");
    let blocks = log.len().div_ceil(BLOCK_SIZE) as u32;
    let mut volume = Volume::with_log(Vec::new());
    volume.edit_inode(SHARD, |shard| (shard.size, shard.blocks) = (log.len() as u64, u64::from(blocks)));
    let extent = Extent { start: layout().first_free.0, length: blocks, flags: 0 };
    volume.put(Key::new(SHARD, ItemKind::Extent, 0), extent.encode().to_vec());
    volume.data = log.chunks(BLOCK_SIZE).enumerate().map(|(i, chunk)| (i as u64, chunk.to_vec())).collect();
    let report = volume.check();
    assert!(report.is_clean(), "{:#?}", problems(&report));
    assert_eq!((report.stats.log_records, report.stats.log_vectors), (60, ids_total));
}

#[test]
fn bytes_past_the_last_record_are_corrupt() {
    let mut volume = Volume::clean();
    // The size runs past the log's end into the zeros of its block and a second block that has
    // no extent (a hole, read as zeros).
    volume.edit_inode(SHARD, |shard| shard.size = BLOCK_SIZE as u64 + 8);
    let end = two_records().len();
    assert_problem(&volume.check(), SHARD, &[&format!("record at byte {end}"), "bad magic"]);
}

#[test]
fn a_hole_in_a_log_reads_as_zeros() {
    let mut volume = Volume::clean();
    // The log's data moves to file block 1; file block 0 becomes a hole.
    volume.edit_inode(SHARD, |shard| shard.size += BLOCK_SIZE as u64);
    volume.remove(Key::new(SHARD, ItemKind::Extent, 0));
    let extent = Extent { start: layout().first_free.0, length: 1, flags: 0 };
    volume.put(Key::new(SHARD, ItemKind::Extent, 1), extent.encode().to_vec());
    assert_problem(&volume.check(), SHARD, &["record at byte 0", "bad magic 0x00000000"]);
}

#[test]
fn a_shard_without_the_flag_is_a_problem() {
    let mut volume = Volume::clean();
    volume.edit_inode(SHARD, |shard| shard.flags = 0);
    let report = volume.check();
    assert_problem(&report, DIR, &["names inode 17", "not flagged as a shard log"]);
    assert_problem(&report, SHARD, &["not reachable"]);
}

#[test]
fn a_shard_named_by_no_collection_is_a_problem() {
    let mut volume = Volume::clean();
    volume.file(SHARD + 1, INODE_FLAG_SHARD, 1, two_records());
    let report = volume.check();
    assert_problem(&report, SHARD + 1, &["named by no collection"]);
    assert_eq!(report.problems.len(), 1, "{:#?}", problems(&report));
}

#[test]
fn an_orphaned_shard_of_a_dropped_collection_is_clean() {
    let mut volume = Volume::clean();
    volume.remove(Key::new(DIR, ItemKind::Collection, 0));
    volume.edit_inode(SHARD, |shard| (shard.nlink, shard.flags) = (0, INODE_FLAG_SHARD | INODE_FLAG_ORPHAN));
    volume.put(Key::new(ORPHAN_OBJECT, ItemKind::Orphan, SHARD), Vec::new());
    let report = volume.check();
    assert!(report.is_clean(), "{:#?}", problems(&report));
    assert_eq!((report.stats.collections, report.stats.shard_logs), (0, 1));
}

#[test]
fn a_collection_naming_an_orphan_is_a_problem() {
    let mut volume = Volume::clean();
    volume.edit_inode(SHARD, |shard| (shard.nlink, shard.flags) = (0, INODE_FLAG_SHARD | INODE_FLAG_ORPHAN));
    volume.put(Key::new(ORPHAN_OBJECT, ItemKind::Orphan, SHARD), Vec::new());
    assert_problem(&volume.check(), DIR, &["names inode 17", "orphan"]);
}

#[test]
fn shard_link_rules() {
    let mut volume = Volume::clean();
    volume.edit_inode(SHARD, |shard| shard.nlink = 2);
    assert_problem(&volume.check(), SHARD, &["link count 2, expected 1"]);

    let mut volume = Volume::clean();
    volume.edit_inode(ROOT_INO, |root| (root.size, root.dir_next_index) = (2, DIR_FIRST_INDEX + 2));
    volume.entry(ROOT_INO, b"visible", SHARD, file_type::REGULAR, DIR_FIRST_INDEX + 1);
    assert_problem(&volume.check(), SHARD, &["named by 1 directory entries"]);

    let mut volume = Volume::clean();
    volume.edit_inode(ROOT_INO, |root| (root.nlink, root.size, root.dir_next_index) = (4, 2, DIR_FIRST_INDEX + 2));
    volume.entry(ROOT_INO, b"d", 20, file_type::DIRECTORY, DIR_FIRST_INDEX + 1);
    volume.put(Key::new(20, ItemKind::Inode, 0), directory(ROOT_INO).encode().to_vec());
    let record =
        CollectionRecord { dim: DIM, metric: Metric::Dot, elem: ElemType::F32, shards: vec![SHARD], text: None };
    volume.put(Key::new(20, ItemKind::Collection, 0), collection::encode_collection(&record));
    assert_problem(&volume.check(), SHARD, &["several collections", "[16, 20]"]);

    let mut volume = Volume::clean();
    volume.edit_inode(SHARD, |shard| shard.mode = file_type::SYMLINK | 0o777);
    assert_problem(&volume.check(), SHARD, &["not a regular file"]);
}

#[test]
fn collection_items_only_on_directories() {
    let mut volume = Volume::clean();
    let value = volume.items.iter().find(|(key, _)| key.kind == ItemKind::Collection as u8).expect("item").1.clone();
    volume.remove(Key::new(DIR, ItemKind::Collection, 0));
    volume.put(Key::new(SHARD, ItemKind::Collection, 0), value);
    // The shard names itself now, from a regular file.
    assert_problem(&volume.check(), SHARD, &["not a directory"]);
}

#[test]
fn a_malformed_collection_record_is_a_problem() {
    let mut volume = Volume::clean();
    let key = Key::new(DIR, ItemKind::Collection, 0);
    let mut value = volume.items.iter().find(|(k, _)| *k == key).expect("item").1.clone();
    value[1] = 9;
    volume.put(key, value);
    assert_problem(&volume.check(), DIR, &["collection record", "unknown metric 9"]);
}

#[test]
fn a_version_1_volume_stores_no_collections() {
    let mut volume = Volume::clean();
    volume.format_version = 1;
    let report = volume.check();
    assert_problem(&report, DIR, &["collection item on a format version 1 volume"]);
    assert_problem(&report, SHARD, &["shard log flag on a format version 1 volume"]);
}

#[test]
fn reserved_kinds_stay_refused() {
    let mut volume = Volume::clean();
    volume.put(Key { object: DIR, kind: 65, offset: 0 }, vec![1, 2, 3]);
    assert_problem(&volume.check(), DIR, &["kind 65 is reserved"]);
}
