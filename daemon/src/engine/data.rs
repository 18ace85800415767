//! File data: read, write, truncate, fallocate, seek, and freeing unlinked inodes.
//!
//! A write never exposes blocks whose data is not on the device: new blocks are *reserved* (kept
//! from other allocations, not yet in the bitmap), the data is written, and only then does one
//! metadata operation claim them and insert the extents. A crash in between leaves the blocks free.
//! Overwrites of allocated blocks go in place.
//!
//! The bytes of a file's last block past its end are not trusted to be zero on the device: a
//! crash can lose the size change of a write whose data reached the device, leaving its bytes
//! past the end of file. So every way a file grows zeroes them first: a write that reads the
//! block holding the old end zeroes its bytes past it in the staging buffer, and a write that
//! starts beyond that block, a growing truncate and a growing preallocation zero them on the
//! device ([`EngineHandle::zero_block_tail`]). Shrinking zeroes the new last block's tail too.

use std::sync::Arc;

use parking_lot::RwLock;
use vexfs_format::inode::{file_type, InodeRecord, INODE_FLAG_ORPHAN};
// FILE_SIZE_MAX (1 PiB) keeps every block index and byte offset far from overflow; extents read
// from the device are checked against it too (`Extent::check`).
use vexfs_format::items::{Extent, EXTENT_BLOCKS_MAX, EXTENT_UNWRITTEN, FILE_SIZE_MAX};
use vexfs_format::key::{ItemKind, Key, ORPHAN_OBJECT};
use vexfs_format::BLOCK_SIZE;

use super::error::{EngineError, Result};
use super::items as it;
use super::meta::Tx;
use super::EngineHandle;
use crate::io::IoBuf;
use crate::storage::{ReadOp, Storage, WriteOp};

const BLOCK: u64 = BLOCK_SIZE as u64;
/// Extents a single freeing step removes; bounds the blocks one operation dirties.
const FREE_EXTENTS_STEP: usize = 48;
/// Bytes one write or read moves per device batch.
const CHUNK_BYTES: u64 = 4 << 20;
/// Bytes one [`EngineHandle::write_blocks`] may write: bounds the blocks one metadata operation
/// reserves and links.
pub const WRITE_BLOCKS_MAX: u64 = 64 << 20;

/// fallocate modes (the Linux `FALLOC_FL_*` values).
pub mod falloc {
    pub const KEEP_SIZE: u32 = 0x01;
    pub const PUNCH_HOLE: u32 = 0x02;
    pub const ZERO_RANGE: u32 = 0x10;
}

/// The outcome of [`EngineHandle::write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes written: all of them.
    pub len: usize,
    /// Whether the file's block count (`st_blocks`) changed: blocks were allocated for holes or
    /// past the end, or stale blocks past the end were freed. Overwrites leave it unchanged.
    pub blocks_changed: bool,
}

/// A run of file blocks and where it lives.
#[derive(Clone, Copy, Debug)]
struct Piece {
    file_block: u64,
    count: u64,
    place: Place,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Not mapped: reads as zeros.
    Hole,
    /// Mapped; `unwritten` extents read as zeros.
    Mapped { start: u64, unwritten: bool },
    /// Reserved for this write (not yet in the bitmap).
    Reserved { start: u64 },
}

impl Piece {
    fn device_block(&self, file_block: u64) -> Option<u64> {
        match self.place {
            Place::Hole => None,
            Place::Mapped { start, .. } | Place::Reserved { start } => Some(start + (file_block - self.file_block)),
        }
    }

    fn holds_data(&self) -> bool {
        matches!(self.place, Place::Mapped { unwritten: false, .. })
    }
}

/// Splits file blocks `first..first+count` into pieces from the extents that overlap them.
fn pieces_of(first: u64, count: u64, extents: &[(u64, Extent)]) -> Vec<Piece> {
    let end = first + count;
    let mut pieces = Vec::new();
    let mut cursor = first;
    for &(offset, extent) in extents {
        let extent_end = offset + u64::from(extent.length);
        let start = offset.max(first);
        if start > cursor {
            pieces.push(Piece { file_block: cursor, count: start - cursor, place: Place::Hole });
        }
        let stop = extent_end.min(end);
        if stop > start {
            let device = extent.start + (start - offset);
            pieces.push(Piece {
                file_block: start,
                count: stop - start,
                place: Place::Mapped { start: device, unwritten: extent.is_unwritten() },
            });
        }
        cursor = cursor.max(stop);
    }
    if cursor < end {
        pieces.push(Piece { file_block: cursor, count: end - cursor, place: Place::Hole });
    }
    pieces
}

