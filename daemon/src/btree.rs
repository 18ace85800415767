//! B-tree algorithms over a [`PageStore`]: lookup, upsert, removal with rebalancing, ordered
//! iteration and a checking walk. The node encoding and the per-node rules are in
//! [`vexfs_format::node`].
//!
//! Invariants:
//! - The root never moves. A root split moves the root's contents into two new children and makes
//!   the root their parent one level higher; an internal root left with one child absorbs it.
//! - Non-root nodes stay at least about a quarter full: after a removal an underfull node is
//!   merged with a sibling when both fit in one node, and evened out with it otherwise.
//! - An insert allocates every block it may need (split nodes and overflow blocks) before it
//!   modifies anything, so running out of space leaves the tree untouched. A removal never
//!   allocates. Errors after the first modification (I/O, corruption) leave the transaction to be
//!   abandoned by the caller.
//! - Every traversal of on-disk pointers is iterative and bounded: a descent takes at most
//!   [`HEIGHT_MAX`] steps because each child must be exactly one level below its parent, sideways
//!   moves are bounded by the fence rules (each node is checked to lie in the key range its parent
//!   gives it), overflow chains by their recorded length, and [`BTree::walk`] by a visited set.
//! - Only one page borrow is held at a time; nodes needed together are copied to the stack.

use std::collections::HashSet;
use std::ops::ControlFlow;

use vexfs_format::block::{BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE};
use vexfs_format::key::Key;
use vexfs_format::node::{
    self, Fence, InternalMut, InternalRef, LeafItem, LeafMut, LeafRef, NodeRef, OverflowReader, OverflowRef,
    INLINE_VALUE_MAX, INTERNAL_ENTRIES_MAX, LEAF_SPACE, OVERFLOW_DATA_SIZE, VALUE_MAX,
};
use vexfs_format::FormatError;

pub use vexfs_format::node::HEIGHT_MAX;

/// The metadata block cache as the B-tree sees it.
pub trait PageStore {
    /// The engine's error type; the tree reports corruption through `From<FormatError>`.
    type Error: From<FormatError>;
    /// Verified contents of metadata block `addr` (the store checks magic, checksum and address
    /// when it loads from disk).
    fn page(&mut self, addr: BlockAddr) -> Result<&[u8], Self::Error>;
    /// Contents for modification; the block joins the running transaction (the store records
    /// undo information).
    fn page_mut(&mut self, addr: BlockAddr) -> Result<&mut [u8], Self::Error>;
    /// A fresh zeroed metadata block that joins the running transaction. Fails with the store's
    /// ENOSPC error.
    fn allocate(&mut self) -> Result<BlockAddr, Self::Error>;
    /// Frees a metadata block that is no longer referenced.
    fn free(&mut self, addr: BlockAddr);
    /// Whether the node in `addr` passed a full structural check since the store loaded it or
    /// last handed it out for modification; a store that does not track this answers false.
    fn is_checked(&self, _addr: BlockAddr) -> bool {
        false
    }
    /// Records that the node in `addr` passed a full structural check.
    fn set_checked(&mut self, _addr: BlockAddr) {}
}

/// A B-tree identified by its root block, which never moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BTree {
    root: BlockAddr,
}

/// One block reported by [`BTree::walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    pub addr: BlockAddr,
    pub kind: BlockKind,
    pub level: u16,
}

type Page = [u8; BLOCK_SIZE];

/// An item with the leaf it lives in: (leaf, key, value).
pub type Located = (BlockAddr, Key, Vec<u8>);

/// One internal node on the way from the root to a leaf, as it was when read.
#[derive(Clone, Copy, Debug)]
struct Step {
    addr: BlockAddr,
    level: u16,
    /// The child taken.
    index: usize,
    count: usize,
    fence: Fence,
}

/// The internal nodes from the root down to a leaf (root first), and the leaf.
#[derive(Clone, Debug)]
struct Path {
    steps: Vec<Step>,
    leaf: BlockAddr,
    leaf_fence: Fence,
}

impl Path {
    /// The level the leaf's parent implies (`None` when the leaf is the root).
    fn leaf_level(&self) -> Option<u16> {
        self.steps.last().map(|step| step.level - 1)
    }
}

/// A stored value read out of a leaf, before its overflow chain (if any) is loaded.
enum Stored {
    Inline(Vec<u8>),
    Overflow(OverflowRef),
}

impl Stored {
    fn of(leaf: &LeafRef<'_>, index: usize) -> Stored {
        match leaf.overflow_ref(index) {
            Some(reference) => Stored::Overflow(reference),
            None => Stored::Inline(leaf.value(index).to_vec()),
        }
    }
}

/// Which half of a split node a writer is asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    Left,
    Right,
}

/// What fixing an underfull node did to its parent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fix {
    /// The parent kept its entry count; nothing above changes.
    Done,
    /// The parent lost an entry (or could not help) and may be underfull itself.
    Escalate,
}

/// Whether [`BTree::insert_in_place`] handled an insert (with the replaced value).
enum InPlace {
    Done(Option<Vec<u8>>),
    Declined,
}

/// Two adjacent children of one parent, `left` at entry `separator - 1` and `right` at
/// `separator`.
struct Siblings {
    parent: BlockAddr,
    separator: usize,
    left: BlockAddr,
    right: BlockAddr,
}

fn malformed<E: From<FormatError>>(addr: BlockAddr, what: impl Into<String>) -> E {
    FormatError::malformed(addr.0, what).into()
}

fn load<S: PageStore>(store: &mut S, addr: BlockAddr, buf: &mut Page) -> Result<(), S::Error> {
    let block = store.page(addr)?;
    if block.len() != BLOCK_SIZE {
        return Err(malformed(addr, format!("page is {} bytes", block.len())));
    }
    buf.copy_from_slice(block);
    Ok(())
}

/// Allocates `count` blocks, or none: on failure the blocks already taken are given back.
fn allocate_blocks<S: PageStore>(store: &mut S, count: usize) -> Result<Vec<BlockAddr>, S::Error> {
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        match store.allocate() {
            Ok(addr) => blocks.push(addr),
            Err(error) => {
                blocks.into_iter().for_each(|addr| store.free(addr));
                return Err(error);
            }
        }
    }
    Ok(blocks)
}

/// Reads a whole overflow chain; returns the value and the chain's blocks.
fn read_chain<S: PageStore>(store: &mut S, reference: OverflowRef) -> Result<(Vec<u8>, Vec<BlockAddr>), S::Error> {
    let mut reader = OverflowReader::new(reference);
    while let Some(addr) = reader.next_block() {
        reader.push(store.page(addr)?, addr)?;
    }
    Ok(reader.finish()?)
}

fn load_value<S: PageStore>(store: &mut S, stored: Stored) -> Result<(Vec<u8>, Vec<BlockAddr>), S::Error> {
    match stored {
        Stored::Inline(value) => Ok((value, Vec::new())),
        Stored::Overflow(reference) => read_chain(store, reference),
    }
}

