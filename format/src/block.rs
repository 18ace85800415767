//! Blocks, block addresses, and the header every metadata block starts with.
//!
//! Layout of [`MetaHeader`] (32 bytes, at offset 0 of every metadata block):
//!
//! | offset | size | field        | meaning                                                    |
//! |--------|------|--------------|------------------------------------------------------------|
//! | 0      | 4    | `magic`      | [`META_MAGIC`] (`"VXMB"`)                                  |
//! | 4      | 2    | `kind`       | [`BlockKind`] discriminant                                 |
//! | 6      | 2    | `level`      | B-tree level (0 = leaf); 0 for other kinds                 |
//! | 8      | 8    | `addr`       | the block's own address: catches misdirected writes        |
//! | 16     | 8    | `generation` | sequence number of the transaction that last wrote it      |
//! | 24     | 4    | `checksum`   | crc32c of the whole block with this field taken as zero    |
//! | 28     | 4    | `reserved`   | zero                                                       |

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::FormatError;

/// The volume block size. Format versions 1 and 2 support exactly this size; the superblock records it
/// so a later version can support others.
pub const BLOCK_SIZE: usize = 4096;
/// [`BLOCK_SIZE`] as a `u64`, for byte-offset arithmetic.
pub const BLOCK_SIZE_U64: u64 = BLOCK_SIZE as u64;

/// Magic number at the start of every metadata block: the bytes `"VXMB"`.
pub const META_MAGIC: u32 = u32::from_le_bytes(*b"VXMB");

/// The size of [`MetaHeader`].
pub const META_HEADER_SIZE: usize = 32;
const CHECKSUM_OFFSET: usize = 24;

/// A block address: the index of a [`BLOCK_SIZE`] block from the start of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockAddr(pub u64);

impl BlockAddr {
    /// The byte offset of this block on the device.
    pub fn byte_offset(self) -> u64 {
        self.0 * BLOCK_SIZE_U64
    }
}

impl std::fmt::Display for BlockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a metadata block holds. Discriminants are stored on disk and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum BlockKind {
    /// The volume root: tree root, counters (see [`crate::root`]).
    Root = 1,
    /// A free-space bitmap block (see [`crate::bitmap`]).
    Bitmap = 2,
    /// A B-tree leaf node (see [`crate::node`]).
    Leaf = 3,
    /// A B-tree internal node (see [`crate::node`]).
    Internal = 4,
    /// A continuation block holding part of a large B-tree value (see [`crate::node`]).
    Overflow = 5,
    /// A journal descriptor block (see [`crate::journal`]).
    JournalDescriptor = 6,
    /// A journal commit block (see [`crate::journal`]).
    JournalCommit = 7,
}

impl BlockKind {
    /// Decodes a stored discriminant.
    pub fn from_u16(value: u16) -> Option<BlockKind> {
        Some(match value {
            1 => BlockKind::Root,
            2 => BlockKind::Bitmap,
            3 => BlockKind::Leaf,
            4 => BlockKind::Internal,
            5 => BlockKind::Overflow,
            6 => BlockKind::JournalDescriptor,
            7 => BlockKind::JournalCommit,
            _ => return None,
        })
    }

    /// A human-readable name, used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Root => "volume root",
            BlockKind::Bitmap => "bitmap",
            BlockKind::Leaf => "B-tree leaf",
            BlockKind::Internal => "B-tree internal",
            BlockKind::Overflow => "overflow",
            BlockKind::JournalDescriptor => "journal descriptor",
            BlockKind::JournalCommit => "journal commit",
        }
    }
}

/// The header at offset 0 of every metadata block. See the module documentation for the layout.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct MetaHeader {
    pub magic: U32,
    pub kind: U16,
    pub level: U16,
    pub addr: U64,
    pub generation: U64,
    pub checksum: U32,
    pub reserved: U32,
}

const _: () = assert!(std::mem::size_of::<MetaHeader>() == META_HEADER_SIZE);

impl MetaHeader {
    /// Reads the header of `block` without verifying anything.
    pub fn read(block: &[u8]) -> MetaHeader {
        assert!(block.len() >= META_HEADER_SIZE);
        MetaHeader::read_from_bytes(&block[..META_HEADER_SIZE]).expect("header size is constant")
    }

