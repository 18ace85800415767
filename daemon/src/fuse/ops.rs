//! The FUSE door: each request becomes one engine call (files) or one collection-service call
//! (collections, with the caller's credentials), and the result one reply.
//!
//! Architecture Invariant: nothing here touches on-disk bytes or policy; the engine and the
//! collection service decide, this adapter only translates (names, attributes, errno) and reports
//! namespace changes to the service.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vexfs_format::inode::{InodeRecord, Timestamp as DiskTime};

use super::abi;
use super::collections;
use super::notify::Notifier;
use super::reply::{DirBuf, FileAttr, FileType, Reply, StatFs};
use super::request::{Operation, Request, SetAttr as FuseSetAttr, TimeOrNow, Timestamp};
use super::session::{Handler, InitInfo};
use super::special::{self, Special};
use crate::engine::fs::{Creds, RenameFlags};
use crate::engine::items::XattrMode;
use crate::engine::{Attr, EngineError, EngineHandle, SetAttr, TimeSet};
use crate::errno::Errno;
use crate::service::{Caller, Collections, ServiceError, XattrList, XATTR_PREFIX};
use crate::storage::Storage;

/// How long the kernel may cache entries and attributes without asking again. The daemon owns the
/// volume exclusively (it holds the device lock) and every change to the namespace and to POSIX
/// attributes arrives through this mount, where the kernel sees it: so the caches are kept as a
/// local file system keeps its own. The one attribute the kernel cannot track, the block count
/// after writes its writeback sends, is invalidated through [`Notifier`] (see `write`, `fsync`,
/// `fallocate`). A door that changes the namespace in future must notify likewise.
const TTL: Duration = Duration::from_secs(3600);

/// FOPEN_KEEP_CACHE: the page cache stays valid across opens (only this mount writes files).
const FOPEN_KEEP_CACHE: u32 = 1 << 1;
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const XATTR_CREATE: u32 = 1;
const XATTR_REPLACE: u32 = 2;

/// The FUSE adapter over one engine and its collection service.
pub struct FuseDoor<S: Storage> {
    engine: EngineHandle<S>,
    service: Arc<Collections<S>>,
    /// Set at INIT, before any request.
    notifier: OnceLock<Notifier>,
}

/// The credentials of a FUSE request: fsuid and fsgid from the kernel, supplementary groups
/// from the calling thread when a decision needs them.
fn caller(req: &Request<'_>) -> Caller {
    Caller::from_pid(req.uid, req.gid, req.pid)
}

impl<S: Storage> FuseDoor<S> {
    /// An adapter serving `engine`, and its collections through `service`.
    pub fn new(engine: EngineHandle<S>, service: Arc<Collections<S>>) -> FuseDoor<S> {
        FuseDoor { engine, service, notifier: OnceLock::new() }
    }

    fn special(&self) -> Special<'_, S> {
        Special { service: &self.service, engine: &self.engine }
    }

    /// The collection parameters of `ino` as xattrs; empty when it is not a collection.
    fn collection_xattrs(&self, caller: &Caller, ino: u64) -> Result<XattrList, ServiceError> {
        Ok(self.service.params(caller, ino)?.unwrap_or_default())
    }

    fn getxattr(&self, caller: &Caller, ino: u64, name: &[u8]) -> Result<Vec<u8>, ServiceError> {
        if name.starts_with(XATTR_PREFIX) {
            let found = self.collection_xattrs(caller, ino)?.into_iter().find(|(n, _)| n == name);
            return found.map(|(_, value)| value).ok_or(ServiceError::Engine(EngineError::NoData));
        }
        Ok(self.engine.getxattr(ino, name)?)
    }

    fn listxattr(&self, caller: &Caller, ino: u64) -> Result<Vec<u8>, ServiceError> {
        let mut out = Vec::new();
        let names = self.engine.listxattr(ino)?;
        // Listing needs no permission; a caller who may not read the parameters is not shown
        // their names either.
        let params = match self.collection_xattrs(caller, ino) {
            Err(ServiceError::Access(_)) => Vec::new(),
            other => other?,
        };
        for name in names.iter().chain(params.iter().map(|(n, _)| n)) {
            out.extend_from_slice(name);
            out.push(0);
        }
        Ok(out)
    }

    /// Whether `name` in `dir` is one of a collection's special files.
    fn special_name(&self, dir: u64, name: &[u8]) -> bool {
        special::is_reserved(name) && self.service.is_collection(dir)
    }

    /// Removes a directory; a collection's in-memory state goes first.
    fn rmdir(&self, parent: u64, name: &[u8]) -> Result<(), ServiceError> {
        if let Ok(child) = self.engine.lookup(parent, name) {
            self.engine.forget(child.ino, 1);
            self.service.removing(child.ino)?;
        }
        Ok(self.engine.rmdir(parent, name)?)
    }
}

