//! Volume consistency checking, as pure logic over a block reader.
//!
//! [`check`] reads the volume through a caller-supplied function and reports every inconsistency
//! it finds, naming the block and inode. A volume that was not unmounted cleanly is checked as it
//! would be after journal replay (the journal's committed images overlay their home blocks; the
//! device is never written).
//!
//! What is checked: both superblock slots; the journal; the volume root; every B-tree node and
//! overflow block (checksums, key order, fence keys, levels, cycles); every item's encoding; the
//! namespace (every inode reachable, link counts, directory parents and sizes, entry/index pairs,
//! entry types); extents (inside the data area, no block claimed twice); the bitmap against the
//! blocks actually referenced; the volume root's counters; vector collections (format version 2:
//! each record names existing shard-log inodes that only it names, and every record of every
//! shard log decodes, in sequence, with the collection's dimension).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::bitmap::{self, BITS_PER_BITMAP_BLOCK};
use crate::block::{self, BlockAddr, BlockKind, BLOCK_SIZE, BLOCK_SIZE_U64};
use crate::collection::{self, CollectionRecord, LogBody, LogError};
use crate::inode::{file_type, InodeRecord, DIR_FIRST_INDEX, INODE_FLAG_ORPHAN, INODE_FLAG_SHARD, ROOT_INO};
use crate::items::{self, Extent};
use crate::journal::{self, JournalRegion};
use crate::key::{ItemKind, Key, COLLECTION_KIND_LAST, ORPHAN_OBJECT, RESERVED_KIND_FIRST};
use crate::mkfs::Layout;
use crate::node::{Fence, NodeRef, OverflowReader, HEIGHT_MAX};
use crate::root::VolumeRoot;
use crate::superblock::{Superblock, VolumeState, FORMAT_VERSION_COLLECTIONS, SUPERBLOCK_SLOTS};
use crate::FormatError;

/// Problems reported in full; past this only a count is kept.
pub const PROBLEMS_MAX: usize = 1000;

/// One inconsistency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub block: Option<u64>,
    pub ino: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(block) = self.block {
            write!(f, "block {block}: ")?;
        }
        if let Some(ino) = self.ino {
            write!(f, "inode {ino}: ")?;
        }
        f.write_str(&self.what)
    }
}

/// Counts gathered while checking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub block_count: u64,
    pub inodes: u64,
    pub directories: u64,
    /// Regular files, shard logs not included.
    pub regular_files: u64,
    pub symlinks: u64,
    pub tree_blocks: u64,
    pub data_blocks: u64,
    pub free_blocks: u64,
    pub journal_transactions: u64,
    /// Directories that are vector collections.
    pub collections: u64,
    /// Inodes flagged as shard logs (orphaned ones included).
    pub shard_logs: u64,
    /// Records in the shard logs of collections.
    pub log_records: u64,
    /// Ids in insert records: vectors written, replacements counted each time.
    pub log_vectors: u64,
    /// Ids in delete records.
    pub log_deletes: u64,
}

/// The result of a check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Problems found beyond [`PROBLEMS_MAX`].
    pub problems_omitted: u64,
    /// Facts worth telling that are not inconsistencies.
    pub notes: Vec<String>,
    pub stats: Stats,
}

impl Report {
    /// True when no inconsistency was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }

    fn problem(&mut self, block: Option<u64>, ino: Option<u64>, what: impl Into<String>) {
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(Problem { block, ino, what: what.into() });
        } else {
            self.problems_omitted += 1;
        }
    }

    fn format_error(&mut self, error: &FormatError, ino: Option<u64>) {
        let block = match error {
            FormatError::BadMagic { addr, .. }
            | FormatError::Checksum { addr, .. }
            | FormatError::WrongKind { addr, .. }
            | FormatError::Misdirected { addr, .. }
            | FormatError::Malformed { addr, .. } => Some(*addr),
            _ => None,
        };
        let text = error.to_string();
        let what = match block {
            Some(addr) => text.strip_prefix(&format!("block {addr}: ")).unwrap_or(&text).to_string(),
            None => text,
        };
        self.problem(block, ino, what);
    }
}

/// Why a volume could not be checked at all.
#[derive(Debug)]
pub enum FsckError<E> {
    /// Neither superblock slot holds a usable superblock.
    Superblock(FormatError),
    /// The device is smaller than the superblock claims ([`FormatError::LargerThanDevice`]).
    Truncated(FormatError),
    /// Reading failed.
    Io(E),
}

impl<E: std::fmt::Display> std::fmt::Display for FsckError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsckError::Superblock(error) => write!(f, "{error}"),
            FsckError::Truncated(error) => write!(f, "{error}"),
            FsckError::Io(error) => write!(f, "read error: {error}"),
        }
    }
}

/// Reads blocks, with the journal's committed images overlaid on their home blocks.
struct Reader<'r, E> {
    read: &'r mut crate::block::BlockRead<'r, E>,
    overlay: HashMap<BlockAddr, BlockAddr>,
}

impl<E> Reader<'_, E> {
    fn block(&mut self, addr: BlockAddr) -> Result<Vec<u8>, FsckError<E>> {
        let source = self.overlay.get(&addr).copied().unwrap_or(addr);
        let mut buf = vec![0u8; BLOCK_SIZE];
        (self.read)(source, &mut buf).map_err(FsckError::Io)?;
        Ok(buf)
    }
}

