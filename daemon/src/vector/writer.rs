//! A shard worker's log writer: a thread that encodes the worker's log records and appends them
//! to their shard logs, so that the worker goes on applying changes while their records are
//! encoded and written.
//!
//! The worker applies a change in memory and hands the writer what its records need: for an
//! insert, the caller's batch (shared, not copied) with the rows, ids and attributes of this shard,
//! and the log offset the first record goes to. The writer encodes each record straight into a
//! block buffer of the storage's registered arena and hands full buffers to its device thread,
//! which writes them with [`EngineHandle::write_blocks`], straight from the buffers and up to
//! [`BUFFERS_PER_WRITE`] of one log at once, while the writer encodes the next. A vector is copied
//! once into the shard's table (by the worker) and once into a log buffer (here), and nowhere else.
//!
//! Each shard log has a tail here: a buffer whose first byte sits at a block boundary of the log,
//! holding the log's last partial block (already on the device, or about to be) and then records
//! not yet written. When a record does not fit, the buffer is written, its last partial block
//! moves to the front, and encoding goes on; a flush writes what the buffer holds. So a log is
//! written in whole blocks from the buffers the records were encoded in, and its last block, partly
//! filled, is written again with more records behind it on the next write, as the engine's own
//! writes do with the partial block at the end of a file.
//!
//! Invariants:
//! - Requests are handled in the order they were sent (one thread, one FIFO channel), and each
//!   request's offset is the end of the log before it (asserted), so a shard log never has a hole
//!   before its last written record.
//! - The device thread writes a log's buffers in the order it gets them, and after a failed write
//!   of a log it refuses that log's later buffers (already queued before the writer learns of the
//!   failure): writing them would extend the log over blocks never written.
//! - A failed write fails its shard: the writer drops that shard's later records, and every later
//!   flush of it returns the error, since the log can no longer grow without a gap. The vectors
//!   stay in memory and searchable, as a file's data stays in the page cache when writeback fails.
//! - At most [`QUEUED_BYTES_MAX`] bytes of records wait per worker (counted at their encoded size);
//!   a worker that produces records faster waits for the writer (back-pressure). Records encoded
//!   but not written are at most one buffer per shard plus [`DEVICE_BUFFERS_MAX`] with the device
//!   thread.
//! - [`LogWriter::flush`] returns only when everything handed over before it is written (or has
//!   failed).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};
use vexfs_format::collection::{encode_delete_into, encode_insert_rows, record_len, Attrs};
use vexfs_format::BLOCK_SIZE;

use super::VectorError;
use crate::engine::EngineHandle;
use crate::errno::Errno;
use crate::io::IoBuf;
use crate::storage::Storage;

/// Bytes of records (at their encoded size) handed over and not yet encoded, per worker, before
/// the worker waits.
const QUEUED_BYTES_MAX: usize = 32 << 20;
/// The size of a tail's buffer: the arena's largest class, so it is one registered block. A
/// record larger than a buffer (one vector with huge attributes) gets a buffer of its own size.
pub const BUFFER_BYTES: usize = crate::io::arena::CLASS_SIZE_MAX;

const BLOCK: usize = BLOCK_SIZE;

/// An insert's records for one shard: rows `rows[r]` of `batch` (row-major, `dim` values each)
/// with ids `ids[r]` and attributes `attrs[r]` (`attrs` empty when no row has any), cut into
/// `records`.
pub struct InsertRecords {
    pub dim: usize,
    pub batch: Arc<Vec<f32>>,
    pub rows: Vec<u32>,
    pub ids: Vec<u64>,
    pub attrs: Vec<Attrs>,
    pub records: Vec<Record>,
}

/// One log record of an [`InsertRecords`]: its sequence number, the range of `r` it holds, and
/// its encoded length (computed once, by the shard that plans it).
pub struct Record {
    pub seq: u64,
    pub rows: Range<usize>,
    pub len: usize,
}

impl InsertRecords {
    /// The encoded length of all the records.
    pub fn bytes(&self) -> usize {
        self.records.iter().map(|record| record.len).sum()
    }

    /// Encodes record `index` over all of `out` (exactly its `len` bytes).
    fn encode(&self, index: usize, out: &mut [u8]) {
        let Record { seq, rows: range, .. } = &self.records[index];
        let dim = self.dim;
        let rows = &self.rows[range.clone()];
        let row = |i: usize| {
            let at = rows[i] as usize * dim;
            &self.batch[at..at + dim]
        };
        let attrs = if self.attrs.is_empty() { &[][..] } else { &self.attrs[range.clone()] };
        encode_insert_rows(out, *seq, dim as u32, &self.ids[range.clone()], row, attrs);
    }
}

