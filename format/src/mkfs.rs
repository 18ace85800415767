//! The volume layout and the blocks `mkfs` writes.
//!
//! ```text
//! block 0          superblock slot 0
//! block 1          superblock slot 1
//! block 2          volume root (journaled)
//! 3 ..             journal ring (journal_blocks)
//! ..               free-space bitmap (bitmap_blocks)
//! ..               B-tree root leaf (allocated by mkfs, never moves)
//! .. block_count   allocatable: B-tree nodes, overflow blocks, file data
//! ```

use crate::bitmap::{self, BITS_PER_BITMAP_BLOCK};
use crate::block::{BlockAddr, BLOCK_SIZE_U64};
use crate::inode::{file_type, InodeRecord, Timestamp, DIR_FIRST_INDEX, FIRST_INO, ROOT_INO};
use crate::key::{ItemKind, Key};
use crate::root::VolumeRoot;
use crate::superblock::{Superblock, VolumeState, FORMAT_VERSION};
use crate::FormatError;

/// The smallest volume: 16 MiB.
pub const MIN_BLOCKS: u64 = 4096;
/// The journal never exceeds 64 MiB.
pub const JOURNAL_BLOCKS_MAX: u64 = 16384;
/// The journal is never smaller than 4 MiB.
pub const JOURNAL_BLOCKS_MIN: u64 = 1024;
/// The volume root block.
pub const ROOT_BLOCK: BlockAddr = BlockAddr(2);
const JOURNAL_START: u64 = 3;

/// Where each region of a volume lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub block_count: u64,
    pub journal_start: BlockAddr,
    pub journal_blocks: u64,
    pub bitmap_start: BlockAddr,
    pub bitmap_blocks: u64,
    /// The B-tree root leaf.
    pub tree_root: BlockAddr,
    /// The first block the allocator may hand out.
    pub first_free: BlockAddr,
}

impl Layout {
    /// The layout mkfs chooses for a device of `size_bytes` (rounded down to whole blocks).
    pub fn for_size(size_bytes: u64) -> Result<Layout, FormatError> {
        let block_count = size_bytes / BLOCK_SIZE_U64;
        if block_count < MIN_BLOCKS {
            return Err(FormatError::TooSmall { size: size_bytes, min: MIN_BLOCKS * BLOCK_SIZE_U64 });
        }
        let journal_blocks = (block_count / 64).clamp(JOURNAL_BLOCKS_MIN, JOURNAL_BLOCKS_MAX);
        Ok(Layout::for_block_count(block_count, journal_blocks).expect("sizes checked above"))
    }

    /// The layout implied by a block count and journal size, if they fit.
    pub fn for_block_count(block_count: u64, journal_blocks: u64) -> Option<Layout> {
        if block_count < MIN_BLOCKS || !(JOURNAL_BLOCKS_MIN..=JOURNAL_BLOCKS_MAX).contains(&journal_blocks) {
            return None;
        }
        let bitmap_start = JOURNAL_START + journal_blocks;
        let bitmap_blocks = block_count.div_ceil(BITS_PER_BITMAP_BLOCK);
        let tree_root = bitmap_start + bitmap_blocks;
        let first_free = tree_root + 1;
        (first_free < block_count).then_some(Layout {
            block_count,
            journal_start: BlockAddr(JOURNAL_START),
            journal_blocks,
            bitmap_start: BlockAddr(bitmap_start),
            bitmap_blocks,
            tree_root: BlockAddr(tree_root),
            first_free: BlockAddr(first_free),
        })
    }

    /// The blocks the allocator hands out: B-tree nodes, overflow blocks and file data. Every
    /// extent and every B-tree pointer below the tree root lies here.
    pub fn data_area(&self) -> std::ops::Range<u64> {
        self.first_free.0..self.block_count
    }

    /// What `addr` is when it is not a block that journaled metadata may live at (the volume root,
    /// a bitmap block, the tree root or a block of the data area): a superblock slot (written only
    /// by a journal reset, never journaled), the journal ring itself, or past the volume.
    pub fn misplaced_metadata(&self, addr: BlockAddr) -> Option<&'static str> {
        let journal_end = self.journal_start.0 + self.journal_blocks;
        if addr.0 < ROOT_BLOCK.0 {
            Some("a superblock slot")
        } else if (self.journal_start.0..journal_end).contains(&addr.0) {
            Some("a block of the journal")
        } else if addr.0 >= self.block_count {
            Some("outside the volume")
        } else {
            None
        }
    }

    /// True when the superblock's region fields are exactly this layout's.
    pub fn matches(&self, sb: &Superblock) -> bool {
        sb.block_count == self.block_count
            && sb.root_block == ROOT_BLOCK
            && sb.journal_start == self.journal_start
            && sb.journal_blocks == self.journal_blocks
            && sb.bitmap_start == self.bitmap_start
            && sb.bitmap_blocks == self.bitmap_blocks
    }

    /// The superblock of a fresh volume with this layout.
    pub fn superblock(&self, uuid: [u8; 16], now: i64, label: &str) -> Superblock {
        let mut label_bytes = [0u8; 64];
        let len = label.len().min(63);
        label_bytes[..len].copy_from_slice(&label.as_bytes()[..len]);
        Superblock {
            format_version: FORMAT_VERSION,
            block_size: BLOCK_SIZE_U64 as u32,
            features_compat: 0,
            features_ro_compat: 0,
            features_incompat: 0,
            uuid,
            block_count: self.block_count,
            root_block: ROOT_BLOCK,
            journal_start: self.journal_start,
            journal_blocks: self.journal_blocks,
            bitmap_start: self.bitmap_start,
            bitmap_blocks: self.bitmap_blocks,
            sequence: 0,
            journal_tail: 0,
            // Start sequences away from zero so that a zeroed ring never verifies.
            journal_tail_seq: 1,
            state: VolumeState::Clean,
            created_time: now,
            mount_count: 0,
            last_mount_time: 0,
            label: label_bytes,
        }
    }
}

