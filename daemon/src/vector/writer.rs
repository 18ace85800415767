//! A shard worker's log writer: a thread that appends the worker's encoded log records to their
//! shard logs, so the worker goes on applying inserts while the device takes the records before.
//!
//! The worker hands over a full buffer of records together with the log offset it goes to, and
//! continues with a spare buffer; at most [`IN_FLIGHT`] buffers are with the writer, so a worker
//! that produces records faster than the device takes them waits (back-pressure), and memory stays
//! bounded. The writer runs the engine's ordinary file writes (on its own io_uring ring, as every
//! thread has one), so the records share the files' crash safety.
//!
//! Invariants:
//! - Appends reach the engine in the order they were handed over (one thread, one FIFO queue), so
//!   a shard log never has a hole before its last acknowledged record.
//! - A failed append fails its shard: every later flush of that shard returns the error, since the
//!   log can no longer grow without a gap. The vectors stay in memory and searchable.
//! - [`LogWriter::wait_idle`] returns only when every buffer handed over is written (or failed).

use std::collections::HashMap;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::VectorError;
use crate::engine::EngineHandle;
use crate::storage::Storage;

/// Buffers with the writer at once, per worker.
const IN_FLIGHT: usize = 2;
/// The capacity new buffers start with: a flush's worth of records and an insert's part beyond
/// it, so that a buffer seldom grows (growing copies it). Untouched capacity costs no memory.
const BUFFER_BYTES: usize = 2 * super::shard::PENDING_FLUSH_BYTES;

struct Append {
    ino: u64,
    offset: u64,
    bytes: Vec<u8>,
}

/// An append done: its buffer back, and the error if it failed.
struct Done {
    ino: u64,
    bytes: Vec<u8>,
    error: Option<(String, i32)>,
}

pub struct LogWriter {
    appends: Option<Sender<Append>>,
    done: Receiver<Done>,
    in_flight: usize,
    spare: Vec<Vec<u8>>,
    /// Shards whose log could not be written: the reason and its errno.
    failed: HashMap<u64, (String, i32)>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread of worker `index`.
    pub fn start<S: Storage>(engine: EngineHandle<S>, index: usize) -> LogWriter {
        let (appends, queue) = bounded::<Append>(IN_FLIGHT);
        let (finished, done) = bounded::<Done>(IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name(format!("vexfs-log-{index}"))
            .spawn(move || {
                for mut append in queue {
                    let error = engine
                        .write(append.ino, append.offset, &append.bytes)
                        .err()
                        .map(|e| (e.to_string(), e.errno()));
                    append.bytes.clear();
                    if finished.send(Done { ino: append.ino, bytes: append.bytes, error }).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn a log writer");
        LogWriter {
            appends: Some(appends),
            done,
            in_flight: 0,
            spare: Vec::new(),
            failed: HashMap::new(),
            thread: Some(thread),
        }
    }

    /// Hands `bytes` over to be written to shard log `ino` at `offset`, and returns an empty
    /// buffer to continue with. Waits while [`IN_FLIGHT`] buffers are with the writer.
    pub fn append(&mut self, ino: u64, offset: u64, bytes: Vec<u8>) -> Result<Vec<u8>, VectorError> {
        self.check(ino)?;
        while self.in_flight >= IN_FLIGHT {
            self.reap_one();
        }
        let appends = self.appends.as_ref().ok_or(VectorError::Closed)?;
        appends.send(Append { ino, offset, bytes }).map_err(|_| VectorError::Closed)?;
        self.in_flight += 1;
        Ok(self.spare.pop().unwrap_or_else(|| Vec::with_capacity(BUFFER_BYTES)))
    }

    /// Waits until everything handed over is written; then the error of shard `ino`, if its log
    /// failed.
    pub fn wait_idle(&mut self, ino: u64) -> Result<(), VectorError> {
        while self.in_flight > 0 {
            self.reap_one();
        }
        self.check(ino)
    }

    /// Forgets shard `ino` (its collection is being removed), once nothing of it is in flight.
    pub fn forget(&mut self, ino: u64) {
        while self.in_flight > 0 {
            self.reap_one();
        }
        self.failed.remove(&ino);
    }

    fn check(&self, ino: u64) -> Result<(), VectorError> {
        match self.failed.get(&ino) {
            Some((reason, errno)) => Err(VectorError::LogFailed { shard: ino, reason: reason.clone(), errno: *errno }),
            None => Ok(()),
        }
    }

    fn reap_one(&mut self) {
        let Ok(done) = self.done.recv() else {
            // The writer thread is gone (it panicked): nothing it held will be written.
            self.in_flight = 0;
            return;
        };
        self.in_flight -= 1;
        if let Some(error) = done.error {
            tracing::error!(shard = done.ino, reason = %error.0, "appending to a shard log failed");
            self.failed.entry(done.ino).or_insert(error);
        }
        if self.spare.len() < IN_FLIGHT {
            self.spare.push(done.bytes);
        }
    }
}

impl Drop for LogWriter {
    /// Lets the writer finish what it holds, then ends it.
    fn drop(&mut self) {
        drop(self.appends.take());
        while self.in_flight > 0 {
            self.reap_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
