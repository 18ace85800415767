//! The special files of a collection directory, which exist only in the daemon: `.vexfs-insert`
//! (the insert stream, [`crate::service::stream`]) and `.vexfs-query/` (query files,
//! [`crate::service::query`]). This module gives them node ids and attributes and turns FUSE
//! requests on them into calls to the collection service; what they do is the service's.
//!
//! Neither name is listed by readdir, and neither can be created, renamed or linked as a real
//! file inside a collection. Node ids are computed, not stored: real inode numbers stay below
//! [`SPECIAL_BASE`], and a collection's two special nodes and each query file have ids of their
//! own above it. Attributes tell the kernel what the service enforces: the insert stream has the
//! collection directory's owner and read/write bits (writing it inserts, reading it returns
//! receipts), the query directory is sticky and open to all (each user sees only their own
//! files in it), and a query file belongs to its maker, mode 0600.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use super::collections::fail;
use super::reply::{DirBuf, FileAttr, FileType, Reply};
use super::request::{Operation, Request, Timestamp};
use crate::engine::EngineHandle;
use crate::service::query::QueryAttr;
use crate::service::{Caller, Collections, Interrupt, ServiceError};
use crate::storage::Storage;

/// The insert stream's name in a collection.
pub const INSERT_NAME: &[u8] = vexfs_format::ioctl::INSERT_STREAM_NAME.as_bytes();
/// The query directory's name in a collection.
pub const QUERY_DIR_NAME: &[u8] = b".vexfs-query";
/// Node ids of special files start here; real inode numbers stay far below.
pub const SPECIAL_BASE: u64 = 1 << 62;
/// Set in the node ids of query files.
const QUERY_BIT: u64 = 1 << 61;
/// Collections whose inode numbers reach this have no special files (their ids would collide).
const DIR_LIMIT: u64 = 1 << 60;
/// Special files change under the kernel's feet: never cache them.
const TTL: Duration = Duration::ZERO;
/// FOPEN_DIRECT_IO: reads and writes go to the daemon, bypassing the page cache.
const FOPEN_DIRECT_IO: u32 = 1;

/// Whether `nodeid` names a special file.
pub fn is_special(nodeid: u64) -> bool {
    nodeid >= SPECIAL_BASE
}

/// Whether `name` is reserved inside a collection directory.
pub fn is_reserved(name: &[u8]) -> bool {
    name == INSERT_NAME || name == QUERY_DIR_NAME
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Insert { dir: u64 },
    QueryDir { dir: u64 },
    Query { id: u64 },
}

impl Node {
    fn id(self) -> u64 {
        match self {
            Node::Insert { dir } => SPECIAL_BASE | dir << 1,
            Node::QueryDir { dir } => SPECIAL_BASE | dir << 1 | 1,
            Node::Query { id } => SPECIAL_BASE | QUERY_BIT | id,
        }
    }

    fn of(nodeid: u64) -> Option<Node> {
        let rest = nodeid.checked_sub(SPECIAL_BASE)?;
        Some(if rest & QUERY_BIT != 0 {
            Node::Query { id: rest & !QUERY_BIT }
        } else if rest & 1 == 0 {
            Node::Insert { dir: rest >> 1 }
        } else {
            Node::QueryDir { dir: rest >> 1 }
        })
    }
}

fn time(secs: u64) -> Timestamp {
    Timestamp { secs: secs.min(i64::MAX as u64) as i64, nsecs: 0 }
}

fn query_attr(file: &QueryAttr) -> FileAttr {
    let mtime = time(file.mtime);
    FileAttr {
        ino: Node::Query { id: file.id }.id(),
        size: file.size,
        blocks: 0,
        atime: mtime,
        mtime,
        ctime: mtime,
        mode: libc::S_IFREG | 0o600,
        nlink: 1,
        uid: file.uid,
        gid: file.gid,
        rdev: 0,
        blksize: 4096,
    }
}

/// The special files of every collection, over the collection service.
pub struct Special<'a, S: Storage> {
    pub service: &'a Collections<S>,
    pub engine: &'a EngineHandle<S>,
}

