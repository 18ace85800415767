//! Inode records: the value of an `(ino, Inode, 0)` item. 128 bytes:
//!
//! | offset | size | field          | meaning                                              |
//! |--------|------|----------------|------------------------------------------------------|
//! | 0      | 4    | mode           | st_mode: file type and permission bits               |
//! | 4      | 4    | uid            |                                                      |
//! | 8      | 4    | gid            |                                                      |
//! | 12     | 4    | flags          | [`INODE_FLAG_ORPHAN`], [`INODE_FLAG_SHARD`]; others 0 |
//! | 16     | 4    | nlink          |                                                      |
//! | 20     | 4    | rdev           | device number of character/block special files       |
//! | 24     | 8    | size           | bytes                                                |
//! | 32     | 8    | blocks         | data blocks allocated (4096 bytes each)              |
//! | 40     | 8    | atime_sec      | i64 seconds since the epoch                          |
//! | 48     | 8    | mtime_sec      |                                                      |
//! | 56     | 8    | ctime_sec      |                                                      |
//! | 64     | 8    | crtime_sec     | creation time                                        |
//! | 72     | 4    | atime_nsec     |                                                      |
//! | 76     | 4    | mtime_nsec     |                                                      |
//! | 80     | 4    | ctime_nsec     |                                                      |
//! | 84     | 4    | crtime_nsec    |                                                      |
//! | 88     | 8    | generation     | distinguishes reuses of an inode number              |
//! | 96     | 8    | dir_next_index | directories: the next readdir position to hand out   |
//! | 104    | 8    | parent         | directories: the parent directory (root: itself)     |
//! | 112    | 16   | reserved       | zero                                                 |

use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::FormatError;

/// The encoded size of an inode record.
pub const INODE_SIZE: usize = 128;
/// The root directory's inode number (also FUSE's root node id).
pub const ROOT_INO: u64 = 1;
/// The first inode number handed out to new files.
pub const FIRST_INO: u64 = 16;
/// Flag: the inode has no links left and sits on the orphan list until it is freed.
pub const INODE_FLAG_ORPHAN: u32 = 1;
/// Flag (format version 2): a hidden regular file holding one shard log of a vector collection.
/// It has no directory entry; its one link (`nlink` 1) is the collection record naming it.
pub const INODE_FLAG_SHARD: u32 = 2;
/// Every inode flag a reader accepts. Which flags suit which inode (a shard is a regular file of a
/// version-2 volume) is checked by fsck, not by the decoder.
pub const INODE_FLAGS_KNOWN: u32 = INODE_FLAG_ORPHAN | INODE_FLAG_SHARD;
/// Readdir positions 0..=2 belong to the start, "." and ".."; entries start here.
pub const DIR_FIRST_INDEX: u64 = 3;

/// A timestamp as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

/// The decoded inode record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InodeRecord {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub nlink: u32,
    pub rdev: u32,
    pub size: u64,
    pub blocks: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
    pub generation: u64,
    pub dir_next_index: u64,
    pub parent: u64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawInode {
    mode: U32,
    uid: U32,
    gid: U32,
    flags: U32,
    nlink: U32,
    rdev: U32,
    size: U64,
    blocks: U64,
    atime_sec: I64,
    mtime_sec: I64,
    ctime_sec: I64,
    crtime_sec: I64,
    atime_nsec: U32,
    mtime_nsec: U32,
    ctime_nsec: U32,
    crtime_nsec: U32,
    generation: U64,
    dir_next_index: U64,
    parent: U64,
    reserved: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<RawInode>() == INODE_SIZE);

/// File types as stored in the mode's type bits (the POSIX `S_IF*` values).
pub mod file_type {
    pub const MASK: u32 = 0o170000;
    pub const SOCKET: u32 = 0o140000;
    pub const SYMLINK: u32 = 0o120000;
    pub const REGULAR: u32 = 0o100000;
    pub const BLOCK: u32 = 0o060000;
    pub const DIRECTORY: u32 = 0o040000;
    pub const CHAR: u32 = 0o020000;
    pub const FIFO: u32 = 0o010000;

    /// True for the seven POSIX file types.
    pub fn is_valid(mode: u32) -> bool {
        matches!(mode & MASK, SOCKET | SYMLINK | REGULAR | BLOCK | DIRECTORY | CHAR | FIFO)
    }

    /// The `DT_*` value readdir reports for a mode.
    pub fn dirent_type(mode: u32) -> u8 {
        ((mode & MASK) >> 12) as u8
    }
}

