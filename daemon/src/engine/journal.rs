//! Committing transactions: the journal writer, checkpointing, journal resets and replay.
//!
//! Commit of the running transaction (serialised by the commit lock):
//! 1. Under the metadata lock: copy every dirty frame, seal the copies with the transaction's
//!    sequence number, mark the frames clean but pinned, take the transaction's free lists and open
//!    the next transaction. Operations go on meanwhile against the next transaction.
//! 2. If the ring lacks room, reset the journal (below).
//! 3. Write descriptor + images + commit block to the ring in one batch and flush. The transaction
//!    is now durable: wake every fsync waiting for it. Data blocks it freed become reusable.
//! 4. Write the images to their home locations (checkpoint) and unpin the frames. They become
//!    durable with the next flush, which always precedes the next journal reset.
//!
//! Journal reset: every committed transaction has been checkpointed (step 4 completes inside the
//! commit), so after a flush the superblock's tail can move to the head; then metadata blocks
//! freed by earlier transactions can be reused, since no replayable image of them remains.
//!
//! Ordered data: a data write completes before the operation that inserts its extent runs, and a
//! commit flushes completed data writes before it writes the journal, so a committed transaction
//! never references data that is not on the device.

use vexfs_format::journal::{self, Image, JournalRegion};
use vexfs_format::mkfs::Layout;
use vexfs_format::superblock::{Superblock, VolumeState};
use vexfs_format::{block, BlockAddr, BLOCK_SIZE};

use super::error::Result;
use super::meta::META_KINDS;
use super::Shared;
use crate::storage::{Storage, WriteOp};

/// Journal position bookkeeping, behind the commit lock.
pub struct JournalState {
    pub region: JournalRegion,
    /// Ring position where the next transaction goes.
    pub head: u64,
    /// Blocks written since the on-disk tail.
    pub used: u64,
    /// Sequence number of the next transaction written.
    pub next_seq: u64,
    /// The superblock as last written.
    pub superblock: Superblock,
}

/// A snapshot of one transaction, taken under the metadata lock.
struct Snapshot {
    epoch: u64,
    images: Vec<(BlockAddr, crate::io::IoBuf)>,
    data_frees: Vec<(u64, u64)>,
    meta_frees: Vec<u64>,
}

impl<S: Storage> Shared<S> {
    /// Commits everything done so far and makes it durable. Returns when the transaction that was
    /// running at the call is durable (it may have been committed by another caller).
    pub fn commit(&self) -> Result<()> {
        let target = self.epoch_running();
        let mut journal = self.journal.lock();
        if self.epoch_durable() >= target {
            return Ok(());
        }
        self.check_failed()?;
        let result = self.commit_locked(&mut journal);
        if let Err(error) = &result {
            tracing::error!(%error, "commit failed; the volume refuses further writes");
            self.fail();
        }
        result
    }

    fn commit_locked(&self, journal: &mut JournalState) -> Result<()> {
        let snapshot = self.snapshot(journal.next_seq);
        if snapshot.images.is_empty() {
            if self.data_unflushed.swap(false, std::sync::atomic::Ordering::AcqRel) || !snapshot.data_frees.is_empty() {
                self.storage.flush()?;
            }
            self.publish_durable(snapshot.epoch);
            self.release_data_frees(&snapshot.data_frees);
            return Ok(());
        }
        let seq = journal.next_seq;
        let blocks = JournalRegion::blocks_for(snapshot.images.len());
        if journal.used + blocks > journal.region.blocks {
            self.reset_journal(journal, VolumeState::Mounted)?;
        }
        // Data the transaction references must be on the device before its commit block can be:
        // a power cut between the journal write and the flush could otherwise keep the commit
        // and lose the data.
        if self.data_unflushed.swap(false, std::sync::atomic::Ordering::AcqRel) {
            self.storage.flush()?;
        }
        self.write_transaction(journal, seq, &snapshot)?;
        self.storage.flush()?;
        journal.head = (journal.head + blocks) % journal.region.blocks;
        journal.used += blocks;
        journal.next_seq = seq + 1;
        self.publish_durable(snapshot.epoch);
        self.release_data_frees(&snapshot.data_frees);
        self.checkpoint(&snapshot)?;
        self.meta.lock().quarantine.extend(snapshot.meta_frees.iter().copied());
        Ok(())
    }

    /// Step 1: copies and seals the dirty frames and opens the next transaction.
    fn snapshot(&self, seq: u64) -> Snapshot {
        let mut meta = self.meta.lock();
        let ids = meta.cache.dirty_frames();
        let mut images = Vec::with_capacity(ids.len());
        for id in ids {
            let mut image = self.storage.alloc_buffer(BLOCK_SIZE);
            image[..BLOCK_SIZE].copy_from_slice(meta.cache.data(id));
            block::seal(&mut image[..BLOCK_SIZE], seq);
            images.push((BlockAddr(meta.cache.addr(id)), image));
            meta.cache.set_dirty(id, false);
            meta.cache.set_checkpoint(id, true);
        }
        let data_frees = std::mem::take(&mut meta.running.data_frees);
        let meta_frees = std::mem::take(&mut meta.running.meta_frees);
        let epoch = self.advance_epoch();
        Snapshot { epoch, images, data_frees, meta_frees }
    }

