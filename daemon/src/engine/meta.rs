//! Metadata state and the per-operation transaction handle.
//!
//! [`Meta`] holds everything behind the engine's metadata lock: the block cache, the allocator,
//! the running transaction's bookkeeping. [`Tx`] is one operation's view of it: every block the
//! operation modifies is captured before its first change, so that an operation that fails half-way
//! (a corrupt block, no space) is rolled back and the running transaction only ever contains whole
//! operations. Crash atomicity then comes from the journal committing whole transactions.

use std::collections::{BTreeSet, HashSet};

use vexfs_format::bitmap::{self, BITS_PER_BITMAP_BLOCK};
use vexfs_format::block::{self, BlockKind};
use vexfs_format::root::VolumeRoot;
use vexfs_format::{BlockAddr, FormatError, BLOCK_SIZE};

use super::alloc::Allocator;
use super::cache::Cache;
use super::error::{EngineError, Result};
use crate::btree::PageStore;
use crate::storage::Storage;

/// The most blocks one operation may dirty. Operations that could touch more (truncating a large
/// file, freeing an inode) work in steps, each its own operation.
pub const OP_BLOCKS_MAX: usize = 256;

/// Metadata kinds a tree or allocator read accepts; the caller checks the exact kind. These are
/// also the kinds a journal image may have.
pub const META_KINDS: [BlockKind; 5] =
    [BlockKind::Leaf, BlockKind::Internal, BlockKind::Overflow, BlockKind::Root, BlockKind::Bitmap];

/// The running transaction's bookkeeping beyond its dirty blocks (which the cache tracks).
#[derive(Default)]
pub struct RunningTxn {
    /// Its sequence number in the journal.
    pub seq: u64,
    /// Data blocks it freed: reusable once it is durable.
    pub data_frees: Vec<(u64, u64)>,
    /// Metadata blocks it freed: reusable once the journal tail has passed it.
    pub meta_frees: Vec<u64>,
}

/// Everything behind the metadata lock.
pub struct Meta {
    pub cache: Cache,
    pub alloc: Allocator,
    pub running: RunningTxn,
    pub root_block: BlockAddr,
    pub tree_root: BlockAddr,
    /// Metadata blocks freed by committed transactions, released at the next journal reset.
    pub quarantine: Vec<u64>,
}

struct Undo {
    addr: u64,
    /// The contents before the operation, or `None` for a block the operation allocated.
    before: Option<Box<[u8]>>,
    was_dirty: bool,
}

/// One operation's transaction handle. Drop without [`Tx::finish`] rolls back.
pub struct Tx<'a, S: Storage> {
    pub meta: &'a mut Meta,
    pub storage: &'a S,
    undo: Vec<Undo>,
    captured: HashSet<u64>,
    touched_groups: BTreeSet<u64>,
    data_frees_len: usize,
    meta_frees_len: usize,
    busy_added: Vec<(u64, u64)>,
    done: bool,
}