/// Everything the tree walk learns, checked against itself afterwards.
#[derive(Default)]
struct Model {
    inodes: BTreeMap<u64, InodeRecord>,
    /// (directory, name) -> (child, dtype, index) from entry items.
    entries: HashMap<(u64, Vec<u8>), (u64, u8, u64)>,
    /// (directory, index) -> (child, dtype, name) from index items.
    indexes: HashMap<(u64, u64), (u64, u8, Vec<u8>)>,
    extents: BTreeMap<u64, Vec<(u64, Extent)>>,
    symlinks: HashMap<u64, usize>,
    orphans: HashSet<u64>,
    item_owners: HashSet<u64>,
    /// The superblock's format version: what the volume may store.
    format_version: u32,
    /// Directory -> its collection record.
    collections: BTreeMap<u64, CollectionRecord>,
    /// Shard inode -> the collection directories naming it (filled after the walk).
    shard_owners: HashMap<u64, Vec<u64>>,
    /// The blocks extents may map (the layout's allocatable area).
    data_area: std::ops::Range<u64>,
}

/// Block ownership: one bit per block, set once.
struct Claims {
    bits: Vec<u64>,
    block_count: u64,
}

impl Claims {
    fn new(block_count: u64) -> Claims {
        Claims { bits: vec![0; block_count.div_ceil(64) as usize], block_count }
    }

    /// Claims `start..start+len`; returns the first block already claimed or outside the volume.
    fn claim(&mut self, start: u64, len: u64) -> Result<(), u64> {
        for block in start..start.saturating_add(len) {
            if block >= self.block_count {
                return Err(block);
            }
            let (word, bit) = ((block / 64) as usize, block % 64);
            if self.bits[word] & (1 << bit) != 0 {
                return Err(block);
            }
            self.bits[word] |= 1 << bit;
        }
        Ok(())
    }

    /// Blocks `first..first + 64` (`first` a multiple of 64) as a word, bit i for block
    /// `first + i`: claimed, or past the volume (which the bitmap marks used).
    fn word(&self, first: u64) -> u64 {
        debug_assert!(first.is_multiple_of(64));
        let claimed = self.bits.get((first / 64) as usize).copied().unwrap_or(0);
        let inside = self.block_count.saturating_sub(first).min(64);
        let past = if inside == 64 { 0 } else { u64::MAX << inside };
        claimed | past
    }
}

// Bitmap blocks cover whole words of claims.
const _: () = assert!(BITS_PER_BITMAP_BLOCK.is_multiple_of(64));

/// Blocks of one bitmap block where the bitmap and the claims disagree one way: how many, and the
/// first.
#[derive(Default)]
struct Disagreement {
    count: u64,
    first: Option<u64>,
}

impl Disagreement {
    /// Adds the blocks set in `bits`, bit i being block `first + i`.
    fn add(&mut self, first: u64, bits: u64) {
        if bits != 0 {
            self.count += u64::from(bits.count_ones());
            self.first.get_or_insert(first + u64::from(bits.trailing_zeros()));
        }
    }
}

/// Checks the volume read by `read` on a device of `device_bytes` bytes.
pub fn check<E>(read: &mut crate::block::BlockRead<'_, E>, device_bytes: u64) -> Result<Report, FsckError<E>> {
    let mut report = Report::default();
    let mut reader = Reader { read, overlay: HashMap::new() };
    let sb = read_superblocks(&mut reader, &mut report)?;
    // Before anything is sized by the block count: the claims below take a bit per block.
    sb.check_device(device_bytes).map_err(FsckError::Truncated)?;
    let layout = Layout::for_block_count(sb.block_count, sb.journal_blocks).expect("validated by decode");
    report.stats.block_count = sb.block_count;
    overlay_journal(&mut reader, &sb, &layout, &mut report)?;
    let mut claims = Claims::new(sb.block_count);
    claims.claim(0, layout.first_free.0).expect("fixed regions fit the volume");
    let Some(root) = check_root(&mut reader, &sb, &layout, &mut report)? else {
        return Ok(report);
    };
    let mut model = Model { format_version: sb.format_version, data_area: layout.data_area(), ..Model::default() };
    walk_tree(&mut reader, layout.tree_root, &mut claims, &mut model, &mut report)?;
    model.shard_owners = shard_owners(&model.collections);
    check_namespace(&model, &mut report);
    check_extents(&model, &mut claims, &mut report);
    check_collections(&model, &mut report);
    check_shard_logs(&mut reader, &model, &layout, &mut report)?;
    check_bitmap(&mut reader, &layout, &claims, &root, &mut report)?;
    check_counters(&model, &root, &mut report);
    Ok(report)
}

fn read_superblocks<E>(reader: &mut Reader<'_, E>, report: &mut Report) -> Result<Superblock, FsckError<E>> {
    let mut decoded = Vec::new();
    for addr in SUPERBLOCK_SLOTS {
        decoded.push(Superblock::decode(&reader.block(addr)?, addr));
    }
    let slot1 = decoded.pop().expect("two slots");
    let slot0 = decoded.pop().expect("two slots");
    for (addr, slot) in SUPERBLOCK_SLOTS.iter().zip([&slot0, &slot1]) {
        if let Err(error) = slot {
            // One bad slot is what a torn superblock write leaves; the other slot is then in use.
            report.notes.push(format!("superblock slot {addr} is not usable ({error}); the other slot is used"));
        }
    }
    let sb = Superblock::choose(slot0, slot1).map_err(FsckError::Superblock)?;
    Ok(sb)
}

