//! The metadata journal: a physical redo log of whole metadata blocks in a ring of
//! `journal_blocks` blocks starting at `journal_start`.
//!
//! A transaction with sequence number `seq` occupies consecutive ring positions (wrapping):
//!
//! ```text
//! descriptor(seq) image image ... [descriptor(seq) image ...] commit(seq)
//! ```
//!
//! Descriptor block (`JournalDescriptor`, header generation = seq):
//!
//! | offset | size | field       |
//! |--------|------|-------------|
//! | 32     | 4    | tag_count   |
//! | 36     | 4    | reserved    |
//! | 40     | 8    | volume_id   |
//! | 48     | 16×n | tags: home block u64, crc32c of the image u32, reserved u32 |
//!
//! Each descriptor is followed by `tag_count` images, the full contents of the blocks named by its
//! tags. Commit block (`JournalCommit`, header generation = seq):
//!
//! | offset | size | field             | meaning                                           |
//! |--------|------|-------------------|---------------------------------------------------|
//! | 32     | 4    | descriptor_count  |                                                   |
//! | 36     | 4    | block_count       | blocks of the transaction including this one      |
//! | 40     | 8    | volume_id         |                                                   |
//! | 48     | 4    | descriptors_crc   | crc32c chained over the descriptors' checksums    |
//! | 52     | 4    | reserved          |                                                   |
//!
//! A transaction counts as committed only when every block of it verifies: descriptors and commit
//! by their own checksums, sequence and volume id; images by the crc in their tag. Replay applies
//! committed transactions in sequence order from the superblock's tail and stops at the first one
//! that does not verify (the torn end of the log). Block headers carry the home address, so the
//! journal position of a descriptor or commit block is what its header's `addr` names.

use crate::block::{self, BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE, META_HEADER_SIZE};
use crate::mkfs::Layout;
use crate::FormatError;

/// Tags one descriptor block holds.
pub const TAGS_PER_DESCRIPTOR: usize = (BLOCK_SIZE - 48) / 16;
const TAGS_OFFSET: usize = 48;

/// Where the journal lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalRegion {
    pub start: BlockAddr,
    pub blocks: u64,
    pub volume_id: u64,
}

impl JournalRegion {
    /// The device block of ring position `pos` (taken modulo the ring size).
    pub fn addr(&self, pos: u64) -> BlockAddr {
        BlockAddr(self.start.0 + pos % self.blocks)
    }

    /// Ring blocks a transaction of `images` metadata blocks occupies.
    pub fn blocks_for(images: usize) -> u64 {
        (images.div_ceil(TAGS_PER_DESCRIPTOR) + images + 1) as u64
    }
}

/// One journaled block: its home address and contents (sealed).
pub struct Image<'a> {
    pub home: BlockAddr,
    pub block: &'a [u8],
}

/// Lays out transaction `seq` at ring position `pos`: returns every block to write, as
/// (device address, contents), in ring order. Images must be sealed already.
pub fn encode_transaction(
    region: &JournalRegion,
    pos: u64,
    seq: u64,
    images: &[Image<'_>],
) -> Vec<crate::block::PlacedBlock> {
    assert!(!images.is_empty());
    assert!(JournalRegion::blocks_for(images.len()) <= region.blocks);
    let mut out = Vec::with_capacity(JournalRegion::blocks_for(images.len()) as usize);
    let mut cursor = pos;
    let mut descriptors_crc = 0u32;
    let mut descriptor_count = 0u32;
    for chunk in images.chunks(TAGS_PER_DESCRIPTOR) {
        let addr = region.addr(cursor);
        let mut descriptor = vec![0u8; BLOCK_SIZE];
        MetaHeader::init(&mut descriptor, BlockKind::JournalDescriptor, 0, addr);
        descriptor[32..36].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
        descriptor[40..48].copy_from_slice(&region.volume_id.to_le_bytes());
        for (i, image) in chunk.iter().enumerate() {
            assert_eq!(image.block.len(), BLOCK_SIZE);
            let tag = TAGS_OFFSET + i * 16;
            descriptor[tag..tag + 8].copy_from_slice(&image.home.0.to_le_bytes());
            descriptor[tag + 8..tag + 12].copy_from_slice(&crc32c::crc32c(image.block).to_le_bytes());
        }
        block::seal(&mut descriptor, seq);
        descriptors_crc = crc32c::crc32c_append(descriptors_crc, &descriptor[24..28]);
        descriptor_count += 1;
        out.push((addr, descriptor));
        cursor += 1;
        for image in chunk {
            out.push((region.addr(cursor), image.block.to_vec()));
            cursor += 1;
        }
    }
    let addr = region.addr(cursor);
    let mut commit = vec![0u8; BLOCK_SIZE];
    MetaHeader::init(&mut commit, BlockKind::JournalCommit, 0, addr);
    commit[32..36].copy_from_slice(&descriptor_count.to_le_bytes());
    commit[36..40].copy_from_slice(&((out.len() + 1) as u32).to_le_bytes());
    commit[40..48].copy_from_slice(&region.volume_id.to_le_bytes());
    commit[48..52].copy_from_slice(&descriptors_crc.to_le_bytes());
    block::seal(&mut commit, seq);
    out.push((addr, commit));
    out
}

/// A committed transaction found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedTransaction {
    pub seq: u64,
    /// Ring position of its first block.
    pub pos: u64,
    /// Ring blocks it occupies.
    pub block_count: u64,
    /// (home address, ring position of the image) for every journaled block.
    pub images: Vec<(BlockAddr, u64)>,
}

