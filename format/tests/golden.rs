//! Golden images: the bytes of each released format version, kept so that they never change by
//! accident and so that current code keeps opening them.
//!
//! Method: `tests/golden/v<N>/` holds, as annotated hex, byte strings built from fixed inputs (a
//! fixed UUID, label, owner and times; mkfs itself draws nothing at random):
//! - `mkfs.hex`: every block `mkfs::plan` writes for the smallest volume ([`MIN_BLOCKS`]);
//! - `populated.hex`: every non-zero block of that volume after one journaled transaction that
//!   adds a file with written and unwritten extents and an xattr, a directory holding a file
//!   whose xattr lives in an overflow chain, a symlink and an orphan, under a two-level B-tree.
//!   The image is taken after the commit and before the checkpoint, so the new metadata exists
//!   only in the journal and opening the volume needs replay;
//! - `collections.hex` (from version 2, [`FORMAT_VERSION_COLLECTIONS`]): every non-zero block of
//!   that volume holding two vector collections, one of them a text collection with a document,
//!   and their three shard logs (inserts with and without attributes, a delete), written home
//!   directly with an empty journal;
//! - `encodings.hex`: item values, a key, an overflow reference and name hashes from fixed values,
//!   and from version 2 collection records, attributes and shard log records.
//!
//! The `*_unchanged` tests rebuild the bytes with the current encoders and compare them with the
//! files of the current `FORMAT_VERSION`, naming the first differing byte. The `golden_*` tests
//! decode the stored bytes of every version with the current decoders, the way fsck and mount do
//! (superblock slots, journal scan, volume root, bitmap, every B-tree node and overflow chain,
//! every item, every shard log record), check the key facts, and run fsck over each image, which
//! must be clean. A version's files hold what that version defines: the encodings file of version
//! 1 lists the samples of version 1 only.
//!
//! Regenerating: `VEXFS_BLESS=1 cargo test -p vexfs-format --release --test golden` writes the
//! files of the current `FORMAT_VERSION` (the decoding tests may race a first write; run again
//! without the variable to check the new files). The files of a released version must never be
//! blessed again: a deliberate format change bumps `FORMAT_VERSION`, blessing then writes a new
//! `golden/v<N>/`, and the older directories stay and keep being opened.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use vexfs_format::bitmap;
use vexfs_format::block::{self, BlockAddr, BlockKind, PlacedBlock, BLOCK_SIZE};
use vexfs_format::collection::{
    self, AttrValue, Attrs, CollectionRecord, ElemType, LogBody, LogRecord, Metric, TextParams,
};
use vexfs_format::fsck::{self, Report};
use vexfs_format::inode::{
    file_type, InodeRecord, Timestamp, DIR_FIRST_INDEX, FIRST_INO, INODE_FLAG_ORPHAN, INODE_FLAG_SHARD, ROOT_INO,
};
use vexfs_format::items::{self, DirEntry, Extent, Xattr, EXTENT_UNWRITTEN};
use vexfs_format::journal::{self, Image, JournalRegion, Scan};
use vexfs_format::key::{ItemKind, Key, KEY_SIZE, ORPHAN_OBJECT};
use vexfs_format::mkfs::{self, Layout, MkfsParams, MIN_BLOCKS, ROOT_BLOCK};
use vexfs_format::node::{self, Fence, LeafItem, NodeRef, OverflowReader, OverflowRef, INLINE_VALUE_MAX};
use vexfs_format::root::VolumeRoot;
use vexfs_format::superblock::{
    Superblock, VolumeState, FORMAT_VERSION, FORMAT_VERSION_COLLECTIONS, SUPERBLOCK_MAGIC, SUPERBLOCK_SLOTS,
};
use vexfs_format::FormatError;

const BLESS_VAR: &str = "VEXFS_BLESS";
const MKFS_FILE: &str = "mkfs.hex";
const POPULATED_FILE: &str = "populated.hex";
const ENCODINGS_FILE: &str = "encodings.hex";
const COLLECTIONS_FILE: &str = "collections.hex";

const HINT: &str = "The bytes of a released format version must never change. If the format changed on \
purpose, bump FORMAT_VERSION (format/src/superblock.rs) and add a new golden directory: running \
`VEXFS_BLESS=1 cargo test -p vexfs-format --release --test golden` writes format/tests/golden/v<N>/ for \
the current version (regenerating its files), and the older directories keep being checked.";

// Fixed inputs. Every byte of the golden files follows from these and the format crate.
const VOLUME_BYTES: u64 = MIN_BLOCKS * BLOCK_SIZE as u64;
const UUID: [u8; 16] = *b"vexfs-golden-v1!";
const LABEL: &str = "golden";
const OWNER: u32 = 1000;
const MKFS_TIME: Timestamp = Timestamp { sec: 1_700_000_000, nsec: 123_456_789 };
const MOUNT_TIME: i64 = 1_700_000_050;
const FILE_TIME: Timestamp = Timestamp { sec: 1_700_000_100, nsec: 987_654_321 };

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn mkfs_image_is_unchanged() {
    let (layout, blocks) = mkfs::plan(&mkfs_params()).expect("mkfs plan");
    let sections = blocks.into_iter().map(|(addr, bytes)| block_section(addr, mkfs_note(&layout, addr), bytes));
    check_or_bless(MKFS_FILE, MKFS_TITLE, &sections.collect::<Vec<_>>());
}

#[test]
fn populated_image_is_unchanged() {
    check_or_bless(POPULATED_FILE, POPULATED_TITLE, &populated_image());
}

#[test]
fn collections_image_is_unchanged() {
    check_or_bless(COLLECTIONS_FILE, COLLECTIONS_TITLE, &collections_image());
}

#[test]
fn encodings_are_unchanged() {
    let sections: Vec<Section> = samples(FORMAT_VERSION)
        .into_iter()
        .map(|(name, sample)| Section { name: name.to_string(), note: sample.note(), bytes: sample.encode() })
        .collect();
    check_or_bless(ENCODINGS_FILE, ENCODINGS_TITLE, &sections);
}

#[test]
fn golden_mkfs_images_decode_and_check_clean() {
    for version in versions() {
        let device = Device::from_sections(&read_golden(version, MKFS_FILE));
        let volume = decode_volume(&device);
        assert_eq!(device.block(BlockAddr(0))[..8], SUPERBLOCK_MAGIC);
        check_fresh_superblock(&volume.superblock, version);
        assert_eq!(volume.superblock.state, VolumeState::Clean);
        assert_eq!(volume.superblock.sequence, 1, "slot 1 holds the newer mkfs superblock");
        assert!(volume.journal.transactions.is_empty(), "mkfs leaves the journal empty");

        let layout = Layout::for_size(VOLUME_BYTES).expect("layout");
        let free_blocks = layout.block_count - layout.first_free.0;
        let root = VolumeRoot {
            tree_root: layout.tree_root,
            next_ino: FIRST_INO,
            inode_count: 1,
            free_blocks,
            next_generation: 1,
            collection_root: 0,
            index_root: 0,
        };
        assert_eq!(volume.root, root);
        assert_eq!(volume.bitmap_free, free_blocks);
        assert_eq!(volume.tree_blocks, 1, "mkfs writes a one-leaf tree");
        let expected = BTreeMap::from([(inode_key(ROOT_INO), Value::Inode(fresh_root_directory()))]);
        assert_eq!(volume.items, expected);

        let report = fsck_clean(&device, &volume.superblock);
        assert_eq!((report.stats.inodes, report.stats.directories), (1, 1));
        assert_eq!(report.stats.free_blocks, free_blocks);
        assert_eq!(report.stats.journal_transactions, 0);
    }
}