fn overlay_journal<E>(
    reader: &mut Reader<'_, E>,
    sb: &Superblock,
    layout: &Layout,
    report: &mut Report,
) -> Result<(), FsckError<E>> {
    let region = JournalRegion { start: sb.journal_start, blocks: sb.journal_blocks, volume_id: sb.volume_id() };
    let mut read = |addr: BlockAddr, buf: &mut [u8]| -> Result<(), E> { (reader.read)(addr, buf) };
    let scan = journal::scan(&region, sb.journal_tail, sb.journal_tail_seq, &mut read).map_err(FsckError::Io)?;
    report.stats.journal_transactions = scan.transactions.len() as u64;
    if !scan.transactions.is_empty() {
        if sb.state == VolumeState::Clean {
            report.problem(
                Some(sb.slot().0),
                None,
                "superblock says clean but the journal holds committed transactions",
            );
        }
        report.notes.push(format!(
            "the volume was not unmounted cleanly: {} committed journal transactions are checked as replayed (mounting replays them)",
            scan.transactions.len()
        ));
    }
    for (home, pos) in journal::replay_plan(&scan) {
        // Mount refuses such a journal; the check goes on with the home block as it is.
        if let Err(error) = journal::check_home(&region, layout, home, pos) {
            report.format_error(&error, None);
            continue;
        }
        reader.overlay.insert(home, region.addr(pos));
    }
    Ok(())
}

fn check_root<E>(
    reader: &mut Reader<'_, E>,
    sb: &Superblock,
    layout: &Layout,
    report: &mut Report,
) -> Result<Option<VolumeRoot>, FsckError<E>> {
    let page = reader.block(sb.root_block)?;
    let root =
        block::verify(&page, sb.root_block, &[BlockKind::Root]).and_then(|_| VolumeRoot::read(&page, sb.root_block));
    match root {
        Ok(root) if root.tree_root == layout.tree_root => Ok(Some(root)),
        Ok(root) => {
            report.problem(
                Some(sb.root_block.0),
                None,
                format!("volume root names tree root {} instead of {}", root.tree_root, layout.tree_root),
            );
            Ok(None)
        }
        Err(error) => {
            report.format_error(&error, None);
            Ok(None)
        }
    }
}

/// Walks the tree iteratively from the fixed root, checking every node and overflow chain and
/// feeding every item to the model.
fn walk_tree<E>(
    reader: &mut Reader<'_, E>,
    tree_root: BlockAddr,
    claims: &mut Claims,
    model: &mut Model,
    report: &mut Report,
) -> Result<(), FsckError<E>> {
    let mut stack = vec![(tree_root, Fence::ROOT, None::<u16>, true)];
    let mut previous_key: Option<Key> = None;
    while let Some((addr, fence, level, is_root)) = stack.pop() {
        if !is_root && claims.claim(addr.0, 1).is_err() {
            report.problem(Some(addr.0), None, "tree node is outside the volume or referenced twice");
            continue;
        }
        report.stats.tree_blocks += 1;
        let page = reader.block(addr)?;
        let node = block::verify(&page, addr, &[BlockKind::Leaf, BlockKind::Internal])
            .and_then(|_| NodeRef::parse(&page, addr))
            .and_then(|node| node.check_in_tree(&fence, level, is_root).map(|()| node))
            // The strict rules parsing leaves out: disjoint leaf values, zeroed free space.
            .and_then(|node| {
                match &node {
                    NodeRef::Leaf(leaf) => leaf.verify(),
                    NodeRef::Internal(internal) => internal.verify(),
                }
                .map(|()| node)
            });
        let node = match node {
            Ok(node) => node,
            Err(error) => {
                report.format_error(&error, None);
                continue;
            }
        };
        if usize::from(node.level()) >= HEIGHT_MAX {
            report.problem(Some(addr.0), None, format!("node level {} exceeds the height limit", node.level()));
            continue;
        }
        match node {
            NodeRef::Internal(internal) => {
                // Push children in reverse so that they are visited in key order.
                for index in (0..internal.len()).rev() {
                    let child_fence = internal.child_fence(index, &fence);
                    stack.push((internal.child(index), child_fence, Some(internal.level() - 1), false));
                }
            }
            NodeRef::Leaf(leaf) => {
                for item in leaf.items() {
                    if previous_key.is_some_and(|previous| previous >= item.key) {
                        report.problem(Some(addr.0), None, format!("key {:?} is out of order across leaves", item.key));
                    }
                    previous_key = Some(item.key);
                    let value = if item.overflow {
                        read_overflow(reader, addr, item.value, claims, report)?
                    } else {
                        Some(item.value.to_vec())
                    };
                    if let Some(value) = value {
                        check_item(item.key, &value, addr.0, model, report);
                    }
                }
            }
        }
    }
    Ok(())
}