impl<S: Storage> Special<'_, S> {
    /// The entry for reserved name `name` in collection `dir`; ENOENT where special files are
    /// not offered.
    pub fn lookup_in_collection(&self, dir: u64, name: &[u8], reply: Reply<'_>) {
        if dir >= DIR_LIMIT {
            return reply.error(libc::ENOENT);
        }
        let node = if name == INSERT_NAME { Node::Insert { dir } } else { Node::QueryDir { dir } };
        match self.attr(node) {
            Ok(attr) => reply.entry(&attr, 0, TTL, TTL),
            Err(error) => reply.error(fail(error)),
        }
    }

    /// The attributes of `node`: the two fixed nodes take the collection directory's owner.
    fn attr(&self, node: Node) -> Result<FileAttr, ServiceError> {
        let (dir, file_type, bits, nlink) = match node {
            Node::Query { id } => return Ok(query_attr(&self.service.query_attr(id)?)),
            Node::Insert { dir } => (dir, libc::S_IFREG, None, 1),
            Node::QueryDir { dir } => (dir, libc::S_IFDIR, Some(0o1777), 2),
        };
        let record = self.engine.getattr(dir)?.record;
        let time = Timestamp { secs: record.mtime.sec, nsecs: record.mtime.nsec };
        Ok(FileAttr {
            ino: node.id(),
            size: 0,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            mode: file_type | bits.unwrap_or(record.mode & 0o666),
            nlink,
            uid: record.uid,
            gid: record.gid,
            rdev: 0,
            blksize: 4096,
        })
    }

    /// Answers a request on a special node.
    pub fn handle(&self, req: &Request<'_>, caller: &Caller, interrupt: &Interrupt, reply: Reply<'_>) {
        let Some(node) = Node::of(req.nodeid) else { return reply.error(libc::ESTALE) };
        let service = self.service;
        let answer = |reply: Reply<'_>, result: Result<(), ServiceError>| match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(fail(error)),
        };
        match (node, &req.op) {
            (_, Operation::Forget { .. } | Operation::BatchForget { .. } | Operation::Interrupt { .. }) => {}
            (_, Operation::Getattr { .. }) => self.reply_attr(node, reply),
            (Node::Query { id }, Operation::Setattr(change)) => match change.size {
                Some(size) => match service.query_truncate(caller, id, size) {
                    Ok(file) => reply.attr(&query_attr(&file), TTL),
                    Err(error) => reply.error(fail(error)),
                },
                None => self.reply_attr(node, reply),
            },
            // Times and sizes of the fixed nodes mean nothing; modes and owners are derived.
            (_, Operation::Setattr(change))
                if change.mode.is_some() || change.uid.is_some() || change.gid.is_some() =>
            {
                reply.error(libc::EPERM)
            }
            (_, Operation::Setattr(_)) => self.reply_attr(node, reply),
            (Node::Insert { dir }, Operation::Open { .. }) => match service.stream_open(caller, dir) {
                Ok(fh) => reply.open(fh, FOPEN_DIRECT_IO),
                Err(error) => reply.error(fail(error)),
            },
            (Node::Insert { .. }, Operation::Read { fh, offset, size, .. }) => {
                match service.stream_read(*fh, *offset, *size) {
                    Ok(data) => reply.data(&data),
                    Err(error) => reply.error(fail(error)),
                }
            }
            (Node::Insert { .. }, Operation::Write { fh, offset, data, .. }) => {
                match service.stream_write(*fh, *offset, data) {
                    Ok(()) => reply.write(data.len() as u32),
                    Err(error) => reply.error(fail(error)),
                }
            }
            (Node::Insert { .. }, Operation::Fsync { fh, .. }) => answer(reply, service.stream_fsync(*fh)),
            (Node::Insert { .. }, Operation::Release { fh, .. }) => {
                service.stream_release(*fh);
                reply.ok()
            }
            (Node::Query { id }, Operation::Open { flags, .. }) => {
                match service.query_open(caller, id, flags & libc::O_TRUNC as u32 != 0) {
                    Ok(()) => reply.open(0, FOPEN_DIRECT_IO),
                    Err(error) => reply.error(fail(error)),
                }
            }
            (Node::Query { id }, Operation::Write { offset, data, .. }) => {
                match service.query_write(caller, id, *offset, data) {
                    Ok(()) => reply.write(data.len() as u32),
                    Err(error) => reply.error(fail(error)),
                }
            }
            (Node::Query { id }, Operation::Read { offset, size, .. }) => {
                match service.query_read(caller, id, *offset, *size, interrupt) {
                    Ok(data) => reply.data(&data),
                    Err(error) => reply.error(fail(error)),
                }
            }
            (Node::Query { .. }, Operation::Release { .. } | Operation::Fsync { .. }) => reply.ok(),
            (Node::QueryDir { .. }, Operation::Opendir { .. }) => reply.open(0, 0),
            (Node::QueryDir { .. }, Operation::Releasedir { .. } | Operation::Fsyncdir { .. }) => reply.ok(),
            (Node::QueryDir { dir }, Operation::Readdir { offset, size, .. }) => {
                self.readdir(caller, dir, *offset, *size, false, reply)
            }
            (Node::QueryDir { dir }, Operation::Readdirplus { offset, size, .. }) => {
                self.readdir(caller, dir, *offset, *size, true, reply)
            }
            (Node::QueryDir { dir }, Operation::Lookup { name }) => {
                match service.query_lookup(caller, dir, name.as_bytes()) {
                    Some(file) => reply.entry(&query_attr(&file), 0, TTL, TTL),
                    None => reply.error(libc::ENOENT),
                }
            }
            (Node::QueryDir { dir }, Operation::Create { name, flags, .. }) => {
                let exclusive = flags & libc::O_EXCL as u32 != 0;
                match service.query_create(caller, dir, name.as_bytes(), exclusive) {
                    Ok(file) => reply.create(&query_attr(&file), 0, TTL, TTL, 0, FOPEN_DIRECT_IO),
                    Err(error) => reply.error(fail(error)),
                }
            }
            (Node::QueryDir { dir }, Operation::Mknod { name, mode, .. }) if mode & libc::S_IFMT == libc::S_IFREG => {
                match service.query_create(caller, dir, name.as_bytes(), true) {
                    Ok(file) => reply.entry(&query_attr(&file), 0, TTL, TTL),
                    Err(error) => reply.error(fail(error)),
                }
            }
            (Node::QueryDir { dir }, Operation::Unlink { name }) => {
                answer(reply, service.query_unlink(caller, dir, name.as_bytes()))
            }
            (_, Operation::Access { .. }) => reply.ok(),
            (_, Operation::Getxattr { .. }) => reply.error(libc::ENODATA),
            (_, Operation::Listxattr { size }) => {
                if *size == 0 {
                    reply.xattr_size(0)
                } else {
                    reply.xattr_data(&[])
                }
            }
            (_, Operation::Flush { .. }) => reply.error(libc::ENOSYS),
            (_, Operation::Statfs) => reply.error(libc::ENOSYS),
            _ => reply.error(libc::EPERM),
        }
    }

    fn reply_attr(&self, node: Node, reply: Reply<'_>) {
        match self.attr(node) {
            Ok(attr) => reply.attr(&attr, TTL),
            Err(error) => reply.error(fail(error)),
        }
    }

    /// Lists a query directory: ".", "..", then the caller's query files by name. With `plus`,
    /// the entries carry attributes (zero TTL).
    fn readdir(&self, caller: &Caller, dir: u64, offset: u64, size: u32, plus: bool, reply: Reply<'_>) {
        let own = Node::QueryDir { dir };
        let (own_attr, parent_attr) = match (self.attr(own), self.engine.getattr(dir)) {
            (Ok(own_attr), Ok(_)) => (own_attr, FileAttr { ino: dir, ..own_attr }),
            (Err(error), _) => return reply.error(fail(error)),
            (_, Err(error)) => return reply.error(fail(error.into())),
        };
        let files = self.service.query_list(caller, dir);
        let mut buf = DirBuf::new(size);
        let entries = [(own_attr, &b"."[..]), (parent_attr, &b".."[..])]
            .into_iter()
            .chain(files.iter().map(|file| (query_attr(file), file.name.as_slice())));
        for (index, (attr, name)) in entries.enumerate().skip(offset as usize) {
            let next = index as u64 + 1;
            let pushed = if plus {
                buf.push_plus(&attr, 0, TTL, TTL, next, OsStr::from_bytes(name))
            } else {
                let kind = FileType::from_mode(attr.mode).unwrap_or(FileType::RegularFile);
                buf.push(attr.ino, next, kind, OsStr::from_bytes(name))
            };
            if !pushed {
                break;
            }
        }
        reply.dir(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip() {
        for node in [
            Node::Insert { dir: 1 },
            Node::QueryDir { dir: 1 },
            Node::Insert { dir: DIR_LIMIT - 1 },
            Node::QueryDir { dir: DIR_LIMIT - 1 },
            Node::Query { id: 1 },
            Node::Query { id: QUERY_BIT - 1 },
        ] {
            assert!(is_special(node.id()));
            assert_eq!(Node::of(node.id()), Some(node));
        }
        assert_eq!(Node::of(SPECIAL_BASE - 1), None);
    }
}