/// What [`scan`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub transactions: Vec<ScannedTransaction>,
    /// Ring position just past the last committed transaction: where the next one goes.
    pub head: u64,
    /// The sequence number the next transaction gets.
    pub next_seq: u64,
}

/// Reads the ring from `tail` (expecting sequence `tail_seq`) and returns the committed
/// transactions in order. `read` fills a buffer with the block at a device address; its errors are
/// passed through. Anything that does not verify ends the log; the scan never reads more than one
/// lap of the ring.
pub fn scan<E>(
    region: &JournalRegion,
    tail: u64,
    tail_seq: u64,
    read: &mut crate::block::BlockRead<'_, E>,
) -> Result<Scan, E> {
    let mut transactions = Vec::new();
    let mut pos = tail;
    let mut seq = tail_seq;
    let mut used = 0u64;
    let mut buf = vec![0u8; BLOCK_SIZE];
    while let Some(txn) = scan_one(region, pos, seq, region.blocks - used, read, &mut buf)? {
        pos = (pos + txn.block_count) % region.blocks;
        used += txn.block_count;
        seq += 1;
        transactions.push(txn);
    }
    Ok(Scan { transactions, head: pos, next_seq: seq })
}

/// Reads one transaction at `pos`; `Ok(None)` when it is absent or does not verify.
fn scan_one<E>(
    region: &JournalRegion,
    pos: u64,
    seq: u64,
    budget: u64,
    read: &mut crate::block::BlockRead<'_, E>,
    buf: &mut [u8],
) -> Result<Option<ScannedTransaction>, E> {
    let mut cursor = pos;
    let mut images = Vec::new();
    let mut descriptors_crc = 0u32;
    let mut descriptor_count = 0u32;
    loop {
        if cursor - pos >= budget {
            return Ok(None);
        }
        let addr = region.addr(cursor);
        read(addr, buf)?;
        let Ok(header) = block::verify(buf, addr, &[BlockKind::JournalDescriptor, BlockKind::JournalCommit]) else {
            return Ok(None);
        };
        if header.generation.get() != seq || read_u64(buf, 40) != region.volume_id {
            return Ok(None);
        }
        if header.block_kind() == Some(BlockKind::JournalCommit) {
            let block_count = cursor - pos + 1;
            let valid = read_u32(buf, 32) == descriptor_count
                && u64::from(read_u32(buf, 36)) == block_count
                && read_u32(buf, 48) == descriptors_crc
                && descriptor_count > 0;
            return Ok(valid.then_some(ScannedTransaction { seq, pos, block_count, images }));
        }
        descriptors_crc = crc32c::crc32c_append(descriptors_crc, &buf[24..28]);
        descriptor_count += 1;
        let Some(tags) = parse_tags(buf) else { return Ok(None) };
        cursor += 1;
        for (home, crc) in tags {
            if cursor - pos >= budget {
                return Ok(None);
            }
            let image_pos = cursor % region.blocks;
            read(region.addr(cursor), buf)?;
            if crc32c::crc32c(buf) != crc {
                return Ok(None);
            }
            images.push((home, image_pos));
            cursor += 1;
        }
    }
}

/// The (home, crc) tags of a verified descriptor, or `None` when the count is out of range.
fn parse_tags(descriptor: &[u8]) -> Option<Vec<(BlockAddr, u32)>> {
    let count = read_u32(descriptor, 32) as usize;
    if count == 0 || count > TAGS_PER_DESCRIPTOR {
        return None;
    }
    Some(
        (0..count)
            .map(|i| {
                let tag = TAGS_OFFSET + i * 16;
                (BlockAddr(read_u64(descriptor, tag)), read_u32(descriptor, tag + 8))
            })
            .collect(),
    )
}

fn read_u32(block: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(block[offset..offset + 4].try_into().expect("4 bytes"))
}

