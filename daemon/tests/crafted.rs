//! The engine over crafted and failing volumes: nothing read from the device is trusted, and a
//! device that fails a data write leaves the engine read-only.
//!
//! Goal: a volume whose bytes were written to mislead (valid checksums, lying counts and
//! addresses) makes mount refuse, or the operation that meets the lie fail with a corruption
//! error naming the block, without a panic, an allocation sized by the lie, or a write outside
//! the data area; and a failed data write latches the engine as a failed commit does.
//!
//! Method: format an in-memory device (`SimStorage`), change one thing in its image (re-sealing
//! what it changes), open the engine on it and drive the engine API; compare the image before
//! and after where nothing may be written.

#[allow(dead_code)] // The shared helpers include some only the other test binaries use.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::FixedClock;
use vexfs_daemon::engine::{Engine, EngineError, EngineOptions};
use vexfs_daemon::io::sim::SimStorage;
use vexfs_format::block;
use vexfs_format::journal::{self, Image, JournalRegion};
use vexfs_format::mkfs::Layout;
use vexfs_format::superblock::{Superblock, VolumeState, SUPERBLOCK_SLOTS};
use vexfs_format::{BlockAddr, BLOCK_SIZE};

const VOLUME_BYTES: u64 = 32 << 20;

fn fresh_image() -> Vec<u8> {
    common::fresh_image(VOLUME_BYTES, [4; 16], "crafted")
}

fn options() -> EngineOptions {
    EngineOptions { cache_bytes: 16 << 20, commit_interval: Duration::from_secs(3600) }
}

fn layout() -> Layout {
    Layout::for_size(VOLUME_BYTES).expect("layout")
}

fn block_of(image: &[u8], addr: u64) -> &[u8] {
    &image[addr as usize * BLOCK_SIZE..(addr as usize + 1) * BLOCK_SIZE]
}

fn put_block(image: &mut [u8], addr: BlockAddr, block: &[u8]) {
    let at = addr.byte_offset() as usize;
    image[at..at + BLOCK_SIZE].copy_from_slice(block);
}

fn try_open(image: Vec<u8>) -> (Arc<SimStorage>, Result<Engine<Arc<SimStorage>>, EngineError>) {
    let sim = Arc::new(SimStorage::from_image(image));
    let engine = Engine::open(Arc::clone(&sim), Arc::new(FixedClock), options());
    (sim, engine)
}

/// 2^40 blocks is 4 PiB; 2^52 + n blocks is 2^64 + 4096 n bytes, which wraps to the device's own
/// size in 64-bit arithmetic. Sizing the allocator by either would take terabytes.
#[test]
fn mount_refuses_a_block_count_beyond_the_device() {
    let device_blocks = VOLUME_BYTES / BLOCK_SIZE as u64;
    for block_count in [1u64 << 40, (1 << 52) + device_blocks] {
        let mut image = fresh_image();
        common::rewrite_superblocks(&mut image, |sb| {
            let layout = Layout::for_block_count(block_count, sb.journal_blocks).expect("a layout for the count");
            (sb.block_count, sb.bitmap_start, sb.bitmap_blocks) =
                (block_count, layout.bitmap_start, layout.bitmap_blocks);
        });
        let before = image.clone();
        let (sim, result) = try_open(image);
        let Err(error) = result else { panic!("block count {block_count}: the engine opened the volume") };
        let text = error.to_string();
        assert!(
            text.contains(&block_count.to_string()) && text.contains(&device_blocks.to_string()),
            "block count {block_count}: the refusal does not give both sizes: {text}"
        );
        assert!(sim.image() == before, "block count {block_count}: the refused mount wrote to the device");
    }
}

/// Writes one committed transaction at the journal's tail holding `block` as the image of `home`,
/// and marks the volume mounted, as a crash before the checkpoint leaves it.
fn journal_image(image: &mut [u8], home: u64, block: &[u8]) {
    let slot = SUPERBLOCK_SLOTS[0];
    let sb = Superblock::decode(block_of(image, slot.0), slot).expect("a valid slot");
    let region = JournalRegion { start: sb.journal_start, blocks: sb.journal_blocks, volume_id: sb.volume_id() };
    let images = [Image { home: BlockAddr(home), block }];
    for (addr, block) in journal::encode_transaction(&region, sb.journal_tail, sb.journal_tail_seq, &images) {
        put_block(image, addr, &block);
    }
    common::rewrite_superblocks(image, |sb| sb.state = VolumeState::Mounted);
}

/// The tree root leaf of `image`, sealed as the next transaction would seal it.
fn tree_root_image(image: &[u8]) -> Vec<u8> {
    let mut leaf = block_of(image, layout().tree_root.0).to_vec();
    block::seal(&mut leaf, 1);
    leaf
}

#[test]
fn mount_refuses_a_journal_image_whose_home_is_not_a_metadata_block() {
    let layout = layout();
    let clean = fresh_image();
    let leaf = tree_root_image(&clean);
    // The control: the same transaction with its proper home is replayed.
    let mut control = clean.clone();
    journal_image(&mut control, layout.tree_root.0, &leaf);
    let (_sim, opened) = try_open(control);
    let engine = opened.unwrap_or_else(|error| panic!("the control transaction did not replay: {error}"));
    engine.close().expect("close");

    let ring_image = layout.journal_start.0 + 1;
    let cases = [
        (0, "a superblock slot"),
        (1, "a superblock slot"),
        (layout.journal_start.0, "a block of the journal"),
        (layout.bitmap_start.0 - 1, "a block of the journal"),
        (layout.block_count, "outside the volume"),
        (u64::MAX / 4096 + 1, "outside the volume"),
    ];
    for (home, what) in cases {
        let mut crafted = clean.clone();
        journal_image(&mut crafted, home, &leaf);
        let before = crafted.clone();
        let (sim, opened) = try_open(crafted);
        let Err(error) = opened else { panic!("home {home}: the engine replayed the transaction") };
        assert!(matches!(error, EngineError::Corrupt(_)), "home {home}: {error}");
        let text = error.to_string();
        assert!(text.contains(&format!("block {ring_image}:")), "home {home}: the ring block is not named: {text}");
        assert!(text.contains(&format!("home block {home}")) && text.contains(what), "home {home}: {text}");
        assert!(sim.image() == before, "home {home}: the refused replay wrote to the device");
    }
}

#[test]
fn mount_refuses_a_journal_image_that_is_not_the_block_it_names() {
    let layout = layout();
    let clean = fresh_image();
    // The tree root's image filed under the volume root's address: a valid tag, a wrong block.
    let mut crafted = clean.clone();
    journal_image(&mut crafted, vexfs_format::mkfs::ROOT_BLOCK.0, &tree_root_image(&clean));
    let before = crafted.clone();
    let (sim, opened) = try_open(crafted);
    let Err(error) = opened else { panic!("the engine replayed a misfiled image") };
    assert!(matches!(error, EngineError::Corrupt(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains(&layout.tree_root.to_string()), "the misfiled block is not named: {text}");
    assert!(sim.image() == before, "the refused replay wrote to the device");
}
