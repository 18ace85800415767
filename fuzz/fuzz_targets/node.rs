//! B-tree node decoding, and the engine's edits of a decoded node.
//!
//! A block is checked as the store reads it (`block::verify`), parsed as a leaf, internal node or
//! overflow block, read through every accessor, checked against a fence, and then edited the way
//! the B-tree edits nodes (inserts, removals, replacements, compaction, key changes), each edit
//! only with the preconditions the B-tree checks first. After every edit the node must parse
//! again, and a node that passed `verify` must still pass it: an edit of a node read from a
//! crafted image must never panic or produce a block the next read refuses.
//!
//! Input: flags (bit 0: restamp the header checksum; bit 1: read the block at another address
//! than its header names), a u16 length and the block's first bytes, then edit commands.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_format::block;
use vexfs_format::key::{Key, KEY_SIZE};
use vexfs_format::node::{
    Fence, InternalMut, InternalRef, LeafItem, LeafMut, LeafRef, NodeRef, OverflowBlock, OverflowReader, OverflowRef,
    INTERNAL_ENTRIES_MAX, OVERFLOW_REF_SIZE,
};
use vexfs_format::{BlockAddr, BlockKind, MetaHeader};
use vexfs_fuzz::{block_of, reseal, Bytes};

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let flags = input.u8();
    let len = usize::from(input.u16());
    let mut page = block_of(input.take(len));
    if flags & 1 != 0 {
        reseal(&mut page);
    }
    let header_addr = MetaHeader::read(&page).addr.get();
    let addr = BlockAddr(if flags & 2 != 0 { header_addr ^ 1 } else { header_addr });
    let _ = block::verify(&page, addr, &[BlockKind::Leaf, BlockKind::Internal, BlockKind::Overflow]);
    let _ = vexfs_format::node::claimed_kind(&page);
    if let Ok(overflow) = OverflowBlock::parse(&page, addr) {
        read_chain(&page, addr, overflow, &mut input);
        return;
    }
    let Ok(node) = NodeRef::parse(&page, addr) else { return };
    let fence = Fence { lower: key(&mut input), upper: Some(key(&mut input)).filter(|_| flags & 4 != 0) };
    let _ = node.check_in_tree(&fence, None, true);
    let _ = node.check_in_tree(&Fence::ROOT, Some(node.level()), false);
    match node {
        NodeRef::Leaf(leaf) => {
            read_leaf(&leaf, &mut input);
            let verified = leaf.verify().is_ok();
            edit_leaf(&mut page, addr, verified, &mut input);
        }
        NodeRef::Internal(internal) => {
            read_internal(&internal, &mut input);
            let verified = internal.verify().is_ok();
            edit_internal(&mut page, addr, verified, &mut input);
        }
    }
});

fn key(input: &mut Bytes<'_>) -> Key {
    let bytes: [u8; KEY_SIZE] = std::array::from_fn(|_| input.u8());
    Key::decode(&bytes)
}

fn read_leaf(leaf: &LeafRef<'_>, input: &mut Bytes<'_>) {
    for (index, item) in leaf.items().enumerate() {
        assert_eq!(leaf.key(index), item.key);
        assert_eq!(leaf.value(index), item.value);
        assert_eq!(leaf.is_overflow(index), item.overflow);
        assert_eq!(leaf.overflow_ref(index).is_some(), item.overflow);
        assert_eq!(leaf.search(item.key), Ok(index));
    }
    let _ = (leaf.search(key(input)), leaf.used_bytes(), leaf.is_underfull(), leaf.fits(usize::from(input.u16())));
}

fn read_internal(node: &InternalRef<'_>, input: &mut Bytes<'_>) {
    for (index, (k, child)) in node.entries().enumerate() {
        assert_eq!(node.key(index), k);
        assert_eq!(node.child(index), child);
        assert_eq!(node.search(k), Ok(index));
        assert!(child.0 != 0 && child != node.addr());
        let _ = node.child_fence(index, &Fence::ROOT);
    }
    assert!(node.route(key(input)) < node.len());
    let _ = node.is_underfull();
}

