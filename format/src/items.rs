//! Item values other than inodes. All integers little-endian.
//!
//! - `DirEntry` (key offset = [`name_hash`] of the name): a list of entries whose names share the
//!   hash, each `child u64 | index u64 | dtype u8 | name_len u8 | name`. Lookup reads one item.
//! - `DirIndex` (key offset = readdir position): `child u64 | dtype u8 | name_len u8 | name`.
//!   Positions only grow, so a readdir offset stays valid while entries come and go.
//! - `Extent` (key offset = first file block): `start u64 | length u32 | flags u32`, mapping file
//!   blocks `offset..offset+length` to device blocks `start..start+length`. [`EXTENT_UNWRITTEN`]
//!   marks preallocated blocks that read as zeros.
//! - `Xattr` (key offset = [`name_hash`] of the name): a list of `name_len u8 | value_len u32 |
//!   name | value`.
//! - `Symlink` (offset 0): the target bytes, 1..=[`SYMLINK_MAX`].
//! - `Orphan` (object [`crate::key::ORPHAN_OBJECT`], offset = inode): empty.

use std::ops::Range;

use crate::block::BLOCK_SIZE_U64;
use crate::FormatError;

/// The longest file name.
pub const NAME_MAX: usize = 255;
/// The longest symlink target (PATH_MAX less the NUL).
pub const SYMLINK_MAX: usize = 4095;
/// The largest xattr value (the Linux `XATTR_SIZE_MAX`).
pub const XATTR_VALUE_MAX: usize = 65536;
/// The most bytes of xattr names one inode has, each name counted with a NUL (the Linux
/// `XATTR_LIST_MAX`, the largest listxattr buffer).
pub const XATTR_LIST_MAX: usize = 65536;
/// Extent flag: the blocks are allocated but were never written; they read as zeros.
pub const EXTENT_UNWRITTEN: u32 = 1;
/// The longest extent in blocks (128 MiB): bounds the work of splitting one.
pub const EXTENT_BLOCKS_MAX: u32 = 32768;
/// The largest file in bytes (1 PiB). Writers never go past it, and readers refuse an extent that
/// does: every file block and byte offset stays far from overflowing a `u64`.
pub const FILE_SIZE_MAX: u64 = 1 << 50;
/// The file blocks below [`FILE_SIZE_MAX`].
pub const FILE_BLOCKS_MAX: u64 = FILE_SIZE_MAX / BLOCK_SIZE_U64;

/// The hash that places names of a directory or xattrs of an inode in the tree (xxh3, 64 bits,
/// seed 0). Stored on disk implicitly: changing it is a format change.
pub fn name_hash(name: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name)
}

fn take<'a>(bytes: &mut &'a [u8], n: usize, addr: u64, what: &str) -> Result<&'a [u8], FormatError> {
    if bytes.len() < n {
        return Err(FormatError::malformed(addr, format!("{what}: truncated")));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

fn take_u64(bytes: &mut &[u8], addr: u64, what: &str) -> Result<u64, FormatError> {
    Ok(u64::from_le_bytes(take(bytes, 8, addr, what)?.try_into().expect("8 bytes")))
}

fn take_u32(bytes: &mut &[u8], addr: u64, what: &str) -> Result<u32, FormatError> {
    Ok(u32::from_le_bytes(take(bytes, 4, addr, what)?.try_into().expect("4 bytes")))
}

fn check_name(name: &[u8], addr: u64, what: &str) -> Result<(), FormatError> {
    if name.is_empty() || name.contains(&0) || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(FormatError::malformed(addr, format!("{what}: invalid name {:?}", String::from_utf8_lossy(name))));
    }
    Ok(())
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub child: u64,
    pub index: u64,
    pub dtype: u8,
    pub name: Vec<u8>,
}

/// Encodes a `DirEntry` item value.
pub fn encode_dir_entries(entries: &[DirEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 32);
    for entry in entries {
        assert!(!entry.name.is_empty() && entry.name.len() <= NAME_MAX);
        out.extend_from_slice(&entry.child.to_le_bytes());
        out.extend_from_slice(&entry.index.to_le_bytes());
        out.push(entry.dtype);
        out.push(entry.name.len() as u8);
        out.extend_from_slice(&entry.name);
    }
    out
}

