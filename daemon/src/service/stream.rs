//! Insert streams: a collection's `.vexfs-insert` file takes batches larger than an ioctl.
//! [`Framer`] is the framing alone (bytes in, batches out, no I/O); the service owns the open
//! streams, their shares and receipts.
//!
//! Each batch is a 32-byte [`BatchHeader`] (`VXIB` magic, version, flags, dimension, count)
//! followed by `count` u64 ids when flagged, then `count × dim` f32 values, all little-endian
//! (the table is in `docs/COLLECTIONS.md`, "Front doors"). The header is checked the moment its
//! 32 bytes arrive, dimension included, and the batch's whole length is charged to the writer's
//! share then ([`limits`]); the body is copied straight into the id and value arrays the vector
//! service takes, and the batch is applied, whole or not at all, when its last byte arrives. Reading the
//! stream returns a receipt per batch applied through that open file, one JSON line each:
//! `{"batch": 0, "count": 500, "assigned_from": 1000}` (`null` when the batch carried ids).
//! `fsync` makes every applied batch durable, and fails with EINVAL while a batch is incomplete.
//! After a refused batch the stream refuses everything: its position in the batch sequence is
//! lost.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use vexfs_format::ioctl::BatchHeader;
use zerocopy::IntoBytes;

use super::limits::{
    Shares, STREAMS_PER_USER_MAX, STREAM_BATCH_BYTES_MAX, STREAM_BYTES_PER_USER_MAX, STREAM_RECEIPTS_MAX,
};
use super::{access, Bound, Caller, Collections, Result, ServiceError};
use crate::storage::Storage;

// Batch bodies are little-endian and copied into native arrays as they are.
const _: () = assert!(cfg!(target_endian = "little"));

const HEADER_BYTES: usize = size_of::<BatchHeader>();

/// A batch being received, and once complete, what the vector service takes.
pub struct Batch {
    pub ids: Option<Vec<u64>>,
    /// Row-major, `count × dim`.
    pub values: Vec<f32>,
    /// Body bytes received (ids, then values).
    received: usize,
    /// Bytes charged to the writer's share: the whole batch.
    charged: usize,
}

impl Batch {
    fn body_len(&self) -> usize {
        self.ids.as_ref().map_or(0, |ids| ids.len() * 8) + self.values.len() * 4
    }

    /// Copies as much of `data` as the body still takes; returns the bytes used.
    fn fill(&mut self, data: &[u8]) -> usize {
        let ids_len = self.ids.as_ref().map_or(0, |ids| ids.len() * 8);
        let mut used = 0;
        if self.received < ids_len {
            let ids = self.ids.as_mut().expect("ids_len > 0").as_mut_bytes();
            let n = (ids_len - self.received).min(data.len());
            ids[self.received..self.received + n].copy_from_slice(&data[..n]);
            self.received += n;
            used = n;
        }
        let at = self.received - ids_len.min(self.received);
        let values = self.values.as_mut_bytes();
        let n = (values.len() - at).min(data.len() - used);
        values[at..at + n].copy_from_slice(&data[used..used + n]);
        self.received += n;
        used + n
    }

    /// The bytes charged for it.
    pub fn charged(&self) -> usize {
        self.charged
    }
}

/// The insert stream's framing, without I/O: bytes in, in any pieces, complete batches out.
pub struct Framer {
    dim: u32,
    header: Vec<u8>,
    batch: Option<Batch>,
}

impl Framer {
    /// A framer for a collection of dimension `dim`.
    pub fn new(dim: u32) -> Framer {
        Framer { dim, header: Vec::with_capacity(HEADER_BYTES), batch: None }
    }

    /// Takes bytes from the start of `data` and returns how many it used and the batch they
    /// completed, if any. A header is checked when its 32nd byte arrives (dimension included),
    /// and `admit` is asked, with the whole batch's length, before room for its body is made:
    /// its refusal is returned.
    pub fn take(&mut self, data: &[u8], admit: impl FnOnce(usize) -> Result<()>) -> Result<(usize, Option<Batch>)> {
        let used = match self.batch.as_mut() {
            Some(batch) => batch.fill(data),
            None => self.take_header(data, admit)?,
        };
        if self.batch.as_ref().is_some_and(|b| b.received == b.body_len()) {
            self.header.clear();
            return Ok((used, self.batch.take()));
        }
        Ok((used, None))
    }