/// Up to 8 leaf edits, as the B-tree makes them. Each edit starts by parsing the block again,
/// which checks the edit before it.
fn edit_leaf(page: &mut [u8], addr: BlockAddr, verified: bool, input: &mut Bytes<'_>) {
    for _ in 0..8 {
        let mut leaf = LeafMut::parse(page, addr).expect("an edited leaf parses again");
        let view = leaf.view();
        match input.u8() % 5 {
            0 => {
                let k = key(input);
                let (overflow, value) = value(input, addr);
                if let Err(index) = view.search(k) {
                    if view.fits(value.len()) {
                        leaf.insert(index, LeafItem { key: k, value: &value, overflow });
                    }
                }
            }
            1 if !view.is_empty() => {
                let index = usize::from(input.u16()) % view.len();
                leaf.remove(index);
            }
            2 if !view.is_empty() => {
                let index = usize::from(input.u16()) % view.len();
                let (overflow, value) = value(input, addr);
                if view.can_replace(index, value.len()) {
                    leaf.replace(index, &value, overflow);
                }
            }
            3 => leaf.compact(),
            4 => return,
            _ => {}
        }
        let leaf = LeafRef::parse(page, addr).expect("an edited leaf parses again");
        if verified {
            leaf.verify().expect("an edit keeps a verified leaf verified");
        }
    }
}

/// A value for an edit of leaf `addr`: inline bytes or a valid overflow reference.
fn value(input: &mut Bytes<'_>, addr: BlockAddr) -> (bool, Vec<u8>) {
    let len = usize::from(input.u16());
    if len & 1 != 0 {
        let total_len = (len >> 1) as u32 + 1025;
        let reference = OverflowRef { first: BlockAddr(input.u64() | 1), total_len, crc: input.u32() };
        let encoded = reference.encode();
        if OverflowRef::decode(&encoded, addr).is_ok() {
            return (true, encoded.to_vec());
        }
    }
    let len = (len >> 1) % 1025;
    (false, input.take(len).to_vec())
}

/// Up to 8 internal-node edits, as the B-tree makes them.
fn edit_internal(page: &mut [u8], addr: BlockAddr, verified: bool, input: &mut Bytes<'_>) {
    for _ in 0..8 {
        let mut node = InternalMut::parse(page, addr).expect("an edited node parses again");
        let view = node.view();
        match input.u8() % 4 {
            0 => {
                let k = key(input);
                let child = BlockAddr(input.u64());
                if let Err(index) = view.search(k) {
                    if view.len() < INTERNAL_ENTRIES_MAX && child.0 != 0 && child != addr {
                        node.insert(index, k, child);
                    }
                }
            }
            1 if view.len() >= 2 => {
                let index = usize::from(input.u16()) % view.len();
                node.remove(index);
            }
            2 => {
                let index = usize::from(input.u16()) % view.len();
                let k = key(input);
                let above = index == 0 || view.key(index - 1) < k;
                let below = index + 1 == view.len() || k < view.key(index + 1);
                if above && below {
                    node.set_key(index, k);
                }
            }
            3 => return,
            _ => {}
        }
        InternalRef::parse_trusted(page, addr).expect("an edited node passes the trusted read");
        let node = InternalRef::parse(page, addr).expect("an edited node parses again");
        if verified {
            node.verify().expect("an edit keeps a verified node verified");
        }
    }
}

/// Reads an overflow chain of this one block, with a reference taken from the input.
fn read_chain(page: &[u8], addr: BlockAddr, block: OverflowBlock<'_>, input: &mut Bytes<'_>) {
    let mut stored = [0u8; OVERFLOW_REF_SIZE];
    stored[..8].copy_from_slice(&addr.0.to_le_bytes());
    let len = if input.u8() & 1 != 0 { input.u32() } else { block.data.len() as u32 + 1024 };
    stored[8..12].copy_from_slice(&len.to_le_bytes());
    stored[12..16].copy_from_slice(&crc32c::crc32c(block.data).to_le_bytes());
    let Ok(reference) = OverflowRef::decode(&stored, addr) else { return };
    let mut reader = OverflowReader::new(reference);
    if reader.push(page, addr).is_ok() && reader.next_block().is_none() {
        let _ = reader.finish();
    }
}