enum Request {
    /// Records at `offset` of shard log `ino`.
    Insert {
        ino: u64,
        offset: u64,
        records: InsertRecords,
    },
    Delete {
        ino: u64,
        offset: u64,
        seq: u64,
        ids: Vec<u64>,
    },
    /// Write everything of `ino` that is encoded.
    Flush(u64),
    /// Drop `ino`'s tail without writing it (its collection is being removed).
    Forget(u64),
}

/// The answer to one request: the bytes it released from the queue, and the shard's failure if its
/// log has failed.
struct Reply {
    ino: u64,
    bytes: usize,
    error: Option<(String, i32)>,
}

/// The worker's side of its log writer.
pub struct LogWriter {
    requests: Option<Sender<Request>>,
    replies: Receiver<Reply>,
    /// Requests sent and not yet answered.
    outstanding: usize,
    queued_bytes: usize,
    /// Shards whose log could not be written: the reason and its errno.
    failed: HashMap<u64, (String, i32)>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread of worker `index`.
    pub fn start<S: Storage>(engine: EngineHandle<S>, index: usize) -> LogWriter {
        // Unbounded channels: the worker bounds what it sends by `QUEUED_BYTES_MAX`, and answers
        // are at most one per request.
        let (requests, queue) = unbounded::<Request>();
        let (answers, replies) = unbounded::<Reply>();
        let thread = std::thread::Builder::new()
            .name(format!("vexfs-log-{index}"))
            .spawn(move || {
                let mut tails = Tails::new(engine, index);
                for request in queue {
                    if answers.send(tails.handle(request)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn a log writer");
        LogWriter {
            requests: Some(requests),
            replies,
            outstanding: 0,
            queued_bytes: 0,
            failed: HashMap::new(),
            thread: Some(thread),
        }
    }

    /// Hands over an insert's records for shard log `ino`, the first at `offset`. Waits while
    /// too much is queued.
    pub fn insert(&mut self, ino: u64, offset: u64, records: InsertRecords) -> Result<(), VectorError> {
        let bytes = records.bytes();
        self.send(Request::Insert { ino, offset, records }, bytes)
    }

    /// Hands over a delete record for shard log `ino` at `offset`.
    pub fn delete(&mut self, ino: u64, offset: u64, seq: u64, ids: Vec<u64>) -> Result<(), VectorError> {
        let bytes = record_len(ids.len(), 0, 0);
        self.send(Request::Delete { ino, offset, seq, ids }, bytes)
    }

    /// Writes everything handed over for shard log `ino` and waits until it is written; then the
    /// error of `ino`, if its log failed.
    pub fn flush(&mut self, ino: u64) -> Result<(), VectorError> {
        self.send(Request::Flush(ino), 0)?;
        self.wait_idle();
        self.check(ino)
    }

    /// Forgets shard log `ino` (its collection is being removed): what is not written is dropped.
    pub fn forget(&mut self, ino: u64) {
        if self.send(Request::Forget(ino), 0).is_ok() {
            self.wait_idle();
        }
        self.failed.remove(&ino);
    }

    fn send(&mut self, request: Request, bytes: usize) -> Result<(), VectorError> {
        while self.outstanding > 0 && self.queued_bytes + bytes > QUEUED_BYTES_MAX {
            self.reap_one();
        }
        let requests = self.requests.as_ref().ok_or(VectorError::Closed)?;
        requests.send(request).map_err(|_| VectorError::Closed)?;
        self.outstanding += 1;
        self.queued_bytes += bytes;
        Ok(())
    }

    fn wait_idle(&mut self) {
        while self.outstanding > 0 {
            self.reap_one();
        }
    }

    fn check(&self, ino: u64) -> Result<(), VectorError> {
        match self.failed.get(&ino) {
            Some((reason, errno)) => Err(VectorError::LogFailed { shard: ino, reason: reason.clone(), errno: *errno }),
            None => Ok(()),
        }
    }

    fn reap_one(&mut self) {
        let Ok(reply) = self.replies.recv() else {
            // The writer thread is gone (it panicked): nothing it held will be written.
            self.outstanding = 0;
            self.queued_bytes = 0;
            return;
        };
        self.outstanding -= 1;
        self.queued_bytes -= reply.bytes;
        if let Some(error) = reply.error {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.failed.entry(reply.ino) {
                tracing::error!(shard = reply.ino, reason = %error.0, "appending to a shard log failed");
                entry.insert(error);
            }
        }
    }
}

impl Drop for LogWriter {
    /// Lets the writer finish what it holds, then ends it. Records not flushed are not written.
    fn drop(&mut self) {
        drop(self.requests.take());
        self.wait_idle();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The end of one shard log, as the writer holds it.
struct Tail {
    /// Log offset of `buf[0]`: a block boundary.
    base: u64,
    /// Bytes of `buf` that hold the log: it ends at `base + len`.
    len: usize,
    /// Whether `buf` holds bytes not yet handed to the device thread.
    dirty: bool,
    /// `len` bytes of the log from `base`, then room. A log not being appended to keeps only its
    /// partial last block, in a buffer of one block.
    buf: IoBuf,
}

impl Tail {
    fn end(&self) -> u64 {
        self.base + self.len as u64
    }
}

/// The writer thread's state: the tail of every shard log it has been handed records for, and the
/// device thread that writes full buffers while this one encodes the next.
struct Tails<S: Storage> {
    engine: EngineHandle<S>,
    tails: HashMap<u64, Tail>,
    /// Logs that could not be written, with the first error: kept apart from the tails, which a
    /// call may hold out of the map while the device reports.
    failed: HashMap<u64, (String, i32)>,
    device: Option<Sender<DeviceJob>>,
    device_done: Receiver<DeviceDone>,
    device_thread: Option<JoinHandle<()>>,
    /// Jobs with the device thread.
    in_device: usize,
    /// Buffers back from the device thread, for reuse.
    spare: Vec<IoBuf>,
}

impl<S: Storage> Tails<S> {
    fn new(engine: EngineHandle<S>, index: usize) -> Tails<S> {
        let (device, jobs) = unbounded::<DeviceJob>();
        let (finished, device_done) = unbounded::<DeviceDone>();
        let device_engine = engine.clone();
        let device_thread = std::thread::Builder::new()
            .name(format!("vexfs-logio-{index}"))
            .spawn(move || device_loop(device_engine, jobs, finished))
            .expect("spawn a log device thread");
        Tails {
            engine,
            tails: HashMap::new(),
            failed: HashMap::new(),
            device: Some(device),
            device_done,
            device_thread: Some(device_thread),
            in_device: 0,
            spare: Vec::new(),
        }
    }

    fn handle(&mut self, request: Request) -> Reply {
        let (ino, bytes, result) = match request {
            Request::Insert { ino, offset, records } => {
                let records = &records;
                let encoders = (0..records.records.len())
                    .map(|index| (records.records[index].len, move |out: &mut [u8]| records.encode(index, out)));
                (ino, records.bytes(), self.append(ino, offset, encoders))
            }
            Request::Delete { ino, offset, seq, ids } => {
                let len = record_len(ids.len(), 0, 0);
                let encode = |out: &mut [u8]| encode_delete_into(out, seq, &ids);
                (ino, len, self.append(ino, offset, std::iter::once((len, encode))))
            }
            Request::Flush(ino) => (ino, 0, self.flush(ino)),
            Request::Forget(ino) => {
                self.forget(ino);
                (ino, 0, Ok(()))
            }
        };
        // Take in what the device has finished, so that failures surface early.
        while let Ok(done) = self.device_done.try_recv() {
            self.finished(done);
        }
        Reply { ino, bytes, error: result.err() }
    }

    /// Encodes `records` (each its length and its encoder) into `ino`'s tail from log offset
    /// `offset`, handing full buffers to the device thread as it goes.
    fn append<E: FnOnce(&mut [u8])>(
        &mut self,
        ino: u64,
        offset: u64,
        records: impl Iterator<Item = (usize, E)>,
    ) -> Result<(), (String, i32)> {
        let mut tail = match self.tails.remove(&ino) {
            Some(tail) => tail,
            None => self.open_tail(ino, offset)?,
        };
        let result = self.append_to(ino, &mut tail, offset, records);
        self.tails.insert(ino, tail);
        result
    }

    fn append_to<E: FnOnce(&mut [u8])>(
        &mut self,
        ino: u64,
        tail: &mut Tail,
        offset: u64,
        records: impl Iterator<Item = (usize, E)>,
    ) -> Result<(), (String, i32)> {
        if let Some(error) = self.failed.get(&ino) {
            return Err(error.clone());
        }
        assert_eq!(offset, tail.end(), "shard log {ino}: a record at {offset} does not follow the log's end");
        for (len, encode) in records {
            if tail.len + len > tail.buf.len() {
                self.submit(ino, tail, len);
            }
            encode(&mut tail.buf[tail.len..tail.len + len]);
            tail.len += len;
            tail.dirty = true;
        }
        Ok(())
    }

    /// A tail for a log that ends at `offset`, holding its partial last block read back from the
    /// device (once per log and writer: later appends keep it in memory).
    fn open_tail(&self, ino: u64, offset: u64) -> Result<Tail, (String, i32)> {
        let base = offset - offset % BLOCK as u64;
        let len = (offset - base) as usize;
        let mut buf = self.engine.block_buffer(BLOCK);
        if len > 0 {
            let (block, range) = self.engine.read(ino, base, BLOCK as u32).map_err(|e| (e.to_string(), e.errno()))?;
            if range.len() != len {
                let reason = format!("the log is {} bytes long, not {offset}", base + range.len() as u64);
                return Err((reason, libc::EIO));
            }
            buf[..len].copy_from_slice(&block[range]);
        }
        Ok(Tail { base, len, dirty: false, buf })
    }

    /// Hands what `tail` holds to the device thread (when it holds anything new) and continues
    /// the tail in another buffer that starts with the partial last block (the next write writes
    /// that block again, extended) and has room for `room` more bytes; with `room` 0 (a flush),
    /// a buffer of one block, so that an idle log holds no more memory than that.
    fn submit(&mut self, ino: u64, tail: &mut Tail, room: usize) {
        let whole = tail.len / BLOCK * BLOCK;
        let partial = tail.len - whole;
        let need = (partial + room).next_multiple_of(BLOCK);
        let mut next = if room == 0 {
            self.engine.block_buffer(BLOCK)
        } else if need <= BUFFER_BYTES {
            self.spare.pop().unwrap_or_else(|| self.engine.block_buffer(BUFFER_BYTES))
        } else {
            self.engine.block_buffer(need)
        };
        next[..partial].copy_from_slice(&tail.buf[whole..tail.len]);
        let mut full = std::mem::replace(&mut tail.buf, next);
        if tail.dirty {
            let padded = tail.len.next_multiple_of(BLOCK);
            full[tail.len..padded].fill(0);
            self.send(DeviceJob::Write { ino, base: tail.base, buf: full, len: padded, end: tail.end() });
        } else {
            self.recycle(full);
        }
        tail.base += whole as u64;
        tail.len = partial;
        tail.dirty = false;
    }

    /// Writes `ino`'s tail and waits for the device; its buffer shrinks to the partial last block.
    fn flush(&mut self, ino: u64) -> Result<(), (String, i32)> {
        if let Some(mut tail) = self.tails.remove(&ino) {
            if !self.failed.contains_key(&ino) {
                self.submit(ino, &mut tail, 0);
            }
            self.tails.insert(ino, tail);
        }
        self.drain();
        match self.failed.get(&ino) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Drops `ino`'s tail, once the device has finished with it.
    fn forget(&mut self, ino: u64) {
        self.tails.remove(&ino);
        self.send(DeviceJob::Forget(ino));
        self.drain();
        self.failed.remove(&ino);
    }

    fn send(&mut self, job: DeviceJob) {
        while self.in_device >= DEVICE_BUFFERS_MAX {
            self.reap_one();
        }
        let device = self.device.as_ref().expect("the device thread runs while the writer does");
        if device.send(job).is_ok() {
            self.in_device += 1;
        }
    }

    fn drain(&mut self) {
        while self.in_device > 0 {
            self.reap_one();
        }
    }

    fn reap_one(&mut self) {
        match self.device_done.recv() {
            Ok(done) => self.finished(done),
            // The device thread is gone (it panicked): nothing it held will be written.
            Err(_) => self.in_device = 0,
        }
    }

    fn finished(&mut self, done: DeviceDone) {
        self.in_device -= 1;
        if let Some(error) = done.error {
            self.failed.entry(done.ino).or_insert(error);
        }
        if let Some(buf) = done.buf {
            self.recycle(buf);
        }
    }

    /// Keeps a buffer of the usual size for reuse, up to as many as the device thread may hold.
    fn recycle(&mut self, buf: IoBuf) {
        if buf.len() == BUFFER_BYTES && self.spare.len() < DEVICE_BUFFERS_MAX {
            self.spare.push(buf);
        }
    }
}

impl<S: Storage> Drop for Tails<S> {
    fn drop(&mut self) {
        self.drain();
        drop(self.device.take());
        if let Some(thread) = self.device_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Buffers with a writer's device thread at once.
const DEVICE_BUFFERS_MAX: usize = 4;
/// Registered memory a worker's log writer uses in steady state: the buffers with its device
/// thread, as many spares, and the tails of two logs being appended to. More tails (many
/// collections taking inserts at once) fall back to heap buffers.
pub const LOG_ARENA_BYTES_PER_WORKER: usize = (2 * DEVICE_BUFFERS_MAX + 2) * BUFFER_BYTES;
/// Buffers of one log that the device thread writes with one [`EngineHandle::write_blocks`].
const BUFFERS_PER_WRITE: usize = 4;

const _: () = assert!((BUFFERS_PER_WRITE * BUFFER_BYTES) as u64 <= crate::engine::WRITE_BLOCKS_MAX);

enum DeviceJob {
    /// Write `buf[..len]` (whole blocks) at log offset `base` of `ino`; the log then ends at `end`.
    Write { ino: u64, base: u64, buf: IoBuf, len: usize, end: u64 },
    /// Forget that `ino` failed (its collection is being removed).
    Forget(u64),
}

/// A job done: the buffer back, and the error if the write failed or was refused.
struct DeviceDone {
    ino: u64,
    buf: Option<IoBuf>,
    error: Option<(String, i32)>,
}

/// The device thread: writes the buffers the writer hands over, in order, taking the jobs queued
/// behind one that continue the same log into the same [`EngineHandle::write_blocks`], so that
/// several buffers are in flight at once. After a failed write of a log, its later jobs are
/// refused: writing them would leave a hole in the log.
fn device_loop<S: Storage>(engine: EngineHandle<S>, jobs: Receiver<DeviceJob>, done: Sender<DeviceDone>) {
    let mut failed: HashMap<u64, (String, i32)> = HashMap::new();
    let mut next: Option<DeviceJob> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let (ino, base, buf, len, end) = match job {
            DeviceJob::Forget(ino) => {
                failed.remove(&ino);
                if done.send(DeviceDone { ino, buf: None, error: None }).is_err() {
                    return;
                }
                continue;
            }
            DeviceJob::Write { ino, base, buf, len, end } => (ino, base, buf, len, end),
        };
        let mut group = vec![(base, buf, len, end)];
        while group.len() < BUFFERS_PER_WRITE {
            match jobs.try_recv() {
                Ok(DeviceJob::Write { ino: same, base, buf, len, end }) if same == ino => {
                    group.push((base, buf, len, end));
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let error = match failed.get(&ino) {
            Some(error) => Some(error.clone()),
            None => write_group(&engine, ino, &group).err(),
        };
        if let Some(error) = &error {
            failed.entry(ino).or_insert_with(|| error.clone());
        }
        for (_, buf, _, _) in group {
            if done.send(DeviceDone { ino, buf: Some(buf), error: error.clone() }).is_err() {
                return;
            }
        }
    }
}

/// Writes consecutive buffers of one log in one go. Each buffer after the first starts with the
/// partial last block of the one before, extended, so that block is written from the later buffer
/// only.
fn write_group<S: Storage>(
    engine: &EngineHandle<S>,
    ino: u64,
    group: &[(u64, IoBuf, usize, u64)],
) -> Result<(), (String, i32)> {
    let mut slices: Vec<&[u8]> = Vec::with_capacity(group.len());
    for (index, (base, buf, len, _)) in group.iter().enumerate() {
        let len = match group.get(index + 1) {
            Some((next_base, ..)) => {
                assert!(next_base >= base && next_base - base <= *len as u64, "shard log {ino}: buffers out of order");
                (next_base - base) as usize
            }
            None => *len,
        };
        if len > 0 {
            slices.push(&buf[..len]);
        }
    }
    let (base, ..) = group[0];
    let (.., end) = group[group.len() - 1];
    engine.write_blocks(ino, base, &slices, end).map(|_| ()).map_err(|e| (e.to_string(), e.errno()))
}