impl<'a, S: Storage> Tx<'a, S> {
    /// Starts an operation.
    pub fn begin(meta: &'a mut Meta, storage: &'a S) -> Tx<'a, S> {
        let data_frees_len = meta.running.data_frees.len();
        let meta_frees_len = meta.running.meta_frees.len();
        Tx {
            meta,
            storage,
            undo: Vec::new(),
            captured: HashSet::new(),
            touched_groups: BTreeSet::new(),
            data_frees_len,
            meta_frees_len,
            busy_added: Vec::new(),
            done: false,
        }
    }

    /// Ends the operation: keeps its changes on success, rolls them back on error.
    pub fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        if result.is_ok() {
            assert!(self.undo.len() <= OP_BLOCKS_MAX, "operation dirtied {} blocks", self.undo.len());
            self.done = true;
        }
        result
    }

    /// Blocks this operation has modified so far.
    pub fn blocks_touched(&self) -> usize {
        self.undo.len()
    }

    fn rollback(&mut self) {
        for undo in self.undo.drain(..).rev() {
            match undo.before {
                Some(before) => {
                    let id = self.meta.cache.create(self.storage, undo.addr);
                    self.meta.cache.data_mut(id).copy_from_slice(&before);
                    self.meta.cache.set_dirty(id, undo.was_dirty);
                }
                None => self.meta.cache.forget(undo.addr),
            }
        }
        for &(start, end) in &self.busy_added {
            self.meta.alloc.busy.remove(start, end);
        }
        self.meta.running.data_frees.truncate(self.data_frees_len);
        self.meta.running.meta_frees.truncate(self.meta_frees_len);
        let groups: Vec<u64> = self.touched_groups.iter().copied().collect();
        for group in groups {
            let addr = BlockAddr(self.meta.alloc.bitmap_start + group);
            let id = self.meta.cache.lookup(addr.0).expect("a touched bitmap block stays cached");
            self.meta.alloc.group_free[group as usize] =
                bitmap::count_free(bitmap::bits(self.meta.cache.data(id))) as u32;
        }
    }

    /// Loads and verifies a metadata block of one of `kinds`.
    pub fn page_of(&mut self, addr: BlockAddr, kinds: &[BlockKind]) -> Result<&[u8]> {
        let (id, fresh) = self.meta.cache.load(self.storage, addr.0)?;
        if fresh {
            if let Err(error) = block::verify(self.meta.cache.data(id), addr, kinds) {
                self.meta.cache.discard(id);
                return Err(error.into());
            }
        }
        Ok(self.meta.cache.data(id))
    }

    /// Loads a metadata block for modification, capturing its contents for rollback.
    pub fn page_mut_of(&mut self, addr: BlockAddr, kinds: &[BlockKind]) -> Result<&mut [u8]> {
        self.page_of(addr, kinds)?;
        let id = self.meta.cache.lookup(addr.0).expect("just loaded");
        if self.captured.insert(addr.0) {
            let before = self.meta.cache.data(id).to_vec().into_boxed_slice();
            self.undo.push(Undo { addr: addr.0, before: Some(before), was_dirty: self.meta.cache.is_dirty(id) });
        }
        self.meta.cache.set_dirty(id, true);
        Ok(self.meta.cache.data_mut(id))
    }

    /// The volume root's fields (its reserved bytes are checked once, at open).
    pub fn root(&mut self) -> Result<VolumeRoot> {
        let addr = self.meta.root_block;
        Ok(VolumeRoot::decode(self.page_of(addr, &[BlockKind::Root])?))
    }

    /// Changes the volume root's fields.
    pub fn update_root(&mut self, change: impl FnOnce(&mut VolumeRoot)) -> Result<()> {
        let mut root = self.root()?;
        change(&mut root);
        let addr = self.meta.root_block;
        root.write(self.page_mut_of(addr, &[BlockKind::Root])?);
        Ok(())
    }

    /// Sets or clears the bitmap bits of `start..start+len` and adjusts the free counts. Only
    /// blocks of the data area ever change: the fixed regions stay in use whatever an extent or a
    /// pointer read from the device says, so the allocator can never hand them out.
    fn mark(&mut self, start: u64, len: u64, used: bool) -> Result<()> {
        let area = self.meta.alloc.data_area();
        if start < area.start || start.checked_add(len).is_none_or(|end| end > area.end) {
            let what = format!("blocks {start}..+{len} lie outside the data area {}..{}", area.start, area.end);
            return Err(FormatError::malformed(start, what).into());
        }
        let mut block = start;
        while block < start + len {
            let (bitmap_addr, bit) = self.meta.alloc.locate(block);
            let group = bitmap_addr - self.meta.alloc.bitmap_start;
            let run = (BITS_PER_BITMAP_BLOCK - bit as u64).min(start + len - block);
            self.touched_groups.insert(group);
            let page = self.page_mut_of(BlockAddr(bitmap_addr), &[BlockKind::Bitmap])?;
            let bits = bitmap::bits_mut(page);
            for i in bit..bit + run as usize {
                if bitmap::get(bits, i) == used {
                    return Err(EngineError::Corrupt(FormatError::malformed(
                        bitmap_addr,
                        format!(
                            "bitmap: block {} is already {}",
                            block + (i - bit) as u64,
                            if used { "in use" } else { "free" }
                        ),
                    )));
                }
                bitmap::set(bits, i, used);
            }
            let free = &mut self.meta.alloc.group_free[group as usize];
            *free = if used { *free - run as u32 } else { *free + run as u32 };
            block += run;
        }
        self.update_root(|root| {
            root.free_blocks = if used { root.free_blocks - len } else { root.free_blocks + len };
        })
    }

    /// Finds up to `len_max` free blocks starting the search at `goal`; `None` when the volume
    /// has no free block that can be handed out.
    pub fn find_free(&mut self, goal: u64, len_max: u64) -> Result<Option<(u64, u64)>> {
        let groups = self.meta.alloc.bitmap_blocks;
        let first_group = self.meta.alloc.group_of(goal);
        for step in 0..=groups {
            let group = (first_group + step) % groups;
            if self.meta.alloc.group_free[group as usize] == 0 {
                continue;
            }
            let from = if step == 0 { (goal % BITS_PER_BITMAP_BLOCK) as usize } else { 0 };
            let addr = BlockAddr(self.meta.alloc.bitmap_start + group);
            let bits_block = self.page_of(addr, &[BlockKind::Bitmap])?.to_vec();
            if let Some(found) = self.meta.alloc.search_group(group, bitmap::bits(&bits_block), from, len_max) {
                return self.check_found(addr, found).map(Some);
            }
        }
        Ok(None)
    }

    /// A free run the bitmap block at `addr` offers must lie in the data area: a bitmap that marks
    /// a fixed region (or a block past the volume) free is damaged, and handing it out would put
    /// file data over the journal or the superblock.
    fn check_found(&self, addr: BlockAddr, (start, len): (u64, u64)) -> Result<(u64, u64)> {
        let area = self.meta.alloc.data_area();
        if start < area.start || start + len > area.end {
            let what =
                format!("bitmap marks blocks {start}..+{len} free, outside the data area {}..{}", area.start, area.end);
            return Err(FormatError::malformed(addr.0, what).into());
        }
        Ok((start, len))
    }

    /// Checks that a B-tree pointer read from the device names the tree root or a block of the
    /// data area before the block is read: never a fixed region, never past the volume.
    fn check_tree_addr(&self, addr: BlockAddr) -> Result<()> {
        if addr == self.meta.tree_root || self.meta.alloc.data_area().contains(&addr.0) {
            return Ok(());
        }
        Err(FormatError::malformed(addr.0, "B-tree pointer to a block outside the tree's area").into())
    }

    /// Reserves up to `len_max` data blocks near `goal` for a write in flight. The bitmap is not
    /// touched: [`Tx::claim_reserved`] marks them when the extent is inserted.
    pub fn reserve(&mut self, goal: u64, len_max: u64) -> Result<(u64, u64)> {
        let (start, len) = self.find_free(goal, len_max)?.ok_or(EngineError::NoSpace)?;
        self.meta.alloc.busy.insert(start, start + len);
        self.busy_added.push((start, start + len));
        self.meta.alloc.data_cursor = start + len;
        Ok((start, len))
    }

    /// Turns a reservation into an allocation recorded in the bitmap.
    pub fn claim_reserved(&mut self, start: u64, len: u64) -> Result<()> {
        self.meta.alloc.busy.remove(start, start + len);
        self.mark(start, len, true)
    }

    /// Allocates data blocks directly in the bitmap (fallocate, which writes no data).
    pub fn allocate_data(&mut self, goal: u64, len_max: u64) -> Result<(u64, u64)> {
        let (start, len) = self.find_free(goal, len_max)?.ok_or(EngineError::NoSpace)?;
        self.mark(start, len, true)?;
        self.meta.alloc.data_cursor = start + len;
        Ok((start, len))
    }

    /// Frees data blocks; they stay busy until the running transaction is durable.
    pub fn free_data(&mut self, start: u64, len: u64) -> Result<()> {
        self.mark(start, len, false)?;
        self.meta.alloc.busy.insert(start, start + len);
        self.busy_added.push((start, start + len));
        self.meta.running.data_frees.push((start, len));
        Ok(())
    }
}