fn read_overflow<E>(
    reader: &mut Reader<'_, E>,
    leaf: BlockAddr,
    stored: &[u8],
    claims: &mut Claims,
    report: &mut Report,
) -> Result<Option<Vec<u8>>, FsckError<E>> {
    let reference = match crate::node::OverflowRef::decode(stored, leaf) {
        Ok(reference) => reference,
        Err(error) => {
            report.format_error(&error, None);
            return Ok(None);
        }
    };
    let mut chain = OverflowReader::new(reference);
    while let Some(addr) = chain.next_block() {
        if claims.claim(addr.0, 1).is_err() {
            report.problem(
                Some(addr.0),
                None,
                format!("overflow block (of an item in leaf {leaf}) is outside the volume or referenced twice"),
            );
            return Ok(None);
        }
        report.stats.tree_blocks += 1;
        let page = reader.block(addr)?;
        if let Err(error) = block::verify(&page, addr, &[BlockKind::Overflow]).and_then(|_| chain.push(&page, addr)) {
            report.format_error(&error, None);
            return Ok(None);
        }
    }
    match chain.finish() {
        Ok((value, _)) => Ok(Some(value)),
        Err(error) => {
            report.format_error(&error, None);
            Ok(None)
        }
    }
}

/// Decodes one item into the model.
fn check_item(key: Key, value: &[u8], addr: u64, model: &mut Model, report: &mut Report) {
    let ino = key.object;
    let Some(kind) = ItemKind::from_u8(key.kind) else {
        let what = if (RESERVED_KIND_FIRST..=COLLECTION_KIND_LAST).contains(&key.kind) {
            format!("item kind {} is reserved for vector index pages, which this version does not store", key.kind)
        } else {
            format!("unknown item kind {}", key.kind)
        };
        report.problem(Some(addr), Some(ino), what);
        return;
    };
    if kind != ItemKind::Orphan {
        model.item_owners.insert(ino);
    }
    let result = match kind {
        ItemKind::Inode => InodeRecord::decode(value, ino, addr).map(|record| {
            model.inodes.insert(ino, record);
        }),
        ItemKind::DirEntry => items::decode_dir_entries(value, addr).map(|entries| {
            for entry in entries {
                if items::name_hash(&entry.name) != key.offset {
                    report.problem(
                        Some(addr),
                        Some(ino),
                        format!("entry {:?} is filed under the wrong hash", String::from_utf8_lossy(&entry.name)),
                    );
                }
                model.entries.insert((ino, entry.name), (entry.child, entry.dtype, entry.index));
            }
        }),
        ItemKind::DirIndex => items::decode_dir_index(value, addr).map(|(child, dtype, name)| {
            model.indexes.insert((ino, key.offset), (child, dtype, name.to_vec()));
        }),
        // An extent that fails its check stays out of the model: no later check reads through it.
        ItemKind::Extent => Extent::decode(value, addr)
            .and_then(|extent| extent.check(key.offset, &model.data_area, addr).map(|()| extent))
            .map(|extent| model.extents.entry(ino).or_default().push((key.offset, extent))),
        ItemKind::Xattr => items::decode_xattrs(value, addr).map(|xattrs| {
            if xattrs.iter().any(|x| items::name_hash(&x.name) != key.offset) {
                report.problem(Some(addr), Some(ino), "xattr is filed under the wrong hash");
            }
        }),
        ItemKind::Symlink => {
            model.symlinks.insert(ino, value.len());
            Ok(())
        }
        ItemKind::Orphan => {
            if ino != ORPHAN_OBJECT || !value.is_empty() {
                report.problem(Some(addr), Some(ino), "malformed orphan item");
            }
            model.orphans.insert(key.offset);
            Ok(())
        }
        ItemKind::Collection => check_collection_item(key, value, addr, model, report),
    };
    if let Err(error) = result {
        report.format_error(&error, Some(ino));
    }
}

/// Decodes a `Collection` item into the model; its references are checked after the walk.
fn check_collection_item(
    key: Key,
    value: &[u8],
    addr: u64,
    model: &mut Model,
    report: &mut Report,
) -> Result<(), FormatError> {
    let dir = key.object;
    if model.format_version < FORMAT_VERSION_COLLECTIONS {
        let what = format!(
            "collection item on a format version {} volume (collections need version {FORMAT_VERSION_COLLECTIONS})",
            model.format_version
        );
        report.problem(Some(addr), Some(dir), what);
    }
    if key.offset != 0 {
        report.problem(Some(addr), Some(dir), format!("collection item at offset {} instead of 0", key.offset));
    }
    let record = collection::decode_collection(value, addr)?;
    model.collections.insert(dir, record);
    Ok(())
}

/// Which collection directories name each shard inode.
fn shard_owners(collections: &BTreeMap<u64, CollectionRecord>) -> HashMap<u64, Vec<u64>> {
    let mut owners: HashMap<u64, Vec<u64>> = HashMap::new();
    for (&dir, record) in collections {
        for &shard in &record.shards {
            owners.entry(shard).or_default().push(dir);
        }
    }
    owners
}