#[test]
fn golden_populated_images_decode_and_check_clean() {
    for version in versions() {
        let device = Device::from_sections(&read_golden(version, POPULATED_FILE));
        let volume = decode_volume(&device);
        check_fresh_superblock(&volume.superblock, version);
        let sb = &volume.superblock;
        assert_eq!(
            (sb.state, sb.sequence, sb.mount_count, sb.last_mount_time),
            (VolumeState::Mounted, 2, 1, MOUNT_TIME)
        );
        assert_eq!(volume.journal.transactions.len(), 1, "committed transactions in the journal");
        let transaction = &volume.journal.transactions[0];
        assert_eq!((transaction.seq, transaction.pos, transaction.images.len()), (TRANSACTION_SEQ, 0, 6));

        let layout = Layout::for_size(VOLUME_BYTES).expect("layout");
        let free_blocks = layout.block_count - layout.first_free.0 - ALLOCATED_BLOCKS;
        assert_eq!((volume.root.inode_count, volume.root.next_ino, volume.root.next_generation), (6, ORPHAN + 1, 6));
        assert_eq!(volume.root.free_blocks, free_blocks);
        assert_eq!(volume.bitmap_free, free_blocks);
        assert_eq!(volume.tree_blocks, 4, "an internal root, two leaves and one overflow block");
        assert_eq!(volume.items, populated_items(&layout).into_iter().collect::<BTreeMap<_, _>>());
        check_hello_contents(&device, &volume);

        let report = fsck_clean(&device, sb);
        let stats = &report.stats;
        assert_eq!((stats.inodes, stats.directories, stats.regular_files, stats.symlinks), (6, 2, 3, 1));
        assert_eq!((stats.data_blocks, stats.tree_blocks, stats.journal_transactions), (4, 4, 1));
        assert_eq!(stats.free_blocks, free_blocks);
        assert!(!report.notes.is_empty(), "fsck notes that the volume needs replay");

        // Replay is idempotent: the volume with the journal applied checks the same.
        let replayed = device.replayed(&volume.region(), &volume.journal);
        assert_eq!(decode_volume(&replayed).items, volume.items);
        assert_eq!(fsck_clean(&replayed, sb).stats, report.stats);
    }
}

#[test]
fn golden_encodings_decode() {
    for version in versions() {
        let path = golden_dir(version).join(ENCODINGS_FILE);
        let stored = read_golden(version, ENCODINGS_FILE);
        let samples = samples(version);
        let names: Vec<&str> = samples.iter().map(|(name, _)| *name).collect();
        let stored_names: Vec<&str> = stored.iter().map(|section| section.name.as_str()).collect();
        assert_eq!(stored_names, names, "{}: the encodings listed differ from the samples", path.display());
        for ((name, sample), section) in samples.iter().zip(&stored) {
            if let Err(what) = sample.decodes_from(&section.bytes) {
                panic!("{}: `{name}` does not decode to its sample: {what}", path.display());
            }
        }
    }
}

#[test]
fn golden_collections_images_decode_and_check_clean() {
    let mut checked = 0;
    for version in versions().filter(|&version| version >= FORMAT_VERSION_COLLECTIONS) {
        checked += 1;
        let device = Device::from_sections(&read_golden(version, COLLECTIONS_FILE));
        let volume = decode_volume(&device);
        check_fresh_superblock(&volume.superblock, version);
        assert_eq!((volume.superblock.state, volume.superblock.sequence), (VolumeState::Clean, 1));
        assert!(volume.journal.transactions.is_empty(), "the image was written home directly");

        let layout = Layout::for_size(VOLUME_BYTES).expect("layout");
        let free_blocks = layout.block_count - layout.first_free.0 - COLLECTION_DATA_BLOCKS;
        assert_eq!(
            (volume.root.inode_count, volume.root.next_ino, volume.root.next_generation),
            (7, TEXT_SHARD + 1, 7)
        );
        assert_eq!((volume.root.free_blocks, volume.bitmap_free), (free_blocks, free_blocks));
        assert_eq!(volume.tree_blocks, 1, "one leaf holds every item");
        assert_eq!(volume.items, collection_items(&layout).into_iter().collect::<BTreeMap<_, _>>());
        for (ino, dim, records) in golden_logs() {
            let log = file_contents(&device, &volume.items, ino);
            assert_eq!(decode_log(&log, dim), records, "shard log {ino}");
        }
        assert_eq!(file_contents(&device, &volume.items, DOCUMENT), DOCUMENT_TEXT);

        let report = fsck_clean(&device, &volume.superblock);
        let stats = &report.stats;
        assert_eq!((stats.inodes, stats.directories, stats.regular_files, stats.shard_logs), (7, 3, 1, 3));
        assert_eq!((stats.collections, stats.log_records, stats.log_vectors, stats.log_deletes), (2, 5, 7, 1));
        assert_eq!((stats.data_blocks, stats.free_blocks), (COLLECTION_DATA_BLOCKS, free_blocks));
    }
    assert!(checked > 0 || FORMAT_VERSION < FORMAT_VERSION_COLLECTIONS, "no version has a collections image");
}

// ---------------------------------------------------------------------------------------------
// Golden files: named byte strings as annotated hex
// ---------------------------------------------------------------------------------------------

const FILE_FORMAT: &str = "\
Generated by format/tests/golden.rs; regenerate only as its header says, never edit by hand.
\"== NAME, LEN bytes: NOTE\" starts a byte string of LEN bytes, all zero but for the rows below it.
\"OFFSET: HEX\" gives the 32 bytes at hex OFFSET; \"FIRST..END: HEX\" repeats them over FIRST..END.";
const MKFS_TITLE: &str = "VexFS golden image: every block mkfs writes for the smallest volume (4096 blocks).";
const POPULATED_TITLE: &str = "VexFS golden image: the smallest volume after one committed, not yet checkpointed \
transaction\nthat adds files, a directory, a symlink, xattrs, extents and an orphan. Blocks not listed are zero.";
const ENCODINGS_TITLE: &str = "VexFS golden encodings: item values, a key, an overflow reference and name hashes;\n\
collection records, attributes and shard log records.";
const COLLECTIONS_TITLE: &str =
    "VexFS golden image: the smallest volume holding two vector collections (one of them a text \
collection\nwith one document) and their three shard logs, written home directly; the journal is empty. Blocks not \
listed are zero.";
const ROW_BYTES: usize = 32;

/// One named byte string of a golden file: a block of an image, or one encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Section {
    name: String,
    /// What the bytes are; a comment, not compared.
    note: String,
    bytes: Vec<u8>,
}

fn block_section(addr: BlockAddr, note: String, bytes: Vec<u8>) -> Section {
    assert_eq!(bytes.len(), BLOCK_SIZE);
    Section { name: format!("block {addr}"), note, bytes }
}

fn blessing() -> bool {
    std::env::var_os(BLESS_VAR).is_some_and(|value| value == "1")
}

fn golden_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("v{version}"))
}

/// Every version whose golden files current code must open.
fn versions() -> impl Iterator<Item = u32> {
    (1..=FORMAT_VERSION).inspect(|&version| {
        let dir = golden_dir(version);
        assert!(dir.is_dir(), "{} is missing: every format version keeps its golden files", dir.display());
    })
}

fn read_golden(version: u32, file: &str) -> Vec<Section> {
    let path = golden_dir(version).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}; {BLESS_VAR}=1 creates it", path.display()));
    parse(&path, &text)
}

/// Compares `built` with the golden file of the current version, or writes it when blessing.
fn check_or_bless(file: &str, title: &str, built: &[Section]) {
    let path = golden_dir(FORMAT_VERSION).join(file);
    if blessing() {
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("create the golden directory");
        // Write then rename, so that tests reading the file in parallel never see half of it.
        let temporary = path.with_extension("hex.tmp");
        std::fs::write(&temporary, render(title, built)).expect("write the golden file");
        std::fs::rename(&temporary, &path).expect("move the golden file into place");
        return;
    }
    let golden = read_golden(FORMAT_VERSION, file);
    if let Some(difference) = first_difference(&golden, built) {
        panic!("{}: {difference}.\n{HINT}", path.display());
    }
}

