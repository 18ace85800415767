//! The engine: one volume, its metadata, its data, and the operations every front door calls.
//!
//! Concurrency model:
//! - One metadata lock (`Shared::meta`) covers the block cache, the allocator and the running
//!   transaction. Every metadata operation runs entirely under it, inside a [`meta::Tx`] that rolls
//!   back on error, so the running transaction only ever holds whole operations.
//! - File data moves outside that lock. A per-inode lock orders data operations on one file
//!   (writers exclusive, readers shared); blocks for new data are reserved, written, and only then
//!   linked into the file by a metadata operation (see [`data`]).
//! - Commits are serialised by the journal lock and take the metadata lock only to copy the dirty
//!   blocks (see [`journal`]).
//!
//! Architecture Invariant: the engine never opens files and never reads the wall clock; it gets a
//! [`Storage`] and a [`Clock`].

mod alloc;
mod cache;
mod collection;
mod data;
pub mod error;
pub mod fs;
pub mod items;
mod journal;
mod meta;
mod open;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use vexfs_format::inode::Timestamp;

pub use data::{Written, WRITE_BLOCKS_MAX};
pub use error::{EngineError, Result};
pub use fs::{Attr, DirItem, SetAttr, StatFs, TimeSet};

use crate::storage::Storage;
use journal::JournalState;
use meta::Meta;

/// The time source. The daemon passes the system clock; tests may pass a fixed one.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp { sec: now.as_secs() as i64, nsec: now.subsec_nanos() }
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Bytes of metadata cache (`--cache-size`).
    pub cache_bytes: usize,
    /// How often the running transaction is committed when nobody asks (`--commit-interval-ms`).
    pub commit_interval: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { cache_bytes: 256 << 20, commit_interval: Duration::from_secs(5) }
    }
}

/// The smallest metadata cache: 16 MiB.
pub const CACHE_BYTES_MIN: usize = 16 << 20;

/// Per-inode state that lives only while the inode is referenced.
#[derive(Default)]
struct InodeState {
    /// References handed out by entry-returning operations and not yet forgotten.
    lookups: u64,
    /// Orders data operations on the file.
    io: Arc<RwLock<()>>,
}

/// State shared by every thread that uses the engine.
pub struct Shared<S: Storage> {
    storage: S,
    clock: Arc<dyn Clock>,
    options: EngineOptions,
    meta: Mutex<Meta>,
    journal: Mutex<JournalState>,
    inodes: Mutex<HashMap<u64, InodeState>>,
    /// Epoch of the running transaction; every commit (empty or not) ends one epoch.
    epoch_running: AtomicU64,
    epoch_durable: Mutex<u64>,
    epoch_cv: Condvar,
    failed: AtomicBool,
    /// Set when a data write completed since the last flush.
    data_unflushed: AtomicBool,
    /// Dirty blocks above which an operation commits on its way out.
    txn_blocks_max: usize,
    block_count: u64,
    shutdown: Mutex<bool>,
    shutdown_cv: Condvar,
}

impl<S: Storage> Shared<S> {
    fn epoch_running(&self) -> u64 {
        self.epoch_running.load(Ordering::Acquire)
    }

    fn epoch_durable(&self) -> u64 {
        *self.epoch_durable.lock()
    }

    /// Ends the running epoch (called with the metadata lock held) and returns it.
    fn advance_epoch(&self) -> u64 {
        self.epoch_running.fetch_add(1, Ordering::AcqRel)
    }

    fn publish_durable(&self, epoch: u64) {
        let mut durable = self.epoch_durable.lock();
        *durable = (*durable).max(epoch);
        self.epoch_cv.notify_all();
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Writes file data in place (metadata goes through the journal instead). Two rules live here:
    /// - A failed write latches the engine read-only, as a failed commit does: what the device
    ///   holds in those blocks is unknown, and a later write or link must not build on it (a
    ///   shard log, for one, must never grow past a gap).
    /// - A completed write marks data unflushed before this returns, so before the caller links
    ///   any extent that points at it: a commit that snapshots the link sees the mark and flushes
    ///   before its journal write. (Marked after the link, a commit starting in between would skip
    ///   that flush, and a power cut could keep its commit block and lose the data.)
    fn write_data(&self, ops: &[crate::storage::WriteOp<'_>]) -> Result<()> {
        if let Err(error) = self.storage.write_batch(ops) {
            tracing::error!(%error, "data write failed; the volume refuses further writes");
            self.fail();
            return Err(error.into());
        }
        self.data_unflushed.store(true, Ordering::Release);
        Ok(())
    }

    fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(EngineError::Failed);
        }
        Ok(())
    }

