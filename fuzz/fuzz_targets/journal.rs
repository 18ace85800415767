//! Journal scanning and replay planning over a small ring of fuzzed blocks.
//!
//! The scan must never read outside its ring, never read more than one lap, and return
//! consecutive sequence numbers whose blocks add up to at most the ring; the replay plan names
//! each home block once, at a ring position that holds one of its images.
//!
//! Input: flags (bit 0: restamp every block's header checksum; bit 1: also restamp the tag and
//! chain checksums of descriptors and commits, as `encode_transaction` computes them, so that
//! mutated transactions still verify), ring length - 1 (mod 16), tail position, tail sequence
//! (u64), volume id (u64); then per ring position from 0: a u16 length and the block's first
//! bytes (the rest zero). Positions without bytes are zero.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_format::journal::{self, JournalRegion, TAGS_PER_DESCRIPTOR};
use vexfs_format::{BlockAddr, BlockKind, MetaHeader};
use vexfs_fuzz::{block_of, reseal, Bytes};

const RING_START: u64 = 3;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let flags = input.u8();
    let blocks = u64::from(input.u8() % 16) + 1;
    let tail = u64::from(input.u8()) % blocks;
    let tail_seq = input.u64();
    let volume_id = input.u64();
    let mut ring: Vec<Vec<u8>> = (0..blocks).map(|_| block_of(&[])).collect();
    for block in ring.iter_mut() {
        let len = usize::from(input.u16());
        *block = block_of(input.take(len));
    }
    if flags & 2 != 0 {
        fix_chain(&mut ring, tail);
    } else if flags & 1 != 0 {
        ring.iter_mut().for_each(|block| reseal(block));
    }
    let region = JournalRegion { start: BlockAddr(RING_START), blocks, volume_id };
    let mut reads = 0u64;
    let mut read = |addr: BlockAddr, buf: &mut [u8]| -> Result<(), ()> {
        assert!((RING_START..RING_START + blocks).contains(&addr.0), "scan read block {addr} outside its ring");
        reads += 1;
        buf.copy_from_slice(&ring[(addr.0 - RING_START) as usize]);
        Ok(())
    };
    let scan = journal::scan(&region, tail, tail_seq, &mut read).expect("reads never fail here");
    // One lap at most: every attempt is bounded by what the transactions before it left.
    assert!(reads <= blocks, "{reads} reads of a ring of {blocks}");
    let mut pos = tail;
    let mut used = 0;
    for (i, txn) in scan.transactions.iter().enumerate() {
        assert_eq!(txn.seq, tail_seq + i as u64);
        assert_eq!(txn.pos, pos);
        assert!(txn.images.iter().all(|&(_, at)| at < blocks));
        used += txn.block_count;
        pos = (pos + txn.block_count) % blocks;
    }
    assert!(used <= blocks);
    assert_eq!(scan.head, pos);
    assert_eq!(scan.next_seq, tail_seq + scan.transactions.len() as u64);
    let plan = journal::replay_plan(&scan);
    assert!(plan.windows(2).all(|pair| pair[0].0 < pair[1].0));
});

/// Restamps a ring laid out as transactions from `tail`: each descriptor's tags get the crc32c
/// of the images that follow it, each commit the chained crc of its descriptors' checksums, and
/// every block its header checksum.
fn fix_chain(ring: &mut [Vec<u8>], tail: u64) {
    let len = ring.len();
    let mut pos = tail as usize;
    let mut chain = 0u32;
    for _ in 0..len {
        let header = MetaHeader::read(&ring[pos % len]);
        match header.block_kind() {
            Some(BlockKind::JournalDescriptor) => {
                let count = (u32::from_le_bytes(ring[pos % len][32..36].try_into().unwrap()) as usize)
                    .min(TAGS_PER_DESCRIPTOR)
                    .min(len - 1);
                for i in 0..count {
                    reseal(&mut ring[(pos + 1 + i) % len]);
                    let crc = crc32c::crc32c(&ring[(pos + 1 + i) % len]);
                    let tag = 48 + i * 16;
                    ring[pos % len][tag + 8..tag + 12].copy_from_slice(&crc.to_le_bytes());
                }
                reseal(&mut ring[pos % len]);
                chain = crc32c::crc32c_append(chain, &ring[pos % len][24..28]);
                pos += 1 + count;
            }
            Some(BlockKind::JournalCommit) => {
                ring[pos % len][48..52].copy_from_slice(&chain.to_le_bytes());
                reseal(&mut ring[pos % len]);
                chain = 0;
                pos += 1;
            }
            _ => {
                reseal(&mut ring[pos % len]);
                pos += 1;
            }
        }
    }
}
