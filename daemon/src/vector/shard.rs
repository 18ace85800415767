//! One shard of a collection: its vectors in memory, laid out for the search kernels, and the
//! shard log on the device that makes them durable.
//!
//! Invariants:
//! - Every change is handed to the owner's log writer as log records by the same call that applies
//!   it in memory, in the same order, at the log offset that follows the records before it;
//!   [`Shard::flush`] returns once the writer has written them. So the log, read from the start,
//!   rebuilds exactly the memory state at the last flush.
//! - Rows are never moved except by [`Shard::compact`]; a deleted or replaced row stays in place,
//!   marked dead, until then. Each live id is in exactly one of the sorted run
//!   (`ids[..run]`) and `index`.
//! - A shard is touched only by the worker thread that owns it (see [`super::service`]).

use rustc_hash::FxHashMap;

use std::sync::Arc;

use vexfs_format::collection::{
    decode_record, encoded_attrs_len, record_len, AttrValue, Attrs, LogBody, LogError, Metric,
};

use super::search::{self, filter::Filter, kernels, Neighbor, VectorSet};
use super::writer::{InsertRecords, LogWriter, Record, BUFFER_BYTES};
use super::VectorError;
use crate::engine::EngineHandle;
use crate::io::rows::RowVec;
use crate::storage::Storage;

/// Encoded bytes per insert record, at most (one vector may exceed it); the format allows up to
/// `LOG_RECORD_BYTES_MAX`. A quarter of the log writer's buffer, so that records fill its buffers
/// without leaving much of one unused.
const RECORD_BYTES_TARGET: usize = BUFFER_BYTES / 4;
/// Bytes read from the log per request while replaying.
const REPLAY_READ_BYTES: u32 = 4 << 20;

/// What a shard reports for `vexfs stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub vectors: u64,
    pub dead_rows: u64,
    pub log_bytes: u64,
    pub pending_bytes: u64,
    pub memory_bytes: u64,
    pub max_id: Option<u64>,
}

pub struct Shard {
    /// The shard log's inode.
    ino: u64,
    dim: usize,
    /// Per row: id, vector and squared norm, in row memory ([`RowVec`]: kept across tables and
    /// grown without copying).
    ids: RowVec<u64>,
    data: RowVec<f32>,
    sq_norms: RowVec<f32>,
    live: Vec<bool>,
    /// Attributes of the rows that have any.
    attrs: FxHashMap<u32, Box<Attrs>>,
    /// Rows `0..run` hold strictly ascending ids and are found by binary search on `ids`: ids the
    /// collection assigns, and most callers' ids, arrive in ascending order, and a sorted run
    /// costs no memory and no hashing. Other rows are in `index`.
    run: usize,
    /// Id to row for rows at or after `run`. FxHash: ids are trusted integers, and SipHash's
    /// flooding resistance would cost more than the rest of an insert.
    index: FxHashMap<u64, u32>,
    live_count: usize,
    dead: usize,
    next_seq: u64,
    /// The end of the log with every record handed to the writer.
    log_end: u64,
    /// The end of the log at the last flush: everything before it is written.
    flushed_end: u64,
    max_id: Option<u64>,
}

impl Shard {
    /// Opens the shard whose log is `ino`, replaying the log. A record cut short at the very end
    /// of the log (a crash during an append nobody was told had finished) is cut off.
    pub fn open<S: Storage>(engine: &EngineHandle<S>, ino: u64, dim: usize) -> Result<Shard, VectorError> {
        let mut shard = Shard {
            ino,
            dim,
            ids: RowVec::new(),
            data: RowVec::new(),
            sq_norms: RowVec::new(),
            live: Vec::new(),
            attrs: FxHashMap::default(),
            run: 0,
            index: FxHashMap::default(),
            live_count: 0,
            dead: 0,
            next_seq: 0,
            log_end: 0,
            flushed_end: 0,
            max_id: None,
        };
        let size = engine.file_size(ino)?;
        let mut buf: Vec<u8> = Vec::new();
        // Log offset of buf[0].
        let mut base = 0u64;
        let mut read_to = 0u64;
        loop {
            match decode_record(&buf, dim as u32) {
                Ok((record, used)) => {
                    if record.seq < shard.next_seq {
                        return Err(VectorError::Corrupt {
                            shard: ino,
                            offset: base,
                            reason: format!("record sequence {} after {}", record.seq, shard.next_seq - 1),
                        });
                    }
                    // A sequence number is read from the device: the last one possible is refused
                    // rather than wrapped, as no writer can follow it.
                    shard.next_seq = record.seq.checked_add(1).ok_or_else(|| VectorError::Corrupt {
                        shard: ino,
                        offset: base,
                        reason: format!("record sequence {} leaves no room for another", record.seq),
                    })?;
                    match record.body {
                        LogBody::Insert { ids, vectors, attrs } => {
                            let mut attrs = attrs.into_iter();
                            shard.reserve(ids.len());
                            for (&id, row) in ids.iter().zip(vectors.chunks_exact(dim)) {
                                shard.append(id, row, kernels::norm_squared(row), attrs.next().unwrap_or_default());
                            }
                        }
                        LogBody::Delete { ids } => {
                            shard.apply_delete(&ids);
                        }
                    }
                    buf.drain(..used);
                    base += used as u64;
                }
                Err(LogError::Truncated { .. }) if read_to < size => {
                    let (bytes, range) = engine.read(ino, read_to, REPLAY_READ_BYTES)?;
                    if range.is_empty() {
                        break;
                    }
                    buf.extend_from_slice(&bytes[range.clone()]);
                    read_to += range.len() as u64;
                }
                Err(LogError::Truncated { .. }) => break,
                Err(LogError::Corrupt(reason)) => {
                    return Err(VectorError::Corrupt { shard: ino, offset: base, reason });
                }
            }
        }
        if base < size {
            tracing::warn!(shard = ino, offset = base, size, "shard log ends in an incomplete record; cutting it off");
            engine.truncate(ino, base)?;
        }
        shard.log_end = base;
        shard.flushed_end = base;
        Ok(shard)
    }

