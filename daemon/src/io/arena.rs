//! The registered buffer arena and the buffers it hands out.
//!
//! The arena is one anonymous mapping, backed by transparent huge pages where the kernel allows
//! (`MADV_HUGEPAGE`) and populated up front so that registering it with a ring pins memory that
//! already exists and no I/O path ever page-faults on it. Huge pages make every buffer of up to
//! 2 MiB physically contiguous: a 1 MiB transfer is one DMA segment instead of 256 pages, more
//! than a virtio disk takes in one request (254 segments), which would split it in two. It is split
//! into size classes from 4 KiB (order 0) to 4 MiB (order 10) by a buddy allocator: a free list
//! per class, blocks split on demand and merged with their buddy on release, so the mix of classes
//! follows the workload instead of a fixed partition.
//!
//! Invariants:
//! - A block of order k is `4 KiB << k` bytes and starts at a page index that is a multiple of
//!   `1 << k`; it is either on exactly one free list or owned by exactly one [`IoBuf`].
//! - No block crosses a 1 GiB boundary, so each block lies inside one registered iovec and has one
//!   `buf_index`.
//! - Every buffer handed out is 4096-aligned, from the arena or from the heap, and zeroed unless
//!   its caller asked for one to overwrite ([`Arena::alloc_for_overwrite`]).

use std::alloc::{self, Layout};
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use io_uring::IoUring;
use parking_lot::Mutex;

use super::IO_ALIGN;

/// The smallest size class: one volume block.
pub const CLASS_SIZE_MIN: usize = IO_ALIGN;
/// The largest size class. Larger buffers come from the heap.
pub const CLASS_SIZE_MAX: usize = 4 << 20;
/// The kernel refuses to register a fixed buffer larger than 1 GiB, so the arena is registered as
/// one iovec per GiB.
pub const IOVEC_SIZE_MAX: usize = 1 << 30;

const ORDER_MAX: usize = (CLASS_SIZE_MAX / CLASS_SIZE_MIN).trailing_zeros() as usize;
const ORDER_COUNT: usize = ORDER_MAX + 1;
const PAGES_PER_CHUNK: u32 = (CLASS_SIZE_MAX / CLASS_SIZE_MIN) as u32;
/// io_uring indexes fixed buffers with a u16, and page indices are u32.
const ARENA_SIZE_MAX: usize = IOVEC_SIZE_MAX * 64;

const _: () = assert!(CLASS_SIZE_MAX.is_power_of_two());
const _: () = assert!(CLASS_SIZE_MIN << ORDER_MAX == CLASS_SIZE_MAX);
const _: () = assert!(IOVEC_SIZE_MAX.is_multiple_of(CLASS_SIZE_MAX));
const _: () = assert!(ARENA_SIZE_MAX / CLASS_SIZE_MIN <= u32::MAX as usize);
const _: () = assert!(ARENA_SIZE_MAX / IOVEC_SIZE_MAX <= u16::MAX as usize);

/// Usage counters of an [`Arena`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaStats {
    pub size_bytes: usize,
    pub free_bytes: usize,
    /// Allocations served from the heap because the arena had no block of the class, or the
    /// request was larger than [`CLASS_SIZE_MAX`].
    pub heap_fallback_count: u64,
}

/// A region of memory registered as fixed buffers with every ring that uses it.
pub struct Arena {
    base: NonNull<u8>,
    size: usize,
    free: Mutex<FreeLists>,
    heap_fallback_count: AtomicU64,
    /// A ring that holds the region's registration, created on first use. Rings clone it
    /// (`IORING_REGISTER_CLONE_BUFFERS`, tens of microseconds) instead of pinning the whole
    /// region again (tens of milliseconds per 400 MiB here). None when registration failed.
    template: OnceLock<Option<IoUring>>,
}

// SAFETY: the region is plain memory owned by the arena; every access to the free lists goes
// through the mutex, and each block's bytes are reached only through the one IoBuf that owns it.
unsafe impl Send for Arena {}
// SAFETY: as for Send; `&Arena` exposes no unsynchronized mutation.
unsafe impl Sync for Arena {}

