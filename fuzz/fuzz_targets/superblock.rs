//! The superblock decoder: one slot's bytes, optionally with the checksum restamped so that the
//! field checks behind it are reached. A decoded superblock must encode back to a block that
//! decodes to the same value, and its layout must be the one mkfs would choose.
//!
//! Input: a flags byte (bit 0: restamp the checksum; bit 1: read as slot 1), then the block.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_format::mkfs::Layout;
use vexfs_format::superblock::{Superblock, SUPERBLOCK_SLOTS};
use vexfs_fuzz::{block_of, reseal, Bytes};

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let flags = input.u8();
    let mut block = block_of(input.rest());
    if flags & 1 != 0 {
        reseal(&mut block);
    }
    let addr = SUPERBLOCK_SLOTS[usize::from(flags >> 1 & 1)];
    let Ok(sb) = Superblock::decode(&block, addr) else { return };
    assert_eq!(Superblock::decode(&sb.encode(), addr).expect("an encoded superblock decodes"), sb);
    let layout = Layout::for_block_count(sb.block_count, sb.journal_blocks).expect("decode validated the layout");
    assert!(layout.matches(&sb));
    let _ = (sb.volume_id(), sb.label_str(), sb.slot());
    let other = Superblock::decode(&block_of(&[]), SUPERBLOCK_SLOTS[1]);
    assert_eq!(Superblock::choose(Ok(sb.clone()), other).expect("one slot is valid"), sb);
});