fn first_difference(golden: &[Section], built: &[Section]) -> Option<String> {
    for index in 0..golden.len().max(built.len()) {
        let (golden, built) = match (golden.get(index), built.get(index)) {
            (Some(golden), Some(built)) => (golden, built),
            (Some(golden), None) => {
                return Some(format!("`{}` is in the golden file, the code no longer writes it", golden.name))
            }
            (None, Some(built)) => {
                return Some(format!("the code now writes `{}`, the golden file lacks it", built.name))
            }
            (None, None) => unreachable!("the index is below one of the lengths"),
        };
        if golden.name != built.name {
            return Some(format!("the golden file has `{}` where the code now writes `{}`", golden.name, built.name));
        }
        if golden.bytes.len() != built.bytes.len() {
            let (name, old, new) = (&golden.name, golden.bytes.len(), built.bytes.len());
            return Some(format!("`{name}` is {old} bytes in the golden file, {new} bytes now"));
        }
        let offset = golden.bytes.iter().zip(&built.bytes).position(|(old, new)| old != new);
        if let Some(offset) = offset {
            let (old, new) = (golden.bytes[offset], built.bytes[offset]);
            return Some(format!(
                "`{}` ({}) differs first at byte offset {offset} ({offset:#x}): golden {old:#04x}, now {new:#04x}",
                golden.name, golden.note
            ));
        }
    }
    None
}

fn render(title: &str, sections: &[Section]) -> String {
    let mut out = String::new();
    for line in title.lines().chain(FILE_FORMAT.lines()) {
        writeln!(out, "# {line}").expect("writing to a string");
    }
    for section in sections {
        writeln!(out, "== {}, {} bytes: {}", section.name, section.bytes.len(), section.note).expect("string");
        let rows: Vec<&[u8]> = section.bytes.chunks(ROW_BYTES).collect();
        let mut index = 0;
        while index < rows.len() {
            let row = rows[index];
            let end = index + rows[index..].iter().take_while(|&&other| other == row).count();
            if row.iter().any(|&byte| byte != 0) {
                let (first, last) = (index * ROW_BYTES, end * ROW_BYTES);
                let range = if end - index == 1 { format!("{first:04x}") } else { format!("{first:04x}..{last:04x}") };
                writeln!(out, "{range}: {}", hex_row(row)).expect("writing to a string");
            }
            index = end;
        }
    }
    out
}

/// Hex in groups of 8 bytes.
fn hex_row(row: &[u8]) -> String {
    let groups: Vec<String> =
        row.chunks(8).map(|group| group.iter().map(|byte| format!("{byte:02x}")).collect()).collect();
    groups.join(" ")
}

fn parse(path: &Path, text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), index + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix("== ") {
            let section = parse_header(header).unwrap_or_else(|| panic!("{}: malformed section header", at()));
            sections.push(section);
            continue;
        }
        let section = sections.last_mut().unwrap_or_else(|| panic!("{}: a row before any section", at()));
        parse_row(line, &mut section.bytes).unwrap_or_else(|what| panic!("{}: {what}", at()));
    }
    sections
}

fn parse_header(header: &str) -> Option<Section> {
    let (name, rest) = header.split_once(", ")?;
    let (len, note) = rest.split_once(" bytes: ")?;
    Some(Section { name: name.to_string(), note: note.to_string(), bytes: vec![0; len.parse().ok()?] })
}

fn parse_row(line: &str, bytes: &mut [u8]) -> Result<(), String> {
    let (range, hex) = line.split_once(": ").ok_or("expected `OFFSET: HEX`")?;
    let offset = |text: &str| usize::from_str_radix(text, 16).map_err(|_| format!("bad offset {text:?}"));
    let row = decode_hex(hex)?;
    let (first, end) = match range.split_once("..") {
        Some((first, end)) => (offset(first)?, offset(end)?),
        None => (offset(range)?, offset(range)? + row.len()),
    };
    let fits = first.is_multiple_of(ROW_BYTES) && first < end && end <= bytes.len() && !row.is_empty();
    if !fits || !(end - first).is_multiple_of(row.len()) {
        return Err(format!("rows {first:#x}..{end:#x} do not fit a {} byte string", bytes.len()));
    }
    for at in (first..end).step_by(row.len()) {
        bytes[at..at + row.len()].copy_from_slice(&row);
    }
    Ok(())
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b' ').collect();
    if !digits.len().is_multiple_of(2) || digits.len() > 2 * ROW_BYTES {
        return Err(format!("bad hex row {text:?}"));
    }
    let digit = |c: u8| char::from(c).to_digit(16).ok_or_else(|| format!("bad hex digit in {text:?}"));
    digits.chunks(2).map(|pair| Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8)).collect()
}

// ---------------------------------------------------------------------------------------------
// The mkfs image
// ---------------------------------------------------------------------------------------------

fn mkfs_params() -> MkfsParams<'static> {
    MkfsParams { size_bytes: VOLUME_BYTES, uuid: UUID, now: MKFS_TIME, label: LABEL, uid: OWNER, gid: OWNER }
}

fn mkfs_note(layout: &Layout, addr: BlockAddr) -> String {
    let bitmap = layout.bitmap_start.0..layout.bitmap_start.0 + layout.bitmap_blocks;
    match addr {
        BlockAddr(0) | BlockAddr(1) => format!("superblock slot {addr}"),
        ROOT_BLOCK => "volume root".to_string(),
        addr if addr == layout.journal_start => "first journal block, zeroed".to_string(),
        addr if bitmap.contains(&addr.0) => format!("bitmap block {}", addr.0 - bitmap.start),
        addr if addr == layout.tree_root => "B-tree root leaf".to_string(),
        addr => panic!("mkfs writes block {addr}, which no note describes"),
    }
}

/// The root directory mkfs creates.
fn fresh_root_directory() -> InodeRecord {
    InodeRecord {
        mode: file_type::DIRECTORY | 0o755,
        uid: OWNER,
        gid: OWNER,
        nlink: 2,
        atime: MKFS_TIME,
        mtime: MKFS_TIME,
        ctime: MKFS_TIME,
        crtime: MKFS_TIME,
        dir_next_index: DIR_FIRST_INDEX,
        parent: ROOT_INO,
        ..InodeRecord::default()
    }
}

/// Facts every golden superblock shares: those mkfs fixed.
fn check_fresh_superblock(sb: &Superblock, version: u32) {
    assert_eq!(sb.format_version, version);
    assert_eq!(sb.block_size as usize, BLOCK_SIZE);
    assert_eq!(sb.block_count, MIN_BLOCKS);
    assert_eq!((sb.features_compat, sb.features_ro_compat, sb.features_incompat), (0, 0, 0));
    assert_eq!(sb.uuid, UUID);
    assert_eq!(sb.label_str(), LABEL);
    assert_eq!(sb.created_time, MKFS_TIME.sec);
    assert_eq!((sb.journal_tail, sb.journal_tail_seq), (0, 1));
    assert!(Layout::for_size(VOLUME_BYTES).expect("layout").matches(sb));
}

// ---------------------------------------------------------------------------------------------
// The populated image
// ---------------------------------------------------------------------------------------------

const HELLO: u64 = FIRST_INO;
const DOCS: u64 = FIRST_INO + 1;
const LINK: u64 = FIRST_INO + 2;
const BIG: u64 = FIRST_INO + 3;
const ORPHAN: u64 = FIRST_INO + 4;
const HELLO_SIZE: u64 = BLOCK_SIZE as u64 + 100;
const BIG_XATTR_BYTES: usize = 2000;
/// The contents of `hello.txt`, repeated.
const DATA_ROW: &[u8; ROW_BYTES] = b"VexFS golden image file data v1\n";
const TRANSACTION_SEQ: u64 = 1;

// Blocks the transaction allocates, relative to the layout's `first_free`.
const LEAF_LOW: u64 = 0;
const LEAF_HIGH: u64 = 1;
const OVERFLOW: u64 = 2;
const HELLO_DATA: u64 = 3;
const HELLO_UNWRITTEN: u64 = 5;
const ORPHAN_DATA: u64 = 6;
const ALLOCATED_BLOCKS: u64 = 7;

/// The first key of the second leaf.
fn split_key() -> Key {
    inode_key(DOCS)
}

fn inode_key(ino: u64) -> Key {
    Key::new(ino, ItemKind::Inode, 0)
}

fn allocated(layout: &Layout, offset: u64) -> BlockAddr {
    BlockAddr(layout.first_free.0 + offset)
}

