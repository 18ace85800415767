//! Typed access to the metadata items of the B-tree: inodes, directory entries, extents, xattrs.
//! Every function runs inside one operation's [`Tx`].

use std::ops::ControlFlow;

use vexfs_format::inode::{InodeRecord, INODE_SIZE};
use vexfs_format::items::{self, DirEntry, Extent, Xattr, EXTENT_BLOCKS_MAX};
use vexfs_format::key::{ItemKind, Key, ORPHAN_OBJECT};
use vexfs_format::{BlockAddr, FormatError};

use super::error::{EngineError, Result};
use super::meta::Tx;
use crate::btree::BTree;
use crate::storage::Storage;

fn tree<S: Storage>(tx: &Tx<'_, S>) -> BTree {
    BTree::open(tx.meta.tree_root)
}

/// Reads one item.
pub fn get<S: Storage>(tx: &mut Tx<'_, S>, key: Key) -> Result<Option<Vec<u8>>> {
    tree(tx).get(tx, key)
}

/// Inserts or replaces one item.
pub fn put<S: Storage>(tx: &mut Tx<'_, S>, key: Key, value: &[u8]) -> Result<()> {
    let tree = tree(tx);
    tree.insert(tx, key, value)?;
    Ok(())
}

/// Removes one item, returning its value.
pub fn del<S: Storage>(tx: &mut Tx<'_, S>, key: Key) -> Result<Option<Vec<u8>>> {
    let tree = tree(tx);
    tree.remove(tx, key)
}

/// Visits items with keys in `from..to`.
pub fn scan<S: Storage>(
    tx: &mut Tx<'_, S>,
    from: Key,
    to: Key,
    f: impl FnMut(Key, &[u8]) -> ControlFlow<()>,
) -> Result<()> {
    tree(tx).range(tx, from, to, f)
}

/// The item with the greatest key at or before `key`.
pub fn last_at_or_before<S: Storage>(tx: &mut Tx<'_, S>, key: Key) -> Result<Option<(Key, Vec<u8>)>> {
    tree(tx).last_at_or_before(tx, key)
}

/// The exclusive end key of every item of `ino` of `kind`.
pub fn kind_end(ino: u64, kind: ItemKind) -> Key {
    Key { object: ino, kind: kind as u8 + 1, offset: 0 }
}

fn corrupt(ino: u64, what: String) -> EngineError {
    EngineError::Corrupt(vexfs_format::FormatError::malformed(0, format!("inode {ino}: {what}")))
}

/// The inode record of `ino`.
pub fn get_inode<S: Storage>(tx: &mut Tx<'_, S>, ino: u64) -> Result<InodeRecord> {
    let value = get(tx, Key::new(ino, ItemKind::Inode, 0))?.ok_or(EngineError::NotFound)?;
    Ok(InodeRecord::decode(&value, ino, 0)?)
}

/// Writes the inode record of `ino`.
pub fn put_inode<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, record: &InodeRecord) -> Result<()> {
    put(tx, Key::new(ino, ItemKind::Inode, 0), &record.encode()[..INODE_SIZE])
}

/// Hands out an inode number and generation.
pub fn new_ino<S: Storage>(tx: &mut Tx<'_, S>) -> Result<(u64, u64)> {
    let root = tx.root()?;
    if root.next_ino >= ORPHAN_OBJECT {
        return Err(EngineError::NoSpace);
    }
    // `next_ino` is below ORPHAN_OBJECT; the two counters come from the device unchecked and must
    // not overflow (fsck reports a wrong count).
    tx.update_root(|root| {
        root.next_ino += 1;
        root.inode_count = root.inode_count.saturating_add(1);
        root.next_generation = root.next_generation.saturating_add(1);
    })?;
    Ok((root.next_ino, root.next_generation))
}

/// Looks `name` up in directory `dir`.
pub fn dir_lookup<S: Storage>(tx: &mut Tx<'_, S>, dir: u64, name: &[u8]) -> Result<Option<DirEntry>> {
    let key = Key::new(dir, ItemKind::DirEntry, items::name_hash(name));
    let Some(value) = get(tx, key)? else { return Ok(None) };
    let entries = items::decode_dir_entries(&value, 0)?;
    Ok(entries.into_iter().find(|entry| entry.name == name))
}