fn regular(record: &InodeRecord) -> Result<()> {
    match record.kind() {
        file_type::REGULAR => Ok(()),
        file_type::DIRECTORY => Err(EngineError::IsDir),
        _ => Err(EngineError::Invalid("not a regular file")),
    }
}

impl<S: Storage> EngineHandle<S> {
    /// The lock that orders data operations on `ino`.
    fn io_lock(&self, ino: u64) -> Arc<RwLock<()>> {
        Arc::clone(&self.shared.inodes.lock().entry(ino).or_default().io)
    }

    /// Opens `ino`; `truncate` is O_TRUNC.
    pub fn open(&self, ino: u64, truncate: bool) -> Result<()> {
        let attr = self.getattr(ino)?;
        if truncate && attr.record.kind() == file_type::REGULAR && attr.record.size > 0 {
            self.setattr(ino, &super::SetAttr { size: Some(0), ..Default::default() })?;
        }
        Ok(())
    }

    /// Reads up to `size` bytes at `offset`. Returns a buffer and the range of it that holds the
    /// bytes (empty at or past the end of the file).
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<(IoBuf, std::ops::Range<usize>)> {
        let lock = self.io_lock(ino);
        let _guard = lock.read();
        let size = u64::from(size).min(CHUNK_BYTES * 4);
        let (record, pieces) = self.shared.look(|tx| {
            let record = it::get_inode(tx, ino)?;
            regular(&record)?;
            if offset >= record.size || size == 0 {
                return Ok((record, Vec::new()));
            }
            // The size is the device's word: a crafted one may be near 2^64.
            let end = offset.saturating_add(size).min(record.size);
            let first = offset / BLOCK;
            let count = end.div_ceil(BLOCK) - first;
            Ok((record, pieces_of(first, count, &it::extents(tx, ino, first, count)?)))
        })?;
        if pieces.is_empty() {
            return Ok((self.shared.storage.alloc_buffer(BLOCK_SIZE), 0..0));
        }
        let end = offset.saturating_add(size).min(record.size);
        let first = offset / BLOCK;
        let count = end.div_ceil(BLOCK) - first;
        let mut buf = self.shared.storage.alloc_buffer((count * BLOCK) as usize);
        self.fill(&mut buf, first, &pieces)?;
        let skip = (offset - first * BLOCK) as usize;
        Ok((buf, skip..skip + (end - offset) as usize))
    }

