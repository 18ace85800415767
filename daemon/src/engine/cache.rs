//! The metadata buffer cache: a fixed number of block frames, bounded by `--cache-size`.
//!
//! Frames come from the storage's registered arena, so a miss reads straight into the frame with a
//! fixed-buffer read. Eviction is CLOCK (second chance). Invariants:
//! - A dirty frame (modified by the running transaction) is never evicted: its only copy is here.
//! - A frame whose committed image is still being written to its home location (`checkpoint`
//!   pinned) is never evicted: the device copy is stale until that write completes.
//! - The engine keeps dirty + pinned frames under half the capacity (see `engine::limits`), so a
//!   victim always exists; running out is a programming error and asserts.

use std::collections::HashMap;

use vexfs_format::BLOCK_SIZE;

use crate::io::IoBuf;
use crate::storage::Storage;

/// Index of a frame in the cache.
pub type FrameId = usize;

struct Frame {
    addr: u64,
    buf: IoBuf,
    valid: bool,
    dirty: bool,
    checkpoint: bool,
    referenced: bool,
    /// The node in the frame passed a full structural check since it was loaded or last handed
    /// out for modification ([`Cache::set_checked`]).
    checked: bool,
}

/// The cache. Owned by the engine's metadata state; not thread-safe by itself.
pub struct Cache {
    frames: Vec<Frame>,
    map: HashMap<u64, FrameId>,
    capacity: usize,
    hand: usize,
    dirty_count: usize,
    pinned_count: usize,
}

impl Cache {
    /// A cache of `capacity` frames (allocated lazily).
    pub fn new(capacity: usize) -> Cache {
        assert!(capacity >= 64, "cache capacity {capacity} is below the minimum of 64 frames");
        Cache { frames: Vec::new(), map: HashMap::new(), capacity, hand: 0, dirty_count: 0, pinned_count: 0 }
    }

    /// Frames the cache may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames modified by the running transaction.
    pub fn dirty_count(&self) -> usize {
        self.dirty_count
    }

    /// The frame holding `addr`, if cached.
    pub fn lookup(&mut self, addr: u64) -> Option<FrameId> {
        let id = *self.map.get(&addr)?;
        self.frames[id].referenced = true;
        Some(id)
    }

    /// The contents of a frame.
    pub fn data(&self, id: FrameId) -> &[u8] {
        &self.frames[id].buf[..BLOCK_SIZE]
    }

    /// The contents of a frame, for modification. The caller marks it dirty.
    pub fn data_mut(&mut self, id: FrameId) -> &mut [u8] {
        let frame = &mut self.frames[id];
        frame.checked = false;
        &mut frame.buf[..BLOCK_SIZE]
    }

    /// Whether the block at `addr` is cached and its node passed a full structural check since
    /// it was loaded or last modified.
    pub fn is_checked(&self, addr: u64) -> bool {
        self.map.get(&addr).is_some_and(|&id| self.frames[id].checked)
    }

    /// Records that the cached node at `addr` passed a full structural check.
    pub fn set_checked(&mut self, addr: u64) {
        if let Some(&id) = self.map.get(&addr) {
            self.frames[id].checked = true;
        }
    }

    /// The block address a frame holds.
    pub fn addr(&self, id: FrameId) -> u64 {
        self.frames[id].addr
    }

    /// True when the frame is dirty.
    pub fn is_dirty(&self, id: FrameId) -> bool {
        self.frames[id].dirty
    }

    /// Marks a frame dirty or clean.
    pub fn set_dirty(&mut self, id: FrameId, dirty: bool) {
        let frame = &mut self.frames[id];
        if frame.dirty != dirty {
            frame.dirty = dirty;
            if dirty {
                self.dirty_count += 1;
            } else {
                self.dirty_count -= 1;
            }
        }
    }

    /// Pins or unpins a frame while its committed image is written home.
    pub fn set_checkpoint(&mut self, id: FrameId, pinned: bool) {
        let frame = &mut self.frames[id];
        if frame.checkpoint != pinned {
            frame.checkpoint = pinned;
            if pinned {
                self.pinned_count += 1;
            } else {
                self.pinned_count -= 1;
            }
        }
    }

