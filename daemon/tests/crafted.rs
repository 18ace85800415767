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
use vexfs_format::mkfs::Layout;
use vexfs_format::BLOCK_SIZE;

const VOLUME_BYTES: u64 = 32 << 20;

fn fresh_image() -> Vec<u8> {
    common::fresh_image(VOLUME_BYTES, [4; 16], "crafted")
}

fn options() -> EngineOptions {
    EngineOptions { cache_bytes: 16 << 20, commit_interval: Duration::from_secs(3600) }
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