    /// Fills `buf` (blocks from `first`) from `pieces`: device reads for data, zeros elsewhere.
    fn fill(&self, buf: &mut [u8], first: u64, pieces: &[Piece]) -> Result<()> {
        let mut ops = Vec::new();
        let mut rest: &mut [u8] = buf;
        let mut cursor = first;
        for piece in pieces {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut((piece.count * BLOCK) as usize);
            rest = tail;
            debug_assert_eq!(piece.file_block, cursor);
            cursor += piece.count;
            match (piece.holds_data(), piece.device_block(piece.file_block)) {
                (true, Some(device)) => ops.push(ReadOp { offset: device * BLOCK, buf: head }),
                _ => head.fill(0),
            }
        }
        self.shared.storage.read_batch(&mut ops)?;
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<Written> {
        if data.is_empty() {
            return Ok(Written { len: 0, blocks_changed: false });
        }
        let end = offset.checked_add(data.len() as u64).ok_or(EngineError::FileTooBig)?;
        if end > FILE_SIZE_MAX {
            return Err(EngineError::FileTooBig);
        }
        let lock = self.io_lock(ino);
        let _guard = lock.write();
        self.zero_tail_before_gap(ino, offset)?;
        let mut done = 0u64;
        let mut blocks_changed = false;
        while done < data.len() as u64 {
            let chunk_offset = offset + done;
            let chunk_end = (chunk_offset + CHUNK_BYTES - chunk_offset % BLOCK).min(end);
            let chunk = &data[done as usize..(chunk_end - offset) as usize];
            let first = chunk_offset / BLOCK;
            let count = chunk_end.div_ceil(BLOCK) - first;
            blocks_changed |= self.write_chunk(ino, first, count, chunk_end, |old_size, pieces| {
                self.write_pieces(chunk_offset, chunk, old_size, pieces)
            })?;
            done = chunk_end - offset;
        }
        Ok(Written { len: data.len(), blocks_changed })
    }

    /// Writes whole blocks that the caller has laid out already, straight from its buffers: no
    /// staging copy and no read of partial blocks. The buffers of `blocks` (each a multiple of
    /// 4096 bytes, 4096-aligned in memory, ideally an [`IoBuf`] so the device takes it as a
    /// registered buffer) follow each other in the file from `offset`, and the file grows to at
    /// least `size`, which lies in the last block written. The bytes of that block past `size`
    /// must be zero (the file's tail invariant), and the bytes of a block the file already holds
    /// must repeat what it holds where they overlap it (they are written again): a log appending
    /// through here keeps its partial last block in memory and writes it again, extended.
    ///
    /// All the blocks go to the device in one batch, so several buffers keep several requests in
    /// flight, and are linked into the file in one metadata operation once all are written: a
    /// crash before that leaves the file as it was.
    pub fn write_blocks(&self, ino: u64, offset: u64, blocks: &[&[u8]], size: u64) -> Result<Written> {
        assert!(offset.is_multiple_of(BLOCK), "write_blocks at offset {offset}, not a block boundary");
        assert!(
            blocks.iter().all(|b| !b.is_empty() && b.len().is_multiple_of(BLOCK_SIZE)),
            "write_blocks of buffers that are not whole blocks"
        );
        let len: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        assert!((1..=WRITE_BLOCKS_MAX).contains(&len), "write_blocks of {len} bytes");
        let end = offset.checked_add(len).ok_or(EngineError::FileTooBig)?;
        assert!(size > end - BLOCK && size <= end, "size {size} is not in the last block of {offset}..{end}");
        let last = blocks[blocks.len() - 1];
        let tail = (size - (end - BLOCK)) as usize;
        assert!(last[last.len() - BLOCK_SIZE + tail..].iter().all(|&b| b == 0), "bytes past the new size are not zero");
        if end > FILE_SIZE_MAX {
            return Err(EngineError::FileTooBig);
        }
        let lock = self.io_lock(ino);
        let _guard = lock.write();
        let blocks_changed = self.write_chunk(ino, offset / BLOCK, len / BLOCK, size, |_, pieces| {
            self.shared.write_data(&piece_writes(blocks, pieces))
        })?;
        Ok(Written { len: len as usize, blocks_changed })
    }

    /// A 4096-aligned buffer of `len` bytes (a multiple of 4096) for [`EngineHandle::write_blocks`],
    /// from the storage's registered memory where it has room; its bytes are stale, not zeroed.
    pub fn block_buffer(&self, len: usize) -> IoBuf {
        self.shared.storage.alloc_write_buffer(len)
    }

    /// One write of file blocks `first..first+count` (at most [`CHUNK_BYTES`] for `write`, at most
    /// [`WRITE_BLOCKS_MAX`] for `write_blocks`) that ends the file's data at `end` or before:
    /// plan, `write` the data to the planned pieces (given the old file size) through
    /// `Shared::write_data`, which marks it unflushed (or latches the engine), then link the new
    /// blocks. Returns whether the file's block count changed.
    fn write_chunk(
        &self,
        ino: u64,
        first: u64,
        count: u64,
        end: u64,
        write: impl FnOnce(u64, &[Piece]) -> Result<()>,
    ) -> Result<bool> {
        let (old_size, freed, pieces) = self.shared.run_retrying(|tx| plan_write(tx, ino, first, count, end))?;
        let allocated = pieces.iter().any(|piece| matches!(piece.place, Place::Reserved { .. }));
        let written = write(old_size, &pieces);
        let now = self.shared.now();
        let linked = written.and_then(|()| self.shared.run(|tx| link_write(tx, ino, &pieces, end, now)));
        if linked.is_err() {
            self.cancel_reservations(&pieces);
        }
        linked?;
        Ok(freed || allocated)
    }

    fn cancel_reservations(&self, pieces: &[Piece]) {
        let mut meta = self.shared.meta.lock();
        for piece in pieces {
            if let Place::Reserved { start } = piece.place {
                meta.alloc.busy.remove(start, start + piece.count);
            }
        }
    }

    /// Builds the blocks of the write in a staging buffer (reading partial blocks that hold data)
    /// and writes every piece to its device blocks in one batch.
    fn write_pieces(&self, offset: u64, data: &[u8], old_size: u64, pieces: &[Piece]) -> Result<()> {
        let first = pieces[0].file_block;
        let count: u64 = pieces.iter().map(|p| p.count).sum();
        // Every byte is overwritten below: the data, and the partial first and last blocks by
        // `load_partial` (read back or zeroed).
        let mut staging = self.shared.storage.alloc_write_buffer((count * BLOCK) as usize);
        let head = offset - first * BLOCK;
        let tail_end = head + data.len() as u64;
        let partial_head = head != 0;
        let partial_tail = !tail_end.is_multiple_of(BLOCK);
        if partial_head || partial_tail {
            self.load_partial(&mut staging, first, count, old_size, pieces, partial_head, partial_tail)?;
        }
        staging[head as usize..tail_end as usize].copy_from_slice(data);
        self.shared.write_data(&piece_writes(&[&staging], pieces))
    }

    /// Reads the first and/or last block of a write that covers them only partly. Blocks without
    /// data, or wholly past the old end of file, start as zeros.
    #[allow(clippy::too_many_arguments)]
    fn load_partial(
        &self,
        staging: &mut [u8],
        first: u64,
        count: u64,
        old_size: u64,
        pieces: &[Piece],
        head: bool,
        tail: bool,
    ) -> Result<()> {
        let mut wanted = Vec::new();
        if head {
            wanted.push(first);
        }
        if tail && (!head || count > 1) {
            wanted.push(first + count - 1);
        }
        for block in wanted {
            let slot = ((block - first) * BLOCK) as usize;
            let piece = pieces
                .iter()
                .find(|p| (p.file_block..p.file_block + p.count).contains(&block))
                .expect("pieces cover the write");
            let target = &mut staging[slot..slot + BLOCK_SIZE];
            match piece.device_block(block) {
                Some(device) if piece.holds_data() && block * BLOCK < old_size => {
                    self.shared.storage.read_batch(&mut [ReadOp { offset: device * BLOCK, buf: target }])?;
                    // Past the old end the device may hold a lost write's bytes: they read zero.
                    let valid = old_size - block * BLOCK;
                    if valid < BLOCK {
                        target[valid as usize..].fill(0);
                    }
                }
                _ => target.fill(0),
            }
        }
        Ok(())
    }

    /// Changes the size of `ino`. Shrinking frees the blocks past the new end in bounded steps
    /// and zeroes the rest of the new last block on the device.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        if size > FILE_SIZE_MAX {
            return Err(EngineError::FileTooBig);
        }
        let lock = self.io_lock(ino);
        let _guard = lock.write();
        let record = self.getattr(ino)?.record;
        regular(&record)?;
        // Shrinking: the new last block's bytes past the new end; growing: the old one's.
        self.zero_block_tail(ino, size.min(record.size))?;
        let now = self.shared.now();
        let keep = size.div_ceil(BLOCK);
        let free_from = if size < record.size { keep } else { record.size.div_ceil(BLOCK) };
        // Growing: only written extents past the old end can be there (an interrupted truncate
        // left them); preallocated ones stay.
        let growing = size >= record.size;
        let mut set_size = true;
        loop {
            let complete = self.shared.run(|tx| {
                let mut record = it::get_inode(tx, ino)?;
                if set_size {
                    record.size = size;
                    record.mtime = now;
                    record.ctime = now;
                }
                let complete = free_range(tx, ino, &mut record, free_from, u64::MAX - free_from, growing)?;
                it::put_inode(tx, ino, &record)?;
                Ok(complete)
            })?;
            set_size = false;
            if complete {
                return Ok(());
            }
        }
    }

    /// Before a write at `offset` that starts past the block holding the end of the file: that
    /// block's bytes past the end are zeroed, as the write will not read (and clean) the block.
    /// The caller holds the inode's data lock.
    fn zero_tail_before_gap(&self, ino: u64, offset: u64) -> Result<()> {
        let size = self.getattr(ino)?.record.size;
        if offset / BLOCK > size / BLOCK {
            self.zero_block_tail(ino, size)?;
        }
        Ok(())
    }

    /// Zeroes the bytes of the block holding `size` from `size` on, if that block holds data.
    fn zero_block_tail(&self, ino: u64, size: u64) -> Result<()> {
        if size.is_multiple_of(BLOCK) {
            return Ok(());
        }
        let block = size / BLOCK;
        let pieces = self.shared.run(|tx| Ok(pieces_of(block, 1, &it::extents(tx, ino, block, 1)?)))?;
        let piece = pieces[0];
        let Some(device) = piece.device_block(block).filter(|_| piece.holds_data()) else { return Ok(()) };
        let mut buf = self.shared.storage.alloc_buffer(BLOCK_SIZE);
        self.shared.storage.read_batch(&mut [ReadOp { offset: device * BLOCK, buf: &mut buf[..] }])?;
        buf[(size % BLOCK) as usize..].fill(0);
        self.shared.write_data(&[WriteOp { offset: device * BLOCK, buf: &buf[..] }])
    }

    /// fallocate: preallocate (mode 0 or KEEP_SIZE), punch a hole, or zero a range.
    pub fn fallocate(&self, ino: u64, offset: u64, length: u64, mode: u32) -> Result<()> {
        let end = offset.checked_add(length).ok_or(EngineError::FileTooBig)?;
        if length == 0 {
            return Err(EngineError::Invalid("fallocate length"));
        }
        if end > FILE_SIZE_MAX {
            return Err(EngineError::FileTooBig);
        }
        let keep_size = mode & falloc::KEEP_SIZE != 0;
        match mode & !falloc::KEEP_SIZE {
            0 => self.preallocate(ino, offset, end, keep_size),
            falloc::PUNCH_HOLE if keep_size => self.punch(ino, offset, end),
            falloc::ZERO_RANGE => {
                self.punch(ino, offset, end)?;
                self.preallocate(ino, offset, end, keep_size)
            }
            _ => Err(EngineError::NotSupported),
        }
    }

    fn preallocate(&self, ino: u64, offset: u64, end: u64, keep_size: bool) -> Result<()> {
        let lock = self.io_lock(ino);
        let _guard = lock.write();
        if !keep_size {
            let size = self.getattr(ino)?.record.size;
            if end > size {
                self.zero_block_tail(ino, size)?;
            }
        }
        let first = offset / BLOCK;
        let last = end.div_ceil(BLOCK);
        let now = self.shared.now();
        let mut cursor = first;
        while cursor < last {
            cursor = self.shared.run_retrying(|tx| {
                let mut record = it::get_inode(tx, ino)?;
                regular(&record)?;
                let next = allocate_unwritten(tx, ino, &mut record, cursor, last)?;
                if next == last && !keep_size && end > record.size {
                    record.size = end;
                }
                record.ctime = now;
                it::put_inode(tx, ino, &record)?;
                Ok(next)
            })?;
        }
        if first == last && !keep_size {
            self.shared.run(|tx| {
                let mut record = it::get_inode(tx, ino)?;
                record.size = record.size.max(end);
                it::put_inode(tx, ino, &record)
            })?;
        }
        Ok(())
    }

    fn punch(&self, ino: u64, offset: u64, end: u64) -> Result<()> {
        let record = self.getattr(ino)?.record;
        regular(&record)?;
        let end = end.min(record.size.max(offset));
        if end <= offset {
            return Ok(());
        }
        let first_full = offset.div_ceil(BLOCK);
        let last_full = end / BLOCK;
        // Partial blocks at the edges are zeroed by writing zeros; whole blocks are unmapped.
        let head_end = (first_full * BLOCK).min(end);
        if head_end > offset {
            self.write(ino, offset, &vec![0u8; (head_end - offset) as usize])?;
        }
        if end > last_full * BLOCK && last_full * BLOCK >= head_end {
            self.write(ino, last_full * BLOCK, &vec![0u8; (end - last_full * BLOCK) as usize])?;
        }
        if last_full <= first_full {
            return Ok(());
        }
        let lock = self.io_lock(ino);
        let _guard = lock.write();
        let now = self.shared.now();
        loop {
            let complete = self.shared.run(|tx| {
                let mut record = it::get_inode(tx, ino)?;
                let complete = free_range(tx, ino, &mut record, first_full, last_full - first_full, false)?;
                record.mtime = now;
                record.ctime = now;
                it::put_inode(tx, ino, &record)?;
                Ok(complete)
            })?;
            if complete {
                return Ok(());
            }
        }
    }

    /// SEEK_DATA (3) and SEEK_HOLE (4). Unwritten extents count as holes.
    pub fn lseek(&self, ino: u64, offset: u64, whence: u32) -> Result<u64> {
        self.shared.look(|tx| {
            let record = it::get_inode(tx, ino)?;
            regular(&record)?;
            if offset >= record.size {
                return Err(EngineError::NoSuchOffset);
            }
            let first = offset / BLOCK;
            let count = record.size.div_ceil(BLOCK) - first;
            let pieces = pieces_of(first, count, &it::extents(tx, ino, first, count)?);
            let found = pieces.iter().find(|p| p.holds_data() == (whence == 3));
            match (whence, found) {
                (3, Some(piece)) => Ok((piece.file_block * BLOCK).max(offset)),
                (3, None) => Err(EngineError::NoSuchOffset),
                (4, Some(piece)) => Ok((piece.file_block * BLOCK).max(offset).min(record.size)),
                (4, None) => Ok(record.size),
                _ => Err(EngineError::Invalid("lseek whence")),
            }
        })
    }

    /// Frees `ino` if it has no links left (it is on the orphan list), in bounded steps.
    pub(super) fn free_if_orphan(&self, ino: u64) -> Result<()> {
        loop {
            let complete = self.shared.run(|tx| free_step(tx, ino))?;
            if complete {
                return Ok(());
            }
        }
    }
}