fn file(mode: u32, nlink: u32, size: u64, generation: u64) -> InodeRecord {
    let t = FILE_TIME;
    let (uid, gid) = (OWNER, OWNER);
    InodeRecord {
        mode,
        uid,
        gid,
        nlink,
        size,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        generation,
        ..Default::default()
    }
}

/// Every item of the populated volume, in key order.
fn populated_items(layout: &Layout) -> Vec<(Key, Value)> {
    let mut items = Vec::new();
    let root = InodeRecord {
        nlink: 3,
        size: 3,
        mtime: FILE_TIME,
        ctime: FILE_TIME,
        dir_next_index: 6,
        ..fresh_root_directory()
    };
    items.push((inode_key(ROOT_INO), Value::Inode(root)));
    let regular = file_type::REGULAR | 0o644;
    add_entry(&mut items, ROOT_INO, b"hello.txt", HELLO, regular, 3);
    add_entry(&mut items, ROOT_INO, b"docs", DOCS, file_type::DIRECTORY, 4);
    add_entry(&mut items, ROOT_INO, b"link", LINK, file_type::SYMLINK, 5);
    add_entry(&mut items, DOCS, b"big", BIG, regular, 3);

    let hello = InodeRecord { blocks: 3, ..file(regular, 1, HELLO_SIZE, 1) };
    items.push((inode_key(HELLO), Value::Inode(hello)));
    add_xattr(&mut items, HELLO, b"user.note", b"golden".to_vec());
    let written = Extent { start: allocated(layout, HELLO_DATA).0, length: 2, flags: 0 };
    let unwritten = Extent { start: allocated(layout, HELLO_UNWRITTEN).0, length: 1, flags: EXTENT_UNWRITTEN };
    items.push((Key::new(HELLO, ItemKind::Extent, 0), Value::Extent(written)));
    items.push((Key::new(HELLO, ItemKind::Extent, 4), Value::Extent(unwritten)));

    let docs = InodeRecord { dir_next_index: 4, parent: ROOT_INO, ..file(file_type::DIRECTORY | 0o700, 2, 1, 2) };
    items.push((inode_key(DOCS), Value::Inode(docs)));
    items.push((inode_key(LINK), Value::Inode(file(file_type::SYMLINK | 0o777, 1, 9, 3))));
    items.push((Key::new(LINK, ItemKind::Symlink, 0), Value::Symlink(b"hello.txt".to_vec())));
    items.push((inode_key(BIG), Value::Inode(file(regular, 1, 0, 4))));
    let big: Vec<u8> = (0..BIG_XATTR_BYTES).map(|i| (i % 251) as u8).collect();
    add_xattr(&mut items, BIG, b"user.big", big);

    let orphan = InodeRecord { flags: INODE_FLAG_ORPHAN, blocks: 1, ..file(regular, 0, BLOCK_SIZE as u64, 5) };
    items.push((inode_key(ORPHAN), Value::Inode(orphan)));
    let orphan_extent = Extent { start: allocated(layout, ORPHAN_DATA).0, length: 1, flags: 0 };
    items.push((Key::new(ORPHAN, ItemKind::Extent, 0), Value::Extent(orphan_extent)));
    items.push((Key::new(ORPHAN_OBJECT, ItemKind::Orphan, ORPHAN), Value::Orphan));
    items.sort_by_key(|(key, _)| *key);
    items
}

fn add_entry(items: &mut Vec<(Key, Value)>, dir: u64, name: &[u8], child: u64, mode: u32, index: u64) {
    let dtype = file_type::dirent_type(mode);
    let entry = DirEntry { child, index, dtype, name: name.to_vec() };
    items.push((Key::new(dir, ItemKind::DirEntry, items::name_hash(name)), Value::DirEntries(vec![entry])));
    items.push((Key::new(dir, ItemKind::DirIndex, index), Value::DirIndex { child, dtype, name: name.to_vec() }));
}

fn add_xattr(items: &mut Vec<(Key, Value)>, ino: u64, name: &[u8], value: Vec<u8>) {
    let key = Key::new(ino, ItemKind::Xattr, items::name_hash(name));
    items.push((key, Value::Xattrs(vec![Xattr { name: name.to_vec(), value }])));
}

/// The populated volume's non-zero blocks, in address order.
fn populated_image() -> Vec<Section> {
    let (layout, mkfs_blocks) = mkfs::plan(&mkfs_params()).expect("mkfs plan");
    let mut disk: BTreeMap<BlockAddr, (String, Vec<u8>)> =
        mkfs_blocks.into_iter().map(|(addr, bytes)| (addr, (mkfs_note(&layout, addr), bytes))).collect();

    let mut superblock = layout.superblock(UUID, MKFS_TIME.sec, LABEL);
    superblock.sequence = 2;
    superblock.state = VolumeState::Mounted;
    superblock.mount_count = 1;
    superblock.last_mount_time = MOUNT_TIME;
    assert_eq!(superblock.slot(), SUPERBLOCK_SLOTS[0]);
    let note = "superblock slot 0, written by the first mount".to_string();
    disk.insert(SUPERBLOCK_SLOTS[0], (note, superblock.encode()));

    let region =
        JournalRegion { start: layout.journal_start, blocks: layout.journal_blocks, volume_id: superblock.volume_id() };
    let images = transaction_images(&layout);
    let borrowed: Vec<Image<'_>> = images.iter().map(|(home, _, block)| Image { home: *home, block }).collect();
    let ring = journal::encode_transaction(&region, 0, TRANSACTION_SEQ, &borrowed);
    for (index, (addr, bytes)) in ring.into_iter().enumerate() {
        let what = match index.checked_sub(1).and_then(|image| images.get(image)) {
            Some((home, note, _)) => format!("image of block {home} ({note})"),
            None if index == 0 => "descriptor".to_string(),
            None => "commit".to_string(),
        };
        let note = format!("journal position {index}: {what} of transaction {TRANSACTION_SEQ}");
        disk.insert(addr, (note, bytes));
    }
    for (block, note) in hello_data_blocks() {
        disk.insert(allocated(&layout, HELLO_DATA + block), (note, hello_block(block)));
    }
    disk.into_iter()
        .filter(|(_, (_, bytes))| bytes.iter().any(|&byte| byte != 0))
        .map(|(addr, (note, bytes))| block_section(addr, note, bytes))
        .collect()
}

fn hello_data_blocks() -> [(u64, String); 2] {
    [
        (0, "hello.txt file block 0".to_string()),
        (1, "hello.txt file block 1, zero past the end of the file".to_string()),
    ]
}

/// File block `index` of `hello.txt` as stored.
fn hello_block(index: u64) -> Vec<u8> {
    let start = index * BLOCK_SIZE as u64;
    let len = HELLO_SIZE.saturating_sub(start).min(BLOCK_SIZE as u64) as usize;
    let mut block: Vec<u8> = DATA_ROW.iter().copied().cycle().take(len).collect();
    block.resize(BLOCK_SIZE, 0);
    block
}

/// The sealed metadata blocks of the transaction, in home-address order: (home, note, contents).
fn transaction_images(layout: &Layout) -> Vec<(BlockAddr, String, Vec<u8>)> {
    let items = populated_items(layout);
    let (low, high): (Vec<_>, Vec<_>) = items.iter().partition(|(key, _)| *key < split_key());
    let (leaf_low, leaf_high, overflow) =
        (allocated(layout, LEAF_LOW), allocated(layout, LEAF_HIGH), allocated(layout, OVERFLOW));
    let mut overflow_blocks = Vec::new();
    let low = leaf_block(leaf_low, &low, overflow, &mut overflow_blocks);
    let high = leaf_block(leaf_high, &high, overflow, &mut overflow_blocks);
    assert_eq!(overflow_blocks.len(), 1, "the one large xattr fills one overflow block");

    let mut internal = vec![0u8; BLOCK_SIZE];
    let entries = [(Key::MIN, leaf_low), (split_key(), leaf_high)];
    node::build_internal_into(&mut internal, layout.tree_root, 1, &entries).expect("internal root");
    let used = layout.first_free.0 + ALLOCATED_BLOCKS;
    let root = VolumeRoot {
        tree_root: layout.tree_root,
        next_ino: ORPHAN + 1,
        inode_count: 6,
        free_blocks: layout.block_count - used,
        next_generation: 6,
        collection_root: 0,
        index_root: 0,
    };
    assert_eq!(layout.bitmap_blocks, 1);
    let mut images = vec![
        (ROOT_BLOCK, "volume root".to_string(), root.build(ROOT_BLOCK)),
        (
            layout.bitmap_start,
            "bitmap block 0".to_string(),
            bitmap::build(0, layout.bitmap_start, layout.block_count, used),
        ),
        (layout.tree_root, "B-tree root, internal".to_string(), internal),
        (leaf_low, "B-tree leaf, inodes 1..=16".to_string(), low),
        (leaf_high, "B-tree leaf, inodes 17.. and orphans".to_string(), high),
    ];
    images.extend(overflow_blocks.into_iter().map(|(addr, block)| (addr, "overflow block".to_string(), block)));
    for (_, _, block) in &mut images {
        block::seal(block, TRANSACTION_SEQ);
    }
    images
}

