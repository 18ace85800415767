//! One shard of a collection: its vectors in memory, laid out for the search kernels, and the
//! shard log on the device that makes them durable.
//!
//! Invariants:
//! - Every change is appended to `pending` (encoded log records) before it is applied in memory,
//!   in the same order; [`Shard::flush`] writes `pending` at the end of the log. So the log, read
//!   from the start, rebuilds exactly the memory state at the last flush.
//! - Rows are never moved except by [`Shard::compact`]; a deleted or replaced row stays in place,
//!   marked dead, until then. `index` maps each live id to its row.
//! - A shard is touched only by the worker thread that owns it (see [`super::service`]).

use rustc_hash::FxHashMap;

use vexfs_format::collection::{
    decode_record, encode_delete, encode_insert, encoded_attrs_len, AttrValue, Attrs, LogBody, LogError, Metric,
};

use super::search::{self, filter::Filter, kernels, Neighbor, VectorSet};
use super::VectorError;
use crate::engine::EngineHandle;
use crate::storage::Storage;

/// Bytes of encoded records kept before they are written to the log on their own.
const PENDING_FLUSH_BYTES: usize = 8 << 20;
/// Encoded bytes per insert record, at most (one vector may exceed it); the format allows up to
/// `LOG_RECORD_BYTES_MAX`.
const RECORD_BYTES_TARGET: usize = 16 << 20;
/// Rows a shard's table starts with when the first vector arrives.
const ROWS_INITIAL: usize = 4096;
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
    ids: Vec<u64>,
    data: Vec<f32>,
    sq_norms: Vec<f32>,
    /// Attributes per row; rows without any share the empty vector.
    attrs: Vec<Option<Box<Attrs>>>,
    live: Vec<bool>,
    /// Id to row. FxHash: ids are trusted integers, and SipHash's flooding resistance would
    /// cost more than the rest of an insert.
    index: FxHashMap<u64, u32>,
    dead: usize,
    next_seq: u64,
    /// Bytes of the log on the device.
    log_end: u64,
    pending: Vec<u8>,
    max_id: Option<u64>,
    /// Reused to gather a batch's rows, so steady inserts allocate nothing.
    scratch: Vec<f32>,
}

impl Shard {
    /// Opens the shard whose log is `ino`, replaying the log. A record cut short at the very end
    /// of the log (a crash during an append nobody was told had finished) is cut off.
    pub fn open<S: Storage>(engine: &EngineHandle<S>, ino: u64, dim: usize) -> Result<Shard, VectorError> {
        let mut shard = Shard {
            ino,
            dim,
            ids: Vec::new(),
            data: Vec::new(),
            sq_norms: Vec::new(),
            attrs: Vec::new(),
            live: Vec::new(),
            index: FxHashMap::default(),
            dead: 0,
            next_seq: 0,
            log_end: 0,
            pending: Vec::new(),
            max_id: None,
            scratch: Vec::new(),
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
                    shard.next_seq = record.seq + 1;
                    match record.body {
                        LogBody::Insert { ids, vectors, attrs } => shard.apply_insert(&ids, &vectors, attrs),
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
        Ok(shard)
    }

    /// Inserts the `rows` of `batch` (row-major vectors of this shard's dimension) with `ids`.
    pub fn insert_rows(&mut self, ids: &[u64], batch: &[f32], rows: &[u32], attrs: Vec<Attrs>) {
        let dim = self.dim;
        let mut gathered = std::mem::take(&mut self.scratch);
        gathered.clear();
        for &row in rows {
            let row = row as usize;
            gathered.extend_from_slice(&batch[row * dim..(row + 1) * dim]);
        }
        self.insert(ids, &gathered, attrs);
        self.scratch = gathered;
    }

    /// Inserts (or replaces) vectors. `vectors` are validated and, for cosine, normalised.
    pub fn insert(&mut self, ids: &[u64], vectors: &[f32], attrs: Vec<Attrs>) {
        // One log record per RECORD_BYTES_TARGET or so, far below the format's record limit.
        let dim = self.dim;
        let mut start = 0;
        while start < ids.len() {
            let mut end = start;
            let mut bytes = 0usize;
            while end < ids.len() && (end == start || bytes < RECORD_BYTES_TARGET) {
                bytes += 8 + dim * 4 + attrs.get(end).map_or(0, |a| 4 + encoded_attrs_len(a));
                end += 1;
            }
            let part_attrs = if attrs.is_empty() { &[][..] } else { &attrs[start..end] };
            encode_insert(
                &mut self.pending,
                self.next_seq,
                dim as u32,
                &ids[start..end],
                &vectors[start * dim..end * dim],
                part_attrs,
            );
            self.next_seq += 1;
            start = end;
        }
        self.apply_insert(ids, vectors, attrs);
    }

    /// Deletes the vectors with these ids; returns how many existed.
    pub fn delete(&mut self, ids: &[u64]) -> usize {
        let present: Vec<u64> = ids.iter().copied().filter(|id| self.index.contains_key(id)).collect();
        if present.is_empty() {
            return 0;
        }
        encode_delete(&mut self.pending, self.next_seq, &present);
        self.next_seq += 1;
        self.apply_delete(&present)
    }

    /// Whether enough is pending that the owner should write it out now.
    pub fn wants_flush(&self) -> bool {
        self.pending.len() >= PENDING_FLUSH_BYTES
    }

    /// Appends everything pending to the log. Durable once the engine has synced.
    pub fn flush<S: Storage>(&mut self, engine: &EngineHandle<S>) -> Result<(), VectorError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        engine.write(self.ino, self.log_end, &self.pending)?;
        self.log_end += self.pending.len() as u64;
        self.pending.clear();
        if self.pending.capacity() > PENDING_FLUSH_BYTES * 2 {
            self.pending.shrink_to(PENDING_FLUSH_BYTES);
        }
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
        let row = *self.index.get(&id)? as usize;
        Some(self.attrs[row].as_deref().cloned().unwrap_or_default())
    }

    /// Every stored id with the value of its attribute `key`, if it has one.
    pub fn scan_attr(&self, key: &str) -> Vec<(u64, Option<AttrValue>)> {
        (0..self.ids.len())
            .filter(|&row| self.live[row])
            .map(|row| {
                let value = self.attrs[row].as_deref().and_then(|a| a.iter().find(|(k, _)| k == key));
                (self.ids[row], value.map(|(_, v)| v.clone()))
            })
            .collect()
    }

    pub fn stats(&self) -> ShardStats {
        let memory = self.data.capacity() * 4
            + self.sq_norms.capacity() * 4
            + self.ids.capacity() * 8
            + self.live.capacity()
            + self.attrs.capacity() * std::mem::size_of::<Option<Box<Attrs>>>()
            + self.index.capacity() * 16;
        ShardStats {
            vectors: self.index.len() as u64,
            dead_rows: self.dead as u64,
            log_bytes: self.log_end,
            pending_bytes: self.pending.len() as u64,
            memory_bytes: memory as u64,
            max_id: self.max_id,
        }
    }

    /// Drops dead rows from memory when they are at least half of all rows.
    pub fn compact(&mut self) {
        if self.dead == 0 || self.dead * 2 < self.ids.len() {
            return;
        }
        let dim = self.dim;
        let mut write = 0usize;
        for row in 0..self.ids.len() {
            if !self.live[row] {
                continue;
            }
            if write != row {
                self.ids[write] = self.ids[row];
                self.sq_norms[write] = self.sq_norms[row];
                self.data.copy_within(row * dim..(row + 1) * dim, write * dim);
                self.attrs[write] = self.attrs[row].take();
                self.live[write] = true;
                self.index.insert(self.ids[write], write as u32);
            }
            write += 1;
        }
        self.ids.truncate(write);
        self.sq_norms.truncate(write);
        self.data.truncate(write * dim);
        self.attrs.truncate(write);
        self.live.truncate(write);
        self.dead = 0;
    }

    fn set(&self) -> VectorSet<'_> {
        VectorSet { dim: self.dim, data: &self.data, sq_norms: &self.sq_norms, ids: &self.ids }
    }