/// Writes `value` into the freshly allocated `blocks` as an overflow chain.
fn write_chain<S: PageStore>(
    store: &mut S,
    blocks: &[BlockAddr],
    value: &[u8],
) -> Result<Option<OverflowRef>, S::Error> {
    let Some(&first) = blocks.first() else { return Ok(None) };
    assert_eq!(blocks.len(), value.len().div_ceil(OVERFLOW_DATA_SIZE));
    for (index, chunk) in value.chunks(OVERFLOW_DATA_SIZE).enumerate() {
        let next = blocks.get(index + 1).copied();
        node::build_overflow_into(store.page_mut(blocks[index])?, blocks[index], next, chunk);
    }
    Ok(Some(OverflowRef::for_value(first, value)))
}

impl BTree {
    /// A tree whose root node lives at `root`.
    pub fn open(root: BlockAddr) -> BTree {
        BTree { root }
    }

    /// Allocates an empty root leaf.
    pub fn create<S: PageStore>(store: &mut S) -> Result<BTree, S::Error> {
        let root = store.allocate()?;
        BTree::format_empty_root(store.page_mut(root)?, root);
        Ok(BTree { root })
    }

    /// Makes `block` an empty root leaf at `addr` (for mkfs, which writes blocks directly).
    pub fn format_empty_root(block: &mut [u8], addr: BlockAddr) {
        LeafMut::init(block, addr);
    }

    /// The root block.
    pub fn root(&self) -> BlockAddr {
        self.root
    }

    /// The value stored under `key`.
    pub fn get<S: PageStore>(&self, store: &mut S, key: Key) -> Result<Option<Vec<u8>>, S::Error> {
        let path = self.descend(store, key)?;
        let stored = {
            let leaf = self.leaf_view(store, &path)?;
            match leaf.search(key) {
                Ok(index) => Stored::of(&leaf, index),
                Err(_) => return Ok(None),
            }
        };
        Ok(Some(load_value(store, stored)?.0))
    }

    /// Stores `value` under `key`, returning the value it replaces.
    pub fn insert<S: PageStore>(&self, store: &mut S, key: Key, value: &[u8]) -> Result<Option<Vec<u8>>, S::Error> {
        if value.len() > VALUE_MAX {
            return Err(FormatError::TooLarge { len: value.len(), max: VALUE_MAX }.into());
        }
        let stored_len = if value.len() > INLINE_VALUE_MAX { node::OVERFLOW_REF_SIZE } else { value.len() };
        let path = self.descend(store, key)?;
        if value.len() <= INLINE_VALUE_MAX {
            if let InPlace::Done(old) = self.insert_in_place(store, &path, key, value)? {
                return Ok(old);
            }
        }
        let (slot, old, fits) = {
            let leaf = self.leaf_view(store, &path)?;
            match leaf.search(key) {
                Ok(index) => (Ok(index), Some(Stored::of(&leaf, index)), leaf.can_replace(index, stored_len)),
                Err(index) => (Err(index), None, leaf.fits(stored_len)),
            }
        };
        // The old value is read (and its chain checked) before anything changes.
        let old = old.map(|stored| load_value(store, stored)).transpose()?;
        let split_count = if fits { 0 } else { self.split_blocks_needed(&path)? };
        let mut spare = allocate_blocks(store, split_count + node::overflow_block_count(value.len()))?;
        let chain = spare.split_off(split_count);
        let reference = write_chain(store, &chain, value)?;
        let encoded = reference.map(|reference| reference.encode());
        let item = match &encoded {
            Some(encoded) => LeafItem { key, value: encoded, overflow: true },
            None => LeafItem { key, value, overflow: false },
        };
        if fits {
            self.place_in_leaf(store, &path, slot, item)?;
        } else {
            self.split_insert(store, &path, slot, item, spare)?;
        }
        let (old_value, old_chain) = old.unzip();
        old_chain.into_iter().flatten().for_each(|addr| store.free(addr));
        Ok(old_value)
    }

    /// Removes `key`, returning its value.
    pub fn remove<S: PageStore>(&self, store: &mut S, key: Key) -> Result<Option<Vec<u8>>, S::Error> {
        let path = self.descend(store, key)?;
        let (index, stored) = {
            let leaf = self.leaf_view(store, &path)?;
            match leaf.search(key) {
                Ok(index) => (index, Stored::of(&leaf, index)),
                Err(_) => return Ok(None),
            }
        };
        let (value, chain) = load_value(store, stored)?;
        let underfull = {
            let mut leaf = LeafMut::parse(store.page_mut(path.leaf)?, path.leaf)?;
            leaf.remove(index);
            leaf.view().is_underfull()
        };
        chain.into_iter().for_each(|addr| store.free(addr));
        if underfull {
            self.rebalance(store, &path)?;
        }
        Ok(Some(value))
    }