impl<S: Storage> Drop for Tx<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            self.rollback();
        }
    }
}

impl<S: Storage> PageStore for Tx<'_, S> {
    type Error = EngineError;

    fn page(&mut self, addr: BlockAddr) -> Result<&[u8]> {
        self.check_tree_addr(addr)?;
        self.page_of(addr, &META_KINDS)
    }

    fn page_mut(&mut self, addr: BlockAddr) -> Result<&mut [u8]> {
        self.check_tree_addr(addr)?;
        self.page_mut_of(addr, &META_KINDS)
    }

    fn is_checked(&self, addr: BlockAddr) -> bool {
        self.meta.cache.is_checked(addr.0)
    }

    fn set_checked(&mut self, addr: BlockAddr) {
        self.meta.cache.set_checked(addr.0);
    }

    fn allocate(&mut self) -> Result<BlockAddr> {
        let goal = self.meta.alloc.meta_cursor;
        let (start, _) = self.find_free(goal, 1)?.ok_or(EngineError::NoSpace)?;
        self.mark(start, 1, true)?;
        self.meta.alloc.meta_cursor = start + 1;
        let id = self.meta.cache.create(self.storage, start);
        if self.captured.insert(start) {
            self.undo.push(Undo { addr: start, before: None, was_dirty: false });
        }
        self.meta.cache.set_dirty(id, true);
        Ok(BlockAddr(start))
    }

    fn free(&mut self, addr: BlockAddr) {
        // A failure here means the bitmap disagrees with the tree: the block is already free.
        // The operation goes on; fsck reports the disagreement.
        if let Err(error) = self.mark(addr.0, 1, false) {
            tracing::error!(block = addr.0, %error, "freeing a metadata block");
            return;
        }
        self.meta.alloc.busy.insert(addr.0, addr.0 + 1);
        self.busy_added.push((addr.0, addr.0 + 1));
        self.meta.running.meta_frees.push(addr.0);
    }
}

const _: () = assert!(BLOCK_SIZE == 4096);
