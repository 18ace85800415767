//! Block allocation over the on-disk bitmap.
//!
//! The bitmap blocks are journaled metadata, read and modified through the transaction (`Tx`), so
//! an allocation commits atomically with the items that reference the blocks. In memory the
//! allocator keeps only what it can rebuild at mount: free counts per bitmap block, search cursors,
//! and the *busy* set — blocks that are clear in the bitmap but must not be handed out:
//! - reservations: blocks a data write is filling before its extent is inserted;
//! - frozen frees: blocks freed by a transaction that is not durable yet (a crash would bring back
//!   the old reference) and metadata blocks freed since the journal tail (replaying an old image
//!   over a reused block would destroy its new contents).

use std::collections::BTreeMap;

use vexfs_format::bitmap::{self, BITS_PER_BITMAP_BLOCK};

/// A set of disjoint half-open block ranges.
#[derive(Default, Debug, Clone)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
    blocks: u64,
}

impl RangeSet {
    /// Adds `start..end`, which must not overlap a range already present.
    pub fn insert(&mut self, start: u64, end: u64) {
        assert!(start < end);
        assert!(self.first_overlap(start, end).is_none(), "range {start}..{end} is already busy");
        self.ranges.insert(start, end);
        self.blocks += end - start;
    }

    /// Removes exactly the range `start..end`, which may have been inserted in pieces or as part of
    /// a larger range; the remainders stay.
    pub fn remove(&mut self, start: u64, end: u64) {
        while let Some((s, e)) = self.first_overlap(start, end) {
            self.ranges.remove(&s);
            self.blocks -= e - s;
            if s < start {
                self.ranges.insert(s, start);
                self.blocks += start - s;
            }
            if e > end {
                self.ranges.insert(end, e);
                self.blocks += e - end;
            }
        }
    }

    /// The first range overlapping `start..end`.
    pub fn first_overlap(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e > start {
                return Some((s, e));
            }
        }
        self.ranges.range(start..end).next().map(|(&s, &e)| (s, e))
    }

    /// Blocks in the set.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Removes and returns every range.
    pub fn take(&mut self) -> Vec<(u64, u64)> {
        self.blocks = 0;
        std::mem::take(&mut self.ranges).into_iter().collect()
    }
}

/// In-memory allocator state; the bitmap itself lives in cached metadata blocks.
pub struct Allocator {
    pub bitmap_start: u64,
    pub bitmap_blocks: u64,
    pub block_count: u64,
    pub first_free: u64,
    /// Clear bits per bitmap block.
    pub group_free: Vec<u32>,
    /// Blocks clear in the bitmap that must not be handed out (see the module documentation).
    pub busy: RangeSet,
    /// Where the next data search starts.
    pub data_cursor: u64,
    /// Where the next metadata search starts.
    pub meta_cursor: u64,
}

impl Allocator {
    /// The bitmap block address and bit index for a volume block.
    pub fn locate(&self, block: u64) -> (u64, usize) {
        let (group, bit) = bitmap::locate(vexfs_format::BlockAddr(block));
        assert!(group < self.bitmap_blocks);
        (self.bitmap_start + group, bit)
    }

    /// The blocks that hold B-tree nodes, overflow blocks and file data: every allocation, every
    /// extent and every pointer below the tree root lies here.
    pub fn data_area(&self) -> std::ops::Range<u64> {
        self.first_free..self.block_count
    }

    /// Free blocks that can be handed out now.
    pub fn available(&self) -> u64 {
        let clear: u64 = self.group_free.iter().map(|&f| u64::from(f)).sum();
        clear.saturating_sub(self.busy.blocks())
    }

    /// Searches group `group`'s bits for a run at or after bit `from`, skipping busy blocks.
    /// Returns (first volume block, length).
    pub fn search_group(&self, group: u64, bits: &[u8], from: usize, len_max: u64) -> Option<(u64, u64)> {
        let base = group * BITS_PER_BITMAP_BLOCK;
        let mut index = from;
        while let Some((first, len)) = bitmap::find_free_run(bits, index, len_max as usize) {
            let start = base + first as u64;
            let end = start + len as u64;
            match self.busy.first_overlap(start, end) {
                None => return Some((start, len as u64)),
                Some((busy_start, _)) if busy_start > start => return Some((start, busy_start - start)),
                Some((_, busy_end)) => {
                    if busy_end >= base + BITS_PER_BITMAP_BLOCK {
                        return None;
                    }
                    index = (busy_end - base) as usize;
                }
            }
        }
        None
    }

    /// The group to search first for a goal block.
    pub fn group_of(&self, block: u64) -> u64 {
        (block / BITS_PER_BITMAP_BLOCK).min(self.bitmap_blocks - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set_splits_on_partial_removal() {
        let mut set = RangeSet::default();
        set.insert(10, 20);
        set.insert(30, 40);
        assert_eq!(set.first_overlap(15, 16), Some((10, 20)));
        assert_eq!(set.first_overlap(20, 30), None);
        assert_eq!(set.first_overlap(0, 31), Some((10, 20)));
        set.remove(12, 14);
        assert_eq!(set.blocks(), 18);
        assert_eq!(set.first_overlap(12, 14), None);
        assert_eq!(set.first_overlap(14, 15), Some((14, 20)));
        set.remove(0, 100);
        assert_eq!(set.blocks(), 0);
    }
}