impl InodeRecord {
    /// The file type bits.
    pub fn kind(&self) -> u32 {
        self.mode & file_type::MASK
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind() == file_type::DIRECTORY
    }

    /// Encodes into 128 bytes.
    pub fn encode(&self) -> [u8; INODE_SIZE] {
        let raw = RawInode {
            mode: self.mode.into(),
            uid: self.uid.into(),
            gid: self.gid.into(),
            flags: self.flags.into(),
            nlink: self.nlink.into(),
            rdev: self.rdev.into(),
            size: self.size.into(),
            blocks: self.blocks.into(),
            atime_sec: self.atime.sec.into(),
            mtime_sec: self.mtime.sec.into(),
            ctime_sec: self.ctime.sec.into(),
            crtime_sec: self.crtime.sec.into(),
            atime_nsec: self.atime.nsec.into(),
            mtime_nsec: self.mtime.nsec.into(),
            ctime_nsec: self.ctime.nsec.into(),
            crtime_nsec: self.crtime.nsec.into(),
            generation: self.generation.into(),
            dir_next_index: self.dir_next_index.into(),
            parent: self.parent.into(),
            reserved: [0; 16],
        };
        let mut out = [0u8; INODE_SIZE];
        raw.write_to(&mut out[..]).expect("size is constant");
        out
    }

    /// Decodes a stored record of inode `ino` found in block `addr` (named in errors).
    pub fn decode(bytes: &[u8], ino: u64, addr: u64) -> Result<InodeRecord, FormatError> {
        let Ok(raw) = RawInode::read_from_bytes(bytes) else {
            return Err(FormatError::malformed(
                addr,
                format!("inode {ino}: record is {} bytes, expected {INODE_SIZE}", bytes.len()),
            ));
        };
        let ts = |sec: I64, nsec: U32| Timestamp { sec: sec.get(), nsec: nsec.get() };
        let record = InodeRecord {
            mode: raw.mode.get(),
            uid: raw.uid.get(),
            gid: raw.gid.get(),
            flags: raw.flags.get(),
            nlink: raw.nlink.get(),
            rdev: raw.rdev.get(),
            size: raw.size.get(),
            blocks: raw.blocks.get(),
            atime: ts(raw.atime_sec, raw.atime_nsec),
            mtime: ts(raw.mtime_sec, raw.mtime_nsec),
            ctime: ts(raw.ctime_sec, raw.ctime_nsec),
            crtime: ts(raw.crtime_sec, raw.crtime_nsec),
            generation: raw.generation.get(),
            dir_next_index: raw.dir_next_index.get(),
            parent: raw.parent.get(),
        };
        if !file_type::is_valid(record.mode) {
            return Err(FormatError::malformed(
                addr,
                format!("inode {ino}: invalid file type in mode {:o}", record.mode),
            ));
        }
        let times_valid =
            [record.atime, record.mtime, record.ctime, record.crtime].iter().all(|t| t.nsec < 1_000_000_000);
        if !times_valid || raw.reserved != [0; 16] || record.flags & !INODE_FLAGS_KNOWN != 0 {
            return Err(FormatError::malformed(
                addr,
                format!("inode {ino}: invalid timestamps, flags or reserved bytes"),
            ));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(mode_bits in 0u32..0o7777, kind in 0usize..7, uid: u32, gid: u32, nlink: u32, size: u64,
                       sec: i64, nsec in 0u32..1_000_000_000, generation: u64) {
            let kinds = [0o140000, 0o120000, 0o100000, 0o060000, 0o040000, 0o020000, 0o010000];
            let t = Timestamp { sec, nsec };
            let record = InodeRecord { mode: kinds[kind] | mode_bits, uid, gid, nlink, size, atime: t, mtime: t,
                ctime: t, crtime: t, generation, ..Default::default() };
            prop_assert_eq!(InodeRecord::decode(&record.encode(), 5, 9).unwrap(), record);
        }

        #[test]
        fn flags_outside_the_known_ones_are_refused(bit in 0u32..32) {
            let record = InodeRecord { mode: file_type::REGULAR, flags: 1 << bit, ..Default::default() };
            let decoded = InodeRecord::decode(&record.encode(), 5, 9);
            prop_assert_eq!(decoded.is_ok(), INODE_FLAGS_KNOWN & (1 << bit) != 0);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = InodeRecord::decode(&bytes, 1, 1);
        }
    }
}
