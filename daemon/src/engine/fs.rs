//! Namespace and attribute operations with the semantics Linux file systems give them.
//!
//! Access permission checks (may this caller read, write, search, chmod, chown, set times, delete
//! from a sticky directory) are done by the kernel before a request reaches the FUSE door: the
//! mount uses `default_permissions`, and only the kernel knows the caller's supplementary groups.
//! The engine enforces what the kernel leaves to file systems: name rules, types, emptiness, link
//! counts, directory loops, set-group-ID inheritance.

use std::collections::HashMap;
use std::ops::ControlFlow;

use vexfs_format::inode::{file_type, InodeRecord, Timestamp, DIR_FIRST_INDEX, INODE_FLAG_ORPHAN, ROOT_INO};
use vexfs_format::items::{self, NAME_MAX, SYMLINK_MAX};
use vexfs_format::key::{ItemKind, Key, ORPHAN_OBJECT};

use super::error::{EngineError, Result};
use super::items::{self as it, XattrMode};
use super::meta::Tx;
use super::EngineHandle;
use crate::storage::Storage;

/// Attributes of an inode as operations return them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub record: InodeRecord,
}

/// A time to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timestamp),
}

/// Attribute changes; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<Timestamp>,
}

/// One directory entry as readdir returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirItem {
    pub ino: u64,
    pub dtype: u8,
    pub name: Vec<u8>,
    /// The offset to resume after this entry.
    pub next_offset: u64,
    /// The entry's attributes (readdirplus only; not for "." and "..").
    pub attr: Option<Attr>,
}

/// File-system statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub blocks_free: u64,
    pub files: u64,
    pub files_free: u64,
    pub block_size: u32,
    pub name_max: u32,
}

/// Owner of a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
}

/// How rename treats an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

/// Readdir entries fetched per metadata operation.
const READDIR_BATCH: usize = 128;
/// How far a rename walks up the tree looking for a loop before calling the tree corrupt.
const DEPTH_MAX: usize = 4096;

fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(EngineError::NameTooLong);
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".." {
        return Err(EngineError::Invalid("file name"));
    }
    Ok(())
}

/// The records an operation reads and changes, written back together at the end; keeps
/// operations that touch one inode twice (rename within a directory) consistent.
struct Records {
    records: HashMap<u64, InodeRecord>,
}

impl Records {
    fn new() -> Records {
        Records { records: HashMap::new() }
    }

    fn get<S: Storage>(&mut self, tx: &mut Tx<'_, S>, ino: u64) -> Result<InodeRecord> {
        if let Some(record) = self.records.get(&ino) {
            return Ok(*record);
        }
        let record = it::get_inode(tx, ino)?;
        self.records.insert(ino, record);
        Ok(record)
    }

    fn dir<S: Storage>(&mut self, tx: &mut Tx<'_, S>, ino: u64) -> Result<InodeRecord> {
        let record = self.get(tx, ino)?;
        if !record.is_dir() {
            return Err(EngineError::NotDir);
        }
        if record.nlink == 0 {
            return Err(EngineError::NotFound);
        }
        Ok(record)
    }

    fn set(&mut self, ino: u64, record: InodeRecord) {
        self.records.insert(ino, record);
    }

    fn write<S: Storage>(self, tx: &mut Tx<'_, S>) -> Result<()> {
        let mut inos: Vec<_> = self.records.into_iter().collect();
        inos.sort_by_key(|(ino, _)| *ino);
        for (ino, record) in inos {
            it::put_inode(tx, ino, &record)?;
        }
        Ok(())
    }
}

/// Drops a link to `record`; when none is left the inode goes on the orphan list, to be freed
/// once no reference to it remains.
fn drop_link<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, record: &mut InodeRecord, now: Timestamp) -> Result<bool> {
    record.nlink = if record.is_dir() { 0 } else { record.nlink.saturating_sub(1) };
    record.ctime = now;
    if record.nlink > 0 {
        return Ok(false);
    }
    record.flags |= INODE_FLAG_ORPHAN;
    it::put(tx, Key::new(ORPHAN_OBJECT, ItemKind::Orphan, ino), &[])?;
    Ok(true)
}

impl<S: Storage> EngineHandle<S> {
    /// Takes `count` references to `ino` (see [`EngineHandle::forget`]).
    fn reference(&self, ino: u64, count: u64) {
        self.shared.inodes.lock().entry(ino).or_default().lookups += count;
    }