    fn take_header(&mut self, data: &[u8], admit: impl FnOnce(usize) -> Result<()>) -> Result<usize> {
        let used = (HEADER_BYTES - self.header.len()).min(data.len());
        self.header.extend_from_slice(&data[..used]);
        if self.header.len() < HEADER_BYTES {
            return Ok(used);
        }
        let header =
            BatchHeader::parse(&self.header).map_err(|e| ServiceError::invalid(format!(".vexfs-insert: {e}")))?;
        if header.dim() != self.dim as usize {
            return Err(ServiceError::invalid(format!(
                ".vexfs-insert: a batch of dimension {} for a collection of dimension {}",
                header.dim(),
                self.dim
            )));
        }
        let len = header.batch_len();
        if len > STREAM_BATCH_BYTES_MAX as u64 {
            return Err(ServiceError::limit(
                Bound::FileSize,
                format!(".vexfs-insert: a batch of {len} bytes; at most {STREAM_BATCH_BYTES_MAX} per batch"),
            ));
        }
        let charged = len as usize;
        admit(charged)?;
        let count = header.count();
        self.batch = Some(Batch {
            ids: header.with_ids().then(|| vec![0; count]),
            values: vec![0.0; count * header.dim()],
            received: 0,
            charged,
        });
        Ok(used)
    }

    /// Bytes of the incomplete batch received so far, header included.
    pub fn pending(&self) -> usize {
        self.header.len() + self.batch.as_ref().map_or(0, |b| b.received)
    }

    /// Drops the incomplete batch; returns the bytes it was charged.
    pub fn abandon(&mut self) -> usize {
        self.header.clear();
        self.batch.take().map_or(0, |b| b.charged)
    }
}

/// One open `.vexfs-insert`.
struct Stream {
    dir: u64,
    uid: u32,
    /// Bytes written so far; the next write must start here.
    received: u64,
    framer: Framer,
    /// Why an earlier batch was refused: later writes are refused too.
    failed: Option<String>,
    batches: usize,
    receipts: Vec<u8>,
}

/// Lock order: a stream's lock before the table's, never the other way.
struct Table {
    next_fh: u64,
    /// Handle to the stream's collection and the stream.
    streams: HashMap<u64, (u64, Arc<Mutex<Stream>>)>,
    users: Shares,
}

/// The open insert streams of every collection.
pub struct Streams {
    table: Mutex<Table>,
}

impl Default for Streams {
    fn default() -> Streams {
        let users = Shares::new("insert streams", STREAMS_PER_USER_MAX, STREAM_BYTES_PER_USER_MAX);
        Streams { table: Mutex::new(Table { next_fh: 0, streams: HashMap::new(), users }) }
    }
}

impl Streams {
    fn get(&self, fh: u64) -> Result<Arc<Mutex<Stream>>> {
        self.table.lock().streams.get(&fh).map(|(_, s)| Arc::clone(s)).ok_or(ServiceError::BadHandle)
    }

    /// Charges `uid`'s share `bytes` more; refuses past the bound.
    fn charge(&self, uid: u32, bytes: usize) -> Result<()> {
        self.table.lock().users.charge(uid, bytes as isize)
    }

    fn refund(&self, uid: u32, bytes: usize) {
        // A refund is never refused.
        let _ = self.table.lock().users.charge(uid, -(bytes as isize));
    }

    /// Drops the streams of a collection that is going away; their writes then fail (EBADF).
    pub fn forget_collection(&self, dir: u64) {
        let fhs: Vec<u64> =
            self.table.lock().streams.iter().filter(|(_, (d, _))| *d == dir).map(|(fh, _)| *fh).collect();
        for fh in fhs {
            self.close(fh);
        }
    }

    fn close(&self, fh: u64) -> Option<usize> {
        let (_, stream) = self.table.lock().streams.remove(&fh)?;
        let stream = stream.lock();
        let charged = stream.framer.batch.as_ref().map_or(0, |b| b.charged);
        self.table.lock().users.remove(stream.uid, charged);
        Some(stream.framer.pending())
    }
}

