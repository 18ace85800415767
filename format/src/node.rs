//! B-tree node encoding: leaves, internal nodes and overflow blocks of the one metadata B-tree.
//!
//! All integers are little-endian. Every node starts with a [`MetaHeader`]; its `level` is 0 for
//! leaves and overflow blocks and at least 1 for internal nodes.
//!
//! Leaf (`BlockKind::Leaf`, level 0):
//!
//! | offset        | size     | field          | meaning                                             |
//! |---------------|----------|----------------|-----------------------------------------------------|
//! | 0             | 32       | MetaHeader     | kind `Leaf`, level 0                                |
//! | 32            | 2        | item_count     | items in the table                                  |
//! | 34            | 2        | values_start   | lower bound of the value area (4096 when empty)     |
//! | 36            | 4        | reserved       | zero                                                |
//! | 40            | 24 × n   | item table     | sorted by key, strictly ascending (see below)       |
//! | ..            | ..       | free space     | zero                                                |
//! | values_start  | ..       | values         | packed downwards from the end of the block          |
//!
//! Leaf item (24 bytes):
//!
//! | offset | size | field        | meaning                                                     |
//! |--------|------|--------------|-------------------------------------------------------------|
//! | 0      | 17   | key          | [`Key::encode`]                                             |
//! | 17     | 2    | value_offset | byte offset of the stored value in the block                |
//! | 19     | 2    | value_len    | length of the stored value                                  |
//! | 21     | 1    | flags        | bit 0 = [`ITEM_FLAG_OVERFLOW`]; other bits zero             |
//! | 22     | 2    | reserved     | zero                                                        |
//!
//! An overflow item stores a 16-byte [`OverflowRef`] instead of its value:
//!
//! | offset | size | field     | meaning                                                        |
//! |--------|------|-----------|----------------------------------------------------------------|
//! | 0      | 8    | first     | first overflow block                                           |
//! | 8      | 4    | total_len | length of the whole value (> [`INLINE_VALUE_MAX`])            |
//! | 12     | 4    | crc       | crc32c of the whole value                                      |
//!
//! Internal node (`BlockKind::Internal`, level ≥ 1):
//!
//! | offset | size   | field      | meaning                                                     |
//! |--------|--------|------------|-------------------------------------------------------------|
//! | 0      | 32     | MetaHeader | kind `Internal`, level = children's level + 1               |
//! | 32     | 2      | count      | entries (at least 1)                                        |
//! | 34     | 6      | reserved   | zero                                                        |
//! | 40     | 25 × n | entries    | key (17) then child block u64, keys strictly ascending      |
//! | ..     | ..     | free space | zero                                                        |
//!
//! Overflow block (`BlockKind::Overflow`, level 0):
//!
//! | offset | size | field      | meaning                                                       |
//! |--------|------|------------|---------------------------------------------------------------|
//! | 0      | 32   | MetaHeader | kind `Overflow`                                               |
//! | 32     | 8    | next       | next block of the chain, 0 for the last                       |
//! | 40     | 4    | used       | data bytes in this block                                      |
//! | 44     | 4    | reserved   | zero                                                          |
//! | 48     | 4048 | data       | `used` bytes of the value, then zero                          |
//!
//! Tree invariants (the fence rules; [`NodeRef::check_in_tree`] checks them per node):
//! - Entry i of an internal node is a lower bound of child i's subtree, and entry i+1 an exclusive
//!   upper bound, so child i's subtree lies in `[key(i), key(i+1))` within the node's own fence.
//! - Entry 0 of every internal node equals the node's lower fence, which is [`Key::MIN`] along the
//!   root's leftmost path. Splits and merges then never need to rewrite a key in the parent except
//!   the separator of a right sibling.
//! - All leaves sit at level 0 and each child is exactly one level below its parent, which makes
//!   every descent end after at most [`HEIGHT_MAX`] steps whatever the child pointers say.
//! - Only the root may be an empty leaf.
//! - Every non-last block of an overflow chain is full, so a chain has exactly
//!   `ceil(total_len / OVERFLOW_DATA_SIZE)` blocks.
//!
//! [`LeafRef::parse`] and [`InternalRef::parse`] check everything a reader or a mutator relies on
//! in O(items). The O(items log items) checks that values are disjoint and that unused bytes are
//! zero live in [`LeafRef::verify`] and [`InternalRef::verify`], used by tree walks and fsck.

use std::cmp::Ordering;
use std::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::block::{BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE, META_HEADER_SIZE, META_MAGIC};
use crate::key::{Key, KEY_SIZE};
use crate::FormatError;

/// Size of the leaf header that follows the [`MetaHeader`].
const LEAF_FIELDS_SIZE: usize = 8;
/// Offset of the first leaf item.
pub const LEAF_HEADER_SIZE: usize = META_HEADER_SIZE + LEAF_FIELDS_SIZE;
/// Size of one leaf item table entry.
pub const ITEM_SIZE: usize = 24;
/// Bytes of a leaf available to items and values.
pub const LEAF_SPACE: usize = BLOCK_SIZE - LEAF_HEADER_SIZE;
/// Most items a leaf can hold (all with empty values).
pub const LEAF_ITEMS_MAX: usize = LEAF_SPACE / ITEM_SIZE;
/// Item flag: the stored value is an [`OverflowRef`].
pub const ITEM_FLAG_OVERFLOW: u8 = 1;

/// Size of the internal-node header that follows the [`MetaHeader`].
const INTERNAL_FIELDS_SIZE: usize = 8;
/// Offset of the first internal entry.
pub const INTERNAL_HEADER_SIZE: usize = META_HEADER_SIZE + INTERNAL_FIELDS_SIZE;
/// Size of one internal entry.
pub const ENTRY_SIZE: usize = KEY_SIZE + 8;
/// Most entries an internal node can hold.
pub const INTERNAL_ENTRIES_MAX: usize = (BLOCK_SIZE - INTERNAL_HEADER_SIZE) / ENTRY_SIZE;

/// Offset of the data in an overflow block.
pub const OVERFLOW_HEADER_SIZE: usize = META_HEADER_SIZE + 16;
/// Value bytes one overflow block carries.
pub const OVERFLOW_DATA_SIZE: usize = BLOCK_SIZE - OVERFLOW_HEADER_SIZE;
/// Size of the stored form of an overflow value.
pub const OVERFLOW_REF_SIZE: usize = 16;

/// Values longer than this are stored in an overflow chain.
pub const INLINE_VALUE_MAX: usize = 1024;
/// The longest value an item may have: a 64 KiB xattr value plus its encoding.
pub const VALUE_MAX: usize = 65536 + 256;
/// The longest overflow chain.
pub const OVERFLOW_BLOCKS_MAX: usize = VALUE_MAX.div_ceil(OVERFLOW_DATA_SIZE);
/// The largest leaf item (table entry plus inline value).
pub const LEAF_ITEM_BYTES_MAX: usize = ITEM_SIZE + INLINE_VALUE_MAX;

/// Most levels a tree may have, leaves included. Non-root internal nodes keep at least
/// [`INTERNAL_UNDERFULL_COUNT`] (40) children, so 16 levels address far more leaves than any
/// device has blocks; a deeper tree is corruption.
pub const HEIGHT_MAX: usize = 16;
/// A non-root leaf using fewer bytes (items plus values) than this is rebalanced.
pub const LEAF_UNDERFULL_BYTES: usize = LEAF_SPACE / 4;
/// A non-root internal node with fewer entries than this is rebalanced.
pub const INTERNAL_UNDERFULL_COUNT: usize = INTERNAL_ENTRIES_MAX / 4;