    fn write_transaction(&self, journal: &JournalState, seq: u64, snapshot: &Snapshot) -> Result<()> {
        let images: Vec<Image<'_>> =
            snapshot.images.iter().map(|(home, buf)| Image { home: *home, block: &buf[..BLOCK_SIZE] }).collect();
        let blocks = journal::encode_transaction(&journal.region, journal.head, seq, &images);
        let mut bufs = Vec::with_capacity(blocks.len());
        for (addr, contents) in &blocks {
            let mut buf = self.storage.alloc_buffer(BLOCK_SIZE);
            buf[..BLOCK_SIZE].copy_from_slice(contents);
            bufs.push((addr.byte_offset(), buf));
        }
        let ops: Vec<WriteOp<'_>> =
            bufs.iter().map(|(offset, buf)| WriteOp { offset: *offset, buf: &buf[..BLOCK_SIZE] }).collect();
        self.storage.write_batch(&ops)?;
        Ok(())
    }

    /// Step 4: writes the images home, then unpins their frames.
    fn checkpoint(&self, snapshot: &Snapshot) -> Result<()> {
        let ops: Vec<WriteOp<'_>> = snapshot
            .images
            .iter()
            .map(|(home, buf)| WriteOp { offset: home.byte_offset(), buf: &buf[..BLOCK_SIZE] })
            .collect();
        let result = self.storage.write_batch(&ops);
        let mut meta = self.meta.lock();
        for (home, _) in &snapshot.images {
            if let Some(id) = meta.cache.lookup(home.0) {
                meta.cache.set_checkpoint(id, false);
            }
        }
        Ok(result?)
    }

    fn release_data_frees(&self, frees: &[(u64, u64)]) {
        if frees.is_empty() {
            return;
        }
        let mut meta = self.meta.lock();
        for &(start, len) in frees {
            meta.alloc.busy.remove(start, start + len);
        }
    }

    /// Moves the on-disk tail to the head. Every committed transaction is already checkpointed;
    /// the first flush makes those home writes durable before the superblock stops pointing at
    /// their journal copies. A failure latches the engine read-only, as a failed commit does.
    pub(super) fn reset_journal(&self, journal: &mut JournalState, state: VolumeState) -> Result<()> {
        let result = self.move_tail(journal, state);
        if let Err(error) = &result {
            tracing::error!(%error, "journal reset failed; the volume refuses further writes");
            self.fail();
        }
        result
    }

    fn move_tail(&self, journal: &mut JournalState, state: VolumeState) -> Result<()> {
        self.storage.flush()?;
        let mut sb = journal.superblock.clone();
        sb.sequence += 1;
        sb.journal_tail = journal.head;
        sb.journal_tail_seq = journal.next_seq;
        sb.state = state;
        self.write_superblock(&sb)?;
        self.storage.flush()?;
        journal.superblock = sb;
        journal.used = 0;
        let mut meta = self.meta.lock();
        for block in std::mem::take(&mut meta.quarantine) {
            meta.alloc.busy.remove(block, block + 1);
        }
        Ok(())
    }

    pub(super) fn write_superblock(&self, sb: &Superblock) -> Result<()> {
        let mut buf = self.storage.alloc_buffer(BLOCK_SIZE);
        buf[..BLOCK_SIZE].copy_from_slice(&sb.encode());
        self.storage.write_batch(&[WriteOp { offset: sb.slot().byte_offset(), buf: &buf[..BLOCK_SIZE] }])?;
        Ok(())
    }

    /// Commits, then resets the journal with the volume marked clean (unmount).
    pub fn close_journal(&self) -> Result<()> {
        self.commit()?;
        let mut journal = self.journal.lock();
        self.reset_journal(&mut journal, VolumeState::Clean)
    }
}

/// Replays the journal of a volume being opened: applies every committed transaction to its home
/// blocks and flushes. Returns the ring head and the next sequence number. Nothing is written
/// unless every image names a block where journaled metadata lives, and each image is checked to
/// be the metadata block it claims to be just before it is written home.
pub fn replay<S: Storage>(storage: &S, sb: &Superblock, layout: &Layout) -> Result<(u64, u64, usize)> {
    let region = JournalRegion { start: sb.journal_start, blocks: sb.journal_blocks, volume_id: sb.volume_id() };
    let mut buf = storage.alloc_buffer(BLOCK_SIZE);
    let mut read = |addr: BlockAddr, out: &mut [u8]| -> Result<()> {
        storage
            .read_batch(&mut [crate::storage::ReadOp { offset: addr.byte_offset(), buf: &mut buf[..BLOCK_SIZE] }])?;
        out.copy_from_slice(&buf[..BLOCK_SIZE]);
        Ok(())
    };
    let scan = journal::scan(&region, sb.journal_tail, sb.journal_tail_seq, &mut read)?;
    journal::check_homes(&region, &scan, layout)?;
    let plan = journal::replay_plan(&scan);
    for chunk in plan.chunks(64) {
        let mut bufs = Vec::with_capacity(chunk.len());
        for &(home, pos) in chunk {
            let mut image = storage.alloc_buffer(BLOCK_SIZE);
            storage.read_batch(&mut [crate::storage::ReadOp {
                offset: region.addr(pos).byte_offset(),
                buf: &mut image[..BLOCK_SIZE],
            }])?;
            // The tag's crc only says the image is what the commit wrote; a journaled block
            // names its own home, so one that does not was never a metadata block of this volume.
            block::verify(&image[..BLOCK_SIZE], home, &META_KINDS)?;
            bufs.push((home, image));
        }
        let ops: Vec<WriteOp<'_>> =
            bufs.iter().map(|(home, buf)| WriteOp { offset: home.byte_offset(), buf: &buf[..BLOCK_SIZE] }).collect();
        storage.write_batch(&ops)?;
    }
    if !plan.is_empty() {
        storage.flush()?;
    }
    Ok((scan.head, scan.next_seq, scan.transactions.len()))
}