/// Adds an entry to directory `dir`, whose record the caller holds (and writes back afterwards):
/// the entry takes the directory's next readdir position.
pub fn dir_add<S: Storage>(
    tx: &mut Tx<'_, S>,
    dir: u64,
    dir_record: &mut InodeRecord,
    name: &[u8],
    child: u64,
    dtype: u8,
) -> Result<()> {
    let index = dir_record.dir_next_index;
    dir_record.dir_next_index += 1;
    let key = Key::new(dir, ItemKind::DirEntry, items::name_hash(name));
    let mut entries = match get(tx, key)? {
        Some(value) => items::decode_dir_entries(&value, 0)?,
        None => Vec::new(),
    };
    entries.push(DirEntry { child, index, dtype, name: name.to_vec() });
    put(tx, key, &items::encode_dir_entries(&entries))?;
    put(tx, Key::new(dir, ItemKind::DirIndex, index), &items::encode_dir_index(child, dtype, name))?;
    dir_record.size += 1;
    Ok(())
}

/// Removes `name` from directory `dir`; the caller updates the directory's record.
pub fn dir_remove<S: Storage>(
    tx: &mut Tx<'_, S>,
    dir: u64,
    dir_record: &mut InodeRecord,
    name: &[u8],
) -> Result<DirEntry> {
    let key = Key::new(dir, ItemKind::DirEntry, items::name_hash(name));
    let value = get(tx, key)?.ok_or(EngineError::NotFound)?;
    let mut entries = items::decode_dir_entries(&value, 0)?;
    let position = entries.iter().position(|entry| entry.name == name).ok_or(EngineError::NotFound)?;
    let entry = entries.remove(position);
    if entries.is_empty() {
        del(tx, key)?;
    } else {
        put(tx, key, &items::encode_dir_entries(&entries))?;
    }
    if del(tx, Key::new(dir, ItemKind::DirIndex, entry.index))?.is_none() {
        return Err(corrupt(dir, format!("entry {:?} has no readdir index", String::from_utf8_lossy(name))));
    }
    dir_record.size = dir_record.size.saturating_sub(1);
    Ok(entry)
}

/// Points an existing entry at a different child (rename over an existing name).
pub fn dir_retarget<S: Storage>(tx: &mut Tx<'_, S>, dir: u64, name: &[u8], child: u64, dtype: u8) -> Result<()> {
    let key = Key::new(dir, ItemKind::DirEntry, items::name_hash(name));
    let value = get(tx, key)?.ok_or(EngineError::NotFound)?;
    let mut entries = items::decode_dir_entries(&value, 0)?;
    let entry = entries.iter_mut().find(|entry| entry.name == name).ok_or(EngineError::NotFound)?;
    entry.child = child;
    entry.dtype = dtype;
    let index = entry.index;
    put(tx, key, &items::encode_dir_entries(&entries))?;
    put(tx, Key::new(dir, ItemKind::DirIndex, index), &items::encode_dir_index(child, dtype, name))
}

/// True when directory `dir` has no entries.
pub fn dir_is_empty<S: Storage>(tx: &mut Tx<'_, S>, dir: u64) -> Result<bool> {
    let mut empty = true;
    scan(tx, Key::new(dir, ItemKind::DirIndex, 0), kind_end(dir, ItemKind::DirIndex), |_, _| {
        empty = false;
        ControlFlow::Break(())
    })?;
    Ok(empty)
}

/// Decodes the extent of file block `offset` on, stored in `leaf`, and checks it against the
/// volume layout: nothing the device says is used as an address or a length before this.
fn decode_extent<S: Storage>(
    tx: &Tx<'_, S>,
    leaf: BlockAddr,
    offset: u64,
    value: &[u8],
) -> Result<Extent, FormatError> {
    let extent = Extent::decode(value, leaf.0)?;
    extent.check(offset, &tx.meta.alloc.data_area(), leaf.0)?;
    Ok(extent)
}