impl Arena {
    /// Maps and populates at least `size` bytes, rounded up to whole [`CLASS_SIZE_MAX`] chunks.
    pub fn new(size: usize) -> io::Result<Arc<Arena>> {
        assert!(size > 0, "an arena of zero bytes");
        let size = size.next_multiple_of(CLASS_SIZE_MAX);
        assert!(size <= ARENA_SIZE_MAX, "arena size {size} exceeds {ARENA_SIZE_MAX}");
        // An anonymous private mapping at an address of the kernel's choosing (2 MiB-aligned for
        // a mapping this large, so huge pages can back it).
        // SAFETY: the new mapping aliases no existing memory.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Huge pages are a preference: without them (THP off) the arena works with 4 KiB pages.
        // SAFETY: advice on the mapping just created, which nothing else uses yet.
        let _ = unsafe { libc::madvise(addr, size, libc::MADV_HUGEPAGE) };
        // Populate now (faulting in huge pages where advised); on kernels without
        // MADV_POPULATE_WRITE (before 5.14) touch every page instead.
        // SAFETY: as above.
        if unsafe { libc::madvise(addr, size, libc::MADV_POPULATE_WRITE) } != 0 {
            for offset in (0..size).step_by(4096) {
                // SAFETY: `offset` is inside the writable mapping, which nothing else uses yet.
                unsafe { addr.cast::<u8>().add(offset).write_volatile(0) };
            }
        }
        let base = NonNull::new(addr.cast::<u8>()).expect("mmap returned a null mapping");
        assert!((base.as_ptr() as usize).is_multiple_of(CLASS_SIZE_MIN));
        Ok(Arc::new(Arena {
            base,
            size,
            free: Mutex::new(FreeLists::new(size)),
            heap_fallback_count: AtomicU64::new(0),
            template: OnceLock::new(),
        }))
    }

    /// A zeroed, 4096-aligned buffer of `len` bytes (a positive multiple of 4096), from the arena
    /// if a block is free, otherwise from the heap.
    pub fn alloc(self: &Arc<Self>, len: usize) -> IoBuf {
        let mut buf = self.alloc_for_overwrite(len);
        if buf.is_registered() {
            buf.fill(0);
        }
        buf
    }

    /// [`Arena::alloc`] without zeroing an arena block: its bytes are whatever the block held
    /// last. For a caller that overwrites every byte before the buffer reaches a device, such as
    /// a staging buffer for a write, where zeroing would be a wasted pass over the memory.
    pub fn alloc_for_overwrite(self: &Arc<Self>, len: usize) -> IoBuf {
        assert_buf_len(len);
        let order = order_for(len);
        let page = order.and_then(|order| self.free.lock().take(order));
        let (Some(order), Some(page)) = (order, page) else {
            self.heap_fallback_count.fetch_add(1, Ordering::Relaxed);
            return IoBuf::heap(len);
        };
        let ptr = self.page_ptr(page);
        IoBuf { ptr, len, origin: Origin::Arena { arena: Arc::clone(self), page, order } }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn stats(&self) -> ArenaStats {
        ArenaStats {
            size_bytes: self.size,
            free_bytes: self.free.lock().free_bytes,
            heap_fallback_count: self.heap_fallback_count.load(Ordering::Relaxed),
        }
    }

    /// The region as the iovecs to register, one per GiB.
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.size)
            .step_by(IOVEC_SIZE_MAX)
            .map(|start| libc::iovec {
                // SAFETY: start < size, so the pointer stays inside the mapping.
                iov_base: unsafe { self.base.as_ptr().add(start) }.cast(),
                iov_len: (self.size - start).min(IOVEC_SIZE_MAX),
            })
            .collect()
    }

    /// The fd of a ring whose registered buffers are this region, for
    /// `IORING_REGISTER_CLONE_BUFFERS`; None if the region cannot be registered.
    pub(crate) fn registration_template(&self) -> Option<RawFd> {
        let template = self.template.get_or_init(|| self.register_template());
        template.as_ref().map(|ring| ring.as_raw_fd())
    }

    fn register_template(&self) -> Option<IoUring> {
        let ring = IoUring::new(1).ok()?;
        // The template ring is dropped before the mapping is unmapped (Arena::drop).
        // SAFETY: the iovecs cover this arena's mapping, which outlives the registration.
        let registered = unsafe { ring.submitter().register_buffers(&self.iovecs()) };
        match registered {
            Ok(()) => Some(ring),
            Err(error) => {
                tracing::debug!(%error, size = self.size, "cannot register the arena template");
                None
            }
        }
    }

    /// The fixed-buffer index of `[addr, addr + len)` if the range lies inside one registered
    /// iovec of this arena.
    pub(crate) fn fixed_index(&self, addr: *const u8, len: usize) -> Option<u16> {
        let start = (addr as usize).checked_sub(self.base.as_ptr() as usize)?;
        let last = start.checked_add(len.checked_sub(1)?)?;
        if last >= self.size || start / IOVEC_SIZE_MAX != last / IOVEC_SIZE_MAX {
            return None;
        }
        Some(u16::try_from(start / IOVEC_SIZE_MAX).expect("arena size is bounded"))
    }

    fn page_ptr(&self, page: u32) -> NonNull<u8> {
        let offset = page as usize * CLASS_SIZE_MIN;
        assert!(offset < self.size);
        // SAFETY: offset < size, so the pointer stays inside the mapping.
        unsafe { self.base.add(offset) }
    }

    fn release(&self, page: u32, order: usize) {
        self.free.lock().give(page, order);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Every IoBuf holds an Arc to its arena, so no block is in use here. Rings that registered
        // the region hold an Arc too, so only the template still has it registered; close that
        // first so that the region is unmapped with no registration left.
        drop(self.template.take());
        // SAFETY: base and size describe the mapping created in `new`, unmapped only here.
        let status = unsafe { libc::munmap(self.base.as_ptr().cast(), self.size) };
        assert_eq!(status, 0, "munmap of the arena: {}", io::Error::last_os_error());
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena").field("base", &self.base).field("stats", &self.stats()).finish()
    }
}