/// Link counts, reachability, entry/index pairs, parents, types.
fn check_namespace(model: &Model, report: &mut Report) {
    let mut links: HashMap<u64, u64> = HashMap::new();
    let mut subdirs: HashMap<u64, u64> = HashMap::new();
    let mut entry_counts: HashMap<u64, u64> = HashMap::new();
    for ((dir, name), &(child, dtype, index)) in &model.entries {
        let name_str = String::from_utf8_lossy(name);
        *entry_counts.entry(*dir).or_default() += 1;
        match model.inodes.get(dir) {
            Some(record) if record.is_dir() => {}
            _ => {
                report.problem(None, Some(*dir), format!("entry {name_str:?} is in something that is not a directory"))
            }
        }
        match model.indexes.get(&(*dir, index)) {
            Some((c, d, n)) if *c == child && *d == dtype && n == name => {}
            _ => report.problem(None, Some(*dir), format!("entry {name_str:?} has no matching readdir index {index}")),
        }
        let Some(record) = model.inodes.get(&child) else {
            report.problem(None, Some(*dir), format!("entry {name_str:?} names missing inode {child}"));
            continue;
        };
        if file_type::dirent_type(record.mode) != dtype {
            report.problem(
                None,
                Some(*dir),
                format!("entry {name_str:?} has type {dtype}, inode {child} has mode {:o}", record.mode),
            );
        }
        *links.entry(child).or_default() += 1;
        if record.is_dir() {
            *subdirs.entry(*dir).or_default() += 1;
            if record.parent != *dir {
                report.problem(
                    None,
                    Some(child),
                    format!("directory's parent is {}, but it is listed in {dir}", record.parent),
                );
            }
        }
    }
    for ((dir, index), (_, _, name)) in &model.indexes {
        if !model.entries.contains_key(&(*dir, name.clone())) {
            report.problem(
                None,
                Some(*dir),
                format!("readdir index {index} ({:?}) has no entry", String::from_utf8_lossy(name)),
            );
        }
        let next = model.inodes.get(dir).map_or(0, |r| r.dir_next_index);
        if *index < DIR_FIRST_INDEX || *index >= next {
            report.problem(None, Some(*dir), format!("readdir index {index} is outside {DIR_FIRST_INDEX}..{next}"));
        }
    }
    for (&ino, record) in &model.inodes {
        count_inode(record, report);
        let linked = links.get(&ino).copied().unwrap_or(0) + u64::from(ino == ROOT_INO);
        check_links(
            ino,
            record,
            linked,
            subdirs.get(&ino).copied().unwrap_or(0),
            entry_counts.get(&ino).copied().unwrap_or(0),
            model,
            report,
        );
    }
    for &owner in &model.item_owners {
        if !model.inodes.contains_key(&owner) {
            report.problem(None, Some(owner), "items exist for an inode that has no inode record");
        }
    }
    if !model.inodes.get(&ROOT_INO).is_some_and(InodeRecord::is_dir) {
        report.problem(None, Some(ROOT_INO), "the root directory is missing or not a directory");
    }
}

fn count_inode(record: &InodeRecord, report: &mut Report) {
    report.stats.inodes += 1;
    if record.flags & INODE_FLAG_SHARD != 0 {
        report.stats.shard_logs += 1;
        return;
    }
    match record.kind() {
        file_type::DIRECTORY => report.stats.directories += 1,
        file_type::REGULAR => report.stats.regular_files += 1,
        file_type::SYMLINK => report.stats.symlinks += 1,
        _ => {}
    }
}

fn check_links(
    ino: u64,
    record: &InodeRecord,
    linked: u64,
    subdirs: u64,
    entries: u64,
    model: &Model,
    report: &mut Report,
) {
    let orphan = record.flags & INODE_FLAG_ORPHAN != 0;
    if orphan != model.orphans.contains(&ino) {
        report.problem(None, Some(ino), "orphan flag and orphan list disagree");
    }
    if orphan {
        if record.nlink != 0 || linked != 0 {
            report.problem(None, Some(ino), format!("orphan has {} links recorded and {linked} entries", record.nlink));
        }
        return;
    }
    if record.flags & INODE_FLAG_SHARD != 0 {
        return check_shard_links(ino, record, linked, model, report);
    }
    if linked == 0 {
        report.problem(None, Some(ino), "inode is not reachable from any directory and is not an orphan");
    }
    let expected = if record.is_dir() { 2 + subdirs } else { linked };
    if u64::from(record.nlink) != expected {
        report.problem(None, Some(ino), format!("link count is {}, expected {expected}", record.nlink));
    }
    if record.is_dir() && (linked != 1 || record.size != entries) {
        report.problem(
            None,
            Some(ino),
            format!("directory has {linked} entries naming it and size {} for {entries} entries", record.size),
        );
    }
    if record.kind() == file_type::SYMLINK && model.symlinks.get(&ino).copied() != Some(record.size as usize) {
        report.problem(None, Some(ino), "symlink target is missing or its length differs from the size");
    }
}