/// The extent item of `ino` at or before file block `file_block`, checked, with its offset.
fn extent_at_or_before<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, file_block: u64) -> Result<Option<(u64, Extent)>> {
    let found = tree(tx).last_at_or_before_with_leaf(tx, Key::new(ino, ItemKind::Extent, file_block))?;
    let Some((leaf, key, value)) = found else { return Ok(None) };
    if key.object != ino || key.kind != ItemKind::Extent as u8 {
        return Ok(None);
    }
    Ok(Some((key.offset, decode_extent(tx, leaf, key.offset, &value)?)))
}

/// The extents of `ino` overlapping file blocks `first..first+count`, in order, as
/// (first file block, extent), each checked against the volume layout.
pub fn extents<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, first: u64, count: u64) -> Result<Vec<(u64, Extent)>> {
    let mut out = Vec::new();
    let end = first.saturating_add(count);
    let scan_end = if end == u64::MAX { kind_end(ino, ItemKind::Extent) } else { Key::new(ino, ItemKind::Extent, end) };
    if let Some((offset, extent)) = extent_at_or_before(tx, ino, first)? {
        // The check bounds the sum: offset + length <= FILE_BLOCKS_MAX.
        if offset < first && offset + u64::from(extent.length) > first {
            out.push((offset, extent));
        }
    }
    let mut found = Vec::new();
    tree(tx).range_with_leaf(tx, Key::new(ino, ItemKind::Extent, first), scan_end, |leaf, key, value| {
        found.push((leaf, key.offset, value.to_vec()));
        ControlFlow::Continue(())
    })?;
    for (leaf, offset, value) in found {
        out.push((offset, decode_extent(tx, leaf, offset, &value)?));
    }
    Ok(out)
}

/// Removes the mapping of file blocks `first..first+count` (at most `extents_max` extents),
/// splitting extents at the edges. Returns the removed pieces as (file block, extent) and whether
/// the whole range is now unmapped. The blocks are not freed: the caller frees or reuses them.
pub fn unmap<S: Storage>(
    tx: &mut Tx<'_, S>,
    ino: u64,
    first: u64,
    count: u64,
    extents_max: usize,
) -> Result<(Vec<(u64, Extent)>, bool)> {
    let end = first.saturating_add(count);
    let found = extents(tx, ino, first, count)?;
    let complete = found.len() <= extents_max;
    let mut removed = Vec::new();
    for (offset, extent) in found.into_iter().take(extents_max) {
        let extent_end = offset + u64::from(extent.length);
        del(tx, Key::new(ino, ItemKind::Extent, offset))?;
        if offset < first {
            let head = Extent { length: (first - offset) as u32, ..extent };
            put(tx, Key::new(ino, ItemKind::Extent, offset), &head.encode())?;
        }
        if extent_end > end {
            let skip = end - offset;
            let tail = Extent { start: extent.start + skip, length: (extent_end - end) as u32, flags: extent.flags };
            put(tx, Key::new(ino, ItemKind::Extent, end), &tail.encode())?;
        }
        let cut_start = offset.max(first);
        let cut_end = extent_end.min(end);
        let piece = Extent {
            start: extent.start + (cut_start - offset),
            length: (cut_end - cut_start) as u32,
            flags: extent.flags,
        };
        removed.push((cut_start, piece));
    }
    Ok((removed, complete))
}

/// Maps file block `file_block` onward to `extent` (the range must be unmapped), merging with
/// the preceding extent when the two are contiguous on both sides.
pub fn map<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, file_block: u64, extent: Extent) -> Result<()> {
    if file_block > 0 {
        if let Some((offset, previous)) = extent_at_or_before(tx, ino, file_block - 1)? {
            let contiguous = offset + u64::from(previous.length) == file_block
                && previous.start + u64::from(previous.length) == extent.start
                && previous.flags == extent.flags
                && previous.length + extent.length <= EXTENT_BLOCKS_MAX;
            if contiguous {
                let merged = Extent { length: previous.length + extent.length, ..previous };
                return put(tx, Key::new(ino, ItemKind::Extent, offset), &merged.encode());
            }
        }
    }
    put(tx, Key::new(ino, ItemKind::Extent, file_block), &extent.encode())
}