fn read_u64(block: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(block[offset..offset + 8].try_into().expect("8 bytes"))
}

/// Checks that every image of `scan` belongs at a block where journaled metadata lives
/// ([`Layout::misplaced_metadata`]), before replay writes anything. A committed transaction
/// verified whole, so a home elsewhere is not a torn write but damage (or a crafted volume), and
/// replaying it would overwrite a superblock slot, the ring itself, or something past the volume.
/// The error names the ring block of the image and the home it names.
pub fn check_homes(region: &JournalRegion, scan: &Scan, layout: &Layout) -> Result<(), FormatError> {
    for txn in &scan.transactions {
        for &(home, pos) in &txn.images {
            check_home(region, layout, home, pos)?;
        }
    }
    Ok(())
}

/// Checks one image's home (see [`check_homes`]); `pos` is the image's ring position.
pub fn check_home(region: &JournalRegion, layout: &Layout, home: BlockAddr, pos: u64) -> Result<(), FormatError> {
    match layout.misplaced_metadata(home) {
        None => Ok(()),
        Some(what) => Err(FormatError::malformed(
            region.addr(pos).0,
            format!("journal image names home block {home}, which is {what}"),
        )),
    }
}

/// Collapses scanned transactions into the final image of each home block: (home, ring position
/// of its newest image), in home-address order.
pub fn replay_plan(scan: &Scan) -> Vec<(BlockAddr, u64)> {
    let mut latest = std::collections::BTreeMap::new();
    for txn in &scan.transactions {
        for &(home, pos) in &txn.images {
            latest.insert(home, pos);
        }
    }
    latest.into_iter().collect()
}

const _: () = assert!(TAGS_OFFSET >= META_HEADER_SIZE + 16);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn image(home: u64, fill: u8) -> Vec<u8> {
        let mut block = vec![fill; BLOCK_SIZE];
        MetaHeader::init(&mut block, BlockKind::Leaf, 0, BlockAddr(home));
        block[..META_HEADER_SIZE].iter().for_each(|_| ());
        block::seal(&mut block, 1);
        block
    }

    fn write_txn(disk: &mut HashMap<u64, Vec<u8>>, region: &JournalRegion, pos: u64, seq: u64, homes: &[u64]) -> u64 {
        let blocks: Vec<Vec<u8>> = homes.iter().map(|&h| image(h, seq as u8)).collect();
        let images: Vec<Image<'_>> =
            homes.iter().zip(&blocks).map(|(&h, b)| Image { home: BlockAddr(h), block: b }).collect();
        let out = encode_transaction(region, pos, seq, &images);
        let n = out.len() as u64;
        for (addr, block) in out {
            disk.insert(addr.0, block);
        }
        n
    }

    fn reader(disk: &HashMap<u64, Vec<u8>>) -> impl FnMut(BlockAddr, &mut [u8]) -> Result<(), ()> + '_ {
        move |addr, buf| {
            match disk.get(&addr.0) {
                Some(block) => buf.copy_from_slice(block),
                None => buf.fill(0),
            }
            Ok(())
        }
    }

    #[test]
    fn scans_committed_transactions_and_stops_at_a_torn_one() {
        let region = JournalRegion { start: BlockAddr(100), blocks: 600, volume_id: 42 };
        let mut disk = HashMap::new();
        let homes: Vec<u64> = (1000..1300).collect(); // 300 images: two descriptors
        let n1 = write_txn(&mut disk, &region, 590, 7, &homes);
        assert_eq!(n1, JournalRegion::blocks_for(300));
        let n2 = write_txn(&mut disk, &region, (590 + n1) % 600, 8, &[5, 6]);
        let scan_result = scan(&region, 590, 7, &mut reader(&disk)).unwrap();
        assert_eq!(scan_result.transactions.len(), 2);
        assert_eq!(scan_result.head, (590 + n1 + n2) % 600);
        assert_eq!(scan_result.next_seq, 9);
        assert_eq!(replay_plan(&scan_result).len(), 302);

        // Tear the second transaction: flip a byte in one of its images.
        let second_image = region.addr(590 + n1 + 1).0;
        disk.get_mut(&second_image).unwrap()[2000] ^= 1;
        let torn = scan(&region, 590, 7, &mut reader(&disk)).unwrap();
        assert_eq!(torn.transactions.len(), 1);
        assert_eq!(torn.next_seq, 8);

        // A wrong volume id or sequence finds nothing.
        let other = JournalRegion { volume_id: 43, ..region };
        assert!(scan(&other, 590, 7, &mut reader(&disk)).unwrap().transactions.is_empty());
        assert!(scan(&region, 590, 6, &mut reader(&disk)).unwrap().transactions.is_empty());
    }
}
