//! What the engine-level tests share: a fixed clock and freshly formatted in-memory images.

use vexfs_daemon::engine::Clock;
use vexfs_format::inode::Timestamp;
use vexfs_format::mkfs::{image, MkfsParams};
use vexfs_format::superblock::{Superblock, SUPERBLOCK_SLOTS};
use vexfs_format::BLOCK_SIZE;

/// A clock that never moves, so images are reproducible.
pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp { sec: 1_800_000_000, nsec: 0 }
    }
}

/// The bytes of a freshly formatted volume of `size_bytes`.
pub fn fresh_image(size_bytes: u64, uuid: [u8; 16], label: &str) -> Vec<u8> {
    let params = MkfsParams { size_bytes, uuid, now: FixedClock.now(), label, uid: 0, gid: 0 };
    image(&params).expect("mkfs image")
}

/// SplitMix64: a tiny seeded generator, so a seed replays the same workload. Each test adds the
/// draws it needs in its own `impl Rng`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Reports that a test cannot run here (`reason` says why): with `CI=true` in the environment
/// that is a failure, because a green CI run must have run every test; elsewhere a skip.
#[allow(dead_code)]
pub fn cannot_run(reason: &str) {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("cannot run under CI=true: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Rewrites both superblock slots of `image` through `change`, with valid checksums: a crafted
/// volume that only the checks beyond the checksum can tell from a real one.
#[allow(dead_code)] // Not every test binary that shares this module crafts superblocks.
pub fn rewrite_superblocks(image: &mut [u8], change: impl Fn(&mut Superblock)) {
    for addr in SUPERBLOCK_SLOTS {
        let at = addr.byte_offset() as usize;
        let mut sb = Superblock::decode(&image[at..at + BLOCK_SIZE], addr).expect("a valid slot");
        change(&mut sb);
        image[at..at + BLOCK_SIZE].copy_from_slice(&sb.encode());
    }
}