/// A live shard log: a regular file on a version-2 volume, named by exactly one collection record
/// and by no directory entry, with `nlink` 1. (An orphaned shard, left by a dropped collection
/// and waiting to be freed, is checked as any orphan.)
fn check_shard_links(ino: u64, record: &InodeRecord, linked: u64, model: &Model, report: &mut Report) {
    if model.format_version < FORMAT_VERSION_COLLECTIONS {
        report.problem(None, Some(ino), format!("shard log flag on a format version {} volume", model.format_version));
    }
    if record.kind() != file_type::REGULAR {
        report.problem(
            None,
            Some(ino),
            format!("shard log flag on mode {:o}, which is not a regular file", record.mode),
        );
    }
    if linked != 0 {
        report.problem(
            None,
            Some(ino),
            format!("shard log is named by {linked} directory entries (it must be hidden)"),
        );
    }
    let owners = model.shard_owners.get(&ino).map_or(&[][..], Vec::as_slice);
    match owners {
        [] => report.problem(None, Some(ino), "shard log is named by no collection and is not an orphan"),
        [_] => {}
        _ => report.problem(
            None,
            Some(ino),
            format!("shard log is named by several collections (directories {owners:?})"),
        ),
    }
    if record.nlink != 1 {
        report.problem(None, Some(ino), format!("shard log has link count {}, expected 1", record.nlink));
    }
}

/// Every collection: on a directory, naming shard inodes that exist, are flagged as shard logs
/// and are not orphans. Each shard inode's own rules are checked with the other inodes.
fn check_collections(model: &Model, report: &mut Report) {
    for (&dir, record) in &model.collections {
        report.stats.collections += 1;
        if model.inodes.get(&dir).is_some_and(|inode| !inode.is_dir()) {
            report.problem(None, Some(dir), "collection item on something that is not a directory");
        }
        for (index, &shard) in record.shards.iter().enumerate() {
            let what = match model.inodes.get(&shard) {
                None => "which does not exist",
                Some(inode) if inode.flags & INODE_FLAG_SHARD == 0 => "which is not flagged as a shard log",
                Some(inode) if inode.flags & INODE_FLAG_ORPHAN != 0 => "which is an orphan",
                Some(_) => continue,
            };
            report.problem(None, Some(dir), format!("collection shard {index} names inode {shard}, {what}"));
        }
    }
}

/// Bytes of a shard log read at a time when the next record needs more than is buffered.
const LOG_READ_BYTES: u64 = 1 << 20;

/// Decodes every shard log of every collection from its first byte to its size.
fn check_shard_logs<E>(
    reader: &mut Reader<'_, E>,
    model: &Model,
    layout: &Layout,
    report: &mut Report,
) -> Result<(), FsckError<E>> {
    for (&dir, record) in &model.collections {
        for (index, &shard) in record.shards.iter().enumerate() {
            let Some(inode) = model.inodes.get(&shard) else { continue };
            let owners = model.shard_owners.get(&shard).map_or(&[][..], Vec::as_slice);
            // A shard that is not a live shard file has been reported; a shared one is read once.
            let live = inode.flags & INODE_FLAG_SHARD != 0 && inode.flags & INODE_FLAG_ORPHAN == 0;
            if !live || inode.kind() != file_type::REGULAR || owners.first() != Some(&dir) {
                continue;
            }
            let extents = model.extents.get(&shard).map_or(&[][..], Vec::as_slice);
            let file = ShardFile { ino: shard, size: inode.size, extents, layout };
            let place = ShardPlace { dir, dim: record.dim, index: index as u64, count: record.shards.len() as u64 };
            check_shard_log(reader, &place, &file, report)?;
        }
    }
    Ok(())
}

/// Which collection a shard log belongs to, and where in it.
struct ShardPlace {
    /// The collection directory.
    dir: u64,
    dim: u32,
    /// The shard's position in the record, and the number of shards: id `i` belongs to shard
    /// `i % count`.
    index: u64,
    count: u64,
}

/// A shard log's data, read through its extents.
struct ShardFile<'m> {
    ino: u64,
    size: u64,
    extents: &'m [(u64, Extent)],
    layout: &'m Layout,
}

impl ShardFile<'_> {
    /// Appends file bytes `from..to` (block aligned at `from`) to `buf`. Holes, unwritten extents
    /// and extents outside the data area (reported already) read as zeros.
    fn read<E>(&self, reader: &mut Reader<'_, E>, from: u64, to: u64, buf: &mut Vec<u8>) -> Result<(), FsckError<E>> {
        debug_assert!(from.is_multiple_of(BLOCK_SIZE_U64) && from < to);
        for file_block in from / BLOCK_SIZE_U64..to.div_ceil(BLOCK_SIZE_U64) {
            let start = file_block * BLOCK_SIZE_U64;
            let len = (to - start).min(BLOCK_SIZE_U64) as usize;
            match self.device_block(file_block) {
                Some(addr) => buf.extend_from_slice(&reader.block(addr)?[..len]),
                None => buf.resize(buf.len() + len, 0),
            }
        }
        Ok(())
    }

    fn device_block(&self, file_block: u64) -> Option<BlockAddr> {
        let index = self.extents.partition_point(|(offset, _)| *offset <= file_block).checked_sub(1)?;
        let (offset, extent) = self.extents[index];
        let within = file_block - offset;
        let addr = extent.start.checked_add(within)?;
        let readable = within < u64::from(extent.length)
            && !extent.is_unwritten()
            && addr >= self.layout.first_free.0
            && addr < self.layout.block_count;
        readable.then_some(BlockAddr(addr))
    }
}