/// The smallest order whose blocks hold `len` bytes, or None above [`CLASS_SIZE_MAX`].
fn order_for(len: usize) -> Option<usize> {
    let pages = len.div_ceil(CLASS_SIZE_MIN).next_power_of_two();
    let order = pages.trailing_zeros() as usize;
    (order <= ORDER_MAX).then_some(order)
}

#[track_caller]
fn assert_buf_len(len: usize) {
    assert!(len > 0, "an I/O buffer of zero bytes");
    assert!(len.is_multiple_of(IO_ALIGN), "I/O buffer length {len} is not a multiple of {IO_ALIGN}");
}

/// Buddy free lists. `BTreeSet` keeps each list ordered, so allocation takes the lowest free
/// address (deterministic, and dense at the start of the region), and finding a buddy is a lookup.
struct FreeLists {
    by_order: [BTreeSet<u32>; ORDER_COUNT],
    free_bytes: usize,
}

impl FreeLists {
    fn new(size: usize) -> FreeLists {
        let mut by_order: [BTreeSet<u32>; ORDER_COUNT] = Default::default();
        let chunk_count = u32::try_from(size / CLASS_SIZE_MAX).expect("arena size is bounded");
        by_order[ORDER_MAX].extend((0..chunk_count).map(|chunk| chunk * PAGES_PER_CHUNK));
        FreeLists { by_order, free_bytes: size }
    }

    /// Takes a block of `order`, splitting a larger one if needed.
    fn take(&mut self, order: usize) -> Option<u32> {
        let order_found = (order..ORDER_COUNT).find(|&k| !self.by_order[k].is_empty())?;
        let page = self.by_order[order_found].pop_first().expect("list is not empty");
        // Worked example: an order-2 request served from an order-4 block at page 16 keeps pages
        // 16..20 and frees the upper halves: page 24 (order 3) and page 20 (order 2).
        for k in (order..order_found).rev() {
            let inserted = self.by_order[k].insert(page + (1 << k));
            assert!(inserted, "split half {} of order {k} was already free", page + (1 << k));
        }
        self.free_bytes -= CLASS_SIZE_MIN << order;
        Some(page)
    }

    /// Returns a block, merging it with its free buddy as far as possible.
    fn give(&mut self, page: u32, order: usize) {
        assert!(order <= ORDER_MAX);
        assert_eq!(page % (1 << order), 0, "page {page} is not aligned to order {order}");
        self.free_bytes += CLASS_SIZE_MIN << order;
        let (mut page, mut order) = (page, order);
        while order < ORDER_MAX && self.by_order[order].remove(&(page ^ (1 << order))) {
            page &= !(1 << order);
            order += 1;
        }
        let inserted = self.by_order[order].insert(page);
        assert!(inserted, "double free of page {page} (order {order})");
    }
}