// A leaf split must leave room for the item that caused it, so a leaf must hold several maximal
// items; a balanced split of a full leaf plus one item then fits both halves (see
// `leaf_split_index`), and an internal node must branch.
const _: () = assert!(3 * LEAF_ITEM_BYTES_MAX <= LEAF_SPACE);
const _: () = assert!((LEAF_SPACE + 2 * LEAF_ITEM_BYTES_MAX) / 2 <= LEAF_SPACE);
const _: () = assert!(INTERNAL_ENTRIES_MAX >= 4);
const _: () = assert!(INTERNAL_UNDERFULL_COUNT >= 2);
const _: () = assert!(OVERFLOW_REF_SIZE <= INLINE_VALUE_MAX);
const _: () = assert!(VALUE_MAX <= u32::MAX as usize);
const _: () = assert!(BLOCK_SIZE <= u16::MAX as usize);
const _: () = assert!(HEIGHT_MAX <= u16::MAX as usize);

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct LeafFields {
    item_count: U16,
    values_start: U16,
    reserved: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ItemEntry {
    key: [u8; KEY_SIZE],
    value_offset: U16,
    value_len: U16,
    flags: u8,
    reserved: U16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct InternalFields {
    count: U16,
    reserved: [u8; 6],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ChildEntry {
    key: [u8; KEY_SIZE],
    child: U64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct OverflowFields {
    next: U64,
    used: U32,
    reserved: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawOverflowRef {
    first: U64,
    total_len: U32,
    crc: U32,
}

const _: () = assert!(size_of::<LeafFields>() == LEAF_FIELDS_SIZE);
const _: () = assert!(size_of::<ItemEntry>() == ITEM_SIZE);
const _: () = assert!(offset_of!(ItemEntry, value_offset) == 17);
const _: () = assert!(offset_of!(ItemEntry, flags) == 21);
const _: () = assert!(size_of::<InternalFields>() == INTERNAL_FIELDS_SIZE);
const _: () = assert!(size_of::<ChildEntry>() == ENTRY_SIZE);
const _: () = assert!(offset_of!(ChildEntry, child) == 17);
const _: () = assert!(size_of::<OverflowFields>() == OVERFLOW_HEADER_SIZE - META_HEADER_SIZE);
const _: () = assert!(offset_of!(OverflowFields, used) == 8);
const _: () = assert!(size_of::<RawOverflowRef>() == OVERFLOW_REF_SIZE);

fn malformed(addr: BlockAddr, what: impl Into<String>) -> FormatError {
    FormatError::malformed(addr.0, what)
}

/// Checks the parts of the header that do not depend on the checksum (which the journal stamps
/// only when the block is written) and returns the level.
fn check_header(block: &[u8], addr: BlockAddr, kind: BlockKind) -> Result<u16, FormatError> {
    let header = read_header(block, addr)?;
    if header.block_kind() != Some(kind) {
        let expected = kind.name();
        return Err(FormatError::WrongKind { addr: addr.0, expected, found: header.kind.get() });
    }
    Ok(header.level.get())
}

fn read_header(block: &[u8], addr: BlockAddr) -> Result<&MetaHeader, FormatError> {
    if block.len() != BLOCK_SIZE {
        return Err(malformed(addr, format!("node is {} bytes, not {BLOCK_SIZE}", block.len())));
    }
    let header = MetaHeader::ref_from_bytes(&block[..META_HEADER_SIZE]).expect("header size is constant");
    if header.magic.get() != META_MAGIC {
        return Err(FormatError::BadMagic { addr: addr.0, found: header.magic.get() });
    }
    if header.addr.get() != addr.0 {
        return Err(FormatError::Misdirected { addr: addr.0, found: header.addr.get() });
    }
    if header.reserved.get() != 0 {
        return Err(malformed(addr, "header reserved field is not zero"));
    }
    Ok(header)
}

/// The kind `block`'s header claims, without validating anything (`None` for a short block or
/// an unknown kind): lets a descent tell leaves from internal nodes before parsing either.
pub fn claimed_kind(block: &[u8]) -> Option<BlockKind> {
    let header = MetaHeader::ref_from_bytes(block.get(..META_HEADER_SIZE)?).ok()?;
    header.block_kind()
}

/// Binary search over `len` ascending keys read by `key_at`.
fn search_by(len: usize, key: Key, key_at: impl Fn(usize) -> Key) -> Result<usize, usize> {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        match key_at(mid).cmp(&key) {
            Ordering::Less => low = mid + 1,
            Ordering::Greater => high = mid,
            Ordering::Equal => return Ok(mid),
        }
    }
    Err(low)
}

fn all_zero(bytes: &[u8]) -> bool {
    // Folding without an early exit lets the compiler vectorise the scan.
    bytes.iter().fold(0u8, |acc, &b| acc | b) == 0
}

// ---------------------------------------------------------------------------------------------
// Leaves
// ---------------------------------------------------------------------------------------------

/// One leaf item as stored: for an overflow item `value` is the encoded [`OverflowRef`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafItem<'a> {
    pub key: Key,
    pub value: &'a [u8],
    pub overflow: bool,
}

impl LeafItem<'_> {
    /// Bytes the item takes in a leaf: its table entry plus its stored value.
    pub fn size(&self) -> usize {
        ITEM_SIZE + self.value.len()
    }

    fn check(&self, addr: BlockAddr) -> Result<(), FormatError> {
        if self.overflow {
            if self.value.len() != OVERFLOW_REF_SIZE {
                let what = format!("overflow item {:?} stores {} bytes", self.key, self.value.len());
                return Err(malformed(addr, what));
            }
            OverflowRef::decode(self.value, addr).map(|_| ())
        } else if self.value.len() > INLINE_VALUE_MAX {
            Err(FormatError::TooLarge { len: self.value.len(), max: INLINE_VALUE_MAX })
        } else {
            Ok(())
        }
    }
}

/// The sizes of a parsed leaf; valid only together with the block they were parsed from.
#[derive(Clone, Copy, Debug)]
struct LeafShape {
    count: usize,
    values_start: usize,
    /// Sum of the stored value lengths.
    value_bytes: usize,
}

impl LeafShape {
    fn table_end(&self) -> usize {
        LEAF_HEADER_SIZE + self.count * ITEM_SIZE
    }

    fn used_bytes(&self) -> usize {
        self.count * ITEM_SIZE + self.value_bytes
    }
}

fn item_entry(block: &[u8], index: usize) -> &ItemEntry {
    let at = LEAF_HEADER_SIZE + index * ITEM_SIZE;
    ItemEntry::ref_from_bytes(&block[at..at + ITEM_SIZE]).expect("item size is constant")
}

fn item_entry_mut(block: &mut [u8], index: usize) -> &mut ItemEntry {
    let at = LEAF_HEADER_SIZE + index * ITEM_SIZE;
    ItemEntry::mut_from_bytes(&mut block[at..at + ITEM_SIZE]).expect("item size is constant")
}

fn parse_leaf(block: &[u8], addr: BlockAddr) -> Result<LeafShape, FormatError> {
    let level = check_header(block, addr, BlockKind::Leaf)?;
    if level != 0 {
        return Err(malformed(addr, format!("leaf has level {level}")));
    }
    let fields =
        LeafFields::ref_from_bytes(&block[META_HEADER_SIZE..LEAF_HEADER_SIZE]).expect("leaf header size is constant");
    let count = usize::from(fields.item_count.get());
    let values_start = usize::from(fields.values_start.get());
    if count > LEAF_ITEMS_MAX {
        return Err(malformed(addr, format!("leaf has {count} items, at most {LEAF_ITEMS_MAX}")));
    }
    if fields.reserved.get() != 0 {
        return Err(malformed(addr, "leaf reserved field is not zero"));
    }
    let mut shape = LeafShape { count, values_start, value_bytes: 0 };
    if values_start < shape.table_end() || values_start > BLOCK_SIZE {
        return Err(malformed(addr, format!("leaf values start at {values_start}, inside the item table")));
    }
    let mut previous: Option<Key> = None;
    for index in 0..count {
        // Nodes are parsed on every access, so the common case (a well-formed inline item) is
        // decided by one combined test; the detailed checks and messages run only otherwise.
        let entry = item_entry(block, index);
        let key = Key::decode(&entry.key);
        let (offset, len) = (usize::from(entry.value_offset.get()), usize::from(entry.value_len.get()));
        let plain = entry.flags == 0
            && entry.reserved.get() == 0
            && len <= INLINE_VALUE_MAX
            && offset >= values_start
            && offset + len <= BLOCK_SIZE;
        if !plain {
            check_leaf_item(block, addr, &shape, index)?;
        }
        if previous.is_some_and(|p| p >= key) {
            return Err(malformed(addr, format!("leaf item {index} key {key:?} is not above its predecessor")));
        }
        previous = Some(key);
        shape.value_bytes += len;
    }
    // The values must fit their region for compaction to be possible; disjointness is `verify`'s.
    if shape.value_bytes > BLOCK_SIZE - values_start {
        return Err(malformed(addr, "leaf values overlap (more value bytes than value space)"));
    }
    Ok(shape)
}

/// The full checks of one item, with a message naming what is wrong.
fn check_leaf_item(block: &[u8], addr: BlockAddr, shape: &LeafShape, index: usize) -> Result<(), FormatError> {
    let entry = item_entry(block, index);
    let key = Key::decode(&entry.key);
    let offset = usize::from(entry.value_offset.get());
    let len = usize::from(entry.value_len.get());
    if offset < shape.values_start || offset + len > BLOCK_SIZE {
        let what = format!("leaf item {index} value {offset}+{len} is outside the value region");
        return Err(malformed(addr, what));
    }
    if entry.flags & !ITEM_FLAG_OVERFLOW != 0 || entry.reserved.get() != 0 {
        return Err(malformed(addr, format!("leaf item {index} has unknown flags or reserved bits")));
    }
    let item = LeafItem { key, value: &block[offset..offset + len], overflow: entry.flags & ITEM_FLAG_OVERFLOW != 0 };
    item.check(addr).map_err(|error| match error {
        FormatError::TooLarge { .. } => malformed(addr, format!("leaf item {index} inline value is {len} bytes")),
        other => other,
    })
}

/// A read-only view of a validated leaf.
#[derive(Clone, Copy, Debug)]
pub struct LeafRef<'a> {
    block: &'a [u8],
    addr: BlockAddr,
    shape: LeafShape,
}

impl<'a> LeafRef<'a> {
    /// Validates `block` as the leaf at `addr` (everything but the checksum, which the store
    /// verifies when it reads from disk). Never panics, whatever the bytes.
    pub fn parse(block: &'a [u8], addr: BlockAddr) -> Result<LeafRef<'a>, FormatError> {
        let shape = parse_leaf(block, addr)?;
        Ok(LeafRef { block, addr, shape })
    }

    /// The block address the leaf was parsed for.
    pub fn addr(&self) -> BlockAddr {
        self.addr
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.shape.count
    }

    /// True when the leaf has no items.
    pub fn is_empty(&self) -> bool {
        self.shape.count == 0
    }

    /// Key of item `index`.
    pub fn key(&self, index: usize) -> Key {
        assert!(index < self.len());
        Key::decode(&item_entry(self.block, index).key)
    }

    /// Stored value of item `index`: the value itself, or an encoded [`OverflowRef`].
    pub fn value(&self, index: usize) -> &'a [u8] {
        assert!(index < self.len());
        let entry = item_entry(self.block, index);
        let offset = usize::from(entry.value_offset.get());
        &self.block[offset..offset + usize::from(entry.value_len.get())]
    }

    /// True when item `index` stores its value in an overflow chain.
    pub fn is_overflow(&self, index: usize) -> bool {
        assert!(index < self.len());
        item_entry(self.block, index).flags & ITEM_FLAG_OVERFLOW != 0
    }

    /// The overflow reference of item `index`, if it has one.
    pub fn overflow_ref(&self, index: usize) -> Option<OverflowRef> {
        let decode = || OverflowRef::decode(self.value(index), self.addr).expect("validated by parse");
        self.is_overflow(index).then(decode)
    }

    /// Item `index` as stored.
    pub fn item(&self, index: usize) -> LeafItem<'a> {
        LeafItem { key: self.key(index), value: self.value(index), overflow: self.is_overflow(index) }
    }

    /// All items in key order.
    pub fn items(&self) -> impl ExactSizeIterator<Item = LeafItem<'a>> + '_ {
        (0..self.len()).map(|index| self.item(index))
    }

    /// `Ok(index)` of `key`, or `Err(index)` where it would be inserted.
    pub fn search(&self, key: Key) -> Result<usize, usize> {
        search_by(self.len(), key, |index| self.key(index))
    }

    /// Bytes used by items and their stored values.
    pub fn used_bytes(&self) -> usize {
        self.shape.used_bytes()
    }

    /// True when an item storing `stored_len` value bytes fits (possibly after compaction).
    pub fn fits(&self, stored_len: usize) -> bool {
        self.used_bytes() + ITEM_SIZE + stored_len <= LEAF_SPACE
    }

    /// True when item `index`'s stored value can be replaced by one of `stored_len` bytes.
    pub fn can_replace(&self, index: usize, stored_len: usize) -> bool {
        self.used_bytes() - self.value(index).len() + stored_len <= LEAF_SPACE
    }

    /// True when a non-root leaf this empty should be merged with or refilled from a sibling.
    pub fn is_underfull(&self) -> bool {
        self.used_bytes() < LEAF_UNDERFULL_BYTES
    }

    /// The strict checks `parse` leaves out: stored values are pairwise disjoint and every byte
    /// not covered by the header, the item table or a value is zero.
    pub fn verify(&self) -> Result<(), FormatError> {
        let mut ranges: Vec<(usize, usize)> = (0..self.len())
            .map(|index| {
                let entry = item_entry(self.block, index);
                let offset = usize::from(entry.value_offset.get());
                (offset, offset + usize::from(entry.value_len.get()))
            })
            .filter(|(start, end)| start < end)
            .collect();
        ranges.sort_unstable();
        let mut cursor = self.shape.table_end();
        for (start, end) in ranges {
            if start < cursor {
                return Err(malformed(self.addr, format!("leaf value at {start} overlaps another")));
            }
            if !all_zero(&self.block[cursor..start]) {
                return Err(malformed(self.addr, format!("leaf free space {cursor}..{start} is not zero")));
            }
            cursor = end;
        }
        if !all_zero(&self.block[cursor..]) {
            return Err(malformed(self.addr, format!("leaf free space {cursor}.. is not zero")));
        }
        Ok(())
    }
}