    /// Runs `op` as one metadata operation: under the metadata lock, inside a transaction handle
    /// that rolls back on error. Commits afterwards when the running transaction has grown large.
    fn run<T>(&self, op: impl FnOnce(&mut meta::Tx<'_, S>) -> Result<T>) -> Result<T> {
        self.check_failed()?;
        let (result, dirty) = {
            let mut meta = self.meta.lock();
            let mut tx = meta::Tx::begin(&mut meta, &self.storage);
            let result = op(&mut tx);
            let result = tx.finish(result);
            (result, meta.cache.dirty_count())
        };
        if dirty > self.txn_blocks_max {
            self.commit()?;
        }
        result
    }

    /// Runs `op`, which changes nothing, as one metadata operation. Unlike [`Shared::run`] it is
    /// served after the engine failed too: a volume latched read-only stays readable.
    fn look<T>(&self, op: impl FnOnce(&mut meta::Tx<'_, S>) -> Result<T>) -> Result<T> {
        let mut meta = self.meta.lock();
        let mut tx = meta::Tx::begin(&mut meta, &self.storage);
        let result = op(&mut tx);
        assert_eq!(tx.blocks_touched(), 0, "a look changed metadata");
        tx.finish(result)
    }

    /// Like [`Shared::run`], but retries once after a commit when the volume is out of space:
    /// blocks freed by transactions that were not durable yet become reusable by the commit.
    fn run_retrying<T>(&self, mut op: impl FnMut(&mut meta::Tx<'_, S>) -> Result<T>) -> Result<T> {
        match self.run(&mut op) {
            Err(EngineError::NoSpace) => {
                self.commit()?;
                {
                    let mut journal = self.journal.lock();
                    self.reset_journal(&mut journal, vexfs_format::superblock::VolumeState::Mounted)?;
                }
                self.run(op)
            }
            other => other,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A mounted volume. Cloning shares it.
pub struct Engine<S: Storage> {
    shared: Arc<Shared<S>>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl<S: Storage> Engine<S> {
    /// The shared state, for the front doors.
    pub fn handle(&self) -> EngineHandle<S> {
        EngineHandle { shared: Arc::clone(&self.shared) }
    }

    /// Commits everything, marks the volume clean and stops background work.
    pub fn close(mut self) -> Result<()> {
        self.stop_committer();
        self.shared.close_journal()
    }

    fn stop_committer(&mut self) {
        *self.shared.shutdown.lock() = true;
        self.shared.shutdown_cv.notify_all();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

impl<S: Storage> Drop for Engine<S> {
    fn drop(&mut self) {
        self.stop_committer();
    }
}

/// A cheap, cloneable handle through which front doors call the engine.
pub struct EngineHandle<S: Storage> {
    shared: Arc<Shared<S>>,
}

impl<S: Storage> Clone for EngineHandle<S> {
    fn clone(&self) -> Self {
        EngineHandle { shared: Arc::clone(&self.shared) }
    }
}

/// Periodic commits, so that data nobody fsyncs still reaches the device within the interval.
fn committer_loop<S: Storage>(shared: Arc<Shared<S>>) {
    loop {
        {
            let mut stop = shared.shutdown.lock();
            if !*stop {
                shared.shutdown_cv.wait_for(&mut stop, shared.options.commit_interval);
            }
            if *stop {
                return;
            }
        }
        if shared.failed.load(Ordering::Acquire) {
            continue;
        }
        if let Err(error) = shared.commit() {
            tracing::error!(%error, "periodic commit failed");
        }
    }
}