    /// Loads `addr` into a frame, reading it from `storage` on a miss. The returned frame holds the
    /// device contents, unverified: the caller verifies and calls [`Cache::discard`] on failure.
    pub fn load<S: Storage>(&mut self, storage: &S, addr: u64) -> Result<(FrameId, bool), crate::storage::IoError> {
        if let Some(id) = self.lookup(addr) {
            return Ok((id, false));
        }
        let id = self.claim(storage, addr);
        let frame = &mut self.frames[id];
        let mut ops = [crate::storage::ReadOp { offset: addr * BLOCK_SIZE as u64, buf: &mut frame.buf[..BLOCK_SIZE] }];
        if let Err(error) = storage.read_batch(&mut ops) {
            self.discard(id);
            return Err(error);
        }
        Ok((id, true))
    }

    /// A frame for a block whose old contents do not matter (a freshly allocated block): zeroed,
    /// never read from the device.
    pub fn create<S: Storage>(&mut self, storage: &S, addr: u64) -> FrameId {
        let id = match self.lookup(addr) {
            Some(id) => id,
            None => self.claim(storage, addr),
        };
        self.frames[id].buf[..BLOCK_SIZE].fill(0);
        self.frames[id].checked = false;
        id
    }

    /// Drops a frame's contents (a block that failed verification, or a freed block). A dirty
    /// frame is dropped too: the caller has taken it out of the transaction.
    pub fn discard(&mut self, id: FrameId) {
        self.set_dirty(id, false);
        let frame = &mut self.frames[id];
        assert!(!frame.checkpoint, "discarding block {} while it is written home", frame.addr);
        self.map.remove(&frame.addr);
        frame.valid = false;
    }

    /// Drops `addr` from the cache if present (see [`Cache::discard`]).
    pub fn forget(&mut self, addr: u64) {
        if let Some(&id) = self.map.get(&addr) {
            if !self.frames[id].checkpoint {
                self.discard(id);
            }
        }
    }

    /// Every dirty frame, in address order.
    pub fn dirty_frames(&self) -> Vec<FrameId> {
        let mut ids: Vec<FrameId> =
            (0..self.frames.len()).filter(|&id| self.frames[id].valid && self.frames[id].dirty).collect();
        ids.sort_by_key(|&id| self.frames[id].addr);
        ids
    }

    /// Takes a frame for `addr`: a never-used one while under capacity, else a CLOCK victim.
    fn claim<S: Storage>(&mut self, storage: &S, addr: u64) -> FrameId {
        let id = if self.frames.len() < self.capacity {
            self.frames.push(Frame {
                addr,
                buf: storage.alloc_buffer(BLOCK_SIZE),
                valid: false,
                dirty: false,
                checkpoint: false,
                referenced: false,
                checked: false,
            });
            self.frames.len() - 1
        } else {
            self.victim()
        };
        let frame = &mut self.frames[id];
        if frame.valid {
            self.map.remove(&frame.addr);
        }
        frame.addr = addr;
        frame.valid = true;
        frame.referenced = true;
        frame.checked = false;
        self.map.insert(addr, id);
        id
    }

    /// CLOCK: sweeps at most two laps for a clean, unpinned frame without its reference bit.
    fn victim(&mut self) -> FrameId {
        let len = self.frames.len();
        for _ in 0..2 * len {
            let id = self.hand;
            self.hand = (self.hand + 1) % len;
            let frame = &mut self.frames[id];
            if !frame.valid {
                return id;
            }
            if frame.dirty || frame.checkpoint {
                continue;
            }
            if frame.referenced {
                frame.referenced = false;
                continue;
            }
            return id;
        }
        panic!(
            "metadata cache exhausted: {} frames, {} dirty, {} pinned (engine limits must prevent this)",
            len, self.dirty_count, self.pinned_count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;

    #[test]
    fn checked_lasts_until_the_frame_changes() {
        let storage = SimStorage::new(1 << 20);
        let mut cache = Cache::new(64);
        let (id, fresh) = cache.load(&storage, 7).expect("load");
        assert!(fresh);
        assert!(!cache.is_checked(7), "a loaded frame starts unchecked");
        cache.set_checked(7);
        assert!(cache.is_checked(7));
        assert!(cache.load(&storage, 7).expect("hit").0 == id && cache.is_checked(7), "a hit keeps the mark");
        cache.data_mut(id)[0] = 1;
        assert!(!cache.is_checked(7), "handing a frame out for modification clears the mark");
        cache.set_checked(7);
        cache.discard(id);
        let _ = cache.load(&storage, 7).expect("reload");
        assert!(!cache.is_checked(7), "a reloaded frame is unchecked");
        cache.set_checked(7);
        let id = cache.create(&storage, 7);
        assert!(!cache.is_checked(7) && cache.data(id).iter().all(|&b| b == 0), "a recreated frame is unchecked");
        assert!(!cache.is_checked(8), "an uncached block is unchecked");
    }
}