    fn keeps(&self, row: usize, filter: Option<&Filter>) -> bool {
        self.live[row] && filter.is_none_or(|f| f.matches(self.attrs[row].as_deref().map_or(&[][..], |a| a.as_slice())))
    }

    fn apply_insert(&mut self, ids: &[u64], vectors: &[f32], attrs: Vec<Attrs>) {
        let dim = self.dim;
        let mut attrs = attrs.into_iter();
        self.reserve(ids.len());
        self.data.extend_from_slice(vectors);
        for (i, &id) in ids.iter().enumerate() {
            let row = self.ids.len() as u32;
            if let Some(old) = self.index.insert(id, row) {
                self.live[old as usize] = false;
                self.attrs[old as usize] = None;
                self.dead += 1;
            }
            self.ids.push(id);
            self.sq_norms.push(kernels::norm_squared(&vectors[i * dim..(i + 1) * dim]));
            self.live.push(true);
            let a = attrs.next().filter(|a| !a.is_empty()).map(Box::new);
            self.attrs.push(a);
            self.max_id = Some(self.max_id.map_or(id, |m| m.max(id)));
        }
    }

    /// Room for `more` rows. The row table grows by doubling, and its memory is advised onto
    /// huge pages: growing a shard then faults in 2 MiB at a time instead of 4 KiB.
    fn reserve(&mut self, more: usize) {
        let need = self.data.len() + more * self.dim;
        if need <= self.data.capacity() {
            return;
        }
        let target = need.max(self.data.capacity() * 2).max(ROWS_INITIAL * self.dim);
        self.data.reserve_exact(target - self.data.len());
        crate::io::advise_huge_pages(self.data.spare_capacity_mut());
        let rows = target / self.dim;
        self.ids.reserve(rows.saturating_sub(self.ids.len()));
        self.sq_norms.reserve(rows.saturating_sub(self.sq_norms.len()));
        self.live.reserve(rows.saturating_sub(self.live.len()));
        self.attrs.reserve(rows.saturating_sub(self.attrs.len()));
        self.index.reserve(more);
    }

    fn apply_delete(&mut self, ids: &[u64]) -> usize {
        let mut removed = 0;
        for id in ids {
            if let Some(row) = self.index.remove(id) {
                self.live[row as usize] = false;
                self.attrs[row as usize] = None;
                self.dead += 1;
                removed += 1;
            }
        }
        removed
    }
}