impl<S: Storage> super::Shared<S> {
    /// Frees every inode on the orphan list (at mount, nothing references them any more).
    pub(super) fn free_orphans(self: &Arc<Self>) -> super::Result<()> {
        let handle = EngineHandle { shared: Arc::clone(self) };
        let orphans = self.run(|tx| it::keys_of(tx, ORPHAN_OBJECT, ItemKind::Orphan, usize::MAX))?;
        for key in &orphans {
            handle.free_if_orphan(key.offset)?;
        }
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "freed orphaned inodes");
        }
        Ok(())
    }
}

/// The device writes that put `blocks` (the blocks of `pieces`, in order, in one or more
/// buffers) in place: one per piece and buffer it overlaps.
fn piece_writes<'a>(blocks: &[&'a [u8]], pieces: &[Piece]) -> Vec<WriteOp<'a>> {
    let mut ops = Vec::with_capacity(pieces.len() + blocks.len());
    let mut buffers = blocks.iter();
    let mut rest: &'a [u8] = &[];
    for piece in pieces {
        let mut device = piece.device_block(piece.file_block).expect("a planned write maps every block") * BLOCK;
        let mut left = (piece.count * BLOCK) as usize;
        while left > 0 {
            if rest.is_empty() {
                rest = buffers.next().expect("the buffers cover the pieces");
            }
            let (now, later) = rest.split_at(left.min(rest.len()));
            ops.push(WriteOp { offset: device, buf: now });
            device += now.len() as u64;
            left -= now.len();
            rest = later;
        }
    }
    assert!(rest.is_empty() && buffers.next().is_none(), "the pieces cover the buffers");
    ops
}