    /// Calls `f` with every item in `from..to` in key order until it breaks.
    pub fn range<S: PageStore>(
        &self,
        store: &mut S,
        from: Key,
        to: Key,
        mut f: impl FnMut(Key, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), S::Error> {
        self.scan(store, from, to, true, |_, key, value| f(key, value))
    }

    /// Like [`Self::range`], with the leaf each item lives in: a caller that finds an item's
    /// value wrong can name the block.
    pub fn range_with_leaf<S: PageStore>(
        &self,
        store: &mut S,
        from: Key,
        to: Key,
        f: impl FnMut(BlockAddr, Key, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), S::Error> {
        self.scan(store, from, to, true, f)
    }

    /// Removes every item in `from..to`; returns how many there were.
    pub fn remove_range<S: PageStore>(&self, store: &mut S, from: Key, to: Key) -> Result<usize, S::Error> {
        let mut keys = Vec::new();
        self.scan(store, from, to, false, |_, key, _| {
            keys.push(key);
            ControlFlow::Continue(())
        })?;
        for &key in &keys {
            let removed = self.remove(store, key)?;
            assert!(removed.is_some(), "key {key:?} vanished during remove_range");
        }
        Ok(keys.len())
    }

    /// The item with the greatest key at most `key`.
    pub fn last_at_or_before<S: PageStore>(&self, store: &mut S, key: Key) -> Result<Option<(Key, Vec<u8>)>, S::Error> {
        Ok(self.neighbour(store, key, false)?.map(|(_, key, value)| (key, value)))
    }

    /// Like [`Self::last_at_or_before`], with the leaf the item lives in.
    pub fn last_at_or_before_with_leaf<S: PageStore>(
        &self,
        store: &mut S,
        key: Key,
    ) -> Result<Option<Located>, S::Error> {
        self.neighbour(store, key, false)
    }

    /// The item with the smallest key at least `key`.
    pub fn first_at_or_after<S: PageStore>(&self, store: &mut S, key: Key) -> Result<Option<(Key, Vec<u8>)>, S::Error> {
        Ok(self.neighbour(store, key, true)?.map(|(_, key, value)| (key, value)))
    }

    /// Blocks an insert of a `value_len`-byte value may allocate: one per level for splits, one
    /// more when the root splits (its halves both move to new blocks), plus the overflow chain.
    pub fn estimate_new_blocks_for_insert<S: PageStore>(
        &self,
        store: &mut S,
        value_len: usize,
    ) -> Result<usize, S::Error> {
        let level = NodeRef::parse(store.page(self.root)?, self.root)?.level();
        let height = usize::from(level) + 1;
        Ok(height + 1 + node::overflow_block_count(value_len))
    }

    /// Visits every node and overflow block once, checking each node, the fence rules, uniform
    /// leaf depth, key order across leaves, overflow chains and that no block is reached twice.
    /// Returns the first problem found.
    pub fn walk<S: PageStore>(&self, store: &mut S, mut visitor: impl FnMut(Visit)) -> Result<(), S::Error> {
        // The visited set grows only with blocks actually read; the stack holds at most
        // HEIGHT_MAX nodes' children because levels strictly decrease along it.
        let mut seen = HashSet::new();
        let mut pending = vec![(self.root, Fence::ROOT, None::<u16>)];
        let mut last_key: Option<Key> = None;
        let mut buf = [0u8; BLOCK_SIZE];
        while let Some((addr, fence, level)) = pending.pop() {
            if !seen.insert(addr) {
                return Err(malformed(addr, "block is reached twice (cycle or shared node)"));
            }
            load(store, addr, &mut buf)?;
            let node = NodeRef::parse(&buf, addr)?;
            node.check_in_tree(&fence, level, addr == self.root)?;
            visitor(Visit { addr, kind: node.kind(), level: node.level() });
            match node {
                NodeRef::Internal(inner) => {
                    inner.verify()?;
                    if addr == self.root && inner.len() < 2 {
                        return Err(malformed(addr, "internal root has a single child"));
                    }
                    for index in (0..inner.len()).rev() {
                        pending.push((inner.child(index), inner.child_fence(index, &fence), Some(inner.level() - 1)));
                    }
                }
                NodeRef::Leaf(leaf) => self.walk_leaf(store, &leaf, &mut last_key, &mut seen, &mut visitor)?,
            }
        }
        Ok(())
    }

    fn walk_leaf<S: PageStore>(
        &self,
        store: &mut S,
        leaf: &LeafRef<'_>,
        last_key: &mut Option<Key>,
        seen: &mut HashSet<BlockAddr>,
        visitor: &mut impl FnMut(Visit),
    ) -> Result<(), S::Error> {
        leaf.verify()?;
        if leaf.is_empty() {
            return Ok(());
        }
        // Leaves are visited in key order, so this catches order violations across leaves even
        // where the fences would not.
        if last_key.is_some_and(|last| last >= leaf.key(0)) {
            return Err(malformed(leaf.addr(), "leaf keys are not above the previous leaf's"));
        }
        *last_key = Some(leaf.key(leaf.len() - 1));
        for reference in (0..leaf.len()).filter_map(|index| leaf.overflow_ref(index)) {
            let mut reader = OverflowReader::new(reference);
            while let Some(addr) = reader.next_block() {
                if !seen.insert(addr) {
                    return Err(malformed(addr, "overflow block is reached twice"));
                }
                reader.push(store.page(addr)?, addr)?;
                visitor(Visit { addr, kind: BlockKind::Overflow, level: 0 });
            }
            reader.finish()?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Navigation
    // -----------------------------------------------------------------------------------------

    fn descend<S: PageStore>(&self, store: &mut S, key: Key) -> Result<Path, S::Error> {
        let mut path = Path { steps: Vec::with_capacity(HEIGHT_MAX), leaf: self.root, leaf_fence: Fence::ROOT };
        self.descend_from(store, &mut path, self.root, Fence::ROOT, None, |node| node.route(key))?;
        Ok(path)
    }

    /// Extends `path` from node `addr` (range `fence`, level `level` as the parent implies) down
    /// to a leaf, taking the child `choose` picks in each internal node. The leaf itself is
    /// checked by [`Self::leaf_view`] or [`Self::copy_leaf`] when it is read.
    fn descend_from<S: PageStore>(
        &self,
        store: &mut S,
        path: &mut Path,
        mut addr: BlockAddr,
        mut fence: Fence,
        mut level: Option<u16>,
        choose: impl Fn(&InternalRef<'_>) -> usize,
    ) -> Result<(), S::Error> {
        // Each step goes exactly one level down from a root below HEIGHT_MAX, so the loop bound
        // is never the reason it ends on a valid tree.
        for _ in 0..HEIGHT_MAX {
            // A node checked in full once is only changed through `InternalMut`, which keeps it
            // valid: later visits check its header and place in the tree, not every entry again.
            let checked = store.is_checked(addr);
            let block = store.page(addr)?;
            if node::claimed_kind(block) == Some(BlockKind::Leaf) {
                path.leaf = addr;
                path.leaf_fence = fence;
                return Ok(());
            }
            let inner =
                if checked { InternalRef::parse_trusted(block, addr)? } else { InternalRef::parse(block, addr)? };
            NodeRef::Internal(inner).check_in_tree(&fence, level, addr == self.root)?;
            let index = choose(&inner);
            path.steps.push(Step { addr, level: inner.level(), index, count: inner.len(), fence });
            let (child_fence, child, child_level) =
                (inner.child_fence(index, &fence), inner.child(index), inner.level() - 1);
            if !checked {
                store.set_checked(addr);
            }
            fence = child_fence;
            addr = child;
            level = Some(child_level);
        }
        Err(malformed(self.root, "tree is deeper than HEIGHT_MAX"))
    }

    /// The leaf at the end of `path`, checked against the range and level its parent gives it.
    fn leaf_view<'s, S: PageStore>(&self, store: &'s mut S, path: &Path) -> Result<LeafRef<'s>, S::Error> {
        let leaf = LeafRef::parse(store.page(path.leaf)?, path.leaf)?;
        NodeRef::Leaf(leaf).check_in_tree(&path.leaf_fence, path.leaf_level(), path.leaf == self.root)?;
        Ok(leaf)
    }

    /// Like [`Self::leaf_view`], on a copy so the store stays free for overflow reads.
    fn copy_leaf<'b, S: PageStore>(
        &self,
        store: &mut S,
        path: &Path,
        buf: &'b mut Page,
    ) -> Result<LeafRef<'b>, S::Error> {
        load(store, path.leaf, buf)?;
        let leaf = LeafRef::parse(buf, path.leaf)?;
        NodeRef::Leaf(leaf).check_in_tree(&path.leaf_fence, path.leaf_level(), path.leaf == self.root)?;
        Ok(leaf)
    }

    /// Moves `path` to the next leaf (`forward`) or the previous one. Returns false at the end.
    fn step_sideways<S: PageStore>(&self, store: &mut S, path: &mut Path, forward: bool) -> Result<bool, S::Error> {
        while let Some(step) = path.steps.last_mut() {
            if forward && step.index + 1 < step.count {
                step.index += 1;
                break;
            }
            if !forward && step.index > 0 {
                step.index -= 1;
                break;
            }
            path.steps.pop();
        }
        let Some(step) = path.steps.last().copied() else { return Ok(false) };
        let (child, fence) = {
            let inner = InternalRef::parse(store.page(step.addr)?, step.addr)?;
            if inner.len() != step.count {
                return Err(malformed(step.addr, "internal node changed during a scan"));
            }
            (inner.child(step.index), inner.child_fence(step.index, &step.fence))
        };
        let edge = |inner: &InternalRef<'_>| if forward { 0 } else { inner.len() - 1 };
        self.descend_from(store, path, child, fence, Some(step.level - 1), edge)?;
        Ok(true)
    }

    /// The first item at or after `key` (`forward`), or the last at or before it, with its leaf.
    fn neighbour<S: PageStore>(&self, store: &mut S, key: Key, forward: bool) -> Result<Option<Located>, S::Error> {
        let mut path = self.descend(store, key)?;
        let mut buf = [0u8; BLOCK_SIZE];
        let mut leaf = self.copy_leaf(store, &path, &mut buf)?;
        let mut index = match (leaf.search(key), forward) {
            (Ok(index), _) => Some(index),
            (Err(index), true) => (index < leaf.len()).then_some(index),
            (Err(index), false) => index.checked_sub(1),
        };
        // A neighbouring leaf is not the root, hence not empty: this loop runs at most twice.
        while index.is_none() {
            if !self.step_sideways(store, &mut path, forward)? {
                return Ok(None);
            }
            leaf = self.copy_leaf(store, &path, &mut buf)?;
            index = if forward { Some(0) } else { leaf.len().checked_sub(1) };
        }
        let index = index.expect("loop exits with an index");
        let (value, _) = load_value(store, Stored::of(&leaf, index))?;
        Ok(Some((path.leaf, leaf.key(index), value)))
    }

    /// Iterates `from..to`, calling `f` with each item's leaf, key and value; overflow values are
    /// assembled only when `values` is set.
    fn scan<S: PageStore>(
        &self,
        store: &mut S,
        from: Key,
        to: Key,
        values: bool,
        mut f: impl FnMut(BlockAddr, Key, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), S::Error> {
        if from >= to {
            return Ok(());
        }
        let mut path = self.descend(store, from)?;
        let mut buf = [0u8; BLOCK_SIZE];
        loop {
            let leaf = self.copy_leaf(store, &path, &mut buf)?;
            let start = leaf.search(from).unwrap_or_else(|index| index);
            for index in start..leaf.len() {
                let key = leaf.key(index);
                if key >= to {
                    return Ok(());
                }
                let flow = match leaf.overflow_ref(index) {
                    Some(reference) if values => f(path.leaf, key, &read_chain(store, reference)?.0),
                    Some(_) => f(path.leaf, key, &[]),
                    None => f(path.leaf, key, leaf.value(index)),
                };
                if flow.is_break() {
                    return Ok(());
                }
            }
            // Later leaves hold keys at or above this leaf's upper fence.
            if path.leaf_fence.upper.is_none_or(|upper| upper >= to) {
                return Ok(());
            }
            if !self.step_sideways(store, &mut path, true)? {
                return Ok(());
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Insertion
    // -----------------------------------------------------------------------------------------

    /// The common insert, under a single parse of the leaf: an inline value into a leaf with
    /// room, replacing nothing or another inline value. Declines everything that needs blocks
    /// allocated or an old chain read first, which [`Self::insert`] then does in order.
    fn insert_in_place<S: PageStore>(
        &self,
        store: &mut S,
        path: &Path,
        key: Key,
        value: &[u8],
    ) -> Result<InPlace, S::Error> {
        let mut leaf = LeafMut::parse(store.page_mut(path.leaf)?, path.leaf)?;
        NodeRef::Leaf(leaf.view()).check_in_tree(&path.leaf_fence, path.leaf_level(), path.leaf == self.root)?;
        let (old, underfull) = match leaf.view().search(key) {
            Err(index) if leaf.view().fits(value.len()) => {
                leaf.insert(index, LeafItem { key, value, overflow: false });
                (None, false)
            }
            Ok(index) if !leaf.view().is_overflow(index) && leaf.view().can_replace(index, value.len()) => {
                let old = leaf.view().value(index).to_vec();
                leaf.replace(index, value, false);
                (Some(old), leaf.view().is_underfull())
            }
            _ => return Ok(InPlace::Declined),
        };
        // A smaller value can leave the leaf underfull just as a removal can.
        if underfull {
            self.rebalance(store, path)?;
        }
        Ok(InPlace::Done(old))
    }

    /// Puts `item` into the leaf of `path`, which has room for it.
    fn place_in_leaf<S: PageStore>(
        &self,
        store: &mut S,
        path: &Path,
        slot: Result<usize, usize>,
        item: LeafItem<'_>,
    ) -> Result<(), S::Error> {
        let mut leaf = LeafMut::parse(store.page_mut(path.leaf)?, path.leaf)?;
        match slot {
            Err(index) => leaf.insert(index, item),
            Ok(index) => {
                leaf.replace(index, item.value, item.overflow);
                // A smaller value can leave the leaf underfull just as a removal can.
                if leaf.view().is_underfull() {
                    return self.rebalance(store, path);
                }
            }
        }
        Ok(())
    }

    /// Blocks a split of the leaf of `path` takes: one per splitting node, two for the root.
    /// Fails before anything changes if the tree would grow beyond [`HEIGHT_MAX`].
    fn split_blocks_needed(&self, path: &Path) -> Result<usize, FormatError> {
        // The leaf splits; each full ancestor splits in turn when it gains the new entry.
        let full_ancestors = path.steps.iter().rev().take_while(|step| step.count == INTERNAL_ENTRIES_MAX).count();
        if full_ancestors < path.steps.len() {
            return Ok(1 + full_ancestors);
        }
        if path.steps.len() + 1 >= HEIGHT_MAX {
            return Err(FormatError::malformed(self.root.0, "tree cannot grow beyond HEIGHT_MAX levels"));
        }
        Ok(2 + full_ancestors)
    }

    /// Splits the leaf of `path` around `item` and carries the new separators upwards, using the
    /// blocks reserved in `spare`.
    fn split_insert<S: PageStore>(
        &self,
        store: &mut S,
        path: &Path,
        slot: Result<usize, usize>,
        item: LeafItem<'_>,
        mut spare: Vec<BlockAddr>,
    ) -> Result<(), S::Error> {
        let mut buf = [0u8; BLOCK_SIZE];
        load(store, path.leaf, &mut buf)?;
        let leaf = LeafRef::parse(&buf, path.leaf)?;
        let mut items: Vec<LeafItem<'_>> = leaf.items().collect();
        match slot {
            Ok(index) => items[index] = item,
            Err(index) => items.insert(index, item),
        }
        let (left, right) = items.split_at(node::leaf_split_index(&items));
        let write = |block: &mut [u8], addr: BlockAddr, half: Half| {
            node::build_leaf_into(block, addr, if half == Half::Left { left } else { right })
        };
        let mut carry = self.write_split(store, path.leaf, 0, &mut spare, right[0].key, write)?;
        for step in path.steps.iter().rev() {
            let Some((separator, child)) = carry else { break };
            carry = self.insert_entry(store, step, separator, child, &mut spare)?;
        }
        assert!(carry.is_none(), "split did not terminate at the root");
        assert!(spare.is_empty(), "reserved blocks left over");
        Ok(())
    }

    /// Adds entry (`separator`, `child`) after the child `step` took, splitting the node if full.
    fn insert_entry<S: PageStore>(
        &self,
        store: &mut S,
        step: &Step,
        separator: Key,
        child: BlockAddr,
        spare: &mut Vec<BlockAddr>,
    ) -> Result<Option<(Key, BlockAddr)>, S::Error> {
        if step.count < INTERNAL_ENTRIES_MAX {
            let mut inner = InternalMut::parse(store.page_mut(step.addr)?, step.addr)?;
            inner.insert(step.index + 1, separator, child);
            return Ok(None);
        }
        let mut buf = [0u8; BLOCK_SIZE];
        load(store, step.addr, &mut buf)?;
        let mut entries: Vec<(Key, BlockAddr)> = InternalRef::parse(&buf, step.addr)?.entries().collect();
        entries.insert(step.index + 1, (separator, child));
        let (left, right) = entries.split_at(entries.len() / 2);
        let write = |block: &mut [u8], addr: BlockAddr, half: Half| {
            node::build_internal_into(block, addr, step.level, if half == Half::Left { left } else { right })
        };
        self.write_split(store, step.addr, step.level, spare, right[0].0, write)
    }

    /// Writes the halves of a split node of `level`: the left half stays at `addr` and the right
    /// half goes to a new block. A root's halves both go to new blocks and the root becomes their
    /// parent. Returns the entry the parent must gain (none when the root split).
    fn write_split<S: PageStore>(
        &self,
        store: &mut S,
        addr: BlockAddr,
        level: u16,
        spare: &mut Vec<BlockAddr>,
        separator: Key,
        write: impl Fn(&mut [u8], BlockAddr, Half) -> Result<(), FormatError>,
    ) -> Result<Option<(Key, BlockAddr)>, S::Error> {
        let right = spare.pop().expect("split blocks are reserved");
        write(store.page_mut(right)?, right, Half::Right)?;
        if addr != self.root {
            write(store.page_mut(addr)?, addr, Half::Left)?;
            return Ok(Some((separator, right)));
        }
        let left = spare.pop().expect("root split blocks are reserved");
        write(store.page_mut(left)?, left, Half::Left)?;
        let entries = [(Key::MIN, left), (separator, right)];
        node::build_internal_into(store.page_mut(self.root)?, self.root, level + 1, &entries)?;
        Ok(None)
    }

    // -----------------------------------------------------------------------------------------
    // Removal
    // -----------------------------------------------------------------------------------------

    /// Restores the fill rules after the leaf of `path` became underfull, walking up as long as
    /// merges leave parents underfull, then shrinks the root if it has a single child.
    fn rebalance<S: PageStore>(&self, store: &mut S, path: &Path) -> Result<(), S::Error> {
        let mut child = path.leaf;
        for step in path.steps.iter().rev() {
            if self.fix_underfull(store, step, child)? == Fix::Done {
                return Ok(());
            }
            child = step.addr;
            if child == self.root || !self.is_underfull(store, child)? {
                break;
            }
        }
        self.collapse_root(store)
    }

    fn is_underfull<S: PageStore>(&self, store: &mut S, addr: BlockAddr) -> Result<bool, S::Error> {
        Ok(match NodeRef::parse(store.page(addr)?, addr)? {
            NodeRef::Leaf(leaf) => leaf.is_underfull(),
            NodeRef::Internal(inner) => inner.is_underfull(),
        })
    }

    /// Merges the underfull `child` of `step`'s node with a sibling, or evens the two out.
    fn fix_underfull<S: PageStore>(&self, store: &mut S, step: &Step, child: BlockAddr) -> Result<Fix, S::Error> {
        let mut parent_buf = [0u8; BLOCK_SIZE];
        load(store, step.addr, &mut parent_buf)?;
        let parent = InternalRef::parse(&parent_buf, step.addr)?;
        assert_eq!(parent.child(step.index), child, "path no longer matches the tree");
        if parent.len() < 2 {
            return Ok(Fix::Escalate);
        }
        // Prefer the right sibling; the last child pairs with its left one.
        let separator = if step.index + 1 < parent.len() { step.index + 1 } else { step.index };
        let pair = Siblings {
            parent: step.addr,
            separator,
            left: parent.child(separator - 1),
            right: parent.child(separator),
        };
        // The underfull child was checked on the way down (it may now be an empty leaf, which
        // only a root may be); the sibling is checked against its range here.
        let sibling = if pair.left == child { separator } else { separator - 1 };
        let sibling_fence = parent.child_fence(sibling, &step.fence);
        let mut left_buf = [0u8; BLOCK_SIZE];
        let mut right_buf = [0u8; BLOCK_SIZE];
        load(store, pair.left, &mut left_buf)?;
        load(store, pair.right, &mut right_buf)?;
        let left = NodeRef::parse(&left_buf, pair.left)?;
        let right = NodeRef::parse(&right_buf, pair.right)?;
        let sibling_node = if sibling == separator { right } else { left };
        sibling_node.check_in_tree(&sibling_fence, Some(step.level - 1), false)?;
        match (left, right) {
            (NodeRef::Leaf(left), NodeRef::Leaf(right)) => self.rebalance_leaves(store, &pair, &left, &right),
            (NodeRef::Internal(left), NodeRef::Internal(right)) => self.rebalance_internal(store, &pair, &left, &right),
            _ => Err(malformed(child, "sibling is not at the same level")),
        }
    }

    fn rebalance_leaves<S: PageStore>(
        &self,
        store: &mut S,
        pair: &Siblings,
        left: &LeafRef<'_>,
        right: &LeafRef<'_>,
    ) -> Result<Fix, S::Error> {
        let items: Vec<LeafItem<'_>> = left.items().chain(right.items()).collect();
        if left.used_bytes() + right.used_bytes() <= LEAF_SPACE {
            node::build_leaf_into(store.page_mut(pair.left)?, pair.left, &items)?;
            return self.drop_right(store, pair);
        }
        let split = node::leaf_split_index(&items);
        node::build_leaf_into(store.page_mut(pair.left)?, pair.left, &items[..split])?;
        node::build_leaf_into(store.page_mut(pair.right)?, pair.right, &items[split..])?;
        InternalMut::parse(store.page_mut(pair.parent)?, pair.parent)?.set_key(pair.separator, items[split].key);
        Ok(Fix::Done)
    }

    fn rebalance_internal<S: PageStore>(
        &self,
        store: &mut S,
        pair: &Siblings,
        left: &InternalRef<'_>,
        right: &InternalRef<'_>,
    ) -> Result<Fix, S::Error> {
        // The right node's first key equals the separator (its lower fence), so concatenating
        // the entries keeps them ascending and keeps every child's range unchanged.
        let entries: Vec<(Key, BlockAddr)> = left.entries().chain(right.entries()).collect();
        let level = left.level();
        if entries.len() <= INTERNAL_ENTRIES_MAX {
            node::build_internal_into(store.page_mut(pair.left)?, pair.left, level, &entries)?;
            return self.drop_right(store, pair);
        }
        let split = entries.len() / 2;
        node::build_internal_into(store.page_mut(pair.left)?, pair.left, level, &entries[..split])?;
        node::build_internal_into(store.page_mut(pair.right)?, pair.right, level, &entries[split..])?;
        InternalMut::parse(store.page_mut(pair.parent)?, pair.parent)?.set_key(pair.separator, entries[split].0);
        Ok(Fix::Done)
    }

    /// Unlinks and frees the right sibling after its contents moved into the left one.
    fn drop_right<S: PageStore>(&self, store: &mut S, pair: &Siblings) -> Result<Fix, S::Error> {
        InternalMut::parse(store.page_mut(pair.parent)?, pair.parent)?.remove(pair.separator);
        store.free(pair.right);
        Ok(Fix::Escalate)
    }

    /// While the root is an internal node with one child, moves that child's contents into the
    /// root and frees it, so the root keeps its address.
    fn collapse_root<S: PageStore>(&self, store: &mut S) -> Result<(), S::Error> {
        let mut buf = [0u8; BLOCK_SIZE];
        for _ in 0..HEIGHT_MAX {
            let (child, level) = match NodeRef::parse(store.page(self.root)?, self.root)? {
                NodeRef::Internal(root) if root.len() == 1 => (root.child(0), root.level()),
                _ => return Ok(()),
            };
            load(store, child, &mut buf)?;
            let node = NodeRef::parse(&buf, child)?;
            // The only child spans every key and becomes the root, which may be an empty leaf.
            node.check_in_tree(&Fence::ROOT, Some(level - 1), true)?;
            let (kind, child_level) = (node.kind(), node.level());
            let root = store.page_mut(self.root)?;
            root.copy_from_slice(&buf);
            MetaHeader::init(root, kind, child_level, self.root);
            store.free(child);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the tree behaves like a `BTreeMap` and never leaks or double-frees a block, and
    //! damaged trees produce errors rather than panics or endless loops.
    //!
    //! Method: an in-memory `PageStore` that tracks live blocks; proptests run random operation
    //! sequences against a model and compare contents and the live set with what `walk` reaches;
    //! deterministic tests build deep trees and damage them.

    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use vexfs_format::key::ItemKind;

    #[derive(Debug)]
    enum TestError {
        Format(FormatError),
        NoSpace,
        Missing(BlockAddr),
    }

    impl From<FormatError> for TestError {
        fn from(error: FormatError) -> Self {
            TestError::Format(error)
        }
    }

    /// Pages in a map, a bump allocator, an optional block limit (ENOSPC), and blocks whose
    /// loads fail as a checksum mismatch would.
    #[derive(Clone)]
    struct MemStore {
        pages: HashMap<BlockAddr, Box<Page>>,
        next: u64,
        limit: Option<usize>,
        bad: HashSet<BlockAddr>,
    }

    impl MemStore {
        fn new() -> MemStore {
            MemStore { pages: HashMap::new(), next: 100, limit: None, bad: HashSet::new() }
        }

        fn live(&self) -> BTreeSet<BlockAddr> {
            self.pages.keys().copied().collect()
        }

        fn check(&self, addr: BlockAddr) -> Result<(), TestError> {
            if self.bad.contains(&addr) {
                return Err(FormatError::Checksum { addr: addr.0, stored: 1, computed: 2 }.into());
            }
            Ok(())
        }
    }

    impl PageStore for MemStore {
        type Error = TestError;

        fn page(&mut self, addr: BlockAddr) -> Result<&[u8], TestError> {
            self.check(addr)?;
            self.pages.get(&addr).map(|page| &page[..]).ok_or(TestError::Missing(addr))
        }

        fn page_mut(&mut self, addr: BlockAddr) -> Result<&mut [u8], TestError> {
            self.check(addr)?;
            self.pages.get_mut(&addr).map(|page| &mut page[..]).ok_or(TestError::Missing(addr))
        }

        fn allocate(&mut self) -> Result<BlockAddr, TestError> {
            if self.limit.is_some_and(|limit| self.pages.len() >= limit) {
                return Err(TestError::NoSpace);
            }
            let addr = BlockAddr(self.next);
            self.next += 1;
            self.pages.insert(addr, Box::new([0u8; BLOCK_SIZE]));
            Ok(addr)
        }

        fn free(&mut self, addr: BlockAddr) {
            assert!(self.pages.remove(&addr).is_some(), "block {addr} freed twice or never allocated");
        }
    }

    fn value_of(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
    }

    fn all_items(tree: &BTree, store: &mut MemStore) -> Vec<(Key, Vec<u8>)> {
        let mut items = Vec::new();
        tree.range(store, Key::MIN, Key::MAX, |key, value| {
            items.push((key, value.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
        items
    }

    /// The blocks `walk` reaches, which must be exactly the live ones.
    fn check_blocks(tree: &BTree, store: &mut MemStore) {
        let mut reached = BTreeSet::new();
        tree.walk(store, |visit| assert!(reached.insert(visit.addr))).unwrap();
        assert_eq!(reached, store.live(), "leaked blocks or dangling pointers");
    }

    fn check_model(tree: &BTree, store: &mut MemStore, model: &BTreeMap<Key, Vec<u8>>) {
        let expected: Vec<(Key, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(all_items(tree, store), expected);
        check_blocks(tree, store);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(Key, usize, u8),
        Remove(Key),
        Range(Key, Key),
        Before(Key),
        After(Key),
        RemoveRange(Key, Key),
        /// Inserts `count` consecutive keys with small values, to grow the tree quickly.
        Bulk(u64, usize),
    }

    fn small_key() -> impl Strategy<Value = Key> {
        (0u64..4, 1u8..3, 0u64..48).prop_map(|(object, kind, offset)| Key { object, kind, offset })
    }

    fn value_len() -> impl Strategy<Value = usize> {
        prop_oneof![3 => 0usize..64, 2 => 0usize..1100, 2 => 1000usize..3000]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (small_key(), value_len(), any::<u8>()).prop_map(|(k, len, seed)| Op::Insert(k, len, seed)),
            5 => small_key().prop_map(Op::Remove),
            1 => (small_key(), small_key()).prop_map(|(a, b)| Op::Range(a, b)),
            1 => small_key().prop_map(Op::Before),
            1 => small_key().prop_map(Op::After),
            1 => (small_key(), small_key()).prop_map(|(a, b)| Op::RemoveRange(a, b)),
            1 => (0u64..4, 1usize..400).prop_map(|(start, count)| Op::Bulk(start, count)),
        ]
    }

    fn run_op(tree: &BTree, store: &mut MemStore, model: &mut BTreeMap<Key, Vec<u8>>, op: &Op) {
        match *op {
            Op::Insert(key, len, seed) => {
                let value = value_of(len, seed);
                assert_eq!(tree.insert(store, key, &value).unwrap(), model.insert(key, value));
            }
            Op::Remove(key) => assert_eq!(tree.remove(store, key).unwrap(), model.remove(&key)),
            Op::Range(from, to) => {
                let mut got = Vec::new();
                tree.range(store, from, to, |key, value| {
                    got.push((key, value.to_vec()));
                    ControlFlow::Continue(())
                })
                .unwrap();
                let want: Vec<_> =
                    if from < to { model.range(from..to).map(|(k, v)| (*k, v.clone())).collect() } else { Vec::new() };
                assert_eq!(got, want);
            }
            Op::Before(key) => {
                let want = model.range(..=key).next_back().map(|(k, v)| (*k, v.clone()));
                assert_eq!(tree.last_at_or_before(store, key).unwrap(), want);
            }
            Op::After(key) => {
                let want = model.range(key..).next().map(|(k, v)| (*k, v.clone()));
                assert_eq!(tree.first_at_or_after(store, key).unwrap(), want);
            }
            Op::RemoveRange(from, to) => {
                let removed = tree.remove_range(store, from, to).unwrap();
                let keys: Vec<Key> =
                    if from < to { model.range(from..to).map(|(k, _)| *k).collect() } else { Vec::new() };
                for key in &keys {
                    model.remove(key);
                }
                assert_eq!(removed, keys.len());
            }
            Op::Bulk(start, count) => {
                for offset in 0..count as u64 {
                    let key = Key::new(10 + start, ItemKind::DirEntry, offset * 3);
                    let value = value_of(40, offset as u8);
                    assert_eq!(tree.insert(store, key, &value).unwrap(), model.insert(key, value));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Random operation sequences against a `BTreeMap`: every result matches, and after
        /// each batch the contents match and the live blocks are exactly those `walk` reaches.
        #[test]
        fn operations_match_model(ops in proptest::collection::vec(op(), 1..160)) {
            let mut store = MemStore::new();
            let tree = BTree::create(&mut store).unwrap();
            let mut model = BTreeMap::new();
            for batch in ops.chunks(8) {
                for op in batch {
                    run_op(&tree, &mut store, &mut model, op);
                }
                check_model(&tree, &mut store, &model);
            }
            let keys: Vec<Key> = model.keys().copied().collect();
            for key in keys {
                prop_assert_eq!(tree.remove(&mut store, key).unwrap(), model.remove(&key));
            }
            prop_assert_eq!(store.live(), BTreeSet::from([tree.root()]));
        }

        /// Overwriting random bytes of random blocks never makes an operation panic or loop:
        /// each either succeeds or returns an error.
        #[test]
        fn damaged_trees_return_errors(
            damage in proptest::collection::vec((any::<prop::sample::Index>(), 32usize..BLOCK_SIZE, any::<u8>()), 1..8),
            probes in proptest::collection::vec(small_key(), 1..20),
        ) {
            static TEMPLATE: std::sync::OnceLock<(BTree, MemStore)> = std::sync::OnceLock::new();
            let (tree, template) = TEMPLATE.get_or_init(|| {
                let (tree, store, _) = build_tree(3000, 60);
                (tree, store)
            });
            let (tree, mut store) = (*tree, template.clone());
            let live: Vec<BlockAddr> = store.live().into_iter().collect();
            for (block, at, byte) in damage {
                store.pages.get_mut(block.get(&live)).unwrap()[at] = byte;
            }
            for (index, key) in probes.into_iter().enumerate() {
                let key = Key::new(key.object + 10, ItemKind::DirEntry, key.offset * 97);
                let _ = tree.get(&mut store, key);
                let _ = tree.last_at_or_before(&mut store, key);
                let _ = tree.range(&mut store, key, Key::MAX, |_, _| ControlFlow::Continue(()));
                let _ = if index % 2 == 0 { tree.remove(&mut store, key) } else { tree.insert(&mut store, key, &[1; 1500]) };
                let _ = tree.walk(&mut store, |_| ());
            }
        }
    }

    /// A tree of `count` directory-entry-like items with `value_len`-byte values, and its model.
    fn build_tree(count: u64, value_len: usize) -> (BTree, MemStore, BTreeMap<Key, Vec<u8>>) {
        let mut store = MemStore::new();
        let tree = BTree::create(&mut store).unwrap();
        let mut model = BTreeMap::new();
        for i in 0..count {
            let key = dirent_key(i);
            let value = value_of(value_len, i as u8);
            tree.insert(&mut store, key, &value).unwrap();
            model.insert(key, value);
        }
        (tree, store, model)
    }

    fn splitmix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Entries spread over a few directories, hashed names as offsets.
    fn dirent_key(i: u64) -> Key {
        Key::new(10 + i % 4, ItemKind::DirEntry, splitmix(i))
    }

    fn root_level(tree: &BTree, store: &mut MemStore) -> u16 {
        NodeRef::parse(store.page(tree.root()).unwrap(), tree.root()).unwrap().level()
    }

    /// 100,000 directory entries in, then out in random order, down to one empty root leaf.
    #[test]
    fn hundred_thousand_entries_in_and_out() {
        let model: BTreeMap<Key, Vec<u8>> = (0..100_000).map(|i| (dirent_key(i), value_of(40, i as u8))).collect();
        let mut store = MemStore::new();
        let tree = BTree::create(&mut store).unwrap();
        let items: Vec<(Key, Vec<u8>)> = (0..100_000).map(|i| (dirent_key(i), value_of(40, i as u8))).collect();
        let started = std::time::Instant::now();
        for (key, value) in &items {
            assert!(tree.insert(&mut store, *key, value).unwrap().is_none());
        }
        eprintln!("100k inserts: {:?}", started.elapsed());
        assert_eq!(root_level(&tree, &mut store), 2);
        check_model(&tree, &mut store, &model);
        let mut keys: Vec<Key> = model.keys().copied().collect();
        // Fisher-Yates with a fixed seed.
        for i in (1..keys.len()).rev() {
            keys.swap(i, (splitmix(i as u64) % (i as u64 + 1)) as usize);
        }
        let started = std::time::Instant::now();
        for (done, key) in keys.iter().enumerate() {
            assert_eq!(tree.remove(&mut store, *key).unwrap().as_deref(), Some(&model[key][..]));
            if done % 25_000 == 0 {
                check_blocks(&tree, &mut store);
            }
        }
        eprintln!("100k removes: {:?}", started.elapsed());
        assert_eq!(store.live(), BTreeSet::from([tree.root()]));
        assert_eq!(root_level(&tree, &mut store), 0);
        assert!(all_items(&tree, &mut store).is_empty());
    }

    #[test]
    fn overflow_values_replace_and_free_their_chains() {
        let mut store = MemStore::new();
        let tree = BTree::create(&mut store).unwrap();
        let key = Key::new(1, ItemKind::Xattr, 7);
        let big = value_of(VALUE_MAX, 3);
        assert_eq!(tree.estimate_new_blocks_for_insert(&mut store, big.len()).unwrap(), 2 + 17);
        assert!(tree.insert(&mut store, key, &big).unwrap().is_none());
        assert_eq!(store.live().len(), 1 + 17);
        let small = value_of(5000, 4);
        assert_eq!(tree.insert(&mut store, key, &small).unwrap(), Some(big));
        assert_eq!(store.live().len(), 1 + 2);
        assert_eq!(tree.get(&mut store, key).unwrap(), Some(small.clone()));
        assert_eq!(tree.insert(&mut store, key, b"tiny").unwrap(), Some(small));
        assert_eq!(store.live().len(), 1);
        let too_big = vec![0u8; VALUE_MAX + 1];
        assert!(matches!(tree.insert(&mut store, key, &too_big), Err(TestError::Format(FormatError::TooLarge { .. }))));
    }

    /// Running out of blocks at any point of an insert leaves the tree and the live set as
    /// they were.
    #[test]
    fn enospc_leaves_the_tree_untouched() {
        let (tree, mut store, model) = build_tree(2000, 200);
        let before = store.live();
        for extra in 0..4 {
            store.limit = Some(before.len() + extra);
            let key = Key::new(11, ItemKind::DirEntry, 5);
            let result = tree.insert(&mut store, key, &value_of(20_000, 1));
            assert!(matches!(result, Err(TestError::NoSpace)));
            assert_eq!(store.live(), before);
            check_model(&tree, &mut store, &model);
        }
    }

    /// Redirects entry `index` of the root to `target`.
    fn set_root_child(tree: &BTree, store: &mut MemStore, index: usize, target: BlockAddr) {
        let at = node::INTERNAL_HEADER_SIZE + index * node::ENTRY_SIZE + 17;
        store.pages.get_mut(&tree.root()).unwrap()[at..at + 8].copy_from_slice(&target.0.to_le_bytes());
    }

    fn root_children(tree: &BTree, store: &mut MemStore) -> Vec<(Key, BlockAddr)> {
        InternalRef::parse(store.page(tree.root()).unwrap(), tree.root()).unwrap().entries().collect()
    }

    /// Every operation touching a damaged subtree returns an error; none panics or loops.
    fn assert_all_fail(tree: &BTree, store: &mut MemStore, key: Key) {
        assert!(tree.get(store, key).is_err());
        assert!(tree.insert(store, key, b"x").is_err());
        assert!(tree.remove(store, key).is_err());
        assert!(tree.last_at_or_before(store, key).is_err());
        assert!(tree.range(store, Key::MIN, Key::MAX, |_, _| ControlFlow::Continue(())).is_err());
        assert!(tree.walk(store, |_| ()).is_err());
    }

    #[test]
    fn corrupted_child_pointers_are_errors() {
        let (tree, mut store, _) = build_tree(20_000, 40);
        assert_eq!(root_level(&tree, &mut store), 2);
        let children = root_children(&tree, &mut store);
        let key = children[1].0;
        let grandchild = InternalRef::parse(store.page(children[0].1).unwrap(), children[0].1).unwrap().child(0);
        let targets = [
            BlockAddr(999_999), // no such block
            children[0].1,      // a sibling: wrong key range
            grandchild,         // a node one level too low
            tree.root(),        // the root itself: a cycle
            BlockAddr(0),       // the null block
        ];
        for target in targets {
            set_root_child(&tree, &mut store, 1, target);
            assert_all_fail(&tree, &mut store, key);
        }
        set_root_child(&tree, &mut store, 1, BlockAddr(999_999));
        assert!(matches!(tree.get(&mut store, key), Err(TestError::Missing(BlockAddr(999_999)))));
        set_root_child(&tree, &mut store, 1, children[1].1);
        check_blocks(&tree, &mut store);
    }

    #[test]
    fn a_lower_level_pointer_back_to_the_root_is_an_error() {
        let (tree, mut store, _) = build_tree(20_000, 40);
        let (key, child) = root_children(&tree, &mut store)[1];
        // Entry 1 of a level-1 node points back up at the root.
        let at = node::INTERNAL_HEADER_SIZE + node::ENTRY_SIZE + 17;
        store.pages.get_mut(&child).unwrap()[at..at + 8].copy_from_slice(&tree.root().0.to_le_bytes());
        let below = InternalRef::parse(store.page(child).unwrap(), child).unwrap().key(1);
        assert!(key <= below);
        assert_all_fail(&tree, &mut store, below);
    }

    #[test]
    fn checksum_failures_are_errors() {
        let (tree, mut store, _) = build_tree(5000, 40);
        let (key, child) = root_children(&tree, &mut store)[2];
        store.bad.insert(child);
        assert_all_fail(&tree, &mut store, key);
        assert!(matches!(tree.get(&mut store, key), Err(TestError::Format(FormatError::Checksum { .. }))));
        store.bad.clear();
        store.bad.insert(tree.root());
        assert_all_fail(&tree, &mut store, key);
    }

    #[test]
    fn corrupted_overflow_chains_are_errors() {
        let mut store = MemStore::new();
        let tree = BTree::create(&mut store).unwrap();
        let key = Key::new(1, ItemKind::Xattr, 1);
        tree.insert(&mut store, key, &value_of(9000, 1)).unwrap();
        let chain: Vec<BlockAddr> = store.live().into_iter().filter(|&a| a != tree.root()).collect();
        store.pages.get_mut(&chain[1]).unwrap()[1000] ^= 0x40;
        let result = tree.get(&mut store, key);
        assert!(matches!(result, Err(TestError::Format(FormatError::Checksum { addr, .. })) if addr == chain[0].0));
        assert!(tree.walk(&mut store, |_| ()).is_err());
        assert!(tree.remove(&mut store, key).is_err());
    }

    #[test]
    fn neighbours_cross_leaf_boundaries() {
        let (tree, mut store, model) = build_tree(3000, 40);
        for probe in (0..200u64).map(|i| Key::new(10 + i % 5, ItemKind::DirEntry, splitmix(i + 7))) {
            let before = model.range(..=probe).next_back().map(|(k, v)| (*k, v.clone()));
            let after = model.range(probe..).next().map(|(k, v)| (*k, v.clone()));
            assert_eq!(tree.last_at_or_before(&mut store, probe).unwrap(), before);
            assert_eq!(tree.first_at_or_after(&mut store, probe).unwrap(), after);
        }
        assert_eq!(tree.first_at_or_after(&mut store, Key::MAX).unwrap(), None);
        assert_eq!(tree.last_at_or_before(&mut store, Key::MIN).unwrap(), None);
    }
}