/// The xattrs of `ino` that share `name`'s hash.
fn xattr_bucket<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, name: &[u8]) -> Result<(Key, Vec<Xattr>)> {
    let key = Key::new(ino, ItemKind::Xattr, items::name_hash(name));
    let bucket = match get(tx, key)? {
        Some(value) => items::decode_xattrs(&value, 0)?,
        None => Vec::new(),
    };
    Ok((key, bucket))
}

/// The value of xattr `name`.
pub fn xattr_get<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
    let (_, bucket) = xattr_bucket(tx, ino, name)?;
    bucket.into_iter().find(|x| x.name == name).map(|x| x.value).ok_or(EngineError::NoData)
}

/// How [`xattr_set`] treats an existing attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrMode {
    Any,
    CreateOnly,
    ReplaceOnly,
}

/// Sets xattr `name`.
pub fn xattr_set<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, name: &[u8], value: &[u8], mode: XattrMode) -> Result<()> {
    let (key, mut bucket) = xattr_bucket(tx, ino, name)?;
    match (bucket.iter_mut().find(|x| x.name == name), mode) {
        (Some(_), XattrMode::CreateOnly) => return Err(EngineError::Exists),
        (None, XattrMode::ReplaceOnly) => return Err(EngineError::NoData),
        (Some(existing), _) => existing.value = value.to_vec(),
        (None, _) => {
            // The names, each with its NUL, must fit one listxattr buffer, as on Linux file
            // systems; this also bounds what listing an inode's xattrs holds.
            let listed: usize = xattr_names(tx, ino)?.iter().map(|n| n.len() + 1).sum();
            if listed + name.len() + 1 > items::XATTR_LIST_MAX {
                return Err(EngineError::NoSpace);
            }
            bucket.push(Xattr { name: name.to_vec(), value: value.to_vec() })
        }
    }
    let encoded = items::encode_xattrs(&bucket);
    if encoded.len() > vexfs_format::node::VALUE_MAX {
        return Err(EngineError::NoSpace);
    }
    put(tx, key, &encoded)
}

/// Removes xattr `name`.
pub fn xattr_remove<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, name: &[u8]) -> Result<()> {
    let (key, mut bucket) = xattr_bucket(tx, ino, name)?;
    let position = bucket.iter().position(|x| x.name == name).ok_or(EngineError::NoData)?;
    bucket.remove(position);
    if bucket.is_empty() {
        del(tx, key)?;
    } else {
        put(tx, key, &items::encode_xattrs(&bucket))?;
    }
    Ok(())
}

/// The names of every xattr of `ino`.
pub fn xattr_names<S: Storage>(tx: &mut Tx<'_, S>, ino: u64) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut corrupt = None;
    // Each bucket is decoded as it is visited, so only names are held, never the values.
    scan(
        tx,
        Key::new(ino, ItemKind::Xattr, 0),
        kind_end(ino, ItemKind::Xattr),
        |_, value| match items::decode_xattrs(value, 0) {
            Ok(xattrs) => {
                names.extend(xattrs.into_iter().map(|x| x.name));
                ControlFlow::Continue(())
            }
            Err(error) => {
                corrupt = Some(error);
                ControlFlow::Break(())
            }
        },
    )?;
    match corrupt {
        Some(error) => Err(error.into()),
        None => Ok(names),
    }
}

/// Keys of every item of `ino` of `kind`, up to `limit`.
pub fn keys_of<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, kind: ItemKind, limit: usize) -> Result<Vec<Key>> {
    let mut keys = Vec::new();
    scan(tx, Key::new(ino, kind, 0), kind_end(ino, kind), |key, _| {
        keys.push(key);
        if keys.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(keys)
}