/// A validated leaf being modified. Every method keeps the block a valid leaf and asserts its
/// preconditions: callers check [`LeafRef::fits`] and key order first.
#[derive(Debug)]
pub struct LeafMut<'a> {
    block: &'a mut [u8],
    addr: BlockAddr,
    shape: LeafShape,
}

impl<'a> LeafMut<'a> {
    /// Validates `block` as [`LeafRef::parse`] does, for modification.
    pub fn parse(block: &'a mut [u8], addr: BlockAddr) -> Result<LeafMut<'a>, FormatError> {
        let shape = parse_leaf(block, addr)?;
        Ok(LeafMut { block, addr, shape })
    }

    /// Makes `block` an empty leaf at `addr`.
    pub fn init(block: &'a mut [u8], addr: BlockAddr) -> LeafMut<'a> {
        assert_eq!(block.len(), BLOCK_SIZE);
        block.fill(0);
        MetaHeader::init(block, BlockKind::Leaf, 0, addr);
        let shape = LeafShape { count: 0, values_start: BLOCK_SIZE, value_bytes: 0 };
        let mut leaf = LeafMut { block, addr, shape };
        leaf.write_fields();
        leaf
    }

    /// A read-only view of the current contents.
    pub fn view(&self) -> LeafRef<'_> {
        LeafRef { block: self.block, addr: self.addr, shape: self.shape }
    }

    fn write_fields(&mut self) {
        let fields = LeafFields {
            item_count: u16::try_from(self.shape.count).expect("count is bounded").into(),
            values_start: u16::try_from(self.shape.values_start).expect("offset is in the block").into(),
            reserved: 0.into(),
        };
        fields.write_to(&mut self.block[META_HEADER_SIZE..LEAF_HEADER_SIZE]).expect("leaf header size is constant");
    }

    /// Inserts `item` at `index`, compacting the values first when the free gap is too small.
    pub fn insert(&mut self, index: usize, item: LeafItem<'_>) {
        let view = self.view();
        assert!(index <= view.len());
        assert!(view.fits(item.value.len()), "leaf {} has no room for the item", self.addr);
        assert!(index == 0 || view.key(index - 1) < item.key);
        assert!(index == view.len() || item.key < view.key(index));
        item.check(self.addr).expect("inserted item is well formed");
        if self.shape.values_start - self.shape.table_end() < item.size() {
            self.compact();
        }
        assert!(self.shape.values_start - self.shape.table_end() >= item.size());
        let offset = self.push_value(item.value);
        let table = LEAF_HEADER_SIZE + index * ITEM_SIZE;
        self.block.copy_within(table..self.shape.table_end(), table + ITEM_SIZE);
        self.shape.count += 1;
        self.write_entry(index, item.key, offset, item.value.len(), item.overflow);
        self.write_fields();
    }

    /// Removes item `index`, zeroing its bytes so that free space stays zero.
    pub fn remove(&mut self, index: usize) {
        assert!(index < self.shape.count);
        self.drop_value(index);
        let table = LEAF_HEADER_SIZE + index * ITEM_SIZE;
        let end = self.shape.table_end();
        self.block.copy_within(table + ITEM_SIZE..end, table);
        self.block[end - ITEM_SIZE..end].fill(0);
        self.shape.count -= 1;
        self.write_fields();
    }

    /// Replaces the stored value of item `index`, keeping its key.
    pub fn replace(&mut self, index: usize, value: &[u8], overflow: bool) {
        let key = self.view().key(index);
        assert!(self.view().can_replace(index, value.len()), "leaf {} has no room for the value", self.addr);
        LeafItem { key, value, overflow }.check(self.addr).expect("replacement is well formed");
        self.drop_value(index);
        if self.shape.values_start - self.shape.table_end() < value.len() {
            self.compact();
        }
        let offset = self.push_value(value);
        self.write_entry(index, key, offset, value.len(), overflow);
        self.write_fields();
    }

    /// Packs all values against the end of the block so the free space is one gap.
    pub fn compact(&mut self) {
        let mut copy = [0u8; BLOCK_SIZE];
        copy.copy_from_slice(self.block);
        let table_end = self.shape.table_end();
        self.block[table_end..].fill(0);
        let mut cursor = BLOCK_SIZE;
        for index in 0..self.shape.count {
            let entry = item_entry(&copy, index);
            let (offset, len) = (usize::from(entry.value_offset.get()), usize::from(entry.value_len.get()));
            cursor -= len;
            self.block[cursor..cursor + len].copy_from_slice(&copy[offset..offset + len]);
            item_entry_mut(self.block, index).value_offset = u16::try_from(cursor).expect("in block").into();
        }
        self.shape.values_start = cursor;
        self.write_fields();
    }

    /// Writes `value` just below the values; the caller made the gap large enough.
    fn push_value(&mut self, value: &[u8]) -> usize {
        assert!(self.shape.values_start - self.shape.table_end() >= value.len());
        let offset = self.shape.values_start - value.len();
        self.block[offset..offset + value.len()].copy_from_slice(value);
        self.shape.values_start = offset;
        self.shape.value_bytes += value.len();
        offset
    }

    /// Zeroes item `index`'s value and leaves the item with an empty value.
    fn drop_value(&mut self, index: usize) {
        let entry = item_entry(self.block, index);
        let (offset, len) = (usize::from(entry.value_offset.get()), usize::from(entry.value_len.get()));
        // The bytes become a hole until the next compaction. `values_start` stays put even when
        // this was the lowest value: empty values elsewhere may point at it.
        self.block[offset..offset + len].fill(0);
        self.shape.value_bytes -= len;
        let entry = item_entry_mut(self.block, index);
        entry.value_len = 0.into();
        entry.value_offset = u16::try_from(self.shape.values_start).expect("in block").into();
    }

    fn write_entry(&mut self, index: usize, key: Key, offset: usize, len: usize, overflow: bool) {
        let entry = ItemEntry {
            key: key.encode(),
            value_offset: u16::try_from(offset).expect("in block").into(),
            value_len: u16::try_from(len).expect("value is short").into(),
            flags: if overflow { ITEM_FLAG_OVERFLOW } else { 0 },
            reserved: 0.into(),
        };
        *item_entry_mut(self.block, index) = entry;
    }
}

/// Fills `block` with a leaf at `addr` holding `items`, which must be strictly ascending and fit.
pub fn build_leaf_into(block: &mut [u8], addr: BlockAddr, items: &[LeafItem<'_>]) -> Result<(), FormatError> {
    let total: usize = items.iter().map(LeafItem::size).sum();
    if total > LEAF_SPACE {
        return Err(FormatError::TooLarge { len: total, max: LEAF_SPACE });
    }
    for (index, item) in items.iter().enumerate() {
        item.check(addr)?;
        if index > 0 && items[index - 1].key >= item.key {
            return Err(malformed(addr, format!("leaf items are not ascending at {:?}", item.key)));
        }
    }
    let mut leaf = LeafMut::init(block, addr);
    for (index, item) in items.iter().enumerate() {
        leaf.insert(index, *item);
    }
    Ok(())
}

/// A fresh leaf block at `addr` holding inline `items` (strictly ascending), as mkfs writes it.
pub fn build_leaf(addr: BlockAddr, items: &[(Key, &[u8])]) -> Result<Vec<u8>, FormatError> {
    let items: Vec<LeafItem<'_>> = items.iter().map(|&(key, value)| LeafItem { key, value, overflow: false }).collect();
    let mut block = vec![0u8; BLOCK_SIZE];
    build_leaf_into(&mut block, addr, &items)?;
    Ok(block)
}

/// Where to split `items` into two leaves: the index `s` in `1..len` that makes the byte sizes of
/// `items[..s]` and `items[s..]` closest.
///
/// Both halves always fit a leaf when the items are at most a full leaf plus one maximal item:
/// e.g. 4056 + 1048 = 5104 bytes split as evenly as items allow leaves each half under
/// (5104 + 1048) / 2 = 3076 bytes.
pub fn leaf_split_index(items: &[LeafItem<'_>]) -> usize {
    assert!(items.len() >= 2);
    let total: usize = items.iter().map(LeafItem::size).sum();
    let mut best = (usize::MAX, 1);
    let mut left = 0;
    for (index, item) in items.iter().enumerate().take(items.len() - 1) {
        left += item.size();
        let imbalance = left.abs_diff(total - left);
        if imbalance < best.0 {
            best = (imbalance, index + 1);
        }
    }
    best.1
}

// ---------------------------------------------------------------------------------------------
// Internal nodes
// ---------------------------------------------------------------------------------------------

fn child_entry(block: &[u8], index: usize) -> &ChildEntry {
    let at = INTERNAL_HEADER_SIZE + index * ENTRY_SIZE;
    ChildEntry::ref_from_bytes(&block[at..at + ENTRY_SIZE]).expect("entry size is constant")
}

/// A read-only view of a validated internal node.
#[derive(Clone, Copy, Debug)]
pub struct InternalRef<'a> {
    block: &'a [u8],
    addr: BlockAddr,
    level: u16,
    count: usize,
}

fn parse_internal(block: &[u8], addr: BlockAddr) -> Result<(u16, usize), FormatError> {
    let (level, count) = parse_internal_header(block, addr)?;
    let mut previous: Option<Key> = None;
    for index in 0..count {
        let entry = child_entry(block, index);
        let key = Key::decode(&entry.key);
        let child = entry.child.get();
        if child == 0 || child == addr.0 {
            return Err(malformed(addr, format!("internal entry {index} points to block {child}")));
        }
        if previous.is_some_and(|p| p >= key) {
            return Err(malformed(addr, format!("internal entry {index} key {key:?} is not above its predecessor")));
        }
        previous = Some(key);
    }
    Ok((level, count))
}

/// The header checks of an internal node: kind, level, entry count, reserved bytes.
fn parse_internal_header(block: &[u8], addr: BlockAddr) -> Result<(u16, usize), FormatError> {
    let level = check_header(block, addr, BlockKind::Internal)?;
    if level == 0 || usize::from(level) >= HEIGHT_MAX {
        return Err(malformed(addr, format!("internal node has level {level}")));
    }
    let fields = InternalFields::ref_from_bytes(&block[META_HEADER_SIZE..INTERNAL_HEADER_SIZE])
        .expect("internal header size is constant");
    let count = usize::from(fields.count.get());
    if count == 0 || count > INTERNAL_ENTRIES_MAX {
        return Err(malformed(addr, format!("internal node has {count} entries")));
    }
    if fields.reserved != [0; 6] {
        return Err(malformed(addr, "internal node reserved field is not zero"));
    }
    Ok((level, count))
}

impl<'a> InternalRef<'a> {
    /// Validates `block` as the internal node at `addr` (everything but the checksum). Never
    /// panics, whatever the bytes.
    pub fn parse(block: &'a [u8], addr: BlockAddr) -> Result<InternalRef<'a>, FormatError> {
        let (level, count) = parse_internal(block, addr)?;
        Ok(InternalRef { block, addr, level, count })
    }

    /// Reads an internal node that passed [`InternalRef::parse`] before and has been changed
    /// only through [`InternalMut`] since: checks the header (kind, level, entry count) but not
    /// every entry again. Never panics, whatever the bytes.
    pub fn parse_trusted(block: &'a [u8], addr: BlockAddr) -> Result<InternalRef<'a>, FormatError> {
        let (level, count) = parse_internal_header(block, addr)?;
        Ok(InternalRef { block, addr, level, count })
    }

    /// The block address the node was parsed for.
    pub fn addr(&self) -> BlockAddr {
        self.addr
    }

    /// The node's level (1 = its children are leaves).
    pub fn level(&self) -> u16 {
        self.level
    }

    /// Number of entries (at least 1).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a valid internal node has an entry. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Key of entry `index`: a lower bound of child `index`'s subtree.
    pub fn key(&self, index: usize) -> Key {
        assert!(index < self.count);
        Key::decode(&child_entry(self.block, index).key)
    }

    /// Child block of entry `index`.
    pub fn child(&self, index: usize) -> BlockAddr {
        assert!(index < self.count);
        BlockAddr(child_entry(self.block, index).child.get())
    }

    /// All entries in key order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (Key, BlockAddr)> + '_ {
        (0..self.count).map(|index| (self.key(index), self.child(index)))
    }

    /// `Ok(index)` of an entry with exactly `key`, or `Err(index)` where it would be inserted.
    pub fn search(&self, key: Key) -> Result<usize, usize> {
        search_by(self.count, key, |index| self.key(index))
    }

    /// The entry whose subtree may hold `key`: the last one whose key is at most `key` (entry 0
    /// for smaller keys, which the fence rules route here only on the leftmost path).
    pub fn route(&self, key: Key) -> usize {
        match self.search(key) {
            Ok(index) => index,
            Err(index) => index.saturating_sub(1),
        }
    }

    /// The key range of child `index`, given this node's own range.
    pub fn child_fence(&self, index: usize, fence: &Fence) -> Fence {
        let upper = if index + 1 < self.count { Some(self.key(index + 1)) } else { fence.upper };
        Fence { lower: self.key(index), upper }
    }

    /// True when a non-root node this small should be merged with or refilled from a sibling.
    pub fn is_underfull(&self) -> bool {
        self.count < INTERNAL_UNDERFULL_COUNT
    }

    /// The strict check `parse` leaves out: bytes after the entry table are zero.
    pub fn verify(&self) -> Result<(), FormatError> {
        let end = INTERNAL_HEADER_SIZE + self.count * ENTRY_SIZE;
        if !all_zero(&self.block[end..]) {
            return Err(malformed(self.addr, format!("internal free space {end}.. is not zero")));
        }
        Ok(())
    }
}

/// A validated internal node being modified; methods keep it valid and assert preconditions.
#[derive(Debug)]
pub struct InternalMut<'a> {
    block: &'a mut [u8],
    addr: BlockAddr,
    level: u16,
    count: usize,
}

impl<'a> InternalMut<'a> {
    /// Validates `block` as [`InternalRef::parse`] does, for modification.
    pub fn parse(block: &'a mut [u8], addr: BlockAddr) -> Result<InternalMut<'a>, FormatError> {
        let (level, count) = parse_internal(block, addr)?;
        Ok(InternalMut { block, addr, level, count })
    }

    /// A read-only view of the current contents.
    pub fn view(&self) -> InternalRef<'_> {
        InternalRef { block: self.block, addr: self.addr, level: self.level, count: self.count }
    }

    /// Inserts entry (`key`, `child`) at `index`; the node must not be full.
    pub fn insert(&mut self, index: usize, key: Key, child: BlockAddr) {
        let view = self.view();
        assert!(index <= view.len());
        assert!(view.len() < INTERNAL_ENTRIES_MAX, "internal node {} is full", self.addr);
        assert!(index == 0 || view.key(index - 1) < key);
        assert!(index == view.len() || key < view.key(index));
        let at = INTERNAL_HEADER_SIZE + index * ENTRY_SIZE;
        let end = INTERNAL_HEADER_SIZE + self.count * ENTRY_SIZE;
        self.block.copy_within(at..end, at + ENTRY_SIZE);
        self.count += 1;
        self.write_entry(index, key, child);
        self.write_count();
    }

    /// Removes entry `index`; the node keeps at least one entry.
    pub fn remove(&mut self, index: usize) {
        assert!(index < self.count);
        assert!(self.count >= 2, "internal node {} would become empty", self.addr);
        let at = INTERNAL_HEADER_SIZE + index * ENTRY_SIZE;
        let end = INTERNAL_HEADER_SIZE + self.count * ENTRY_SIZE;
        self.block.copy_within(at + ENTRY_SIZE..end, at);
        self.block[end - ENTRY_SIZE..end].fill(0);
        self.count -= 1;
        self.write_count();
    }

    /// Changes the key of entry `index`, which must stay between its neighbours.
    pub fn set_key(&mut self, index: usize, key: Key) {
        let view = self.view();
        assert!(index < view.len());
        assert!(index == 0 || view.key(index - 1) < key);
        assert!(index + 1 == view.len() || key < view.key(index + 1));
        let child = view.child(index);
        self.write_entry(index, key, child);
    }

    fn write_entry(&mut self, index: usize, key: Key, child: BlockAddr) {
        assert!(child.0 != 0 && child != self.addr);
        let at = INTERNAL_HEADER_SIZE + index * ENTRY_SIZE;
        let entry = ChildEntry { key: key.encode(), child: child.0.into() };
        entry.write_to(&mut self.block[at..at + ENTRY_SIZE]).expect("entry size is constant");
    }

    fn write_count(&mut self) {
        let fields = InternalFields { count: u16::try_from(self.count).expect("bounded").into(), reserved: [0; 6] };
        fields.write_to(&mut self.block[META_HEADER_SIZE..INTERNAL_HEADER_SIZE]).expect("size is constant");
    }
}

/// Fills `block` with an internal node at `addr` and `level` holding `entries` (strictly
/// ascending, 1 to [`INTERNAL_ENTRIES_MAX`] of them).
pub fn build_internal_into(
    block: &mut [u8],
    addr: BlockAddr,
    level: u16,
    entries: &[(Key, BlockAddr)],
) -> Result<(), FormatError> {
    assert_eq!(block.len(), BLOCK_SIZE);
    if entries.is_empty() || entries.len() > INTERNAL_ENTRIES_MAX {
        return Err(malformed(addr, format!("internal node cannot hold {} entries", entries.len())));
    }
    if level == 0 || usize::from(level) >= HEIGHT_MAX {
        return Err(malformed(addr, format!("internal node cannot have level {level}")));
    }
    for (index, &(key, child)) in entries.iter().enumerate() {
        if index > 0 && entries[index - 1].0 >= key {
            return Err(malformed(addr, format!("internal entries are not ascending at {key:?}")));
        }
        if child.0 == 0 || child == addr {
            return Err(malformed(addr, format!("internal entry cannot point to block {child}")));
        }
    }
    block.fill(0);
    MetaHeader::init(block, BlockKind::Internal, level, addr);
    let mut node = InternalMut { block, addr, level, count: entries.len() };
    for (index, &(key, child)) in entries.iter().enumerate() {
        node.write_entry(index, key, child);
    }
    node.write_count();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Either node kind, and the fence rules
// ---------------------------------------------------------------------------------------------

/// The half-open key range `[lower, upper)` a subtree must lie in (`upper` = None: unbounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub lower: Key,
    pub upper: Option<Key>,
}

impl Fence {
    /// The root's range: every key.
    pub const ROOT: Fence = Fence { lower: Key::MIN, upper: None };

    /// True when `key` lies in the range.
    pub fn contains(&self, key: Key) -> bool {
        self.lower <= key && self.upper.is_none_or(|upper| key < upper)
    }
}

/// A validated B-tree node of either kind.
#[derive(Clone, Copy, Debug)]
pub enum NodeRef<'a> {
    Leaf(LeafRef<'a>),
    Internal(InternalRef<'a>),
}

impl<'a> NodeRef<'a> {
    /// Validates `block` as a leaf or internal node at `addr`, whichever its header says.
    pub fn parse(block: &'a [u8], addr: BlockAddr) -> Result<NodeRef<'a>, FormatError> {
        let header = read_header(block, addr)?;
        match header.block_kind() {
            Some(BlockKind::Leaf) => LeafRef::parse(block, addr).map(NodeRef::Leaf),
            Some(BlockKind::Internal) => InternalRef::parse(block, addr).map(NodeRef::Internal),
            _ => Err(FormatError::WrongKind { addr: addr.0, expected: "B-tree node", found: header.kind.get() }),
        }
    }

    /// The node's level (0 for leaves).
    pub fn level(&self) -> u16 {
        match self {
            NodeRef::Leaf(_) => 0,
            NodeRef::Internal(node) => node.level(),
        }
    }

    /// The node's kind.
    pub fn kind(&self) -> BlockKind {
        match self {
            NodeRef::Leaf(_) => BlockKind::Leaf,
            NodeRef::Internal(_) => BlockKind::Internal,
        }
    }

    /// Checks the node against its place in the tree: the level its parent implies (`None` for
    /// the root), the key range `fence`, and that only the root may be an empty leaf.
    pub fn check_in_tree(&self, fence: &Fence, expected_level: Option<u16>, is_root: bool) -> Result<(), FormatError> {
        let addr = match self {
            NodeRef::Leaf(leaf) => leaf.addr(),
            NodeRef::Internal(node) => node.addr(),
        };
        if expected_level.is_some_and(|level| level != self.level()) {
            let what = format!("node has level {}, its parent implies {expected_level:?}", self.level());
            return Err(malformed(addr, what));
        }
        match self {
            NodeRef::Leaf(leaf) => check_leaf_fence(leaf, fence, is_root),
            NodeRef::Internal(node) => check_internal_fence(node, fence),
        }
    }
}

fn check_leaf_fence(leaf: &LeafRef<'_>, fence: &Fence, is_root: bool) -> Result<(), FormatError> {
    if leaf.is_empty() {
        return if is_root { Ok(()) } else { Err(malformed(leaf.addr(), "non-root leaf is empty")) };
    }
    let (first, last) = (leaf.key(0), leaf.key(leaf.len() - 1));
    // Keys are ascending, so the end keys being inside the range puts every key inside.
    if !fence.contains(first) || !fence.contains(last) {
        let what = format!("leaf keys {first:?}..={last:?} are outside the parent's range {fence:?}");
        return Err(malformed(leaf.addr(), what));
    }
    Ok(())
}

fn check_internal_fence(node: &InternalRef<'_>, fence: &Fence) -> Result<(), FormatError> {
    let (first, last) = (node.key(0), node.key(node.len() - 1));
    if first != fence.lower {
        let what = format!("first entry key {first:?} differs from the parent's bound {:?}", fence.lower);
        return Err(malformed(node.addr(), what));
    }
    if !fence.contains(last) {
        let what = format!("entry key {last:?} is outside the parent's range {fence:?}");
        return Err(malformed(node.addr(), what));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Overflow chains
// ---------------------------------------------------------------------------------------------

/// The stored form of a value kept in an overflow chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverflowRef {
    /// The first block of the chain.
    pub first: BlockAddr,
    /// Length of the whole value.
    pub total_len: u32,
    /// crc32c of the whole value.
    pub crc: u32,
}

impl OverflowRef {
    /// The reference for `value` stored in a chain starting at `first`.
    pub fn for_value(first: BlockAddr, value: &[u8]) -> OverflowRef {
        assert!(value.len() > INLINE_VALUE_MAX && value.len() <= VALUE_MAX);
        assert!(first.0 != 0);
        let total_len = u32::try_from(value.len()).expect("VALUE_MAX fits u32");
        OverflowRef { first, total_len, crc: crc32c::crc32c(value) }
    }

    /// The 16 stored bytes.
    pub fn encode(&self) -> [u8; OVERFLOW_REF_SIZE] {
        let raw = RawOverflowRef { first: self.first.0.into(), total_len: self.total_len.into(), crc: self.crc.into() };
        let mut out = [0u8; OVERFLOW_REF_SIZE];
        raw.write_to(&mut out[..]).expect("size is constant");
        out
    }

    /// Decodes and validates a stored reference found in leaf `addr`.
    pub fn decode(bytes: &[u8], addr: BlockAddr) -> Result<OverflowRef, FormatError> {
        let raw = RawOverflowRef::read_from_bytes(bytes)
            .map_err(|_| malformed(addr, format!("overflow reference is {} bytes", bytes.len())))?;
        let reference =
            OverflowRef { first: BlockAddr(raw.first.get()), total_len: raw.total_len.get(), crc: raw.crc.get() };
        let len = reference.len();
        if len <= INLINE_VALUE_MAX || len > VALUE_MAX {
            return Err(malformed(addr, format!("overflow value length {len} is out of range")));
        }
        if reference.first.0 == 0 || reference.first == addr {
            return Err(malformed(addr, format!("overflow chain starts at block {}", reference.first)));
        }
        Ok(reference)
    }

    /// Length of the value.
    pub fn len(&self) -> usize {
        self.total_len as usize
    }

    /// Always false: overflow values are longer than [`INLINE_VALUE_MAX`].
    pub fn is_empty(&self) -> bool {
        self.total_len == 0
    }

    /// Blocks in the chain.
    pub fn block_count(&self) -> usize {
        self.len().div_ceil(OVERFLOW_DATA_SIZE)
    }
}

/// Overflow blocks a value of `value_len` bytes needs (0 when it is stored inline).
pub fn overflow_block_count(value_len: usize) -> usize {
    if value_len > INLINE_VALUE_MAX {
        value_len.div_ceil(OVERFLOW_DATA_SIZE)
    } else {
        0
    }
}

/// A validated overflow block.
#[derive(Clone, Copy, Debug)]
pub struct OverflowBlock<'a> {
    /// The next block of the chain, if any.
    pub next: Option<BlockAddr>,
    /// The value bytes this block carries.
    pub data: &'a [u8],
}

impl<'a> OverflowBlock<'a> {
    /// Validates `block` as the overflow block at `addr` (everything but the checksum).
    pub fn parse(block: &'a [u8], addr: BlockAddr) -> Result<OverflowBlock<'a>, FormatError> {
        let level = check_header(block, addr, BlockKind::Overflow)?;
        let fields = OverflowFields::ref_from_bytes(&block[META_HEADER_SIZE..OVERFLOW_HEADER_SIZE])
            .expect("overflow header size is constant");
        let used = usize::try_from(fields.used.get()).unwrap_or(usize::MAX);
        if level != 0 || fields.reserved.get() != 0 {
            return Err(malformed(addr, "overflow block has a level or reserved bits"));
        }
        if used == 0 || used > OVERFLOW_DATA_SIZE {
            return Err(malformed(addr, format!("overflow block uses {used} bytes")));
        }
        let next = fields.next.get();
        if next == addr.0 {
            return Err(malformed(addr, "overflow block points to itself"));
        }
        let data_end = OVERFLOW_HEADER_SIZE + used;
        if !all_zero(&block[data_end..]) {
            return Err(malformed(addr, "overflow block has bytes after its data"));
        }
        let next = (next != 0).then_some(BlockAddr(next));
        Ok(OverflowBlock { next, data: &block[OVERFLOW_HEADER_SIZE..data_end] })
    }
}

/// Fills `block` with an overflow block at `addr` carrying `data`, linked to `next`.
pub fn build_overflow_into(block: &mut [u8], addr: BlockAddr, next: Option<BlockAddr>, data: &[u8]) {
    assert_eq!(block.len(), BLOCK_SIZE);
    assert!(!data.is_empty() && data.len() <= OVERFLOW_DATA_SIZE);
    assert!(next != Some(addr) && next != Some(BlockAddr(0)));
    block.fill(0);
    MetaHeader::init(block, BlockKind::Overflow, 0, addr);
    let fields = OverflowFields {
        next: next.map_or(0, |n| n.0).into(),
        used: u32::try_from(data.len()).expect("bounded by the block").into(),
        reserved: 0.into(),
    };
    fields.write_to(&mut block[META_HEADER_SIZE..OVERFLOW_HEADER_SIZE]).expect("size is constant");
    block[OVERFLOW_HEADER_SIZE..OVERFLOW_HEADER_SIZE + data.len()].copy_from_slice(data);
}

/// Reassembles an overflow value block by block, checking the chain's shape and the value's crc.
///
/// The caller loads [`OverflowReader::next_block`] and hands it to [`OverflowReader::push`] until
/// it returns `None`, then calls [`OverflowReader::finish`]. At most
/// [`OverflowRef::block_count`] blocks are ever requested, whatever the `next` pointers say.
#[derive(Debug)]
pub struct OverflowReader {
    reference: OverflowRef,
    data: Vec<u8>,
    blocks: Vec<BlockAddr>,
    next: Option<BlockAddr>,
}

impl OverflowReader {
    /// Starts reading the chain of `reference`.
    pub fn new(reference: OverflowRef) -> OverflowReader {
        let blocks = Vec::with_capacity(reference.block_count());
        let data = Vec::with_capacity(reference.len());
        OverflowReader { reference, data, blocks, next: Some(reference.first) }
    }

    /// The block to load next, or `None` when the chain is complete.
    pub fn next_block(&self) -> Option<BlockAddr> {
        self.next
    }

    /// Takes the contents of the block [`Self::next_block`] named.
    pub fn push(&mut self, block: &[u8], addr: BlockAddr) -> Result<(), FormatError> {
        assert_eq!(Some(addr), self.next, "pushed a block the reader did not ask for");
        if self.blocks.contains(&addr) {
            return Err(malformed(addr, "overflow chain visits this block twice"));
        }
        let parsed = OverflowBlock::parse(block, addr)?;
        let remaining = self.reference.len() - self.data.len();
        let is_last = parsed.data.len() == remaining;
        if parsed.data.len() > remaining {
            return Err(malformed(addr, format!("overflow block holds more than the {remaining} bytes left")));
        }
        if !is_last && parsed.data.len() != OVERFLOW_DATA_SIZE {
            return Err(malformed(addr, "overflow block before the end of its chain is not full"));
        }
        if is_last != parsed.next.is_none() {
            let what = format!("overflow chain link disagrees with the {remaining} bytes left");
            return Err(malformed(addr, what));
        }
        self.data.extend_from_slice(parsed.data);
        self.blocks.push(addr);
        self.next = parsed.next;
        Ok(())
    }

    /// The value and the blocks of its chain, once the crc has been checked.
    pub fn finish(self) -> Result<(Vec<u8>, Vec<BlockAddr>), FormatError> {
        assert!(self.next.is_none(), "chain not fully read");
        assert_eq!(self.data.len(), self.reference.len());
        let computed = crc32c::crc32c(&self.data);
        if computed != self.reference.crc {
            let addr = self.reference.first.0;
            return Err(FormatError::Checksum { addr, stored: self.reference.crc, computed });
        }
        Ok((self.data, self.blocks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const ADDR: BlockAddr = BlockAddr(1000);

    fn key(object: u64, offset: u64) -> Key {
        Key { object, kind: 3, offset }
    }

    fn leaf_items(block: &[u8]) -> Vec<(Key, Vec<u8>)> {
        let leaf = LeafRef::parse(block, ADDR).unwrap();
        leaf.verify().unwrap();
        leaf.items().map(|item| (item.key, item.value.to_vec())).collect()
    }

    #[test]
    fn layout_constants() {
        assert_eq!(LEAF_ITEMS_MAX, 169);
        assert_eq!(INTERNAL_ENTRIES_MAX, 162);
        assert_eq!(OVERFLOW_DATA_SIZE, 4048);
        assert_eq!(OVERFLOW_BLOCKS_MAX, 17);
        let block = build_leaf(ADDR, &[(key(1, 2), b"abc")]).unwrap();
        // Header fields, first item entry and the value at the end, byte by byte.
        assert_eq!(&block[32..40], &[1, 0, 0xfd, 0x0f, 0, 0, 0, 0]);
        assert_eq!(&block[40..57], &key(1, 2).encode());
        assert_eq!(&block[57..64], &[0xfd, 0x0f, 3, 0, 0, 0, 0]);
        assert_eq!(&block[4093..], b"abc");
    }

    #[test]
    fn mkfs_leaf_rejects_bad_input() {
        let big = vec![0u8; INLINE_VALUE_MAX + 1];
        assert!(matches!(build_leaf(ADDR, &[(key(1, 1), &big)]), Err(FormatError::TooLarge { .. })));
        let unsorted = build_leaf(ADDR, &[(key(1, 2), b""), (key(1, 1), b"")]);
        assert!(matches!(unsorted, Err(FormatError::Malformed { addr: 1000, .. })));
    }

    #[test]
    fn parse_names_the_block_and_rejects_wrong_kinds() {
        let block = build_leaf(ADDR, &[]).unwrap();
        assert!(matches!(LeafRef::parse(&block, BlockAddr(5)), Err(FormatError::Misdirected { addr: 5, .. })));
        assert!(matches!(InternalRef::parse(&block, ADDR), Err(FormatError::WrongKind { addr: 1000, .. })));
        assert!(matches!(LeafRef::parse(&block[..100], ADDR), Err(FormatError::Malformed { .. })));
    }

    #[test]
    fn overflow_chain_round_trip_and_corruption() {
        let value: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let addrs = [BlockAddr(10), BlockAddr(11), BlockAddr(12)];
        assert_eq!(overflow_block_count(value.len()), 3);
        let mut blocks = Vec::new();
        for (index, chunk) in value.chunks(OVERFLOW_DATA_SIZE).enumerate() {
            let mut block = vec![0u8; BLOCK_SIZE];
            build_overflow_into(&mut block, addrs[index], addrs.get(index + 1).copied(), chunk);
            blocks.push(block);
        }
        let reference = OverflowRef::for_value(addrs[0], &value);
        assert_eq!(OverflowRef::decode(&reference.encode(), ADDR).unwrap(), reference);
        let read = |blocks: &[Vec<u8>]| -> Result<(Vec<u8>, Vec<BlockAddr>), FormatError> {
            let mut reader = OverflowReader::new(reference);
            while let Some(addr) = reader.next_block() {
                reader.push(&blocks[(addr.0 - 10) as usize], addr)?;
            }
            reader.finish()
        };
        assert_eq!(read(&blocks).unwrap(), (value.clone(), addrs.to_vec()));
        let mut flipped = blocks.clone();
        flipped[1][100] ^= 1;
        assert!(matches!(read(&flipped), Err(FormatError::Checksum { addr: 10, .. })));
        let mut looped = blocks.clone();
        looped[1][32] = 10;
        assert!(matches!(read(&looped), Err(FormatError::Malformed { addr: 10, .. })));
    }

    #[test]
    fn internal_round_trip_and_routing() {
        let entries = [(Key::MIN, BlockAddr(5)), (key(4, 0), BlockAddr(6)), (key(9, 0), BlockAddr(7))];
        let mut block = vec![0u8; BLOCK_SIZE];
        build_internal_into(&mut block, ADDR, 1, &entries).unwrap();
        let node = InternalRef::parse(&block, ADDR).unwrap();
        node.verify().unwrap();
        assert_eq!(node.entries().collect::<Vec<_>>(), entries);
        assert_eq!(node.route(key(3, 99)), 0);
        assert_eq!(node.route(key(4, 0)), 1);
        assert_eq!(node.route(key(100, 0)), 2);
        let fence = node.child_fence(1, &Fence::ROOT);
        assert_eq!(fence, Fence { lower: key(4, 0), upper: Some(key(9, 0)) });
        let mut node = InternalMut::parse(&mut block, ADDR).unwrap();
        node.insert(3, key(12, 0), BlockAddr(8));
        node.remove(1);
        node.set_key(1, key(8, 0));
        let node = InternalRef::parse(&block, ADDR).unwrap();
        node.verify().unwrap();
        let expected = [(Key::MIN, BlockAddr(5)), (key(8, 0), BlockAddr(7)), (key(12, 0), BlockAddr(8))];
        assert_eq!(node.entries().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn trusted_internal_parse_checks_the_header_only() {
        let entries = [(Key::MIN, BlockAddr(5)), (key(4, 0), BlockAddr(6))];
        let mut block = vec![0u8; BLOCK_SIZE];
        build_internal_into(&mut block, ADDR, 1, &entries).unwrap();
        let trusted = InternalRef::parse_trusted(&block, ADDR).unwrap();
        assert_eq!(trusted.entries().collect::<Vec<_>>(), entries);
        // Out-of-order entries pass the trusted read (that is its point) but not the full parse.
        let mut swapped = block.clone();
        let first = INTERNAL_HEADER_SIZE..INTERNAL_HEADER_SIZE + ENTRY_SIZE;
        let second = INTERNAL_HEADER_SIZE + ENTRY_SIZE..INTERNAL_HEADER_SIZE + 2 * ENTRY_SIZE;
        let (a, b) = (swapped[first.clone()].to_vec(), swapped[second.clone()].to_vec());
        swapped[first].copy_from_slice(&b);
        swapped[second].copy_from_slice(&a);
        assert!(InternalRef::parse_trusted(&swapped, ADDR).is_ok());
        assert!(InternalRef::parse(&swapped, ADDR).is_err());
        // A wrong kind, address or entry count is refused either way.
        assert!(InternalRef::parse_trusted(&block, BlockAddr(ADDR.0 + 1)).is_err());
        let mut leaf = vec![0u8; BLOCK_SIZE];
        LeafMut::init(&mut leaf, ADDR);
        assert!(InternalRef::parse_trusted(&leaf, ADDR).is_err());
    }

    #[test]
    fn split_index_balances_bytes() {
        let big = [0u8; 1000];
        let items: Vec<LeafItem<'_>> = (0..6)
            .map(|i| LeafItem { key: key(1, i), value: if i == 0 { &big[..] } else { &big[..10] }, overflow: false })
            .collect();
        // 1024 bytes then five of 34: the first item alone is closest to half.
        assert_eq!(leaf_split_index(&items), 1);
    }

    #[derive(Clone, Debug)]
    enum LeafOp {
        Insert(u64, usize),
        Remove(usize),
        Replace(usize, usize),
        Compact,
    }

    fn leaf_op() -> impl Strategy<Value = LeafOp> {
        prop_oneof![
            4 => (0u64..200, 0usize..=INLINE_VALUE_MAX).prop_map(|(k, len)| LeafOp::Insert(k, len)),
            2 => any::<usize>().prop_map(LeafOp::Remove),
            2 => (any::<usize>(), 0usize..=INLINE_VALUE_MAX).prop_map(|(i, len)| LeafOp::Replace(i, len)),
            1 => Just(LeafOp::Compact),
        ]
    }

    fn apply(block: &mut [u8], model: &mut BTreeMap<Key, Vec<u8>>, op: &LeafOp, step: usize) {
        let mut leaf = LeafMut::parse(block, ADDR).unwrap();
        let fill = |len: usize| vec![(step % 251) as u8 + 1; len];
        match *op {
            LeafOp::Insert(k, len) => {
                let Err(index) = leaf.view().search(key(1, k)) else { return };
                if leaf.view().fits(len) {
                    let value = fill(len);
                    leaf.insert(index, LeafItem { key: key(1, k), value: &value, overflow: false });
                    model.insert(key(1, k), value);
                }
            }
            LeafOp::Remove(i) if !model.is_empty() => {
                let index = i % model.len();
                model.remove(&leaf.view().key(index));
                leaf.remove(index);
            }
            LeafOp::Replace(i, len) if !model.is_empty() => {
                let index = i % model.len();
                if leaf.view().can_replace(index, len) {
                    let value = fill(len);
                    model.insert(leaf.view().key(index), value.clone());
                    leaf.replace(index, &value, false);
                }
            }
            LeafOp::Compact => leaf.compact(),
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Leaf mutations against a map model: after every step the block parses, passes the
        /// strict verification (disjoint values, zero free space) and holds the model's items.
        #[test]
        fn leaf_mutations_match_model(ops in proptest::collection::vec(leaf_op(), 1..120)) {
            let mut block = build_leaf(ADDR, &[]).unwrap();
            let mut model = BTreeMap::new();
            for (step, op) in ops.iter().enumerate() {
                apply(&mut block, &mut model, op, step);
                let expected: Vec<(Key, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
                prop_assert_eq!(leaf_items(&block), expected);
            }
        }

        /// Arbitrary bytes behind a valid header never make a parser panic, and whatever parses
        /// can be read through every accessor.
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(
            kind in prop_oneof![Just(BlockKind::Leaf), Just(BlockKind::Internal), Just(BlockKind::Overflow)],
            level in 0u16..20,
            body in proptest::collection::vec(any::<u8>(), BLOCK_SIZE - META_HEADER_SIZE),
            small_count in 0u16..8,
            probe in any::<(u64, u8, u64)>(),
        ) {
            let mut block = vec![0u8; BLOCK_SIZE];
            block[META_HEADER_SIZE..].copy_from_slice(&body);
            // Keep the count small half of the time so parsing reaches the per-item checks.
            if small_count % 2 == 0 {
                block[32..34].copy_from_slice(&small_count.to_le_bytes());
            }
            MetaHeader::init(&mut block, kind, level, ADDR);
            crate::block::seal(&mut block, 1);
            exercise(&block, Key { object: probe.0, kind: probe.1, offset: probe.2 });
        }

        /// Valid blocks with a few bytes overwritten never make a parser panic either.
        #[test]
        fn parse_never_panics_on_damaged_blocks(
            values in proptest::collection::vec(0usize..1200, 1..12),
            damage in proptest::collection::vec((32usize..BLOCK_SIZE, any::<u8>()), 1..6),
        ) {
            let stored: Vec<Vec<u8>> = values.iter().map(|&len| vec![7u8; len.min(INLINE_VALUE_MAX)]).collect();
            let items: Vec<(Key, &[u8])> = stored.iter().enumerate().map(|(i, v)| (key(1, i as u64), &v[..])).collect();
            let Ok(mut block) = build_leaf(ADDR, &items) else { return Ok(()) };
            for (at, byte) in damage {
                block[at] = byte;
            }
            exercise(&block, key(1, 3));
        }

        /// Leaves built from sorted items decode to the same items.
        #[test]
        fn leaf_build_round_trips(lens in proptest::collection::btree_map(any::<u64>(), 0usize..300, 0..12)) {
            let values: Vec<(Key, Vec<u8>)> = lens.iter().map(|(&k, &len)| (key(2, k), vec![k as u8; len])).collect();
            let items: Vec<(Key, &[u8])> = values.iter().map(|(k, v)| (*k, &v[..])).collect();
            let block = build_leaf(ADDR, &items).unwrap();
            prop_assert_eq!(leaf_items(&block), values);
        }
    }

    fn exercise(block: &[u8], probe: Key) {
        if let Ok(node) = NodeRef::parse(block, ADDR) {
            let _ = node.check_in_tree(&Fence::ROOT, Some(node.level()), false);
            match node {
                NodeRef::Leaf(leaf) => {
                    let _ = leaf.verify();
                    let _ = leaf.search(probe);
                    for index in 0..leaf.len() {
                        let _ = (leaf.item(index), leaf.overflow_ref(index), leaf.can_replace(index, 10));
                    }
                }
                NodeRef::Internal(node) => {
                    let _ = node.verify();
                    let index = node.route(probe);
                    let _ = (node.child(index), node.child_fence(index, &Fence::ROOT));
                }
            }
        }
        if let Ok(overflow) = OverflowBlock::parse(block, ADDR) {
            assert!(overflow.data.len() <= OVERFLOW_DATA_SIZE);
        }
    }
}