    /// Writes the identifying fields of a fresh metadata block: magic, kind, level and address.
    /// The checksum and generation are written by [`seal`] when the block goes to the device.
    pub fn init(block: &mut [u8], kind: BlockKind, level: u16, addr: BlockAddr) {
        assert_eq!(block.len(), BLOCK_SIZE);
        let header = MetaHeader {
            magic: META_MAGIC.into(),
            kind: (kind as u16).into(),
            level: level.into(),
            addr: addr.0.into(),
            generation: 0.into(),
            checksum: 0.into(),
            reserved: 0.into(),
        };
        header.write_to(&mut block[..META_HEADER_SIZE]).expect("header size is constant");
    }

    /// The stored kind, if known.
    pub fn block_kind(&self) -> Option<BlockKind> {
        BlockKind::from_u16(self.kind.get())
    }
}

/// Reads the block at an address into a buffer; the pure crate's only view of a device.
pub type BlockRead<'r, E> = dyn FnMut(BlockAddr, &mut [u8]) -> Result<(), E> + 'r;

/// A block address and its contents, as mkfs and the journal lay them out.
pub type PlacedBlock = (BlockAddr, Vec<u8>);

/// Computes the checksum of a block: crc32c over all bytes with the checksum field taken as zero.
pub fn block_checksum(block: &[u8]) -> u32 {
    assert_eq!(block.len(), BLOCK_SIZE);
    let crc = crc32c::crc32c(&block[..CHECKSUM_OFFSET]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &block[CHECKSUM_OFFSET + 4..])
}

/// Stamps the generation and checksum of a metadata block before it is written.
///
/// Asserts that the block is a well-formed metadata block for `addr`: sealing a block whose header
/// was never initialised is a programming error.
pub fn seal(block: &mut [u8], generation: u64) {
    let header = MetaHeader::read(block);
    assert_eq!(header.magic.get(), META_MAGIC, "sealing a block with no header");
    assert!(header.block_kind().is_some(), "sealing a block of unknown kind");
    assert_eq!(header.reserved.get(), 0);
    block[16..24].copy_from_slice(&generation.to_le_bytes());
    let checksum = block_checksum(block);
    block[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&checksum.to_le_bytes());
}

/// Verifies a metadata block read from `addr`: magic, checksum, self-address and kind.
pub fn verify(block: &[u8], addr: BlockAddr, expected: &[BlockKind]) -> Result<MetaHeader, FormatError> {
    assert_eq!(block.len(), BLOCK_SIZE);
    let header = MetaHeader::read(block);
    if header.magic.get() != META_MAGIC {
        return Err(FormatError::BadMagic { addr: addr.0, found: header.magic.get() });
    }
    let computed = block_checksum(block);
    if header.checksum.get() != computed {
        return Err(FormatError::Checksum { addr: addr.0, stored: header.checksum.get(), computed });
    }
    if header.addr.get() != addr.0 {
        return Err(FormatError::Misdirected { addr: addr.0, found: header.addr.get() });
    }
    match header.block_kind() {
        Some(kind) if expected.contains(&kind) => Ok(header),
        _ => Err(FormatError::WrongKind {
            addr: addr.0,
            expected: expected.first().map_or("metadata", |k| k.name()),
            found: header.kind.get(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_verify_round_trips_and_detects_flips() {
        let mut block = vec![0u8; BLOCK_SIZE];
        MetaHeader::init(&mut block, BlockKind::Leaf, 0, BlockAddr(77));
        block[100] = 5;
        seal(&mut block, 9);
        let header = verify(&block, BlockAddr(77), &[BlockKind::Leaf]).unwrap();
        assert_eq!(header.generation.get(), 9);
        assert!(matches!(
            verify(&block, BlockAddr(78), &[BlockKind::Leaf]),
            Err(FormatError::Misdirected { addr: 78, found: 77 })
        ));
        assert!(matches!(verify(&block, BlockAddr(77), &[BlockKind::Bitmap]), Err(FormatError::WrongKind { .. })));
        block[4000] ^= 1;
        assert!(matches!(verify(&block, BlockAddr(77), &[BlockKind::Leaf]), Err(FormatError::Checksum { .. })));
    }
}