/// An owned, zeroed, 4096-aligned I/O buffer. Dropping it returns its memory to the arena.
pub struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
    origin: Origin,
}

enum Origin {
    Arena { arena: Arc<Arena>, page: u32, order: usize },
    Heap,
}

// SAFETY: an IoBuf is the unique owner of its bytes (a block taken off the arena's free list, or
// its own heap allocation), like a Box<[u8]>.
unsafe impl Send for IoBuf {}
// SAFETY: shared references only allow reads of the bytes, as for Box<[u8]>.
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// A zeroed buffer of `len` bytes (a positive multiple of 4096) from the heap, outside any
    /// arena: usable everywhere, but never a fixed buffer.
    pub fn heap(len: usize) -> IoBuf {
        assert_buf_len(len);
        let layout = heap_layout(len);
        // SAFETY: the layout has a non-zero size.
        let addr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(addr) else { alloc::handle_alloc_error(layout) };
        IoBuf { ptr, len, origin: Origin::Heap }
    }

    /// Whether the buffer lies in an arena's registered region.
    pub fn is_registered(&self) -> bool {
        matches!(self.origin, Origin::Arena { .. })
    }

    /// The fixed-buffer index of the iovec holding this buffer, for an arena buffer.
    pub fn buf_index(&self) -> Option<u16> {
        match &self.origin {
            Origin::Arena { arena, .. } => arena.fixed_index(self.ptr.as_ptr(), self.len),
            Origin::Heap => None,
        }
    }

    /// Whether this buffer belongs to `arena`.
    pub fn is_from(&self, arena: &Arc<Arena>) -> bool {
        matches!(&self.origin, Origin::Arena { arena: own, .. } if Arc::ptr_eq(own, arena))
    }
}

fn heap_layout(len: usize) -> Layout {
    Layout::from_size_align(len, IO_ALIGN).expect("buffer length fits a layout")
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr addresses len initialized (zeroed on allocation) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref, and &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        match &self.origin {
            Origin::Arena { arena, page, order } => arena.release(*page, *order),
            // SAFETY: allocated in `heap` with this layout and not freed elsewhere.
            Origin::Heap => unsafe { alloc::dealloc(self.ptr.as_ptr(), heap_layout(self.len)) },
        }
    }
}

impl fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoBuf")
            .field("addr", &self.ptr)
            .field("len", &self.len)
            .field("buf_index", &self.buf_index())
            .finish()
    }
}