/// Decodes a `DirEntry` item value found in block `addr`.
pub fn decode_dir_entries(mut bytes: &[u8], addr: u64) -> Result<Vec<DirEntry>, FormatError> {
    let what = "directory entry";
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let child = take_u64(&mut bytes, addr, what)?;
        let index = take_u64(&mut bytes, addr, what)?;
        let head = take(&mut bytes, 2, addr, what)?;
        let name = take(&mut bytes, usize::from(head[1]), addr, what)?;
        check_name(name, addr, what)?;
        entries.push(DirEntry { child, index, dtype: head[0], name: name.to_vec() });
    }
    if entries.is_empty() {
        return Err(FormatError::malformed(addr, "directory entry: empty item"));
    }
    Ok(entries)
}

/// Encodes a `DirIndex` item value.
pub fn encode_dir_index(child: u64, dtype: u8, name: &[u8]) -> Vec<u8> {
    assert!(!name.is_empty() && name.len() <= NAME_MAX);
    let mut out = Vec::with_capacity(10 + name.len());
    out.extend_from_slice(&child.to_le_bytes());
    out.push(dtype);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out
}

/// Decodes a `DirIndex` item value: (child, dtype, name).
pub fn decode_dir_index(mut bytes: &[u8], addr: u64) -> Result<(u64, u8, &[u8]), FormatError> {
    let what = "directory index";
    let child = take_u64(&mut bytes, addr, what)?;
    let head = take(&mut bytes, 2, addr, what)?;
    let name = take(&mut bytes, usize::from(head[1]), addr, what)?;
    check_name(name, addr, what)?;
    if !bytes.is_empty() {
        return Err(FormatError::malformed(addr, "directory index: trailing bytes"));
    }
    Ok((child, head[0], name))
}

/// An extent value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub length: u32,
    pub flags: u32,
}

impl Extent {
    /// The encoded size.
    pub const SIZE: usize = 16;

    /// True when the blocks were preallocated and never written.
    pub fn is_unwritten(&self) -> bool {
        self.flags & EXTENT_UNWRITTEN != 0
    }

