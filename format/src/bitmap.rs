//! Free-space bitmap blocks: one bit per volume block, 1 = in use.
//!
//! A bitmap block is a [`crate::block::MetaHeader`] block of kind `Bitmap`; bits start at byte 32.
//! Bit `i` of byte `j` (least significant first) of bitmap block `b` describes volume block
//! `b * BITS_PER_BITMAP_BLOCK + 8 * j + i`. Bits past the end of the volume are set, so that the
//! allocator never has to special-case the last block.

use crate::block::{BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE, META_HEADER_SIZE};

/// How many volume blocks one bitmap block describes.
pub const BITS_PER_BITMAP_BLOCK: u64 = ((BLOCK_SIZE - META_HEADER_SIZE) * 8) as u64;

/// The bitmap block index and bit index that describe `block`.
pub fn locate(block: BlockAddr) -> (u64, usize) {
    (block.0 / BITS_PER_BITMAP_BLOCK, (block.0 % BITS_PER_BITMAP_BLOCK) as usize)
}

/// The bits of a bitmap block (the part after the header).
pub fn bits(block: &[u8]) -> &[u8] {
    &block[META_HEADER_SIZE..]
}

/// The bits of a bitmap block, mutable.
pub fn bits_mut(block: &mut [u8]) -> &mut [u8] {
    &mut block[META_HEADER_SIZE..]
}

/// Reads bit `index`.
pub fn get(bits: &[u8], index: usize) -> bool {
    bits[index / 8] & (1 << (index % 8)) != 0
}

/// Writes bit `index`.
pub fn set(bits: &mut [u8], index: usize, used: bool) {
    if used {
        bits[index / 8] |= 1 << (index % 8);
    } else {
        bits[index / 8] &= !(1 << (index % 8));
    }
}

/// Counts the clear (free) bits.
pub fn count_free(bits: &[u8]) -> u64 {
    bits.iter().map(|b| u64::from(b.count_zeros())).sum()
}

/// Builds bitmap block number `index` of a volume of `block_count` blocks, with blocks
/// `0..used_prefix` marked in use (mkfs marks its fixed regions this way).
pub fn build(index: u64, addr: BlockAddr, block_count: u64, used_prefix: u64) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK_SIZE];
    MetaHeader::init(&mut block, BlockKind::Bitmap, 0, addr);
    let first = index * BITS_PER_BITMAP_BLOCK;
    let bits = bits_mut(&mut block);
    for bit in 0..BITS_PER_BITMAP_BLOCK {
        let volume_block = first + bit;
        if volume_block < used_prefix || volume_block >= block_count {
            set(bits, bit as usize, true);
        }
    }
    block
}

/// Finds the first run of clear bits at or after `start`, returning (first bit, run length) with
/// the run capped at `len_max`. Used by the allocator within one bitmap block.
pub fn find_free_run(bits: &[u8], start: usize, len_max: usize) -> Option<(usize, usize)> {
    let total = bits.len() * 8;
    let mut index = start;
    while index < total {
        // Skip whole used bytes quickly.
        if index.is_multiple_of(8) && bits[index / 8] == 0xff {
            index += 8;
            continue;
        }
        if get(bits, index) {
            index += 1;
            continue;
        }
        let first = index;
        while index < total && index - first < len_max && !get(bits, index) {
            index += 1;
        }
        return Some((first, index - first));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_marks_prefix_and_tail() {
        let block = build(0, BlockAddr(5), 100, 10);
        let bits = bits(&block);
        assert!(get(bits, 0) && get(bits, 9));
        assert!(!get(bits, 10) && !get(bits, 99));
        assert!(get(bits, 100) && get(bits, BITS_PER_BITMAP_BLOCK as usize - 1));
        assert_eq!(count_free(bits), 90);
        assert_eq!(find_free_run(bits, 0, 1000), Some((10, 90)));
        assert_eq!(find_free_run(bits, 50, 7), Some((50, 7)));
    }
}