    /// Drops `count` references to `ino`. An inode with no links is freed with its last reference.
    pub fn forget(&self, ino: u64, count: u64) {
        let released = {
            let mut inodes = self.shared.inodes.lock();
            let Some(state) = inodes.get_mut(&ino) else { return };
            state.lookups = state.lookups.saturating_sub(count);
            let released = state.lookups == 0;
            if released {
                inodes.remove(&ino);
            }
            released
        };
        if released && ino != ROOT_INO {
            if let Err(error) = self.free_if_orphan(ino) {
                tracing::warn!(ino, %error, "freeing an unlinked inode");
            }
        }
    }

    fn referenced(&self, ino: u64) -> bool {
        self.shared.inodes.lock().get(&ino).is_some_and(|state| state.lookups > 0)
    }

    /// Looks `name` up in `parent` and takes a reference to the result.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        if name.len() > NAME_MAX {
            return Err(EngineError::NameTooLong);
        }
        self.shared.look(|tx| {
            let mut records = Records::new();
            records.dir(tx, parent)?;
            let entry = it::dir_lookup(tx, parent, name)?.ok_or(EngineError::NotFound)?;
            let record = it::get_inode(tx, entry.child)?;
            self.reference(entry.child, 1);
            Ok(Attr { ino: entry.child, record })
        })
    }

    /// The inode `name` names in `parent`, without taking a reference (for background work that
    /// only checks a name).
    pub fn child(&self, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        if name.len() > NAME_MAX {
            return Err(EngineError::NameTooLong);
        }
        self.shared.look(|tx| Ok(it::dir_lookup(tx, parent, name)?.map(|entry| entry.child)))
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        self.shared.look(|tx| Ok(Attr { ino, record: it::get_inode(tx, ino)? }))
    }

    /// Changes attributes. A size change truncates or extends the file (see `data`).
    pub fn setattr(&self, ino: u64, change: &SetAttr) -> Result<Attr> {
        if let Some(size) = change.size {
            self.truncate(ino, size)?;
        }
        let now = self.shared.now();
        self.shared.run(|tx| {
            let mut record = it::get_inode(tx, ino)?;
            apply_setattr(&mut record, change, now);
            it::put_inode(tx, ino, &record)?;
            Ok(Attr { ino, record })
        })
    }

    /// Creates a file, device node, FIFO or socket (`mode` carries the type) in `parent`.
    pub fn mknod(&self, parent: u64, name: &[u8], mode: u32, rdev: u32, creds: Creds) -> Result<Attr> {
        let kind = mode & file_type::MASK;
        let kind = if kind == 0 { file_type::REGULAR } else { kind };
        if kind == file_type::DIRECTORY || kind == file_type::SYMLINK || !file_type::is_valid(kind) {
            return Err(EngineError::Invalid("mknod file type"));
        }
        self.create_node(parent, name, kind | (mode & 0o7777), rdev, creds, None)
    }

    /// Creates a directory.
    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, creds: Creds) -> Result<Attr> {
        self.create_node(parent, name, file_type::DIRECTORY | (mode & 0o7777), 0, creds, None)
    }

    /// Creates a symbolic link to `target`.
    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8], creds: Creds) -> Result<Attr> {
        if target.is_empty() || target.len() > SYMLINK_MAX {
            return Err(if target.is_empty() { EngineError::NotFound } else { EngineError::NameTooLong });
        }
        self.create_node(parent, name, file_type::SYMLINK | 0o777, 0, creds, Some(target))
    }

    fn create_node(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u32,
        creds: Creds,
        target: Option<&[u8]>,
    ) -> Result<Attr> {
        check_name(name)?;
        let now = self.shared.now();
        let attr = self.shared.run_retrying(|tx| {
            let mut records = Records::new();
            let mut dir = records.dir(tx, parent)?;
            if it::dir_lookup(tx, parent, name)?.is_some() {
                return Err(EngineError::Exists);
            }
            let is_dir = mode & file_type::MASK == file_type::DIRECTORY;
            if is_dir && dir.nlink == u32::MAX {
                return Err(EngineError::TooManyLinks);
            }
            let (ino, generation) = it::new_ino(tx)?;
            let record =
                new_record(&dir, mode, rdev, creds, now, generation, parent, target.map_or(0, |t| t.len() as u64));
            if let Some(target) = target {
                it::put(tx, Key::new(ino, ItemKind::Symlink, 0), target)?;
            }
            it::dir_add(tx, parent, &mut dir, name, ino, file_type::dirent_type(mode))?;
            dir.nlink += u32::from(is_dir);
            dir.mtime = now;
            dir.ctime = now;
            records.set(parent, dir);
            records.set(ino, record);
            records.write(tx)?;
            Ok(Attr { ino, record })
        })?;
        self.reference(attr.ino, 1);
        Ok(attr)
    }

    /// Adds a hard link to `ino` as `name` in `parent`.
    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        let now = self.shared.now();
        let attr = self.shared.run_retrying(|tx| {
            let mut records = Records::new();
            let mut dir = records.dir(tx, parent)?;
            let mut record = records.get(tx, ino)?;
            if record.is_dir() {
                return Err(EngineError::Permission);
            }
            if record.nlink == 0 {
                return Err(EngineError::NotFound);
            }
            if record.nlink == u32::MAX {
                return Err(EngineError::TooManyLinks);
            }
            if it::dir_lookup(tx, parent, name)?.is_some() {
                return Err(EngineError::Exists);
            }
            it::dir_add(tx, parent, &mut dir, name, ino, file_type::dirent_type(record.mode))?;
            record.nlink += 1;
            record.ctime = now;
            dir.mtime = now;
            dir.ctime = now;
            records.set(parent, dir);
            records.set(ino, record);
            records.write(tx)?;
            Ok(Attr { ino, record })
        })?;
        self.reference(ino, 1);
        Ok(attr)
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.remove_entry(parent, name, false)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.remove_entry(parent, name, true)
    }

    fn remove_entry(&self, parent: u64, name: &[u8], want_dir: bool) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(EngineError::NameTooLong);
        }
        let now = self.shared.now();
        let (child, orphaned, shards) = self.shared.run(|tx| {
            let mut records = Records::new();
            let mut dir = records.dir(tx, parent)?;
            let entry = it::dir_lookup(tx, parent, name)?.ok_or(EngineError::NotFound)?;
            let mut record = records.get(tx, entry.child)?;
            match (want_dir, record.is_dir()) {
                (false, true) => return Err(EngineError::IsDir),
                (true, false) => return Err(EngineError::NotDir),
                (true, true) if !it::dir_is_empty(tx, entry.child)? => return Err(EngineError::NotEmpty),
                _ => {}
            }
            // A collection's shard logs go with its directory.
            let shards = if want_dir { super::collection::remove(tx, entry.child)? } else { Vec::new() };
            it::dir_remove(tx, parent, &mut dir, name)?;
            dir.nlink -= u32::from(want_dir);
            dir.mtime = now;
            dir.ctime = now;
            let orphaned = drop_link(tx, entry.child, &mut record, now)?;
            records.set(parent, dir);
            records.set(entry.child, record);
            records.write(tx)?;
            Ok((entry.child, orphaned, shards))
        })?;
        if orphaned && !self.referenced(child) {
            self.free_if_orphan(child)?;
        }
        for shard in shards {
            self.free_if_orphan(shard)?;
        }
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`.
    pub fn rename(&self, parent: u64, name: &[u8], new_parent: u64, new_name: &[u8], flags: RenameFlags) -> Result<()> {
        check_name(name)?;
        check_name(new_name)?;
        if flags.noreplace && flags.exchange {
            return Err(EngineError::Invalid("RENAME_NOREPLACE with RENAME_EXCHANGE"));
        }
        let now = self.shared.now();
        let replaced = self.shared.run_retrying(|tx| rename_op(tx, parent, name, new_parent, new_name, flags, now))?;
        if let Some(ino) = replaced {
            if !self.referenced(ino) {
                self.free_if_orphan(ino)?;
            }
        }
        Ok(())
    }

    /// The target of a symbolic link.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.shared.look(|tx| {
            let record = it::get_inode(tx, ino)?;
            if record.kind() != file_type::SYMLINK {
                return Err(EngineError::Invalid("not a symbolic link"));
            }
            it::get(tx, Key::new(ino, ItemKind::Symlink, 0))?.ok_or_else(|| {
                EngineError::Corrupt(vexfs_format::FormatError::malformed(0, format!("symlink {ino} has no target")))
            })
        })
    }

    /// Lists directory `ino` from `offset`. `emit` receives each entry and returns false when it
    /// has no room; listing stops there. With `plus`, entries carry attributes and each emitted
    /// entry other than "." and ".." takes a reference.
    pub fn readdir(&self, ino: u64, offset: u64, plus: bool, mut emit: impl FnMut(&DirItem) -> bool) -> Result<()> {
        let mut offset = offset;
        loop {
            let batch = self.shared.look(|tx| readdir_batch(tx, ino, offset, plus))?;
            if batch.is_empty() {
                return Ok(());
            }
            for item in &batch {
                let named = item.name != b"." && item.name != b"..";
                if plus && named {
                    self.reference(item.ino, 1);
                }
                if !emit(item) {
                    if plus && named {
                        self.forget(item.ino, 1);
                    }
                    return Ok(());
                }
                offset = item.next_offset;
            }
        }
    }

    /// Lists directory `ino` with each entry's attributes, for the daemon's own use: unlike
    /// `readdir` with `plus`, it takes no references for the kernel.
    pub fn readdir_attrs(&self, ino: u64, mut emit: impl FnMut(&DirItem) -> bool) -> Result<()> {
        let mut offset = 0;
        loop {
            let batch = self.shared.look(|tx| readdir_batch(tx, ino, offset, true))?;
            if batch.is_empty() {
                return Ok(());
            }
            for item in &batch {
                if !emit(item) {
                    return Ok(());
                }
                offset = item.next_offset;
            }
        }
    }

    /// File-system statistics.
    pub fn statfs(&self) -> Result<StatFs> {
        self.shared.look(|tx| {
            let root = tx.root()?;
            let free = tx.meta.alloc.available();
            Ok(StatFs {
                blocks: self.shared.block_count,
                blocks_free: free,
                files: root.inode_count + free,
                files_free: free,
                block_size: vexfs_format::BLOCK_SIZE as u32,
                name_max: NAME_MAX as u32,
            })
        })
    }

    /// The value of xattr `name` of `ino`.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        self.shared.look(|tx| {
            it::get_inode(tx, ino)?;
            it::xattr_get(tx, ino, name)
        })
    }

    /// Sets xattr `name` of `ino`.
    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], mode: XattrMode) -> Result<()> {
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(if name.is_empty() { EngineError::Invalid("xattr name") } else { EngineError::Range });
        }
        if value.len() > items::XATTR_VALUE_MAX {
            return Err(EngineError::TooBig);
        }
        let now = self.shared.now();
        self.shared.run_retrying(|tx| {
            let mut record = it::get_inode(tx, ino)?;
            it::xattr_set(tx, ino, name, value, mode)?;
            record.ctime = now;
            it::put_inode(tx, ino, &record)
        })
    }

    /// Removes xattr `name` of `ino`.
    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let now = self.shared.now();
        self.shared.run(|tx| {
            let mut record = it::get_inode(tx, ino)?;
            it::xattr_remove(tx, ino, name)?;
            record.ctime = now;
            it::put_inode(tx, ino, &record)
        })
    }

    /// The xattr names of `ino`.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.shared.look(|tx| {
            it::get_inode(tx, ino)?;
            it::xattr_names(tx, ino)
        })
    }

    /// Makes everything done so far durable.
    pub fn sync(&self) -> Result<()> {
        self.shared.commit()
    }
}

#[allow(clippy::too_many_arguments)]
fn new_record(
    dir: &InodeRecord,
    mode: u32,
    rdev: u32,
    creds: Creds,
    now: Timestamp,
    generation: u64,
    parent: u64,
    size: u64,
) -> InodeRecord {
    let is_dir = mode & file_type::MASK == file_type::DIRECTORY;
    let setgid_dir = dir.mode & libc::S_ISGID != 0;
    let gid = if setgid_dir { dir.gid } else { creds.gid };
    let mode = if is_dir && setgid_dir { mode | libc::S_ISGID } else { mode };
    InodeRecord {
        mode,
        uid: creds.uid,
        gid,
        nlink: if is_dir { 2 } else { 1 },
        rdev,
        size,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        generation,
        dir_next_index: if is_dir { DIR_FIRST_INDEX } else { 0 },
        parent: if is_dir { parent } else { 0 },
        ..InodeRecord::default()
    }
}

fn apply_setattr(record: &mut InodeRecord, change: &SetAttr, now: Timestamp) {
    let resolve = |t: TimeSet| match t {
        TimeSet::Now => now,
        TimeSet::At(t) => t,
    };
    if let Some(mode) = change.mode {
        record.mode = (record.mode & file_type::MASK) | (mode & 0o7777);
    }
    if let Some(uid) = change.uid {
        record.uid = uid;
    }
    if let Some(gid) = change.gid {
        record.gid = gid;
    }
    if let Some(atime) = change.atime {
        record.atime = resolve(atime);
    }
    if let Some(mtime) = change.mtime {
        record.mtime = resolve(mtime);
    }
    if change.size.is_some() && change.mtime.is_none() {
        record.mtime = now;
    }
    record.ctime = change.ctime.unwrap_or(now);
}

/// True when directory `ancestor` is `dir` or lies on the path from `dir` to the root.
fn is_ancestor<S: Storage>(tx: &mut Tx<'_, S>, ancestor: u64, dir: u64) -> Result<bool> {
    let mut current = dir;
    for _ in 0..DEPTH_MAX {
        if current == ancestor {
            return Ok(true);
        }
        if current == ROOT_INO {
            return Ok(false);
        }
        current = it::get_inode(tx, current)?.parent;
    }
    Err(EngineError::Corrupt(vexfs_format::FormatError::malformed(
        0,
        format!("directory {dir}: parent chain longer than {DEPTH_MAX}"),
    )))
}

/// The rename operation; returns an inode left without links (to free when unreferenced).
fn rename_op<S: Storage>(
    tx: &mut Tx<'_, S>,
    parent: u64,
    name: &[u8],
    new_parent: u64,
    new_name: &[u8],
    flags: RenameFlags,
    now: Timestamp,
) -> Result<Option<u64>> {
    let mut records = Records::new();
    records.dir(tx, parent)?;
    records.dir(tx, new_parent)?;
    let source = it::dir_lookup(tx, parent, name)?.ok_or(EngineError::NotFound)?;
    let target = it::dir_lookup(tx, new_parent, new_name)?;
    if flags.exchange {
        let target = target.ok_or(EngineError::NotFound)?;
        exchange(tx, &mut records, (parent, name, source.child), (new_parent, new_name, target.child), now)?;
        records.write(tx)?;
        return Ok(None);
    }
    if target.is_some() && flags.noreplace {
        return Err(EngineError::Exists);
    }
    if target.as_ref().is_some_and(|t| t.child == source.child) {
        return Ok(None);
    }
    let mut moved = records.get(tx, source.child)?;
    if moved.is_dir() && parent != new_parent && is_ancestor(tx, source.child, new_parent)? {
        return Err(EngineError::Invalid("cannot move a directory into itself"));
    }
    let mut orphan = None;
    if let Some(target) = &target {
        let mut replaced = records.get(tx, target.child)?;
        match (moved.is_dir(), replaced.is_dir()) {
            (true, false) => return Err(EngineError::NotDir),
            (false, true) => return Err(EngineError::IsDir),
            (true, true) if !it::dir_is_empty(tx, target.child)? => return Err(EngineError::NotEmpty),
            // A collection's vectors are its content: rename does not drop them (rmdir does).
            (true, true) if super::collection::get(tx, target.child)?.is_some() => return Err(EngineError::NotEmpty),
            _ => {}
        }
        it::dir_retarget(tx, new_parent, new_name, source.child, file_type::dirent_type(moved.mode))?;
        if replaced.is_dir() {
            let mut dir = records.get(tx, new_parent)?;
            dir.nlink -= 1;
            records.set(new_parent, dir);
        }
        if drop_link(tx, target.child, &mut replaced, now)? {
            orphan = Some(target.child);
        }
        records.set(target.child, replaced);
    } else {
        let mut dir = records.get(tx, new_parent)?;
        it::dir_add(tx, new_parent, &mut dir, new_name, source.child, file_type::dirent_type(moved.mode))?;
        records.set(new_parent, dir);
    }
    let mut dir = records.get(tx, parent)?;
    it::dir_remove(tx, parent, &mut dir, name)?;
    records.set(parent, dir);
    if moved.is_dir() && parent != new_parent {
        moved.parent = new_parent;
        adjust_nlink(&mut records, tx, parent, -1)?;
        adjust_nlink(&mut records, tx, new_parent, 1)?;
    }
    moved.ctime = now;
    records.set(source.child, moved);
    touch_dirs(&mut records, tx, &[parent, new_parent], now)?;
    records.write(tx)?;
    Ok(orphan)
}

fn adjust_nlink<S: Storage>(records: &mut Records, tx: &mut Tx<'_, S>, ino: u64, delta: i64) -> Result<()> {
    let mut record = records.get(tx, ino)?;
    record.nlink = (i64::from(record.nlink) + delta) as u32;
    records.set(ino, record);
    Ok(())
}

fn touch_dirs<S: Storage>(records: &mut Records, tx: &mut Tx<'_, S>, dirs: &[u64], now: Timestamp) -> Result<()> {
    for &dir in dirs {
        let mut record = records.get(tx, dir)?;
        record.mtime = now;
        record.ctime = now;
        records.set(dir, record);
    }
    Ok(())
}

/// RENAME_EXCHANGE: swaps two entries atomically.
fn exchange<S: Storage>(
    tx: &mut Tx<'_, S>,
    records: &mut Records,
    a: (u64, &[u8], u64),
    b: (u64, &[u8], u64),
    now: Timestamp,
) -> Result<()> {
    let (a_dir, a_name, a_ino) = a;
    let (b_dir, b_name, b_ino) = b;
    if a_ino == b_ino {
        return Ok(());
    }
    let mut a_record = records.get(tx, a_ino)?;
    let mut b_record = records.get(tx, b_ino)?;
    if a_dir != b_dir {
        if a_record.is_dir() && is_ancestor(tx, a_ino, b_dir)? || b_record.is_dir() && is_ancestor(tx, b_ino, a_dir)? {
            return Err(EngineError::Invalid("cannot move a directory into itself"));
        }
        let delta = i64::from(b_record.is_dir()) - i64::from(a_record.is_dir());
        adjust_nlink(records, tx, a_dir, delta)?;
        adjust_nlink(records, tx, b_dir, -delta)?;
        if a_record.is_dir() {
            a_record.parent = b_dir;
        }
        if b_record.is_dir() {
            b_record.parent = a_dir;
        }
    }
    it::dir_retarget(tx, a_dir, a_name, b_ino, file_type::dirent_type(b_record.mode))?;
    it::dir_retarget(tx, b_dir, b_name, a_ino, file_type::dirent_type(a_record.mode))?;
    a_record.ctime = now;
    b_record.ctime = now;
    records.set(a_ino, a_record);
    records.set(b_ino, b_record);
    touch_dirs(records, tx, &[a_dir, b_dir], now)
}

/// One batch of readdir entries starting at `offset`.
fn readdir_batch<S: Storage>(tx: &mut Tx<'_, S>, ino: u64, offset: u64, plus: bool) -> Result<Vec<DirItem>> {
    let record = it::get_inode(tx, ino)?;
    if !record.is_dir() {
        return Err(EngineError::NotDir);
    }
    let mut batch = Vec::new();
    let dot = |name: &[u8], ino: u64, next_offset: u64| DirItem {
        ino,
        dtype: file_type::dirent_type(file_type::DIRECTORY),
        name: name.to_vec(),
        next_offset,
        attr: None,
    };
    if offset == 0 {
        batch.push(dot(b".", ino, 1));
    }
    if offset <= 1 {
        batch.push(dot(b"..", record.parent, 2));
    }
    let mut raw = Vec::new();
    it::scan(
        tx,
        Key::new(ino, ItemKind::DirIndex, offset.max(DIR_FIRST_INDEX)),
        it::kind_end(ino, ItemKind::DirIndex),
        |key, value| {
            raw.push((key.offset, value.to_vec()));
            if raw.len() >= READDIR_BATCH {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    for (index, value) in raw {
        let (child, dtype, name) = items::decode_dir_index(&value, 0)?;
        let attr = if plus { Some(Attr { ino: child, record: it::get_inode(tx, child)? }) } else { None };
        batch.push(DirItem { ino: child, dtype, name: name.to_vec(), next_offset: index + 1, attr });
    }
    Ok(batch)
}