    /// Inserts (or replaces) the `rows` of `batch` (row-major vectors of this shard's dimension,
    /// validated and, for cosine, normalised) with `ids`, their squared norms ([`kernels::norm_squared`])
    /// and `attrs` (empty, or one per row), and hands their log records to `writer`. The rows are
    /// copied once, into the table; the writer encodes the records from `batch`.
    pub fn insert_rows(
        &mut self,
        writer: &mut LogWriter,
        batch: Arc<Vec<f32>>,
        rows: Vec<u32>,
        ids: Vec<u64>,
        sq_norms: &[f32],
        attrs: Vec<Attrs>,
    ) -> Result<(), VectorError> {
        let dim = self.dim;
        self.reserve(rows.len());
        let log_attrs = attrs.clone();
        let mut attrs = attrs.into_iter();
        for ((&id, &row), &sq_norm) in ids.iter().zip(&rows).zip(sq_norms) {
            let row = row as usize;
            self.append(id, &batch[row * dim..(row + 1) * dim], sq_norm, attrs.next().unwrap_or_default());
        }
        // One log record per RECORD_BYTES_TARGET or so, far below the format's record limit.
        let attrs_len = |r: usize| log_attrs.get(r).map_or(0, encoded_attrs_len);
        let mut records = Vec::new();
        let mut start = 0;
        while start < ids.len() {
            let (mut end, mut attrs_bytes) = (start, 0usize);
            while end < ids.len()
                && (end == start || record_len(end - start, dim as u32, attrs_bytes) < RECORD_BYTES_TARGET)
            {
                attrs_bytes += attrs_len(end);
                end += 1;
            }
            let len = record_len(end - start, dim as u32, attrs_bytes);
            records.push(Record { seq: self.next_seq, rows: start..end, len });
            self.next_seq += 1;
            start = end;
        }
        let records = InsertRecords { dim, batch, rows, ids, attrs: log_attrs, records };
        let offset = self.log_end;
        self.log_end += records.bytes() as u64;
        writer.insert(self.ino, offset, records)
    }

    /// Deletes the vectors with these ids; returns how many existed.
    pub fn delete(&mut self, writer: &mut LogWriter, ids: &[u64]) -> Result<usize, VectorError> {
        let present: Vec<u64> = ids.iter().copied().filter(|&id| self.row_of(id).is_some()).collect();
        if present.is_empty() {
            return Ok(0);
        }
        let removed = self.apply_delete(&present);
        let offset = self.log_end;
        self.log_end += record_len(present.len(), 0, 0) as u64;
        writer.delete(self.ino, offset, self.next_seq, present)?;
        self.next_seq += 1;
        Ok(removed)
    }

    /// Waits until every record handed to `writer` is written to the log. Durable once the
    /// engine has synced.
    pub fn flush(&mut self, writer: &mut LogWriter) -> Result<(), VectorError> {
        if self.flushed_end == self.log_end {
            return Ok(());
        }
        writer.flush(self.ino)?;
        self.flushed_end = self.log_end;
        Ok(())
    }

    pub fn knn(&self, metric: Metric, queries: &[f32], k: usize, filter: Option<&Filter>) -> Vec<Vec<Neighbor>> {
        let keep = |row: usize| self.keeps(row, filter);
        search::knn(&self.set(), metric, queries, k, &keep)
    }

