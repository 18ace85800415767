//! The volume root block: the one journaled block that every transaction may touch. It holds the
//! B-tree root address and the volume-wide counters, so they change atomically with the items.
//!
//! | offset | size | field            | meaning                                                 |
//! |--------|------|------------------|---------------------------------------------------------|
//! | 0      | 32   | MetaHeader       | kind `Root`                                             |
//! | 32     | 8    | tree_root        | block of the metadata B-tree's root node (never moves)  |
//! | 40     | 8    | next_ino         | the next inode number to hand out                       |
//! | 48     | 8    | inode_count      | inodes in use                                           |
//! | 56     | 8    | free_blocks      | clear bits in the bitmap                                |
//! | 64     | 8    | next_generation  | the next inode generation number                        |
//! | 72     | 8    | collection_root  | reserved (0 in versions 1 and 2)                        |
//! | 80     | 8    | index_root       | reserved for vector index pages (0 in versions 1, 2)    |
//! | 88     | 4008 | reserved         | zero                                                    |

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::block::{BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE, META_HEADER_SIZE};
use crate::FormatError;

/// The decoded volume root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeRoot {
    pub tree_root: BlockAddr,
    pub next_ino: u64,
    pub inode_count: u64,
    pub free_blocks: u64,
    pub next_generation: u64,
    pub collection_root: u64,
    pub index_root: u64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRoot {
    tree_root: U64,
    next_ino: U64,
    inode_count: U64,
    free_blocks: U64,
    next_generation: U64,
    collection_root: U64,
    index_root: U64,
}

const RAW_SIZE: usize = 56;
const _: () = assert!(std::mem::size_of::<RawRoot>() == RAW_SIZE);

impl VolumeRoot {
    /// Writes the fields into a root block whose header is already initialised.
    pub fn write(&self, block: &mut [u8]) {
        assert_eq!(block.len(), BLOCK_SIZE);
        let raw = RawRoot {
            tree_root: self.tree_root.0.into(),
            next_ino: self.next_ino.into(),
            inode_count: self.inode_count.into(),
            free_blocks: self.free_blocks.into(),
            next_generation: self.next_generation.into(),
            collection_root: self.collection_root.into(),
            index_root: self.index_root.into(),
        };
        raw.write_to(&mut block[META_HEADER_SIZE..META_HEADER_SIZE + RAW_SIZE]).expect("size is constant");
    }

    /// Builds a fresh root block at `addr`.
    pub fn build(&self, addr: BlockAddr) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK_SIZE];
        MetaHeader::init(&mut block, BlockKind::Root, 0, addr);
        self.write(&mut block);
        block
    }

    /// Reads the fields of a verified root block, checking that its reserved bytes are zero.
    pub fn read(block: &[u8], addr: BlockAddr) -> Result<VolumeRoot, FormatError> {
        if block[META_HEADER_SIZE + RAW_SIZE..].iter().any(|&b| b != 0) {
            return Err(FormatError::malformed(addr.0, "volume root: reserved bytes are not zero"));
        }
        Ok(VolumeRoot::decode(block))
    }

    /// Reads the fields of a root block already checked by [`VolumeRoot::read`] (the engine's
    /// cached copy, which only [`VolumeRoot::write`] changes).
    pub fn decode(block: &[u8]) -> VolumeRoot {
        let raw =
            RawRoot::read_from_bytes(&block[META_HEADER_SIZE..META_HEADER_SIZE + RAW_SIZE]).expect("size is constant");
        VolumeRoot {
            tree_root: BlockAddr(raw.tree_root.get()),
            next_ino: raw.next_ino.get(),
            inode_count: raw.inode_count.get(),
            free_blocks: raw.free_blocks.get(),
            next_generation: raw.next_generation.get(),
            collection_root: raw.collection_root.get(),
            index_root: raw.index_root.get(),
        }
    }
}