/// Decodes one shard log record by record, reading more of the file whenever the next record
/// needs it, so that memory stays within one record and one read.
fn check_shard_log<E>(
    reader: &mut Reader<'_, E>,
    place: &ShardPlace,
    file: &ShardFile<'_>,
    report: &mut Report,
) -> Result<(), FsckError<E>> {
    let (ino, size, dir, dim) = (file.ino, file.size, place.dir, place.dim);
    let mut buf: Vec<u8> = Vec::new();
    // File offset of buf[0], bytes of buf already decoded, and the file offset read up to.
    let (mut base, mut used, mut read_to) = (0u64, 0usize, 0u64);
    let mut last_seq: Option<u64> = None;
    while (base + used as u64) < size {
        let offset = base + used as u64;
        match collection::decode_record(&buf[used..], dim) {
            Ok((record, len)) => {
                if last_seq.is_some_and(|last| record.seq <= last) {
                    let last = last_seq.unwrap_or_default();
                    let what = format!("record at byte {offset} has sequence {} after {last}", record.seq);
                    report.problem(None, Some(ino), format!("shard log of collection {dir}: {what}"));
                }
                last_seq = Some(record.seq);
                let ids = match &record.body {
                    LogBody::Insert { ids, .. } | LogBody::Delete { ids } => ids,
                };
                if let Some(id) = ids.iter().find(|&&id| id % place.count != place.index) {
                    let what =
                        format!("record at byte {offset} holds id {id}, which belongs to shard {}", id % place.count);
                    report.problem(None, Some(ino), format!("shard log {} of collection {dir}: {what}", place.index));
                }
                count_record(&record.body, report);
                used += len;
            }
            Err(LogError::Truncated { need }) if read_to < size => {
                buf.drain(..used);
                (base, used) = (base + used as u64, 0);
                let want = (need - buf.len()) as u64;
                let to = (read_to + want.max(LOG_READ_BYTES)).next_multiple_of(BLOCK_SIZE_U64).min(size);
                file.read(reader, read_to, to, &mut buf)?;
                read_to = to;
            }
            Err(LogError::Truncated { need }) => {
                // Appends are linked in chunks, so a crash can leave a record's first chunks
                // committed; opening the collection cuts the record off.
                report.notes.push(format!(
                    "shard log {ino} of collection {dir} ends in an incomplete record at byte {offset} \
                     ({need} bytes needed, {} present): an append cut short, which opening the collection removes",
                    size - offset
                ));
                break;
            }
            Err(LogError::Corrupt(what)) => {
                report.problem(
                    None,
                    Some(ino),
                    format!("shard log of collection {dir}: record at byte {offset}: {what}"),
                );
                break;
            }
        }
    }
    Ok(())
}

fn count_record(body: &LogBody, report: &mut Report) {
    report.stats.log_records += 1;
    match body {
        LogBody::Insert { ids, .. } => report.stats.log_vectors += ids.len() as u64,
        LogBody::Delete { ids } => report.stats.log_deletes += ids.len() as u64,
    }
}

/// Extents (each inside the data area already, see `check_item`): owners are regular files, no
/// overlaps in the file or on the device, block counts match.
fn check_extents(model: &Model, claims: &mut Claims, report: &mut Report) {
    for (&ino, extents) in &model.extents {
        let Some(record) = model.inodes.get(&ino) else { continue };
        if record.kind() != file_type::REGULAR {
            report.problem(None, Some(ino), "extents on something that is not a regular file");
        }
        let mut end = 0u64;
        let mut blocks = 0u64;
        for &(offset, extent) in extents {
            if offset < end {
                report.problem(None, Some(ino), format!("extent at file block {offset} overlaps the previous one"));
            }
            // Extents in the model passed `Extent::check`: inside the data area, no overflow.
            end = offset + u64::from(extent.length);
            blocks += u64::from(extent.length);
            if let Err(block) = claims.claim(extent.start, u64::from(extent.length)) {
                report.problem(
                    Some(block),
                    Some(ino),
                    format!("extent at file block {offset} uses a block already in use"),
                );
            }
        }
        report.stats.data_blocks += blocks;
        if blocks != record.blocks {
            report.problem(
                None,
                Some(ino),
                format!("extents hold {blocks} blocks, the inode records {}", record.blocks),
            );
        }
    }
    for (&ino, record) in &model.inodes {
        if record.blocks != 0 && !model.extents.contains_key(&ino) {
            report.problem(None, Some(ino), format!("inode records {} blocks but has no extents", record.blocks));
        }
    }
}

