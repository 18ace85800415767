//! Opening a volume: superblock, journal replay, allocator state, orphan cleanup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use vexfs_format::bitmap;
use vexfs_format::block::{self, BlockKind};
use vexfs_format::journal::JournalRegion;
use vexfs_format::mkfs::Layout;
use vexfs_format::root::VolumeRoot;
use vexfs_format::superblock::{Superblock, VolumeState, SUPERBLOCK_SLOTS};
use vexfs_format::{BlockAddr, FormatError, BLOCK_SIZE};

use super::alloc::{Allocator, RangeSet};
use super::cache::Cache;
use super::error::{EngineError, Result};
use super::journal::{replay, JournalState};
use super::meta::{Meta, RunningTxn, OP_BLOCKS_MAX};
use super::{Clock, Engine, EngineOptions, Shared, CACHE_BYTES_MIN};
use crate::storage::{ReadOp, Storage};

/// Reads both superblock slots and picks the one to use.
pub fn read_superblock<S: Storage>(storage: &S) -> Result<Superblock> {
    let mut slots = Vec::new();
    for addr in SUPERBLOCK_SLOTS {
        let mut buf = storage.alloc_buffer(BLOCK_SIZE);
        storage.read_batch(&mut [ReadOp { offset: addr.byte_offset(), buf: &mut buf[..BLOCK_SIZE] }])?;
        slots.push(Superblock::decode(&buf[..BLOCK_SIZE], addr));
    }
    let slot1 = slots.pop().expect("two slots");
    let slot0 = slots.pop().expect("two slots");
    Ok(Superblock::choose(slot0, slot1)?)
}

impl<S: Storage> Engine<S> {
    /// Opens (mounts) the volume on `storage`: replays the journal, loads the allocator, frees
    /// orphaned inodes, and starts the periodic committer.
    pub fn open(storage: S, clock: Arc<dyn Clock>, options: EngineOptions) -> Result<Engine<S>> {
        let sb = read_superblock(&storage)?;
        // Before anything is sized by the block count (the allocator's counts, its bitmap reads).
        sb.check_device(storage.geometry().size_bytes).map_err(|error| EngineError::Volume(error.to_string()))?;
        let layout = Layout::for_block_count(sb.block_count, sb.journal_blocks).expect("validated by decode");
        let (head, next_seq, replayed) = replay(&storage, &sb, &layout)?;
        if replayed > 0 {
            tracing::info!(transactions = replayed, "journal replayed");
        }
        let cache_frames = options.cache_bytes.max(CACHE_BYTES_MIN) / BLOCK_SIZE;
        let alloc = load_allocator(&storage, &layout)?;
        let meta = Meta {
            cache: Cache::new(cache_frames),
            alloc,
            running: RunningTxn::default(),
            root_block: sb.root_block,
            tree_root: layout.tree_root,
            quarantine: Vec::new(),
        };
        let region = JournalRegion { start: sb.journal_start, blocks: sb.journal_blocks, volume_id: sb.volume_id() };
        let journal = JournalState { region, head, used: 0, next_seq, superblock: sb.clone() };
        // Dirty blocks are bounded so that a commit fits in half the ring and dirty plus pinned
        // frames stay under half the cache (the cache's eviction invariant).
        let txn_blocks_max =
            (sb.journal_blocks as usize / 2).min(cache_frames / 4).saturating_sub(OP_BLOCKS_MAX).max(16);
        let shared = Arc::new(Shared {
            storage,
            clock,
            options,
            meta: Mutex::new(meta),
            journal: Mutex::new(journal),
            inodes: Mutex::new(HashMap::new()),
            epoch_running: AtomicU64::new(1),
            epoch_durable: Mutex::new(0),
            epoch_cv: Condvar::new(),
            failed: AtomicBool::new(false),
            data_unflushed: AtomicBool::new(false),
            txn_blocks_max,
            block_count: sb.block_count,
            shutdown: Mutex::new(false),
            shutdown_cv: Condvar::new(),
        });
        shared.check_root()?;
        shared.mark_mounted()?;
        shared.free_orphans()?;
        let worker = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("vexfs-commit".into())
            .spawn(move || super::committer_loop(worker))
            .map_err(|error| EngineError::Volume(format!("cannot start the commit thread: {error}")))?;
        Ok(Engine { shared, committer: Some(committer) })
    }
}

/// Reads every bitmap block (verifying it) to count free blocks per group.
fn load_allocator<S: Storage>(storage: &S, layout: &Layout) -> Result<Allocator> {
    let mut group_free = Vec::with_capacity(layout.bitmap_blocks as usize);
    let mut buf = storage.alloc_buffer(BLOCK_SIZE * 64);
    let mut group = 0;
    while group < layout.bitmap_blocks {
        let count = (layout.bitmap_blocks - group).min(64) as usize;
        let offset = (layout.bitmap_start.0 + group) * BLOCK_SIZE as u64;
        storage.read_batch(&mut [ReadOp { offset, buf: &mut buf[..count * BLOCK_SIZE] }])?;
        for i in 0..count {
            let addr = BlockAddr(layout.bitmap_start.0 + group + i as u64);
            let page = &buf[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE];
            block::verify(page, addr, &[BlockKind::Bitmap])?;
            group_free.push(bitmap::count_free(bitmap::bits(page)) as u32);
        }
        group += count as u64;
    }
    Ok(Allocator {
        bitmap_start: layout.bitmap_start.0,
        bitmap_blocks: layout.bitmap_blocks,
        block_count: layout.block_count,
        first_free: layout.first_free.0,
        group_free,
        busy: RangeSet::default(),
        data_cursor: layout.first_free.0 + (layout.block_count - layout.first_free.0) / 16,
        meta_cursor: layout.first_free.0,
    })
}

impl<S: Storage> Shared<S> {
    /// Verifies the volume root and that its free count agrees with the bitmap.
    fn check_root(&self) -> Result<()> {
        self.run(|tx| {
            let addr = tx.meta.root_block;
            let root = VolumeRoot::read(tx.page_of(addr, &[BlockKind::Root])?, addr)?;
            let tree_root = tx.meta.tree_root;
            if root.tree_root != tree_root {
                return Err(
                    FormatError::malformed(tx.meta.root_block.0, "volume root names a different tree root").into()
                );
            }
            let clear: u64 = tx.meta.alloc.group_free.iter().map(|&f| u64::from(f)).sum();
            if clear != root.free_blocks {
                tracing::warn!(
                    bitmap = clear,
                    root = root.free_blocks,
                    "free block count disagrees with the bitmap; using the bitmap"
                );
                tx.update_root(|root| root.free_blocks = clear)?;
            }
            Ok(())
        })
    }

    /// Records the mount in the superblock: state Mounted, tail at the replayed head.
    fn mark_mounted(&self) -> Result<()> {
        let now = self.now();
        let mut journal = self.journal.lock();
        // Informational, and read from the device: it must not overflow.
        journal.superblock.mount_count = journal.superblock.mount_count.saturating_add(1);
        journal.superblock.last_mount_time = now.sec;
        self.reset_journal(&mut journal, VolumeState::Mounted)
    }
}
