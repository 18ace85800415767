//! Row memory for the vector tables: growable arrays whose pages the process keeps.
//!
//! Why not `Vec`: in a virtual machine whose host backs guest memory lazily (virtio-balloon free
//! page reporting hands freed guest pages back to the host), the first write to memory the guest
//! has just freed costs a host fault. Measured here: 0.3–0.5 GB/s for first writes to fresh
//! memory, 10–12 GB/s for memory already backed. A collection taking 1.6 GB/s of rows cannot wait
//! for the former, and a `Vec` that grows by doubling also copies every row it holds on each
//! reallocation the allocator cannot do in place.
//!
//! So row memory comes in [`CHUNK`]-sized pieces (one huge page) from a process-wide pool:
//! - [`reserve`] maps and populates chunks up front (as the engine's buffer arena is populated),
//!   and tables that are dropped give their chunks back instead of unmapping them, up to the
//!   bytes reserved;
//! - a [`RowVec`] grows by mapping a new, larger range and moving its chunks and pool chunks into
//!   it with `mremap`: the kernel moves page-table entries, so no byte is copied and no page is
//!   faulted. When the pool is empty the new range is plain anonymous memory, faulted on first
//!   write as a `Vec` would be.
//!
//! No crate offers this: general allocators either return freed memory to the kernel (glibc
//! `munmap`s large blocks; jemalloc and mimalloc purge after a delay) or copy on growth.
//!
//! Invariants:
//! - A `RowVec`'s mapping is `cap` bytes, a multiple of `CHUNK`, starting at a `CHUNK`-aligned
//!   address; the first `len` elements are initialised, the rest are never read.
//! - Every chunk address in the pool is a `CHUNK`-aligned, `CHUNK`-long private anonymous mapping
//!   owned by the pool alone.

use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use parking_lot::Mutex;

/// The unit of row memory: one transparent huge page on x86-64.
pub const CHUNK: usize = 2 << 20;

struct Pool {
    /// Addresses of free chunks.
    free: Vec<usize>,
    /// Bytes of free chunks the pool keeps; chunks given back beyond it are unmapped.
    keep: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { free: Vec::new(), keep: 0 });

/// What the pool holds, for `vexfs stats` and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    pub free_bytes: usize,
    pub keep_bytes: usize,
}

pub fn pool_stats() -> PoolStats {
    let pool = POOL.lock();
    PoolStats { free_bytes: pool.free.len() * CHUNK, keep_bytes: pool.keep }
}

/// Maps and populates `bytes` (rounded up to whole chunks) of row memory into the pool, and
/// raises what the pool keeps by as much. Costs what faulting that memory in costs, once.
pub fn reserve(bytes: usize) -> io::Result<()> {
    let bytes = bytes.next_multiple_of(CHUNK);
    if bytes == 0 {
        return Ok(());
    }
    let base = map_aligned(bytes)?;
    // Populate now, with huge pages where the kernel gives them; on kernels without
    // MADV_POPULATE_WRITE (before 5.14) touch every page instead.
    // SAFETY: advice on the mapping just created, which nothing else uses yet.
    let populated = unsafe { libc::madvise(base.cast(), bytes, libc::MADV_POPULATE_WRITE) } == 0;
    if !populated {
        for offset in (0..bytes).step_by(4096) {
            // SAFETY: `offset` is inside the writable mapping, which nothing else uses yet.
            unsafe { base.add(offset).write_volatile(0) };
        }
    }
    let mut pool = POOL.lock();
    pool.free.extend((0..bytes / CHUNK).map(|i| base as usize + i * CHUNK));
    pool.keep += bytes;
    Ok(())
}

/// Maps `bytes` (a multiple of `CHUNK`) of private anonymous memory at a `CHUNK`-aligned address,
/// advised onto huge pages.
fn map_aligned(bytes: usize) -> io::Result<*mut u8> {
    debug_assert!(bytes.is_multiple_of(CHUNK));
    let span = bytes + CHUNK;
    // SAFETY: a new mapping at an address of the kernel's choosing aliases no existing memory.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = addr as usize;
    let aligned = start.next_multiple_of(CHUNK);
    let head = aligned - start;
    let tail = span - head - bytes;
    // Trim the slop before and after the aligned range; both lie inside the mapping just made.
    // SAFETY: the trimmed ranges belong to this new mapping and nothing refers to them.
    unsafe {
        if head > 0 {
            libc::munmap(addr, head);
        }
        if tail > 0 {
            libc::munmap((aligned + bytes) as *mut libc::c_void, tail);
        }
        // Huge pages are a preference; without them (THP off) 4 KiB pages work the same.
        libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
    }
    Ok(aligned as *mut u8)
}