    pub fn range(
        &self,
        metric: Metric,
        queries: &[f32],
        radius: f32,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Vec<Vec<Neighbor>> {
        let keep = |row: usize| self.keeps(row, filter);
        search::range(&self.set(), metric, queries, radius, &keep, limit)
    }

    /// The attributes of the vector with `id`, if it is stored.
    pub fn attrs_of(&self, id: u64) -> Option<Attrs> {
        let row = self.row_of(id)?;
        Some(self.attrs.get(&row).map_or_else(Attrs::new, |a| (**a).clone()))
    }

    /// Every stored id with the value of its attribute `key`, if it has one.
    pub fn scan_attr(&self, key: &str) -> Vec<(u64, Option<AttrValue>)> {
        (0..self.ids.len())
            .filter(|&row| self.live[row])
            .map(|row| {
                let value = self.attrs.get(&(row as u32)).and_then(|a| a.iter().find(|(k, _)| k == key));
                (self.ids[row], value.map(|(_, v)| v.clone()))
            })
            .collect()
    }

    pub fn stats(&self) -> ShardStats {
        let memory = self.data.capacity() * 4
            + self.sq_norms.capacity() * 4
            + self.ids.capacity() * 8
            + self.live.capacity()
            + self.attrs.capacity() * 16
            + self.index.capacity() * 16;
        ShardStats {
            vectors: self.live_count as u64,
            dead_rows: self.dead as u64,
            log_bytes: self.flushed_end,
            pending_bytes: self.log_end - self.flushed_end,
            memory_bytes: memory as u64,
            max_id: self.max_id,
        }
    }

    /// Drops dead rows from memory when they are at least half of all rows. Rows keep their
    /// order, so the sorted run stays sorted.
    pub fn compact(&mut self) {
        if self.dead == 0 || self.dead * 2 < self.ids.len() {
            return;
        }
        let dim = self.dim;
        let mut attrs = std::mem::take(&mut self.attrs);
        self.index.clear();
        let mut write = 0usize;
        let mut run = 0usize;
        for row in 0..self.ids.len() {
            if !self.live[row] {
                continue;
            }
            if write != row {
                self.ids[write] = self.ids[row];
                self.sq_norms[write] = self.sq_norms[row];
                self.data.copy_within(row * dim..(row + 1) * dim, write * dim);
                self.live[write] = true;
            }
            if let Some(a) = attrs.remove(&(row as u32)) {
                self.attrs.insert(write as u32, a);
            }
            if row < self.run {
                run = write + 1;
            } else {
                self.index.insert(self.ids[write], write as u32);
            }
            write += 1;
        }
        self.ids.truncate(write);
        self.sq_norms.truncate(write);
        self.data.truncate(write * dim);
        self.live.truncate(write);
        self.run = run;
        self.dead = 0;
    }

    fn set(&self) -> VectorSet<'_> {
        VectorSet { dim: self.dim, data: &self.data, sq_norms: &self.sq_norms, ids: &self.ids }
    }

    fn keeps(&self, row: usize, filter: Option<&Filter>) -> bool {
        self.live[row]
            && filter.is_none_or(|f| f.matches(self.attrs.get(&(row as u32)).map_or(&[][..], |a| a.as_slice())))
    }

    /// The row holding the live vector `id`.
    fn row_of(&self, id: u64) -> Option<u32> {
        if let Some(&row) = self.index.get(&id) {
            return Some(row);
        }
        if self.run == 0 || id > self.ids[self.run - 1] {
            return None;
        }
        let row = self.ids[..self.run].binary_search(&id).ok()?;
        self.live[row].then_some(row as u32)
    }

    /// Appends one row (room reserved by the caller), replacing the vector with the same id.
    fn append(&mut self, id: u64, vector: &[f32], sq_norm: f32, attrs: Attrs) {
        let row = self.ids.len();
        let ascending = self.run == row && (row == 0 || id > self.ids[row - 1]);
        if !ascending {
            if let Some(old) = self.row_of(id) {
                self.kill(old);
            }
        }
        self.ids.push(id);
        self.data.extend_from_slice(vector);
        self.sq_norms.push(sq_norm);
        self.live.push(true);
        if ascending {
            self.run = row + 1;
        } else {
            self.index.insert(id, row as u32);
        }
        if !attrs.is_empty() {
            self.attrs.insert(row as u32, Box::new(attrs));
        }
        self.live_count += 1;
        self.max_id = Some(self.max_id.map_or(id, |m| m.max(id)));
    }

    fn kill(&mut self, row: u32) {
        self.live[row as usize] = false;
        self.attrs.remove(&row);
        self.index.remove(&self.ids[row as usize]);
        self.live_count -= 1;
        self.dead += 1;
    }

    /// Room for `more` rows.
    fn reserve(&mut self, more: usize) {
        self.ids.reserve(more);
        self.data.reserve(more * self.dim);
        self.sq_norms.reserve(more);
        self.live.reserve(more);
    }

    fn apply_delete(&mut self, ids: &[u64]) -> usize {
        let mut removed = 0;
        for &id in ids {
            if let Some(row) = self.row_of(id) {
                self.kill(row);
                removed += 1;
            }
        }
        removed
    }
}