impl<S: Storage> Collections<S> {
    /// Opens collection `dir`'s insert stream for `caller`, who needs write permission on it;
    /// returns the stream's handle.
    pub fn stream_open(&self, caller: &Caller, dir: u64) -> Result<u64> {
        let record = self.collection(caller, dir, access::WRITE, "inserting")?;
        if record.text.is_some() {
            return Err(ServiceError::invalid(
                "this is a text collection: its vectors come from the documents written into it",
            ));
        }
        let mut table = self.streams.table.lock();
        table.users.add(caller.uid)?;
        table.next_fh += 1;
        let fh = table.next_fh;
        let stream = Stream {
            dir,
            uid: caller.uid,
            received: 0,
            framer: Framer::new(record.dim),
            failed: None,
            batches: 0,
            receipts: Vec::new(),
        };
        table.streams.insert(fh, (dir, Arc::new(Mutex::new(stream))));
        Ok(fh)
    }

    /// Takes `data`, written at `offset` of stream `fh`, and applies every batch it completes.
    /// Writes must be sequential.
    pub fn stream_write(&self, fh: u64, offset: u64, mut data: &[u8]) -> Result<()> {
        let stream = self.streams.get(fh)?;
        let mut stream = stream.lock();
        if let Some(reason) = &stream.failed {
            return Err(ServiceError::invalid(format!("an earlier batch on this stream was refused ({reason})")));
        }
        if offset != stream.received {
            let expected = stream.received;
            let error = ServiceError::invalid(format!(
                ".vexfs-insert is written sequentially: a write at byte {offset}, expected {expected}"
            ));
            return Err(self.stream_failed(&mut stream, error));
        }
        stream.received += data.len() as u64;
        while !data.is_empty() {
            let (uid, batches) = (stream.uid, stream.batches);
            let admit = |len: usize| {
                if batches >= STREAM_RECEIPTS_MAX {
                    return Err(ServiceError::limit(
                        Bound::Count,
                        format!(".vexfs-insert: {STREAM_RECEIPTS_MAX} batches through one open stream; open it again"),
                    ));
                }
                self.streams.charge(uid, len)
            };
            let (used, complete) = match stream.framer.take(data, admit) {
                Ok(step) => step,
                Err(error) => return Err(self.stream_failed(&mut stream, error)),
            };
            data = &data[used..];
            if let Some(batch) = complete {
                self.streams.refund(uid, batch.charged);
                if let Err(error) = self.stream_apply(&mut stream, batch) {
                    return Err(self.stream_failed(&mut stream, error));
                }
            }
        }
        Ok(())
    }

    /// Applies complete `batch` of `stream` and writes its receipt.
    fn stream_apply(&self, stream: &mut Stream, batch: Batch) -> Result<()> {
        let given = batch.ids.is_some();
        let ids = self.vectors().insert(stream.dir, batch.ids.as_deref(), batch.values, Vec::new())?;
        let from = if given { "null".to_string() } else { ids.first().map_or(0, |&id| id).to_string() };
        let line = format!("{{\"batch\": {}, \"count\": {}, \"assigned_from\": {from}}}\n", stream.batches, ids.len());
        stream.receipts.extend_from_slice(line.as_bytes());
        stream.batches += 1;
        Ok(())
    }

    /// Marks `stream` failed with `error` (dropping its incomplete batch) and returns the error.
    fn stream_failed(&self, stream: &mut Stream, error: ServiceError) -> ServiceError {
        tracing::info!(collection = stream.dir, %error, "insert batch refused");
        let charged = stream.framer.abandon();
        self.streams.refund(stream.uid, charged);
        stream.failed = Some(error.to_string());
        error
    }