/// Plans a write of blocks `first..first+count` ending at byte `end`: maps existing blocks and
/// reserves new ones for holes. Returns the size before the write, whether blocks past the end of
/// file were freed, and the pieces.
fn plan_write<S: Storage>(
    tx: &mut Tx<'_, S>,
    ino: u64,
    first: u64,
    count: u64,
    end: u64,
) -> Result<(u64, bool, Vec<Piece>)> {
    let mut record = it::get_inode(tx, ino)?;
    regular(&record)?;
    let old_blocks = record.size.div_ceil(BLOCK);
    let blocks_before = record.blocks;
    if end > record.size && first > old_blocks {
        // Written extents past the end of file can only be left by an interrupted truncate.
        free_range(tx, ino, &mut record, old_blocks, first - old_blocks, true)?;
        it::put_inode(tx, ino, &record)?;
    }
    let mapped = pieces_of(first, count, &it::extents(tx, ino, first, count)?);
    let mut pieces = Vec::with_capacity(mapped.len());
    let mut goal = None;
    for piece in mapped {
        if piece.place != Place::Hole {
            goal = piece.device_block(piece.file_block + piece.count - 1).map(|b| b + 1);
            pieces.push(piece);
            continue;
        }
        let mut cursor = piece.file_block;
        while cursor < piece.file_block + piece.count {
            let want = piece.file_block + piece.count - cursor;
            let goal_block = goal.unwrap_or(tx.meta.alloc.data_cursor);
            let (start, len) = tx.reserve(goal_block, want.min(u64::from(EXTENT_BLOCKS_MAX)))?;
            pieces.push(Piece { file_block: cursor, count: len, place: Place::Reserved { start } });
            goal = Some(start + len);
            cursor += len;
        }
    }
    Ok((record.size, record.blocks != blocks_before, pieces))
}