/// Parameters of a new volume.
pub struct MkfsParams<'a> {
    pub size_bytes: u64,
    pub uuid: [u8; 16],
    pub now: Timestamp,
    pub label: &'a str,
    /// Owner of the root directory.
    pub uid: u32,
    pub gid: u32,
}

/// Every block mkfs writes, in address order; blocks not listed need no initialisation (the first
/// journal block is listed zeroed so that a stale log from an earlier volume is never scanned).
pub fn plan(params: &MkfsParams<'_>) -> Result<(Layout, Vec<crate::block::PlacedBlock>), FormatError> {
    let layout = Layout::for_size(params.size_bytes)?;
    let mut sb = layout.superblock(params.uuid, params.now.sec, params.label);
    let mut blocks = Vec::new();
    blocks.push((BlockAddr(0), sb.encode()));
    sb.sequence = 1;
    blocks.push((BlockAddr(1), sb.encode()));

    let used = layout.first_free.0;
    let root = VolumeRoot {
        tree_root: layout.tree_root,
        next_ino: FIRST_INO,
        inode_count: 1,
        free_blocks: layout.block_count - used,
        next_generation: 1,
        collection_root: 0,
        index_root: 0,
    };
    blocks.push((ROOT_BLOCK, seal_new(root.build(ROOT_BLOCK))));
    blocks.push((layout.journal_start, vec![0u8; BLOCK_SIZE_U64 as usize]));
    for index in 0..layout.bitmap_blocks {
        let addr = BlockAddr(layout.bitmap_start.0 + index);
        blocks.push((addr, seal_new(bitmap::build(index, addr, layout.block_count, used))));
    }
    let root_dir = root_directory(params);
    let key = Key::new(ROOT_INO, ItemKind::Inode, 0);
    let leaf = crate::node::build_leaf(layout.tree_root, &[(key, &root_dir.encode()[..])])?;
    blocks.push((layout.tree_root, seal_new(leaf)));
    Ok((layout, blocks))
}

/// A whole new volume in memory: [`plan`]'s blocks at their addresses, zeros elsewhere. For tests
/// and small images (`vexfs mkfs` writes the planned blocks only).
pub fn image(params: &MkfsParams<'_>) -> Result<Vec<u8>, FormatError> {
    let (_, blocks) = plan(params)?;
    let len =
        usize::try_from(params.size_bytes).map_err(|_| FormatError::malformed(0, "an image larger than memory"))?;
    let mut image = vec![0u8; len];
    for (addr, block) in blocks {
        let at = addr.byte_offset() as usize;
        image[at..at + block.len()].copy_from_slice(&block);
    }
    Ok(image)
}

fn seal_new(mut block: Vec<u8>) -> Vec<u8> {
    crate::block::seal(&mut block, 0);
    block
}

fn root_directory(params: &MkfsParams<'_>) -> InodeRecord {
    InodeRecord {
        mode: file_type::DIRECTORY | 0o755,
        uid: params.uid,
        gid: params.gid,
        nlink: 2,
        atime: params.now,
        mtime: params.now,
        ctime: params.now,
        crtime: params.now,
        generation: 0,
        dir_next_index: DIR_FIRST_INDEX,
        parent: ROOT_INO,
        ..InodeRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_common_sizes() {
        let small = Layout::for_size(16 << 20).unwrap();
        assert_eq!(small.journal_blocks, JOURNAL_BLOCKS_MIN);
        let big = Layout::for_size(8 << 30).unwrap();
        assert_eq!(big.journal_blocks, JOURNAL_BLOCKS_MAX);
        assert_eq!(big.bitmap_blocks, (8u64 << 30) / 4096 / BITS_PER_BITMAP_BLOCK + 1);
        assert!(matches!(Layout::for_size(1 << 20), Err(FormatError::TooSmall { .. })));
    }

    #[test]
    fn metadata_lives_at_the_root_the_bitmap_the_tree_root_and_the_data_area() {
        let layout = Layout::for_size(16 << 20).unwrap();
        let misplaced = |addr: u64| layout.misplaced_metadata(BlockAddr(addr));
        assert_eq!(misplaced(0), Some("a superblock slot"));
        assert_eq!(misplaced(1), Some("a superblock slot"));
        assert_eq!(misplaced(ROOT_BLOCK.0), None);
        assert_eq!(misplaced(layout.journal_start.0), Some("a block of the journal"));
        assert_eq!(misplaced(layout.bitmap_start.0 - 1), Some("a block of the journal"));
        assert_eq!(misplaced(layout.bitmap_start.0), None);
        assert_eq!(misplaced(layout.tree_root.0), None);
        assert_eq!(misplaced(layout.block_count - 1), None);
        assert_eq!(misplaced(layout.block_count), Some("outside the volume"));
        assert_eq!(misplaced(u64::MAX), Some("outside the volume"));
        assert_eq!(layout.data_area(), layout.first_free.0..layout.block_count);
    }
}