    /// Reads `size` bytes at `offset` of stream `fh`'s receipts.
    pub fn stream_read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let stream = self.streams.get(fh)?;
        let stream = stream.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(stream.receipts.len());
        let end = start.saturating_add(size as usize).min(stream.receipts.len());
        Ok(stream.receipts[start..end].to_vec())
    }

    /// Makes every batch applied through stream `fh` durable; refused while a batch is
    /// incomplete.
    pub fn stream_fsync(&self, fh: u64) -> Result<()> {
        let stream = self.streams.get(fh)?;
        let dir = {
            let stream = stream.lock();
            let pending = stream.framer.pending();
            if pending > 0 {
                return Err(ServiceError::invalid(format!(
                    "fsync of .vexfs-insert with an incomplete batch ({pending} bytes received)"
                )));
            }
            stream.dir
        };
        self.vectors().sync(dir)?;
        Ok(())
    }

    /// Closes stream `fh`; an incomplete batch is dropped.
    pub fn stream_release(&self, fh: u64) {
        if let Some(pending) = self.streams.close(fh).filter(|&p| p > 0) {
            tracing::info!(bytes = pending, "incomplete insert batch discarded at close");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_fills_ids_then_values_from_any_split() {
        let ids = [7u64, u64::MAX];
        let values = [1.5f32, -2.0, 3.25, 0.0];
        let mut body = Vec::new();
        for id in ids {
            body.extend_from_slice(&id.to_le_bytes());
        }
        for v in values {
            body.extend_from_slice(&v.to_le_bytes());
        }
        for split in [1, 3, 8, 13, 16, 31] {
            let mut batch = Batch { ids: Some(vec![0; 2]), values: vec![0.0; 4], received: 0, charged: 0 };
            let mut rest = &body[..];
            while !rest.is_empty() {
                let used = batch.fill(&rest[..split.min(rest.len())]);
                rest = &rest[used..];
            }
            assert_eq!(batch.received, batch.body_len());
            assert_eq!(batch.ids.as_deref(), Some(&ids[..]), "split {split}");
            assert_eq!(batch.values, values, "split {split}");
        }
        let mut batch = Batch { ids: None, values: vec![0.0; 1], received: 0, charged: 0 };
        assert_eq!(batch.fill(&[0, 0, 128, 63, 9, 9]), 4, "stops at the body's end");
        assert_eq!(batch.values, [1.0]);
    }

    /// Feeds `bytes` to `framer` in pieces of `split`; returns the batches and the first error.
    fn feed(framer: &mut Framer, bytes: &[u8], split: usize) -> (Vec<Batch>, Option<ServiceError>) {
        let mut batches = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            match framer.take(&rest[..split.min(rest.len())], |_| Ok(())) {
                Ok((used, done)) => {
                    rest = &rest[used..];
                    batches.extend(done);
                }
                Err(error) => return (batches, Some(error)),
            }
        }
        (batches, None)
    }

    #[test]
    fn the_framer_yields_whole_batches_and_checks_headers_on_arrival() {
        let mut bytes = BatchHeader::new(2, 1, true).as_bytes().to_vec();
        bytes.extend_from_slice(&9u64.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
        bytes.extend_from_slice(BatchHeader::new(2, 2, false).as_bytes());
        bytes.extend_from_slice(&[0; 16]);
        for split in [1, 5, 32, 33, 1000] {
            let mut framer = Framer::new(2);
            let (batches, error) = feed(&mut framer, &bytes, split);
            assert!(error.is_none(), "split {split}: {error:?}");
            assert_eq!(batches.len(), 2, "split {split}");
            assert_eq!(batches[0].ids.as_deref(), Some(&[9][..]));
            assert_eq!(batches[0].values, [1.0, 2.0]);
            assert_eq!((batches[1].ids.as_ref(), batches[1].values.len()), (None, 4));
            assert_eq!(framer.pending(), 0);
        }
        // The wrong dimension is refused at the header's 32nd byte, with nothing allocated.
        let mut framer = Framer::new(3);
        let (_, error) = feed(&mut framer, &bytes[..32], 32);
        assert!(error.is_some_and(|e| e.to_string().contains("dimension 2 for a collection of dimension 3")));
        // A refused admission is returned, and nothing is made room for.
        let mut framer = Framer::new(2);
        let refused = framer.take(&bytes[..32], |len| Err(ServiceError::limit(Bound::Quota, format!("{len}"))));
        assert!(matches!(refused, Err(ServiceError::Limit { bound: Bound::Quota, .. })));
        assert!(framer.batch.is_none());
    }
}