/// Moves the chunk mapped at `from` to `to` (both `CHUNK`-aligned), replacing what was mapped
/// there; `from` is left unmapped.
///
/// # Safety
/// `from` must be a chunk the caller owns and nobody else refers to; `to` must be a chunk-sized
/// range inside a mapping the caller owns, whose current contents may be discarded.
unsafe fn move_chunk(from: usize, to: usize) -> io::Result<()> {
    // SAFETY: per the function's contract both ranges belong to the caller alone.
    let moved = unsafe {
        libc::mremap(
            from as *mut libc::c_void,
            CHUNK,
            CHUNK,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            to as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A growable array of `T` in row memory (see the module documentation). Like a `Vec<T>` for
/// plain data: push, extend, truncate, and slices of what it holds.
pub struct RowVec<T: Copy> {
    /// The mapping, or null when nothing is mapped yet.
    base: *mut u8,
    /// Bytes mapped.
    cap: usize,
    /// Chunks `0..filled` have been handed out for writing: moved in from the pool, or left to
    /// be faulted in when the pool had none. Later chunks are untouched.
    filled: usize,
    len: usize,
    /// The most bytes ever held: chunks below it are backed by memory.
    high_water: usize,
    /// Per chunk: whether it came from the pool (and so is backed by memory).
    from_pool: Vec<bool>,
    _elements: PhantomData<T>,
}

// SAFETY: a RowVec owns its mapping alone, like a Vec owns its buffer.
unsafe impl<T: Copy + Send> Send for RowVec<T> {}
// SAFETY: `&RowVec` only reads the initialised elements.
unsafe impl<T: Copy + Sync> Sync for RowVec<T> {}

impl<T: Copy> Default for RowVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> RowVec<T> {
    pub const fn new() -> RowVec<T> {
        RowVec {
            base: ptr::null_mut(),
            cap: 0,
            filled: 0,
            len: 0,
            high_water: 0,
            from_pool: Vec::new(),
            _elements: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements that fit without growing.
    pub fn capacity(&self) -> usize {
        self.cap / size_of::<T>().max(1)
    }

    /// Room for `more` elements beyond `len`. Panics when the kernel refuses memory, as `Vec`
    /// aborts on allocation failure.
    pub fn reserve(&mut self, more: usize) {
        let need = (self.len + more).checked_mul(size_of::<T>()).expect("row memory size overflows");
        if need > self.filled * CHUNK {
            self.grow(need).unwrap_or_else(|e| panic!("row memory: cannot map {need} bytes: {e}"));
        }
    }

    pub fn push(&mut self, value: T) {
        self.reserve(1);
        // SAFETY: `reserve` made room for element `len` inside the mapping.
        unsafe { self.base.cast::<T>().add(self.len).write(value) };
        self.len += 1;
        self.note_len();
    }

    pub fn extend_from_slice(&mut self, values: &[T]) {
        self.reserve(values.len());
        // `reserve` made room for `values.len()` elements after `len`, and the source (a shared
        // borrow) cannot overlap the mapping this `&mut self` owns.
        // SAFETY: the destination is writable room inside our mapping; the ranges are disjoint.
        unsafe { ptr::copy_nonoverlapping(values.as_ptr(), self.base.cast::<T>().add(self.len), values.len()) };
        self.len += values.len();
        self.note_len();
    }

    /// Keeps the first `len` elements; the memory stays mapped for reuse.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn note_len(&mut self) {
        self.high_water = self.high_water.max(self.len * size_of::<T>());
    }

    /// Makes the first `need` bytes writable: maps a larger range when `need` exceeds the
    /// mapping (doubling, in whole chunks) and moves the filled chunks to its start, then fills
    /// the chunks up to `need` with pool chunks where the pool has them. Pool chunks are taken
    /// only as rows arrive, so a table that has just doubled holds no idle pool memory.
    fn grow(&mut self, need: usize) -> io::Result<()> {
        if need > self.cap {
            let cap = need.max(self.cap * 2).max(CHUNK).next_multiple_of(CHUNK);
            let base = map_aligned(cap)?;
            for i in 0..self.filled {
                // Chunk i of the old mapping is ours alone; its target lies in the new mapping.
                // SAFETY: both ranges belong to this RowVec and nothing else refers to them.
                unsafe { move_chunk(self.base as usize + i * CHUNK, base as usize + i * CHUNK)? };
            }
            if self.cap > self.filled * CHUNK {
                // SAFETY: the old mapping's untouched tail is ours alone and holds no elements.
                unsafe {
                    libc::munmap(self.base.add(self.filled * CHUNK).cast(), self.cap - self.filled * CHUNK);
                }
            }
            self.base = base;
            self.cap = cap;
            self.from_pool.resize(cap / CHUNK, false);
        }
        let wanted = need.div_ceil(CHUNK) - self.filled;
        let taken: Vec<usize> = {
            let mut pool = POOL.lock();
            let keep = pool.free.len().saturating_sub(wanted);
            pool.free.split_off(keep)
        };
        for (slot, &chunk) in taken.iter().enumerate() {
            let index = self.filled + slot;
            // The pool handed this chunk to us alone; the target lies past every chunk written.
            // SAFETY: both ranges are ours alone and the target holds nothing.
            unsafe { move_chunk(chunk, self.base as usize + index * CHUNK)? };
            self.from_pool[index] = true;
        }
        self.filled += wanted;
        Ok(())
    }
}

impl<T: Copy> Drop for RowVec<T> {
    /// Gives the chunks that hold memory back to the pool (up to what it keeps) and unmaps the
    /// rest.
    fn drop(&mut self) {
        if self.base.is_null() {
            return;
        }
        let mut pool = POOL.lock();
        for index in 0..self.cap / CHUNK {
            let chunk = self.base as usize + index * CHUNK;
            let backed = self.from_pool[index] || index * CHUNK < self.high_water;
            if backed && (pool.free.len() + 1) * CHUNK <= pool.keep {
                pool.free.push(chunk);
            } else {
                // The chunk is part of this RowVec's mapping, unreferenced once it is dropped.
                // SAFETY: the range is ours alone and nothing refers to it any more.
                unsafe { libc::munmap(chunk as *mut libc::c_void, CHUNK) };
            }
        }
    }
}

impl<T: Copy> Deref for RowVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match NonNull::new(self.base.cast::<T>()) {
            // The first `len` elements are initialised and the mapping lives as long as `self`.
            // SAFETY: initialised elements of a live mapping, borrowed for `self`'s lifetime.
            Some(base) => unsafe { std::slice::from_raw_parts(base.as_ptr(), self.len) },
            None => &[],
        }
    }
}

impl<T: Copy> DerefMut for RowVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match NonNull::new(self.base.cast::<T>()) {
            // SAFETY: as for `deref`, and `&mut self` makes the borrow unique.
            Some(base) => unsafe { std::slice::from_raw_parts_mut(base.as_ptr(), self.len) },
            None => &mut [],
        }
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for RowVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_across_chunks_and_keeps_every_element() {
        let mut rows: RowVec<u64> = RowVec::new();
        let count = 3 * CHUNK / 8 + 17;
        for i in 0..count as u64 {
            rows.push(i * 3);
        }
        assert_eq!(rows.len(), count);
        assert!(rows.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
        rows.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&rows[count..], &[1, 2, 3]);
        rows.truncate(5);
        assert_eq!(&rows[..], &[0, 3, 6, 9, 12]);
        rows[0] = 42;
        assert_eq!(rows[0], 42);
    }

    #[test]
    fn dropped_tables_refill_the_pool_and_growth_takes_from_it() {
        reserve(4 * CHUNK).unwrap();
        let before = pool_stats();
        assert!(before.free_bytes >= 4 * CHUNK);
        let mut rows: RowVec<f32> = RowVec::new();
        rows.extend_from_slice(&vec![1.5; CHUNK / 4 * 2]);
        assert!(rows.iter().all(|&v| v == 1.5));
        drop(rows);
        let after = pool_stats();
        assert!(after.free_bytes <= after.keep_bytes);
        let empty: RowVec<u8> = RowVec::new();
        assert!(empty.is_empty() && empty.capacity() == 0);
    }
}