/// A leaf holding `items`; a value too long to store inline goes to an overflow block at
/// `overflow`, appended to `overflow_blocks`.
fn leaf_block(
    addr: BlockAddr,
    items: &[&(Key, Value)],
    overflow: BlockAddr,
    overflow_blocks: &mut Vec<PlacedBlock>,
) -> Vec<u8> {
    let mut stored = Vec::new();
    for (key, value) in items {
        let bytes = value.encode();
        if bytes.len() <= INLINE_VALUE_MAX {
            stored.push((*key, bytes, false));
            continue;
        }
        assert!(overflow_blocks.is_empty(), "one overflow block is set aside");
        let mut block = vec![0u8; BLOCK_SIZE];
        node::build_overflow_into(&mut block, overflow, None, &bytes);
        overflow_blocks.push((overflow, block));
        stored.push((*key, OverflowRef::for_value(overflow, &bytes).encode().to_vec(), true));
    }
    let leaf_items: Vec<LeafItem<'_>> =
        stored.iter().map(|(key, value, overflow)| LeafItem { key: *key, value, overflow: *overflow }).collect();
    let mut block = vec![0u8; BLOCK_SIZE];
    node::build_leaf_into(&mut block, addr, &leaf_items).expect("the items fit one leaf");
    block
}

/// `hello.txt` reads back through its extents: its bytes, then zeros to the end of the block.
fn check_hello_contents(device: &Device, volume: &Volume) {
    let Some(Value::Extent(extent)) = volume.items.get(&Key::new(HELLO, ItemKind::Extent, 0)) else {
        panic!("hello.txt has no extent at file block 0");
    };
    for block in 0..u64::from(extent.length) {
        assert_eq!(device.block(BlockAddr(extent.start + block)), hello_block(block), "hello.txt block {block}");
    }
}

// ---------------------------------------------------------------------------------------------
// Item values and the encodings file
// ---------------------------------------------------------------------------------------------

/// An item value in decoded form.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Inode(InodeRecord),
    DirEntries(Vec<DirEntry>),
    DirIndex { child: u64, dtype: u8, name: Vec<u8> },
    Extent(Extent),
    Xattrs(Vec<Xattr>),
    Symlink(Vec<u8>),
    Orphan,
    Collection(CollectionRecord),
}

impl Value {
    fn encode(&self) -> Vec<u8> {
        match self {
            Value::Inode(record) => record.encode().to_vec(),
            Value::DirEntries(entries) => items::encode_dir_entries(entries),
            Value::DirIndex { child, dtype, name } => items::encode_dir_index(*child, *dtype, name),
            Value::Extent(extent) => extent.encode().to_vec(),
            Value::Xattrs(xattrs) => items::encode_xattrs(xattrs),
            Value::Symlink(target) => target.clone(),
            Value::Orphan => Vec::new(),
            Value::Collection(record) => collection::encode_collection(record),
        }
    }

    /// Decodes the value of the item `key` found in block `addr`.
    fn decode(key: Key, bytes: &[u8], addr: u64) -> Result<Value, FormatError> {
        let kind = ItemKind::from_u8(key.kind).ok_or_else(|| FormatError::malformed(addr, "unknown item kind"))?;
        Ok(match kind {
            ItemKind::Inode => Value::Inode(InodeRecord::decode(bytes, key.object, addr)?),
            ItemKind::DirEntry => Value::DirEntries(items::decode_dir_entries(bytes, addr)?),
            ItemKind::DirIndex => {
                let (child, dtype, name) = items::decode_dir_index(bytes, addr)?;
                Value::DirIndex { child, dtype, name: name.to_vec() }
            }
            ItemKind::Extent => Value::Extent(Extent::decode(bytes, addr)?),
            ItemKind::Xattr => Value::Xattrs(items::decode_xattrs(bytes, addr)?),
            ItemKind::Symlink => Value::Symlink(bytes.to_vec()),
            ItemKind::Orphan if bytes.is_empty() => Value::Orphan,
            ItemKind::Orphan => return Err(FormatError::malformed(addr, "orphan item has a value")),
            ItemKind::Collection => Value::Collection(collection::decode_collection(bytes, addr)?),
        })
    }
}