/// Links the blocks of a finished write into the file and updates size and times.
fn link_write<S: Storage>(
    tx: &mut Tx<'_, S>,
    ino: u64,
    pieces: &[Piece],
    end: u64,
    now: vexfs_format::inode::Timestamp,
) -> Result<()> {
    let mut record = it::get_inode(tx, ino)?;
    for piece in pieces {
        match piece.place {
            Place::Reserved { start } => {
                tx.claim_reserved(start, piece.count)?;
                it::map(tx, ino, piece.file_block, Extent { start, length: piece.count as u32, flags: 0 })?;
                record.blocks += piece.count;
            }
            Place::Mapped { start, unwritten: true } => {
                it::unmap(tx, ino, piece.file_block, piece.count, usize::MAX)?;
                it::map(tx, ino, piece.file_block, Extent { start, length: piece.count as u32, flags: 0 })?;
            }
            _ => {}
        }
    }
    record.size = record.size.max(end);
    record.mtime = now;
    record.ctime = now;
    it::put_inode(tx, ino, &record)
}

/// Unmaps and frees up to [`FREE_EXTENTS_STEP`] extents of blocks `first..first+count` (only
/// written ones if `only_written`). Returns true when nothing of the range is left.
fn free_range<S: Storage>(
    tx: &mut Tx<'_, S>,
    ino: u64,
    record: &mut InodeRecord,
    first: u64,
    count: u64,
    only_written: bool,
) -> Result<bool> {
    let mut found = it::extents(tx, ino, first, count)?;
    found.retain(|(_, e)| !only_written || !e.is_unwritten());
    let end = first.saturating_add(count);
    for (offset, extent) in found.iter().take(FREE_EXTENTS_STEP) {
        let start = (*offset).max(first);
        let stop = (offset + u64::from(extent.length)).min(end);
        let (removed, _) = it::unmap(tx, ino, start, stop - start, 1)?;
        for (_, piece) in removed {
            tx.free_data(piece.start, u64::from(piece.length))?;
            record.blocks = record.blocks.saturating_sub(u64::from(piece.length));
        }
    }
    Ok(found.len() <= FREE_EXTENTS_STEP)
}