/// The bitmap must mark exactly the claimed blocks (and everything past the end) as used.
fn check_bitmap<E>(
    reader: &mut Reader<'_, E>,
    layout: &Layout,
    claims: &Claims,
    root: &VolumeRoot,
    report: &mut Report,
) -> Result<(), FsckError<E>> {
    let mut free = 0u64;
    for index in 0..layout.bitmap_blocks {
        let addr = BlockAddr(layout.bitmap_start.0 + index);
        let page = reader.block(addr)?;
        if let Err(error) = block::verify(&page, addr, &[BlockKind::Bitmap]) {
            report.format_error(&error, None);
            continue;
        }
        // Compared 64 blocks at a time: a bitmap word (bit i of byte j is block 8j + i) against
        // the same blocks' claims.
        let (mut unmarked, mut leaked) = (Disagreement::default(), Disagreement::default());
        for (word, bytes) in bitmap::bits(&page).chunks_exact(8).enumerate() {
            let first = index * BITS_PER_BITMAP_BLOCK + 64 * word as u64;
            let used = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            let expected = claims.word(first);
            free += u64::from((!used).count_ones());
            unmarked.add(first, expected & !used);
            leaked.add(first, used & !expected);
        }
        if let Some(first) = unmarked.first {
            let count = unmarked.count;
            report.problem(Some(addr.0), None, format!("{count} blocks in use are marked free (first: {first})"));
        }
        if let Some(first) = leaked.first {
            let count = leaked.count;
            let what = format!("{count} blocks are marked in use but nothing references them (first: {first})");
            report.problem(Some(addr.0), None, what);
        }
    }
    report.stats.free_blocks = free;
    if free != root.free_blocks {
        report.problem(None, None, format!("volume root counts {} free blocks, the bitmap {free}", root.free_blocks));
    }
    Ok(())
}

fn check_counters(model: &Model, root: &VolumeRoot, report: &mut Report) {
    if root.inode_count != model.inodes.len() as u64 {
        report.problem(
            None,
            None,
            format!("volume root counts {} inodes, the tree holds {}", root.inode_count, model.inodes.len()),
        );
    }
    if let Some((&highest, _)) = model.inodes.iter().next_back() {
        if highest >= root.next_ino {
            report.problem(
                None,
                Some(highest),
                format!("inode number is not below the next to hand out ({})", root.next_ino),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inode::Timestamp;
    use crate::mkfs::{plan, MkfsParams};

    fn fresh(size: u64) -> Vec<u8> {
        let params = MkfsParams {
            size_bytes: size,
            uuid: [3; 16],
            now: Timestamp { sec: 1, nsec: 0 },
            label: "t",
            uid: 0,
            gid: 0,
        };
        let (_, blocks) = plan(&params).unwrap();
        let mut image = vec![0u8; size as usize];
        for (addr, block) in blocks {
            let at = addr.byte_offset() as usize;
            image[at..at + BLOCK_SIZE].copy_from_slice(&block);
        }
        image
    }

    fn run(image: &[u8]) -> Report {
        let mut read = |addr: BlockAddr, buf: &mut [u8]| -> Result<(), ()> {
            let at = addr.byte_offset() as usize;
            buf.copy_from_slice(&image[at..at + BLOCK_SIZE]);
            Ok(())
        };
        check(&mut read, image.len() as u64).unwrap()
    }

    #[test]
    fn a_fresh_volume_is_clean() {
        let report = run(&fresh(32 << 20));
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.stats.inodes, 1);
        assert_eq!(report.stats.directories, 1);
    }

    #[test]
    fn corruption_is_named_by_block() {
        let mut image = fresh(32 << 20);
        let layout = Layout::for_size(32 << 20).unwrap();
        let at = layout.tree_root.byte_offset() as usize + 3000;
        image[at] ^= 0xff;
        let report = run(&image);
        assert!(!report.is_clean());
        assert_eq!(report.problems[0].block, Some(layout.tree_root.0), "{:?}", report.problems);

        let mut image = fresh(32 << 20);
        let bitmap_at = layout.bitmap_start.byte_offset() as usize + 100;
        image[bitmap_at] ^= 1;
        let report = run(&image);
        assert!(report.problems.iter().any(|p| p.block == Some(layout.bitmap_start.0)), "{:?}", report.problems);
    }

    /// Goal: the bitmap and the claims are compared block by block, whole words at a time: each
    /// disagreement is counted and the first named, and blocks past the volume count as used.
    #[test]
    fn bitmap_disagreements_are_counted_and_the_first_named() {
        let size = 32u64 << 20;
        let layout = Layout::for_size(size).unwrap();
        let used = layout.first_free.0;
        let mut image = fresh(size);
        let bits_at = layout.bitmap_start.byte_offset() as usize + crate::block::META_HEADER_SIZE;
        // Two used blocks marked free (0 and 9), three unreferenced blocks marked used (one in the
        // same word as `used`, two words further on).
        for (block, set) in [(0, false), (9, false), (used + 1, true), (used + 130, true), (used + 131, true)] {
            let (byte, bit) = (bits_at + (block / 8) as usize, block % 8);
            image[byte] = if set { image[byte] | 1 << bit } else { image[byte] & !(1 << bit) };
        }
        crate::block::seal(&mut image[layout.bitmap_start.byte_offset() as usize..][..BLOCK_SIZE], 0);
        let report = run(&image);
        let texts: Vec<&str> = report.problems.iter().map(|p| p.what.as_str()).collect();
        let free = "2 blocks in use are marked free (first: 0)".to_string();
        let leaked = format!("3 blocks are marked in use but nothing references them (first: {})", used + 1);
        assert!(texts.contains(&free.as_str()) && texts.contains(&leaked.as_str()), "{texts:?}");

        let claims = Claims::new(100);
        assert_eq!(claims.word(64), u64::MAX << 36, "blocks 100..128 lie past the volume");
        assert_eq!(claims.word(128), u64::MAX);
        assert_eq!(claims.word(0), 0);
    }
}