fn time(t: DiskTime) -> Timestamp {
    Timestamp { secs: t.sec, nsecs: t.nsec }
}

fn file_attr(ino: u64, record: &InodeRecord) -> FileAttr {
    FileAttr {
        ino,
        size: record.size,
        // In 512-byte units; `blocks` comes from the device, so it must not overflow.
        blocks: record.blocks.saturating_mul(8),
        atime: time(record.atime),
        mtime: time(record.mtime),
        ctime: time(record.ctime),
        mode: record.mode,
        nlink: record.nlink,
        uid: record.uid,
        gid: record.gid,
        rdev: record.rdev,
        blksize: 4096,
    }
}

fn set_time(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::At(t) => TimeSet::At(DiskTime { sec: t.secs, nsec: t.nsecs }),
    }
}

fn setattr(change: &FuseSetAttr) -> SetAttr {
    SetAttr {
        mode: change.mode,
        uid: change.uid,
        gid: change.gid,
        size: change.size,
        atime: change.atime.map(set_time),
        mtime: change.mtime.map(set_time),
        ctime: change.ctime.map(|t| DiskTime { sec: t.secs, nsec: t.nsecs }),
    }
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

/// Answers with a result: `ok` on success, the errno on failure (logged when it is the daemon's
/// or the device's, not the caller's).
fn answer<T, E: Into<ServiceError>>(reply: Reply<'_>, result: Result<T, E>, ok: impl FnOnce(Reply<'_>, T)) {
    match result {
        Ok(value) => ok(reply, value),
        Err(error) => {
            let error = error.into();
            if !error.is_callers() {
                tracing::error!(%error, "request failed");
            }
            reply.error(error.errno());
        }
    }
}

fn entry(reply: Reply<'_>, attr: Attr) {
    reply.entry(&file_attr(attr.ino, &attr.record), attr.record.generation, TTL, TTL);
}

impl<S: Storage> FuseDoor<S> {
    /// Clears set-user-ID (and set-group-ID when group-executable) as HANDLE_KILLPRIV_V2 asks.
    fn kill_suidgid(&self, ino: u64) -> Result<(), EngineError> {
        let record = self.engine.getattr(ino)?.record;
        let mut mode = record.mode & !libc::S_ISUID;
        if record.mode & libc::S_IXGRP != 0 {
            mode &= !libc::S_ISGID;
        }
        if mode != record.mode {
            self.engine.setattr(ino, &SetAttr { mode: Some(mode & 0o7777), ..Default::default() })?;
        }
        Ok(())
    }

    fn readdir(&self, ino: u64, offset: u64, size: u32, plus: bool, reply: Reply<'_>) {
        let mut buf = DirBuf::new(size);
        let result = self.engine.readdir(ino, offset, plus, |item| {
            let name = OsStr::from_bytes(&item.name);
            if !plus {
                let kind = FileType::from_mode(u32::from(item.dtype) << 12).unwrap_or(FileType::RegularFile);
                return buf.push(item.ino, item.next_offset, kind, name);
            }
            let attr = match &item.attr {
                Some(attr) => file_attr(attr.ino, &attr.record),
                None => FileAttr { ino: item.ino, mode: libc::S_IFDIR, ..dot_attr() },
            };
            let generation = item.attr.map_or(0, |a| a.record.generation);
            buf.push_plus(&attr, generation, TTL, TTL, item.next_offset, name)
        });
        answer(reply, result, |reply, ()| reply.dir(&buf));
    }