    /// Encodes the extent.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[..8].copy_from_slice(&self.start.to_le_bytes());
        out[8..12].copy_from_slice(&self.length.to_le_bytes());
        out[12..].copy_from_slice(&self.flags.to_le_bytes());
        out
    }

    /// Decodes an extent found in block `addr`.
    pub fn decode(mut bytes: &[u8], addr: u64) -> Result<Extent, FormatError> {
        if bytes.len() != Self::SIZE {
            return Err(FormatError::malformed(addr, "extent: wrong size"));
        }
        let start = take_u64(&mut bytes, addr, "extent")?;
        let length = take_u32(&mut bytes, addr, "extent")?;
        let flags = take_u32(&mut bytes, addr, "extent")?;
        if length == 0 || length > EXTENT_BLOCKS_MAX || flags & !EXTENT_UNWRITTEN != 0 {
            return Err(FormatError::malformed(addr, format!("extent: invalid length {length} or flags {flags:#x}")));
        }
        Ok(Extent { start, length, flags })
    }

    /// Checks the extent mapping file block `offset` on, found in block `addr`, against the
    /// volume: its file blocks end at or below [`FILE_BLOCKS_MAX`] and its device blocks lie in
    /// `data_area` (the layout's allocatable blocks, `first_free..block_count`). Sums are checked,
    /// so a start near 2^64 cannot wrap back into range. Every extent read from a device passes
    /// here before it is used as an address or a length.
    pub fn check(&self, offset: u64, data_area: &Range<u64>, addr: u64) -> Result<(), FormatError> {
        let length = u64::from(self.length);
        if offset.checked_add(length).is_none_or(|end| end > FILE_BLOCKS_MAX) {
            let what = format!("extent at file block {offset} of {length} blocks ends past the largest file");
            return Err(FormatError::malformed(addr, what));
        }
        let start = self.start;
        if start < data_area.start || start.checked_add(length).is_none_or(|end| end > data_area.end) {
            let what = format!(
                "extent at file block {offset} maps device blocks {start}..+{length}, outside the data area {}..{}",
                data_area.start, data_area.end
            );
            return Err(FormatError::malformed(addr, what));
        }
        Ok(())
    }
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Encodes an `Xattr` item value.
pub fn encode_xattrs(xattrs: &[Xattr]) -> Vec<u8> {
    let mut out = Vec::new();
    for xattr in xattrs {
        assert!(!xattr.name.is_empty() && xattr.name.len() <= NAME_MAX);
        assert!(xattr.value.len() <= XATTR_VALUE_MAX);
        out.push(xattr.name.len() as u8);
        out.extend_from_slice(&(xattr.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&xattr.name);
        out.extend_from_slice(&xattr.value);
    }
    out
}

/// Decodes an `Xattr` item value found in block `addr`.
pub fn decode_xattrs(mut bytes: &[u8], addr: u64) -> Result<Vec<Xattr>, FormatError> {
    let what = "xattr";
    let mut xattrs = Vec::new();
    while !bytes.is_empty() {
        let name_len = usize::from(take(&mut bytes, 1, addr, what)?[0]);
        let value_len = take_u32(&mut bytes, addr, what)? as usize;
        if name_len == 0 || value_len > XATTR_VALUE_MAX {
            return Err(FormatError::malformed(addr, "xattr: invalid name or value length"));
        }
        let name = take(&mut bytes, name_len, addr, what)?.to_vec();
        let value = take(&mut bytes, value_len, addr, what)?.to_vec();
        xattrs.push(Xattr { name, value });
    }
    if xattrs.is_empty() {
        return Err(FormatError::malformed(addr, "xattr: empty item"));
    }
    Ok(xattrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 1..=NAME_MAX)
            .prop_filter("no slash or dots", |n| !n.contains(&b'/') && n != b"." && n != b"..")
    }

    #[test]
    fn extents_outside_the_data_area_or_the_largest_file_are_refused_naming_the_block() {
        let data_area = 1029..4096;
        let check = |start, length, offset| Extent { start, length, flags: 0 }.check(offset, &data_area, 1028);
        assert!(check(1029, 1, 0).is_ok());
        assert!(check(4095, 1, FILE_BLOCKS_MAX - 1).is_ok());
        for (start, length, offset) in [
            (0, 1, 0),
            (1028, 1, 0),
            (4095, 2, 0),
            (4096, 1, 0),
            (u64::MAX - 1, 4, 0),
            (1029, 2, FILE_BLOCKS_MAX - 1),
            (1029, 8, u64::MAX - 3),
        ] {
            let error = check(start, length, offset).unwrap_err();
            assert!(
                matches!(error, FormatError::Malformed { addr: 1028, .. }),
                "{start}+{length} at {offset}: {error}"
            );
        }
    }

    proptest! {
        #[test]
        fn dir_entries_round_trip(names in proptest::collection::vec(name(), 1..5), child: u64, index: u64, dtype: u8) {
            let entries: Vec<DirEntry> = names.into_iter().map(|name| DirEntry { child, index, dtype, name }).collect();
            prop_assert_eq!(decode_dir_entries(&encode_dir_entries(&entries), 0).unwrap(), entries);
        }

        #[test]
        fn xattrs_round_trip(n in name(), value in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let xattrs = vec![Xattr { name: n, value }];
            prop_assert_eq!(decode_xattrs(&encode_xattrs(&xattrs), 0).unwrap(), xattrs);
        }

        #[test]
        fn extent_round_trips(start: u64, length in 1u32..=EXTENT_BLOCKS_MAX, unwritten: bool) {
            let extent = Extent { start, length, flags: u32::from(unwritten) };
            prop_assert_eq!(Extent::decode(&extent.encode(), 0).unwrap(), extent);
        }

        #[test]
        fn extent_checks_never_overflow(start: u64, length in 1u32..=EXTENT_BLOCKS_MAX, offset: u64) {
            let extent = Extent { start, length, flags: 0 };
            let data_area = 100..1000;
            let inside = start >= 100 && start.checked_add(u64::from(length)).is_some_and(|end| end <= 1000)
                && offset.checked_add(u64::from(length)).is_some_and(|end| end <= FILE_BLOCKS_MAX);
            prop_assert_eq!(extent.check(offset, &data_area, 7).is_ok(), inside);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_dir_entries(&bytes, 0);
            let _ = decode_dir_index(&bytes, 0);
            let _ = decode_xattrs(&bytes, 0);
            let _ = Extent::decode(&bytes, 0);
        }
    }
}