/// Allocates unwritten extents for the holes in `cursor..last`, at most a bounded number per
/// step. Returns where the next step starts.
fn allocate_unwritten<S: Storage>(
    tx: &mut Tx<'_, S>,
    ino: u64,
    record: &mut InodeRecord,
    cursor: u64,
    last: u64,
) -> Result<u64> {
    const ALLOCATIONS_STEP: usize = 32;
    let pieces = pieces_of(cursor, last - cursor, &it::extents(tx, ino, cursor, last - cursor)?);
    let mut allocations = 0;
    for piece in pieces {
        if piece.place != Place::Hole {
            continue;
        }
        let mut at = piece.file_block;
        while at < piece.file_block + piece.count {
            if allocations == ALLOCATIONS_STEP {
                return Ok(at);
            }
            let want = (piece.file_block + piece.count - at).min(u64::from(EXTENT_BLOCKS_MAX));
            let goal = tx.meta.alloc.data_cursor;
            let (start, len) = tx.allocate_data(goal, want)?;
            it::map(tx, ino, at, Extent { start, length: len as u32, flags: EXTENT_UNWRITTEN })?;
            record.blocks += len;
            at += len;
            allocations += 1;
        }
    }
    Ok(last)
}

/// One step of freeing an orphan: its extents first, then its remaining items. Returns true when
/// done (or when there is nothing to free).
fn free_step<S: Storage>(tx: &mut Tx<'_, S>, ino: u64) -> Result<bool> {
    let mut record = match it::get_inode(tx, ino) {
        Ok(record) => record,
        Err(EngineError::NotFound) => return Ok(true),
        Err(error) => return Err(error),
    };
    if record.nlink > 0 || record.flags & INODE_FLAG_ORPHAN == 0 {
        return Ok(true);
    }
    if !free_range(tx, ino, &mut record, 0, u64::MAX, false)? {
        it::put_inode(tx, ino, &record)?;
        return Ok(false);
    }
    for key in it::keys_of(tx, ino, ItemKind::Xattr, usize::MAX)? {
        it::del(tx, key)?;
    }
    it::del(tx, Key::new(ino, ItemKind::Symlink, 0))?;
    it::del(tx, Key::new(ino, ItemKind::Inode, 0))?;
    it::del(tx, Key::new(ORPHAN_OBJECT, ItemKind::Orphan, ino))?;
    tx.update_root(|root| root.inode_count = root.inode_count.saturating_sub(1))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Clock, Engine, EngineOptions};
    use crate::io::sim::SimStorage;
    use vexfs_format::inode::{Timestamp, ROOT_INO};
    use vexfs_format::mkfs::{self, MkfsParams};

    struct FixedClock;

    impl Clock for FixedClock {
        fn now(&self) -> Timestamp {
            Timestamp { sec: 1_800_000_000, nsec: 0 }
        }
    }

    fn engine() -> (Arc<SimStorage>, Engine<Arc<SimStorage>>) {
        let size_bytes = 32 << 20;
        let now = FixedClock.now();
        let params = MkfsParams { size_bytes, uuid: [2; 16], now, label: "order", uid: 0, gid: 0 };
        let (_, blocks) = mkfs::plan(&params).expect("mkfs");
        let mut image = vec![0u8; size_bytes as usize];
        for (addr, block) in blocks {
            let at = addr.byte_offset() as usize;
            image[at..at + BLOCK_SIZE].copy_from_slice(&block);
        }
        let sim = Arc::new(SimStorage::from_image(image));
        let options = EngineOptions { cache_bytes: 16 << 20, commit_interval: std::time::Duration::from_secs(3600) };
        let engine = Engine::open(Arc::clone(&sim), Arc::new(FixedClock), options).expect("open");
        (sim, engine)
    }

    /// Goal: data is marked unflushed the moment its write completes, before the link that points
    /// at it, so no commit that can see the link skips the flush that orders data before it.
    /// Method: write a new block through `write_chunk` with a data step that, once its device
    /// write is done, commits, as a commit racing the link would; that commit must find the mark
    /// and make the data durable. After the link and its commit, the durable image alone must
    /// reopen with the file's data.
    #[test]
    fn a_commit_racing_the_link_flushes_the_data() {
        let (sim, engine) = engine();
        let handle = engine.handle();
        let creds = crate::engine::fs::Creds { uid: 0, gid: 0 };
        let ino = handle.mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, creds).expect("create").ino;
        handle.sync().expect("sync");
        let mut block = handle.block_buffer(BLOCK_SIZE);
        block.fill(0x5a);
        let mut device = None;
        handle
            .write_chunk(ino, 0, 1, BLOCK, |_, pieces| {
                handle.shared.write_data(&piece_writes(&[&block[..]], pieces))?;
                assert!(sim.unflushed_write_count() > 0, "the data write is not pending a flush");
                device = pieces[0].device_block(0);
                handle.shared.commit()?;
                assert_eq!(sim.unflushed_write_count(), 0, "a commit after the data write left it unflushed");
                Ok(())
            })
            .expect("write");
        handle.sync().expect("sync");
        let device = device.expect("the write mapped its block") as usize;
        let durable = sim.durable_image();
        assert!(durable[device * BLOCK_SIZE..(device + 1) * BLOCK_SIZE] == block[..], "the data is not durable");
        let options = EngineOptions { cache_bytes: 16 << 20, commit_interval: std::time::Duration::from_secs(3600) };
        let reopened = Engine::open(SimStorage::from_image(durable), Arc::new(FixedClock), options).expect("reopen");
        let (read, range) = reopened.handle().read(ino, 0, BLOCK_SIZE as u32).expect("read");
        assert!(read[range] == block[..], "the durable volume does not hold the data");
    }

    #[test]
    fn pieces_cover_holes_and_extents() {
        let extents = [
            (2, Extent { start: 100, length: 3, flags: 0 }),
            (7, Extent { start: 200, length: 10, flags: EXTENT_UNWRITTEN }),
        ];
        let pieces = pieces_of(0, 10, &extents);
        let summary: Vec<(u64, u64, Option<u64>)> =
            pieces.iter().map(|p| (p.file_block, p.count, p.device_block(p.file_block))).collect();
        assert_eq!(summary, vec![(0, 2, None), (2, 3, Some(100)), (5, 2, None), (7, 3, Some(200))]);
        assert!(pieces[1].holds_data());
        assert!(!pieces[3].holds_data());
    }
}