    fn write(&self, req: &Request<'_>, offset: u64, data: &[u8], kill: bool, reply: Reply<'_>) {
        let result = (|| {
            if kill {
                self.kill_suidgid(req.nodeid)?;
            }
            self.engine.write(req.nodeid, offset, data)
        })();
        answer(reply, result, |reply, written| {
            if written.blocks_changed {
                // Writeback sends WRITEs: never invalidate from here (see `notify`).
                self.notify(|n| n.inval_attrs_later(req.nodeid));
            }
            reply.write(written.len as u32)
        });
    }

    /// After a rename: the text collections on either side compare their documents again.
    fn renamed(&self, result: &Result<(), EngineError>, dir: u64, newdir: u64) {
        if result.is_ok() {
            self.service.names_changed(dir);
            if newdir != dir {
                self.service.names_changed(newdir);
            }
        }
    }

    fn notify(&self, send: impl FnOnce(&Notifier)) {
        if let Some(notifier) = self.notifier.get() {
            send(notifier);
        }
    }

    fn xattr(&self, reply: Reply<'_>, size: u32, value: Result<Vec<u8>, ServiceError>) {
        answer(reply, value, |reply, value| {
            if size == 0 {
                reply.xattr_size(value.len() as u32);
            } else if value.len() > size as usize {
                reply.error(libc::ERANGE);
            } else {
                reply.xattr_data(&value);
            }
        });
    }
}

fn dot_attr() -> FileAttr {
    let zero = Timestamp { secs: 0, nsecs: 0 };
    FileAttr {
        ino: 0,
        size: 0,
        blocks: 0,
        atime: zero,
        mtime: zero,
        ctime: zero,
        mode: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
    }
}