/// One entry of the encodings file.
enum Sample {
    Key(Key),
    Item(Key, Value),
    OverflowRef(OverflowRef),
    NameHash(&'static [u8]),
    Attrs(Attrs),
    /// A shard log record of a collection of this dimension.
    LogRecord(u32, LogRecord),
}

/// The fixed values of the encodings file of `version`: those of version 1, then those each later
/// version added.
fn samples(version: u32) -> Vec<(&'static str, Sample)> {
    let mut samples = samples_v1();
    if version >= FORMAT_VERSION_COLLECTIONS {
        samples.extend(collection_samples());
    }
    samples
}

/// Collection records, attributes and log records. Integers use distinct non-zero bytes.
fn collection_samples() -> Vec<(&'static str, Sample)> {
    let record = CollectionRecord {
        dim: 0xabcd,
        metric: Metric::Dot,
        elem: ElemType::F32,
        shards: vec![0x0102_0304_0506_0708, 0x1112_1314_1516_1718, FIRST_INO],
        text: None,
    };
    let text = TextParams {
        embedder: "ollama:http://localhost:11434:nomic".to_string(),
        chunk_bytes: 0x0001_0203,
        chunk_overlap: 0x0405,
    };
    let text_record = CollectionRecord {
        dim: 384,
        metric: Metric::Cosine,
        shards: vec![0x2122_2324_2526_2728],
        text: Some(text),
        ..record.clone()
    };
    let attrs = vec![
        ("genre".to_string(), AttrValue::Str("jazz ✓".to_string())),
        ("year".to_string(), AttrValue::Int(-0x0102_0304_0506_0708)),
        ("score".to_string(), AttrValue::Float(-1.0e-300)),
        ("vexfs.doc".to_string(), AttrValue::Int(0x1112_1314)),
        ("empty".to_string(), AttrValue::Str(String::new())),
    ];
    let insert = LogRecord {
        seq: 0x0102_0304_0506_0708,
        body: LogBody::Insert {
            ids: vec![0x1112_1314_1516_1718, 3],
            vectors: vec![1.0, -0.0, f32::MIN_POSITIVE / 2.0, f32::MAX, -3.5, 1.0e-3],
            attrs: vec![attrs.clone(), Vec::new()],
        },
    };
    let plain = LogRecord {
        seq: 0x2122_2324_2526_2728,
        body: LogBody::Insert { ids: vec![5], vectors: vec![0.25, -0.5, 0.75], attrs: Vec::new() },
    };
    let delete =
        LogRecord { seq: 0x3132_3334_3536_3738, body: LogBody::Delete { ids: vec![0x4142_4344_4546_4748, 6, 0] } };
    vec![
        ("collection record", Sample::Item(Key::new(0x1234, ItemKind::Collection, 0), Value::Collection(record))),
        (
            "text collection record",
            Sample::Item(Key::new(0x1235, ItemKind::Collection, 0), Value::Collection(text_record)),
        ),
        ("attributes", Sample::Attrs(attrs)),
        ("log insert record with attributes", Sample::LogRecord(3, insert)),
        ("log insert record", Sample::LogRecord(3, plain)),
        ("log delete record", Sample::LogRecord(3, delete)),
    ]
}

/// The samples of format version 1. Integers use distinct non-zero bytes, so that a field that
/// moves or shrinks changes the encoding.
fn samples_v1() -> Vec<(&'static str, Sample)> {
    let t = |sec: i64, nsec: u32| Timestamp { sec, nsec };
    let record = InodeRecord {
        mode: file_type::REGULAR | 0o4755,
        uid: 0x1112_1314,
        gid: 0x2122_2324,
        flags: INODE_FLAG_ORPHAN,
        nlink: 0x3132_3334,
        rdev: 0x4142_4344,
        size: 0x5152_5354_5556_5758,
        blocks: 0x6162_6364_6566_6768,
        atime: t(0x0102_0304_0506_0708, 0x0a0b_0c0d),
        mtime: t(-0x0102_0304_0506_0708, 0x1a1b_1c1d),
        ctime: t(0x2102_0304_0506_0708, 0x2a2b_2c2d),
        crtime: t(0x3102_0304_0506_0708, 0x3a3b_3c3d),
        generation: 0x7172_7374_7576_7778,
        dir_next_index: 0x8182_8384_8586_8788,
        parent: 0x9192_9394_9596_9798,
    };
    let entry = |child: u64, index: u64, dtype: u8, name: &[u8]| DirEntry { child, index, dtype, name: name.to_vec() };
    let entries = vec![entry(0x0102_0304_0506_0708, 0x1112_1314_1516_1718, 8, b"first"), entry(17, 9, 4, b"second.d")];
    let xattrs = vec![
        Xattr { name: b"user.a".to_vec(), value: b"value".to_vec() },
        Xattr { name: b"trusted.empty".to_vec(), value: Vec::new() },
    ];
    let extent = Extent { start: 0x0102_0304_0506_0708, length: 0x7abc, flags: 0 };
    let unwritten = Extent { start: 0x1112_1314_1516_1718, length: 1, flags: EXTENT_UNWRITTEN };
    let dir_index = Value::DirIndex { child: 0x0102_0304_0506_0708, dtype: 10, name: b"index-name".to_vec() };
    let reference = OverflowRef { first: BlockAddr(0x0102_0304_0506_0708), total_len: 0x0000_8a0b, crc: 0x2122_2324 };
    vec![
        ("key", Sample::Key(Key { object: 0x0102_0304_0506_0708, kind: 0x45, offset: 0x1112_1314_1516_1718 })),
        ("inode record", Sample::Item(inode_key(0x1234), Value::Inode(record))),
        ("dir entries", Sample::Item(Key::new(1, ItemKind::DirEntry, 0), Value::DirEntries(entries))),
        ("dir index", Sample::Item(Key::new(1, ItemKind::DirIndex, 3), dir_index)),
        ("extent", Sample::Item(Key::new(1, ItemKind::Extent, 0), Value::Extent(extent))),
        ("extent unwritten", Sample::Item(Key::new(1, ItemKind::Extent, 8), Value::Extent(unwritten))),
        ("xattrs", Sample::Item(Key::new(1, ItemKind::Xattr, 0), Value::Xattrs(xattrs))),
        ("symlink", Sample::Item(Key::new(1, ItemKind::Symlink, 0), Value::Symlink(b"../target/path".to_vec()))),
        ("orphan", Sample::Item(Key::new(ORPHAN_OBJECT, ItemKind::Orphan, 1), Value::Orphan)),
        ("overflow reference", Sample::OverflowRef(reference)),
        ("name hash of the empty name", Sample::NameHash(b"")),
        ("name hash of a", Sample::NameHash(b"a")),
        ("name hash of hello.txt", Sample::NameHash(b"hello.txt")),
    ]
}

impl Sample {
    fn note(&self) -> String {
        match self {
            Sample::Key(key) => format!("{key:?}"),
            Sample::Item(key, value) => format!("value of item {key:?}: {value:?}"),
            Sample::OverflowRef(reference) => format!("{reference:?}"),
            Sample::NameHash(name) => format!("xxh3-64 of {:?}, little-endian", String::from_utf8_lossy(name)),
            Sample::Attrs(attrs) => format!("attribute set {attrs:?}"),
            Sample::LogRecord(dim, record) => {
                format!("shard log record of a collection of dimension {dim}: {record:?}")
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Sample::Key(key) => key.encode().to_vec(),
            Sample::Item(_, value) => value.encode(),
            Sample::OverflowRef(reference) => reference.encode().to_vec(),
            Sample::NameHash(name) => items::name_hash(name).to_le_bytes().to_vec(),
            Sample::Attrs(attrs) => {
                let mut out = Vec::new();
                collection::encode_attrs(attrs, &mut out);
                out
            }
            Sample::LogRecord(dim, record) => encode_log(*dim, std::slice::from_ref(record)),
        }
    }

    /// Decodes `bytes` with the current decoders and compares the result with the sample.
    fn decodes_from(&self, bytes: &[u8]) -> Result<(), String> {
        let (decoded, expected) = match self {
            Sample::Key(key) if bytes.len() == KEY_SIZE => (format!("{:?}", Key::decode(bytes)), format!("{key:?}")),
            Sample::Key(_) => return Err(format!("a key is {KEY_SIZE} bytes")),
            Sample::Item(key, value) => {
                let decoded = Value::decode(*key, bytes, 0).map_err(|error| error.to_string())?;
                (format!("{decoded:?}"), format!("{value:?}"))
            }
            Sample::OverflowRef(reference) => {
                let decoded = OverflowRef::decode(bytes, BlockAddr(1)).map_err(|error| error.to_string())?;
                (format!("{decoded:?}"), format!("{reference:?}"))
            }
            Sample::NameHash(name) => {
                (format!("{bytes:02x?}"), format!("{:02x?}", items::name_hash(name).to_le_bytes()))
            }
            Sample::Attrs(attrs) => (format!("{:?}", collection::decode_attrs(bytes)?), format!("{attrs:?}")),
            Sample::LogRecord(dim, record) => {
                let (decoded, used) = collection::decode_record(bytes, *dim).map_err(|error| error.to_string())?;
                if used != bytes.len() {
                    return Err(format!("the record is {used} bytes of the {} stored", bytes.len()));
                }
                (format!("{decoded:?}"), format!("{record:?}"))
            }
        };
        if decoded == expected {
            Ok(())
        } else {
            Err(format!("decoded {decoded}, expected {expected}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The collections image
// ---------------------------------------------------------------------------------------------

const VECTORS_DIR: u64 = FIRST_INO;
const NOTES_DIR: u64 = FIRST_INO + 1;
const EVEN_SHARD: u64 = FIRST_INO + 2;
const ODD_SHARD: u64 = FIRST_INO + 3;
const DOCUMENT: u64 = FIRST_INO + 4;
const TEXT_SHARD: u64 = FIRST_INO + 5;
const DOCUMENT_TEXT: &[u8] = b"VexFS golden document: a text collection embeds the files written into it.\n";
/// The data block of each file, relative to the layout's `first_free`: (inode, block, note).
const COLLECTION_DATA: [(u64, u64, &str); 4] = [
    (EVEN_SHARD, 0, "shard log 0 of /vectors (even ids)"),
    (ODD_SHARD, 1, "shard log 1 of /vectors (odd ids)"),
    (DOCUMENT, 2, "/notes/a.txt"),
    (TEXT_SHARD, 3, "shard log 0 of /notes"),
];
const COLLECTION_DATA_BLOCKS: u64 = COLLECTION_DATA.len() as u64;

fn vectors_collection() -> CollectionRecord {
    CollectionRecord {
        dim: 3,
        metric: Metric::L2,
        elem: ElemType::F32,
        shards: vec![EVEN_SHARD, ODD_SHARD],
        text: None,
    }
}

fn notes_collection() -> CollectionRecord {
    let text = TextParams { embedder: "builtin:golden".to_string(), chunk_bytes: 256, chunk_overlap: 32 };
    CollectionRecord { dim: 4, metric: Metric::Cosine, elem: ElemType::F32, shards: vec![TEXT_SHARD], text: Some(text) }
}

/// Each shard log: (inode, the collection's dimension, its records in order).
fn golden_logs() -> Vec<(u64, u32, Vec<LogRecord>)> {
    let attrs = |pairs: &[(&str, AttrValue)]| -> Attrs {
        pairs.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
    };
    let even = vec![
        LogRecord {
            seq: 1,
            body: LogBody::Insert {
                ids: vec![0, 2, 4],
                vectors: vec![0.5, -1.0, 2.0, 0.0, -0.0, 1.0e-40, 3.25, f32::MAX, f32::MIN_POSITIVE],
                attrs: vec![
                    attrs(&[("color", AttrValue::Str("red".to_string())), ("n", AttrValue::Int(7))]),
                    Vec::new(),
                    attrs(&[("w", AttrValue::Float(-0.125))]),
                ],
            },
        },
        LogRecord { seq: 2, body: LogBody::Delete { ids: vec![2] } },
        LogRecord { seq: 3, body: LogBody::Insert { ids: vec![6], vectors: vec![1.0, 2.0, 3.0], attrs: Vec::new() } },
    ];
    let odd = vec![LogRecord {
        seq: 1,
        body: LogBody::Insert { ids: vec![1, 3], vectors: vec![-1.5, 0.0, 1.5, 4.0, 5.0, 6.0], attrs: Vec::new() },
    }];
    let chunk = attrs(&[
        ("vexfs.doc", AttrValue::Int(DOCUMENT as i64)),
        ("vexfs.offset", AttrValue::Int(0)),
        ("vexfs.len", AttrValue::Int(DOCUMENT_TEXT.len() as i64)),
    ]);
    let text = vec![LogRecord {
        seq: 1,
        body: LogBody::Insert { ids: vec![0], vectors: vec![0.5, -0.5, 0.5, -0.5], attrs: vec![chunk] },
    }];
    vec![(EVEN_SHARD, 3, even), (ODD_SHARD, 3, odd), (TEXT_SHARD, 4, text)]
}

/// A shard log holding `records`, one after the other.
fn encode_log(dim: u32, records: &[LogRecord]) -> Vec<u8> {
    let mut log = Vec::new();
    for record in records {
        match &record.body {
            LogBody::Insert { ids, vectors, attrs } => {
                collection::encode_insert(&mut log, record.seq, dim, ids, vectors, attrs)
            }
            LogBody::Delete { ids } => collection::encode_delete(&mut log, record.seq, ids),
        }
    }
    log
}

/// Decodes a whole shard log, panicking on anything but a sequence of whole records.
fn decode_log(mut log: &[u8], dim: u32) -> Vec<LogRecord> {
    let mut records = Vec::new();
    while !log.is_empty() {
        let (record, used) = collection::decode_record(log, dim).unwrap_or_else(|error| panic!("shard log: {error}"));
        records.push(record);
        log = &log[used..];
    }
    records
}

/// The stored contents of each file with data: (inode, file block 0).
fn collection_files() -> Vec<(u64, Vec<u8>)> {
    let mut files: Vec<(u64, Vec<u8>)> =
        golden_logs().into_iter().map(|(ino, dim, records)| (ino, encode_log(dim, &records))).collect();
    files.push((DOCUMENT, DOCUMENT_TEXT.to_vec()));
    for (_, contents) in &files {
        assert!(contents.len() <= BLOCK_SIZE, "each file fits its one block");
    }
    files
}

/// Every item of the collections volume, in key order.
fn collection_items(layout: &Layout) -> Vec<(Key, Value)> {
    let mut items = Vec::new();
    let root = InodeRecord {
        nlink: 4,
        size: 2,
        mtime: FILE_TIME,
        ctime: FILE_TIME,
        dir_next_index: 5,
        ..fresh_root_directory()
    };
    items.push((inode_key(ROOT_INO), Value::Inode(root)));
    let directory = file_type::DIRECTORY | 0o755;
    add_entry(&mut items, ROOT_INO, b"vectors", VECTORS_DIR, directory, 3);
    add_entry(&mut items, ROOT_INO, b"notes", NOTES_DIR, directory, 4);
    add_entry(&mut items, NOTES_DIR, b"a.txt", DOCUMENT, file_type::REGULAR, 3);
    let vectors = InodeRecord { dir_next_index: 3, parent: ROOT_INO, ..file(directory, 2, 0, 1) };
    items.push((inode_key(VECTORS_DIR), Value::Inode(vectors)));
    items.push((Key::new(VECTORS_DIR, ItemKind::Collection, 0), Value::Collection(vectors_collection())));
    let notes = InodeRecord { dir_next_index: 4, parent: ROOT_INO, ..file(directory, 2, 1, 2) };
    items.push((inode_key(NOTES_DIR), Value::Inode(notes)));
    items.push((Key::new(NOTES_DIR, ItemKind::Collection, 0), Value::Collection(notes_collection())));
    let sizes: BTreeMap<u64, u64> =
        collection_files().into_iter().map(|(ino, contents)| (ino, contents.len() as u64)).collect();
    for (ino, block, _) in COLLECTION_DATA {
        let generation = ino - FIRST_INO + 1;
        let record = if ino == DOCUMENT {
            file(file_type::REGULAR | 0o644, 1, sizes[&ino], generation)
        } else {
            InodeRecord { flags: INODE_FLAG_SHARD, ..file(file_type::REGULAR | 0o600, 1, sizes[&ino], generation) }
        };
        items.push((inode_key(ino), Value::Inode(InodeRecord { blocks: 1, ..record })));
        let extent = Extent { start: allocated(layout, block).0, length: 1, flags: 0 };
        items.push((Key::new(ino, ItemKind::Extent, 0), Value::Extent(extent)));
    }
    items.sort_by_key(|(key, _)| *key);
    items
}

/// The collections volume's non-zero blocks, in address order: mkfs's blocks with the volume
/// root, bitmap and root leaf replaced, and the files' data.
fn collections_image() -> Vec<Section> {
    let (layout, mkfs_blocks) = mkfs::plan(&mkfs_params()).expect("mkfs plan");
    let mut disk: BTreeMap<BlockAddr, (String, Vec<u8>)> =
        mkfs_blocks.into_iter().map(|(addr, bytes)| (addr, (mkfs_note(&layout, addr), bytes))).collect();
    let items = collection_items(&layout);
    let borrowed: Vec<&(Key, Value)> = items.iter().collect();
    let mut overflow_blocks = Vec::new();
    let mut leaf = leaf_block(layout.tree_root, &borrowed, BlockAddr(0), &mut overflow_blocks);
    assert!(overflow_blocks.is_empty(), "every value is stored inline");
    let used = layout.first_free.0 + COLLECTION_DATA_BLOCKS;
    let root = VolumeRoot {
        tree_root: layout.tree_root,
        next_ino: TEXT_SHARD + 1,
        inode_count: 7,
        free_blocks: layout.block_count - used,
        next_generation: 7,
        collection_root: 0,
        index_root: 0,
    };
    let mut root_block = root.build(ROOT_BLOCK);
    let mut bitmap_block = bitmap::build(0, layout.bitmap_start, layout.block_count, used);
    for block in [&mut leaf, &mut root_block, &mut bitmap_block] {
        block::seal(block, 0);
    }
    disk.insert(layout.tree_root, ("B-tree root leaf, every item".to_string(), leaf));
    disk.insert(ROOT_BLOCK, ("volume root".to_string(), root_block));
    disk.insert(layout.bitmap_start, ("bitmap block 0".to_string(), bitmap_block));
    let files: BTreeMap<u64, Vec<u8>> = collection_files().into_iter().collect();
    for (ino, block, note) in COLLECTION_DATA {
        let mut data = files[&ino].clone();
        data.resize(BLOCK_SIZE, 0);
        disk.insert(allocated(&layout, block), (format!("{note}, inode {ino}, file block 0"), data));
    }
    disk.into_iter()
        .filter(|(_, (_, bytes))| bytes.iter().any(|&byte| byte != 0))
        .map(|(addr, (note, bytes))| block_section(addr, note, bytes))
        .collect()
}

/// The bytes of file `ino`, read through its extents (holes as zeros), `size` of them.
fn file_contents(device: &Device, items: &BTreeMap<Key, Value>, ino: u64) -> Vec<u8> {
    let Some(Value::Inode(record)) = items.get(&inode_key(ino)) else { panic!("inode {ino} is missing") };
    let mut contents = vec![0u8; record.size as usize];
    let extents = items.range(Key::new(ino, ItemKind::Extent, 0)..=Key::new(ino, ItemKind::Extent, u64::MAX));
    for (key, value) in extents {
        let Value::Extent(extent) = value else { unreachable!("extent keys hold extents") };
        for block in 0..u64::from(extent.length) {
            let start = ((key.offset + block) as usize * BLOCK_SIZE).min(contents.len());
            let end = (start + BLOCK_SIZE).min(contents.len());
            let data = device.block(BlockAddr(extent.start + block));
            contents[start..end].copy_from_slice(&data[..end - start]);
        }
    }
    contents
}

// ---------------------------------------------------------------------------------------------
// Opening a golden image: an in-memory device and the decode path of mount and fsck
// ---------------------------------------------------------------------------------------------

/// A device holding the listed blocks; every other block reads as zeros.
#[derive(Clone)]
struct Device {
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl Device {
    fn from_sections(sections: &[Section]) -> Device {
        let blocks = sections
            .iter()
            .map(|section| {
                let addr = section.name.strip_prefix("block ").and_then(|addr| addr.parse().ok());
                let addr = addr.unwrap_or_else(|| panic!("`{}` does not name a block", section.name));
                assert_eq!(section.bytes.len(), BLOCK_SIZE, "block {addr} is not one block long");
                (addr, section.bytes.clone())
            })
            .collect();
        Device { blocks }
    }

    fn block(&self, addr: BlockAddr) -> Vec<u8> {
        self.blocks.get(&addr.0).cloned().unwrap_or_else(|| vec![0; BLOCK_SIZE])
    }

    fn read(&self, addr: BlockAddr, buf: &mut [u8]) -> Result<(), String> {
        if addr.0 >= MIN_BLOCKS {
            return Err(format!("block {addr} is past the end of the device"));
        }
        buf.copy_from_slice(&self.block(addr));
        Ok(())
    }

    /// The device after replaying `scan`: each home block holds its newest journal image.
    fn replayed(&self, region: &JournalRegion, scan: &Scan) -> Device {
        let mut replayed = self.clone();
        for (home, pos) in journal::replay_plan(scan) {
            replayed.blocks.insert(home.0, self.block(region.addr(pos)));
        }
        replayed
    }
}

/// A volume as its decoders see it, with the journal replayed.
struct Volume {
    superblock: Superblock,
    journal: Scan,
    root: VolumeRoot,
    /// Clear bits in the bitmap.
    bitmap_free: u64,
    items: BTreeMap<Key, Value>,
    /// B-tree nodes and overflow blocks.
    tree_blocks: u64,
}

impl Volume {
    fn region(&self) -> JournalRegion {
        let sb = &self.superblock;
        JournalRegion { start: sb.journal_start, blocks: sb.journal_blocks, volume_id: sb.volume_id() }
    }
}

/// Decodes every structure of the volume, panicking with the decoder's error on any problem.
fn decode_volume(device: &Device) -> Volume {
    let slots = SUPERBLOCK_SLOTS.map(|addr| Superblock::decode(&device.block(addr), addr));
    for (addr, slot) in SUPERBLOCK_SLOTS.iter().zip(&slots) {
        assert!(slot.is_ok(), "superblock slot {addr}: {:?}", slot.as_ref().err());
    }
    let [slot0, slot1] = slots;
    let superblock = Superblock::choose(slot0, slot1).expect("both slots decode");
    let region = JournalRegion {
        start: superblock.journal_start,
        blocks: superblock.journal_blocks,
        volume_id: superblock.volume_id(),
    };
    let mut read = |addr: BlockAddr, buf: &mut [u8]| device.read(addr, buf);
    let journal = journal::scan(&region, superblock.journal_tail, superblock.journal_tail_seq, &mut read)
        .expect("the journal lies inside the device");
    let replayed = device.replayed(&region, &journal);

    let page = replayed.block(superblock.root_block);
    let root = block::verify(&page, superblock.root_block, &[BlockKind::Root])
        .and_then(|_| VolumeRoot::read(&page, superblock.root_block))
        .unwrap_or_else(|error| panic!("volume root: {error}"));
    let bitmap_free = (0..superblock.bitmap_blocks)
        .map(|index| {
            let addr = BlockAddr(superblock.bitmap_start.0 + index);
            let page = replayed.block(addr);
            block::verify(&page, addr, &[BlockKind::Bitmap]).unwrap_or_else(|error| panic!("bitmap: {error}"));
            bitmap::count_free(bitmap::bits(&page))
        })
        .sum();
    let (items, tree_blocks) = decode_tree(&replayed, root.tree_root);
    Volume { superblock, journal, root, bitmap_free, items, tree_blocks }
}

/// Walks the B-tree from its root as fsck does: every node verified, parsed, checked against its
/// parent's fence and level, and every value decoded.
fn decode_tree(device: &Device, tree_root: BlockAddr) -> (BTreeMap<Key, Value>, u64) {
    let mut items = BTreeMap::new();
    let mut tree_blocks = 0u64;
    let mut stack = vec![(tree_root, Fence::ROOT, None::<u16>)];
    while let Some((addr, fence, level)) = stack.pop() {
        tree_blocks += 1;
        assert!(tree_blocks <= MIN_BLOCKS, "the tree has more nodes than the volume has blocks");
        let page = device.block(addr);
        let node = block::verify(&page, addr, &[BlockKind::Leaf, BlockKind::Internal])
            .and_then(|_| NodeRef::parse(&page, addr))
            .and_then(|node| node.check_in_tree(&fence, level, level.is_none()).map(|()| node))
            .unwrap_or_else(|error| panic!("B-tree node: {error}"));
        match node {
            NodeRef::Internal(internal) => {
                internal.verify().unwrap_or_else(|error| panic!("B-tree node: {error}"));
                for index in (0..internal.len()).rev() {
                    stack.push((
                        internal.child(index),
                        internal.child_fence(index, &fence),
                        Some(internal.level() - 1),
                    ));
                }
            }
            NodeRef::Leaf(leaf) => {
                leaf.verify().unwrap_or_else(|error| panic!("B-tree leaf: {error}"));
                for item in leaf.items() {
                    let value = if item.overflow {
                        read_overflow(device, addr, item.value, &mut tree_blocks)
                    } else {
                        item.value.to_vec()
                    };
                    let value = Value::decode(item.key, &value, addr.0).unwrap_or_else(|error| panic!("item: {error}"));
                    assert!(items.insert(item.key, value).is_none(), "key {:?} appears twice", item.key);
                }
            }
        }
    }
    (items, tree_blocks)
}

fn read_overflow(device: &Device, leaf: BlockAddr, stored: &[u8], tree_blocks: &mut u64) -> Vec<u8> {
    let reference = OverflowRef::decode(stored, leaf).unwrap_or_else(|error| panic!("overflow reference: {error}"));
    let mut chain = OverflowReader::new(reference);
    while let Some(addr) = chain.next_block() {
        *tree_blocks += 1;
        let page = device.block(addr);
        block::verify(&page, addr, &[BlockKind::Overflow])
            .and_then(|_| chain.push(&page, addr))
            .unwrap_or_else(|error| panic!("overflow chain: {error}"));
    }
    chain.finish().unwrap_or_else(|error| panic!("overflow chain: {error}")).0
}

/// Runs fsck over the device and asserts that it finds nothing wrong.
fn fsck_clean(device: &Device, sb: &Superblock) -> Report {
    let mut read = |addr: BlockAddr, buf: &mut [u8]| device.read(addr, buf);
    let report = fsck::check(&mut read, sb.block_count * BLOCK_SIZE as u64)
        .unwrap_or_else(|error| panic!("fsck could not check the volume: {error}"));
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert!(report.is_clean(), "fsck found problems:\n{}", problems.join("\n"));
    report
}