/// Asks the kernel to back the whole pages inside `region` with transparent huge pages, so that
/// large in-memory tables (a shard's vectors) fault in 2 MiB at a time and cost fewer TLB
/// entries. Only a preference: nothing changes where THP is off.
pub fn advise_huge_pages<T>(region: &[T]) {
    const PAGE: usize = 4096;
    let start = region.as_ptr() as usize;
    let end = start + std::mem::size_of_val(region);
    let first = start.next_multiple_of(PAGE);
    let last = end - end % PAGE;
    if last <= first {
        return;
    }
    // MADV_HUGEPAGE changes neither the contents nor the validity of the pages, only how the
    // kernel backs them; the range lies inside the live allocation `region` points into.
    // SAFETY: advice on whole pages of memory this process owns and keeps mapped.
    let _ = unsafe { libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn order_for_rounds_up_to_a_power_of_two() {
        assert_eq!(order_for(4096), Some(0));
        assert_eq!(order_for(8192), Some(1));
        assert_eq!(order_for(3 * 4096), Some(2));
        assert_eq!(order_for(CLASS_SIZE_MAX), Some(ORDER_MAX));
        assert_eq!(order_for(CLASS_SIZE_MAX + 4096), None);
    }

    #[test]
    fn buffers_are_aligned_zeroed_and_registered() {
        let arena = Arena::new(4 * MIB).unwrap();
        let mut first = arena.alloc(4096);
        assert!(first.iter().all(|&b| b == 0));
        assert_eq!(first.as_ptr() as usize % IO_ALIGN, 0);
        assert!(first.is_registered());
        assert!(first.is_from(&arena));
        assert_eq!(first.buf_index(), Some(0));
        first.fill(0xAB);
        drop(first);
        // The same block comes back (lowest address first) and must be zeroed again.
        let again = arena.alloc(4096);
        assert!(again.iter().all(|&b| b == 0));
    }

    #[test]
    fn exhausted_arena_falls_back_to_the_heap() {
        let arena = Arena::new(4 * MIB).unwrap();
        let whole = arena.alloc(4 * MIB);
        assert!(whole.is_registered());
        let extra = arena.alloc(4096);
        assert!(!extra.is_registered());
        assert_eq!(extra.buf_index(), None);
        assert_eq!(extra.as_ptr() as usize % IO_ALIGN, 0);
        assert!(extra.iter().all(|&b| b == 0));
        let huge = arena.alloc(8 * MIB);
        assert!(!huge.is_registered());
        assert_eq!(arena.stats().heap_fallback_count, 2);
    }

    #[test]
    fn blocks_are_disjoint_and_merge_back() {
        let arena = Arena::new(8 * MIB).unwrap();
        let sizes = [4096, 8192, 12288, 65536, MIB, 4096, 2 * MIB, 4096];
        let mut bufs: Vec<IoBuf> = sizes.iter().map(|&len| arena.alloc(len)).collect();
        for (i, buf) in bufs.iter_mut().enumerate() {
            assert!(buf.is_registered());
            buf.fill(i as u8 + 1);
        }
        for (i, buf) in bufs.iter().enumerate() {
            assert!(buf.iter().all(|&b| b == i as u8 + 1), "buffer {i} was overwritten");
        }
        assert!(arena.stats().free_bytes < 8 * MIB);
        // Release in an order unrelated to allocation, then both 4 MiB chunks must be whole again.
        for i in [3, 0, 7, 5, 1, 6, 2, 4] {
            drop(std::mem::replace(&mut bufs[i], IoBuf::heap(4096)));
        }
        assert_eq!(arena.stats().free_bytes, 8 * MIB);
        let (left, right) = (arena.alloc(4 * MIB), arena.alloc(4 * MIB));
        assert!(left.is_registered() && right.is_registered());
    }

    #[test]
    fn free_bytes_are_conserved_under_a_random_workload() {
        let arena = Arena::new(16 * MIB).unwrap();
        let mut live: Vec<IoBuf> = Vec::new();
        let mut state = 0x5eed_u64;
        for _ in 0..2000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let pick = (state >> 33) as usize;
            if pick.is_multiple_of(3) && !live.is_empty() {
                live.swap_remove(pick % live.len());
            } else {
                live.push(arena.alloc((1 + pick % 64) * 4096));
            }
            let used: usize = live
                .iter()
                .filter(|b| b.is_registered())
                .map(|b| b.len().div_ceil(4096).next_power_of_two() * 4096)
                .sum();
            assert_eq!(arena.stats().free_bytes + used, 16 * MIB);
        }
        live.clear();
        assert_eq!(arena.stats().free_bytes, 16 * MIB);
    }

    #[test]
    fn fixed_index_is_per_gib_and_rejects_foreign_ranges() {
        let arena = Arena::new(4 * MIB).unwrap();
        let buf = arena.alloc(8192);
        assert_eq!(arena.fixed_index(buf.as_ptr(), buf.len()), Some(0));
        let heap = IoBuf::heap(4096);
        assert_eq!(arena.fixed_index(heap.as_ptr(), heap.len()), None);
        let end = arena.base.as_ptr() as usize + arena.size();
        assert_eq!(arena.fixed_index((end - 4096) as *const u8, 8192), None);
        assert_eq!(arena.iovecs().len(), 1);
    }

    #[test]
    fn arena_sizes_round_up_to_whole_chunks() {
        let arena = Arena::new(100 * 4096).unwrap();
        assert_eq!(arena.size(), 4 * MIB);
        let arena = Arena::new(5 * MIB).unwrap();
        assert_eq!(arena.size(), 8 * MIB);
    }

    #[test]
    #[should_panic(expected = "not a multiple of 4096")]
    fn odd_lengths_are_refused() {
        let arena = Arena::new(4 * MIB).unwrap();
        let _ = arena.alloc(1000);
    }
}