impl<S: Storage> Handler for FuseDoor<S> {
    fn init(&self, _info: &InitInfo, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Collection ioctls (searches, embedding, syncs), fsync (a document's waits until it is
    /// searchable) and everything on special files (query runs, insert batches).
    fn is_slow(&self, opcode: u32, nodeid: u64) -> bool {
        special::is_special(nodeid) || matches!(opcode, abi::FUSE_IOCTL | abi::FUSE_FSYNC)
    }

    fn handle(&self, req: Request<'_>, reply: Reply<'_>) {
        let e = &self.engine;
        let ino = req.nodeid;
        let creds = Creds { uid: req.uid, gid: req.gid };
        let interrupt = reply.interrupt();
        if special::is_special(ino) {
            return self.special().handle(&req, &caller(&req), &interrupt, reply);
        }
        // A collection's special names cannot be made into real files.
        let taken = match req.op {
            Operation::Create { name, .. }
            | Operation::Mknod { name, .. }
            | Operation::Mkdir { name, .. }
            | Operation::Symlink { name, .. }
            | Operation::Link { name, .. }
            | Operation::Unlink { name }
            | Operation::Rmdir { name } => self.special_name(ino, bytes(name)),
            Operation::Rename { name, newdir, newname } | Operation::Rename2 { name, newdir, newname, .. } => {
                self.special_name(ino, bytes(name)) || self.special_name(newdir, bytes(newname))
            }
            _ => false,
        };
        if taken {
            return reply.error(libc::EPERM);
        }
        match req.op {
            Operation::Lookup { name } if self.special_name(ino, bytes(name)) => {
                self.special().lookup_in_collection(ino, bytes(name), reply)
            }
            Operation::Lookup { name } => {
                // Opens a text collection (in the background) before its documents are opened.
                self.service.dir_visited(ino);
                answer(reply, e.lookup(ino, bytes(name)), entry)
            }
            Operation::Forget { nlookup } => e.forget(ino, nlookup),
            Operation::BatchForget { forgets } => {
                forgets.iter().filter(|f| !special::is_special(f.nodeid)).for_each(|f| e.forget(f.nodeid, f.nlookup))
            }
            Operation::Getattr { .. } => {
                answer(reply, e.getattr(ino), |r, a| r.attr(&file_attr(a.ino, &a.record), TTL))
            }
            Operation::Setattr(ref change) => {
                let result = (|| {
                    if change.kill_suidgid {
                        self.kill_suidgid(ino)?;
                    }
                    e.setattr(ino, &setattr(change))
                })();
                if let Ok(attr) = &result {
                    self.service.attrs_changed(attr);
                }
                if change.size.is_some() {
                    self.service.content_changed(ino);
                }
                answer(reply, result, |r, a| r.attr(&file_attr(a.ino, &a.record), TTL));
            }
            Operation::Readlink => answer(reply, e.readlink(ino), |r, target| r.data(&target)),
            Operation::Symlink { name, target } => {
                answer(reply, e.symlink(ino, bytes(name), bytes(target), creds), entry)
            }
            Operation::Mknod { name, mode, rdev, .. } => {
                let result = e.mknod(ino, bytes(name), mode, rdev, creds);
                if let Ok(a) = &result {
                    self.service.entry_added(ino, a, bytes(name));
                }
                answer(reply, result, entry)
            }
            Operation::Mkdir { name, mode, .. } => answer(reply, e.mkdir(ino, bytes(name), mode, creds), entry),
            Operation::Unlink { name } => {
                let result = e.unlink(ino, bytes(name));
                if result.is_ok() {
                    self.service.names_changed(ino);
                }
                answer(reply, result, |r, ()| r.ok())
            }
            Operation::Rmdir { name } => answer(reply, self.rmdir(ino, bytes(name)), |r, ()| r.ok()),
            Operation::Rename { name, newdir, newname } => {
                let result = e.rename(ino, bytes(name), newdir, bytes(newname), RenameFlags::default());
                self.renamed(&result, ino, newdir);
                answer(reply, result, |r, ()| r.ok())
            }
            Operation::Rename2 { name, newdir, newname, flags } => {
                if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0 {
                    return reply.error(libc::EINVAL);
                }
                let flags =
                    RenameFlags { noreplace: flags & RENAME_NOREPLACE != 0, exchange: flags & RENAME_EXCHANGE != 0 };
                let result = e.rename(ino, bytes(name), newdir, bytes(newname), flags);
                self.renamed(&result, ino, newdir);
                answer(reply, result, |r, ()| r.ok());
            }
            Operation::Link { ino: target, name } => {
                let result = e.link(target, ino, bytes(name));
                if let Ok(a) = &result {
                    self.service.entry_added(ino, a, bytes(name));
                }
                answer(reply, result, entry)
            }
            Operation::Open { flags, kill_suidgid } => {
                let result = (|| {
                    if kill_suidgid {
                        self.kill_suidgid(ino)?;
                    }
                    e.open(ino, flags & libc::O_TRUNC as u32 != 0)
                })();
                answer(reply, result, |r, ()| r.open(0, FOPEN_KEEP_CACHE));
            }
            Operation::Create { name, flags, mode, .. } => {
                let result = e.mknod(ino, bytes(name), libc::S_IFREG | (mode & 0o7777), 0, creds);
                let _ = flags;
                if let Ok(a) = &result {
                    self.service.entry_added(ino, a, bytes(name));
                }
                answer(reply, result, |r, a| {
                    r.create(&file_attr(a.ino, &a.record), a.record.generation, TTL, TTL, 0, FOPEN_KEEP_CACHE)
                });
            }
            Operation::Read { offset, size, .. } => {
                answer(reply, e.read(ino, offset, size), |r, (buf, range)| r.data(&buf[range]))
            }
            Operation::Write { offset, data, kill_suidgid, .. } => self.write(&req, offset, data, kill_suidgid, reply),
            Operation::Statfs => answer(reply, e.statfs(), |r, s| {
                r.statfs(&StatFs {
                    blocks: s.blocks,
                    bfree: s.blocks_free,
                    bavail: s.blocks_free,
                    files: s.files,
                    ffree: s.files_free,
                    bsize: s.block_size,
                    namelen: s.name_max,
                    frsize: s.block_size,
                })
            }),
            // A document's fsync also waits until it is searchable, and makes its vectors durable.
            Operation::Fsync { .. } => {
                let result = e.sync().map_err(ServiceError::from).and_then(|()| self.service.fsync(ino, &interrupt));
                answer(reply, result, |r, ()| {
                    // The file is open, so its inode is not being evicted: safe to send now, and
                    // `stat` after `fsync` then sees the block count of everything written back.
                    self.notify(|n| n.inval_attrs(ino));
                    r.ok()
                })
            }
            Operation::Fsyncdir { .. } => answer(reply, e.sync(), |r, ()| r.ok()),
            Operation::Setxattr { name, value, flags, .. } => {
                let mode = match flags & (XATTR_CREATE | XATTR_REPLACE) {
                    0 => XattrMode::Any,
                    XATTR_CREATE => XattrMode::CreateOnly,
                    XATTR_REPLACE => XattrMode::ReplaceOnly,
                    _ => return reply.error(libc::EINVAL),
                };
                if bytes(name).starts_with(XATTR_PREFIX) {
                    // Collection parameters are read-only; the prefix is reserved everywhere.
                    return reply.error(libc::EPERM);
                }
                let result = e.setxattr(ino, bytes(name), value, mode);
                if result.is_ok() {
                    self.service.content_changed(ino);
                }
                answer(reply, result, |r, ()| r.ok());
            }
            Operation::Getxattr { name, size } => {
                self.xattr(reply, size, self.getxattr(&caller(&req), ino, bytes(name)))
            }
            Operation::Listxattr { size } => self.xattr(reply, size, self.listxattr(&caller(&req), ino)),
            Operation::Removexattr { name } => {
                if bytes(name).starts_with(XATTR_PREFIX) {
                    return reply.error(libc::EPERM);
                }
                let result = e.removexattr(ino, bytes(name));
                if result.is_ok() {
                    self.service.content_changed(ino);
                }
                answer(reply, result, |r, ()| r.ok())
            }
            Operation::Opendir { .. } => answer(reply, e.getattr(ino), |r, _| r.open(0, 0)),
            Operation::Readdir { offset, size, .. } => self.readdir(ino, offset, size, false, reply),
            Operation::Readdirplus { offset, size, .. } => {
                // Entries listed with attributes can be opened without a LOOKUP.
                self.service.dir_visited(ino);
                self.readdir(ino, offset, size, true, reply)
            }
            // Nothing to do at close (no locks, no buffered state): ENOSYS makes the kernel stop
            // sending FLUSH, one round trip less per close.
            Operation::Flush { .. } => reply.error(libc::ENOSYS),
            Operation::Release { flags, .. } => {
                // A writer closing a document: index what it wrote (in the background).
                if flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
                    self.service.content_changed(ino);
                }
                reply.ok()
            }
            Operation::Releasedir { .. } | Operation::Access { .. } => reply.ok(),
            Operation::Fallocate { offset, length, mode, .. } => {
                answer(reply, e.fallocate(ino, offset, length, mode), |r, ()| {
                    self.notify(|n| n.inval_attrs(ino));
                    r.ok()
                })
            }
            Operation::Lseek { offset, whence, .. } => match whence {
                3 | 4 => answer(reply, e.lseek(ino, offset, whence), |r, offset| r.lseek(offset)),
                _ => reply.error(libc::EINVAL),
            },
            Operation::Interrupt { .. } => {}
            Operation::Ioctl { cmd, data, out_size, .. } => {
                match collections::ioctl(&self.service, &caller(&req), ino, cmd, data, &interrupt) {
                    Some(Ok(out)) => reply.ioctl(0, &out[..out.len().min(out_size as usize)]),
                    Some(Err(errno)) => reply.error(errno),
                    None => reply.error(libc::ENOTTY),
                }
            }
            _ => reply.error(libc::ENOSYS),
        }
    }

    fn destroy(&self) {
        // Documents still queued are indexed when their collection is next opened.
        if let Err(error) = self.service.shutdown() {
            tracing::error!(%error, "writing collections' pending vectors at unmount failed");
        }
        if let Err(error) = self.engine.sync() {
            tracing::error!(%error, "final commit at unmount failed");
        }
    }
}
