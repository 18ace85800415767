//! B-tree keys: every piece of file-system metadata is an item in one B-tree, addressed by a
//! [`Key`] of (object, kind, offset), compared in that order.
//!
//! Encoded as 17 bytes: `object` u64, `kind` u8, `offset` u64 (little-endian).

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The encoded size of a [`Key`].
pub const KEY_SIZE: usize = 17;

/// What an item describes. Discriminants are stored on disk and are never reused.
/// Kinds 64..=127 belong to vector collections: 64 is [`ItemKind::Collection`] (format version 2),
/// and 65..=127 are reserved for index pages and later use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ItemKind {
    /// `(ino, Inode, 0)`: the inode record ([`crate::inode::InodeRecord`]).
    Inode = 1,
    /// `(ino, Xattr, name_hash)`: extended attributes whose names hash to `offset`.
    Xattr = 2,
    /// `(dir, DirEntry, name_hash)`: directory entries whose names hash to `offset` (lookup).
    DirEntry = 3,
    /// `(dir, DirIndex, index)`: one directory entry by its stable readdir position.
    DirIndex = 4,
    /// `(ino, Extent, file_block)`: a run of file blocks mapped to device blocks.
    Extent = 5,
    /// `(ino, Symlink, 0)`: the target of a symbolic link.
    Symlink = 6,
    /// `(ORPHAN_OBJECT, Orphan, ino)`: an inode with no links that is still to be freed.
    Orphan = 7,
    /// `(dir, Collection, 0)`: directory `dir` is a vector collection
    /// ([`crate::collection::CollectionRecord`]). Format version 2 and later.
    Collection = 64,
}

/// The first item kind of the vector collection range ([`ItemKind::Collection`]).
pub const COLLECTION_KIND_FIRST: u8 = 64;
/// The last item kind of the vector collection range.
pub const COLLECTION_KIND_LAST: u8 = 127;
/// The first kind of the collection range not yet assigned: `RESERVED_KIND_FIRST..=COLLECTION_KIND_LAST`
/// are reserved for vector index pages and later use, and no version stores them yet.
pub const RESERVED_KIND_FIRST: u8 = 65;

const _: () = assert!(ItemKind::Collection as u8 == COLLECTION_KIND_FIRST);
const _: () = assert!(RESERVED_KIND_FIRST == COLLECTION_KIND_FIRST + 1);

/// The object id under which orphan items are kept.
pub const ORPHAN_OBJECT: u64 = u64::MAX - 1;

impl ItemKind {
    /// Decodes a stored discriminant.
    pub fn from_u8(value: u8) -> Option<ItemKind> {
        Some(match value {
            1 => ItemKind::Inode,
            2 => ItemKind::Xattr,
            3 => ItemKind::DirEntry,
            4 => ItemKind::DirIndex,
            5 => ItemKind::Extent,
            6 => ItemKind::Symlink,
            7 => ItemKind::Orphan,
            64 => ItemKind::Collection,
            _ => return None,
        })
    }
}

/// A B-tree key. The derived order (object, kind, offset) is the on-disk order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key {
    pub object: u64,
    pub kind: u8,
    pub offset: u64,
}

impl Key {
    /// The smallest key.
    pub const MIN: Key = Key { object: 0, kind: 0, offset: 0 };
    /// The largest key.
    pub const MAX: Key = Key { object: u64::MAX, kind: u8::MAX, offset: u64::MAX };

    /// A key of a known kind.
    pub fn new(object: u64, kind: ItemKind, offset: u64) -> Key {
        Key { object, kind: kind as u8, offset }
    }

    /// Encodes the key into its 17-byte form.
    pub fn encode(&self) -> [u8; KEY_SIZE] {
        let raw = RawKey { object: self.object.into(), kind: self.kind, offset: self.offset.into() };
        let mut out = [0u8; KEY_SIZE];
        raw.write_to(&mut out[..]).expect("key size is constant");
        out
    }

    /// Decodes a 17-byte key.
    pub fn decode(bytes: &[u8]) -> Key {
        let raw = RawKey::read_from_bytes(&bytes[..KEY_SIZE]).expect("key size is constant");
        Key { object: raw.object.get(), kind: raw.kind, offset: raw.offset.get() }
    }
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawKey {
    object: U64,
    kind: u8,
    offset: U64,
}

const _: () = assert!(std::mem::size_of::<RawKey>() == KEY_SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn key_round_trips(object: u64, kind: u8, offset: u64) {
            let key = Key { object, kind, offset };
            prop_assert_eq!(Key::decode(&key.encode()), key);
        }

        #[test]
        fn kinds_round_trip(value: u8) {
            if let Some(kind) = ItemKind::from_u8(value) {
                prop_assert_eq!(kind as u8, value);
            }
        }
    }

    #[test]
    fn collection_kind_is_the_only_assigned_kind_of_its_range() {
        assert_eq!(ItemKind::from_u8(64), Some(ItemKind::Collection));
        for value in RESERVED_KIND_FIRST..=COLLECTION_KIND_LAST {
            assert_eq!(ItemKind::from_u8(value), None, "kind {value} is reserved");
        }
    }
}
