//! The superblock: static geometry plus the journal's replay point. Two copies live in blocks 0
//! and 1; each write goes to slot `sequence % 2` with a higher `sequence`, so a torn write of one
//! slot leaves the other intact. Mount picks the valid slot with the higher sequence.
//!
//! The superblock is not a [`crate::block::MetaHeader`] block: it has its own 8-byte magic so that
//! `blkid`-style probes can recognise a volume from its first bytes. Layout (4096 bytes):
//!
//! | offset | size | field               |
//! |--------|------|---------------------|
//! | 0      | 8    | magic `"VEXFSVOL"`  |
//! | 8      | 4    | format_version      |
//! | 12     | 4    | block_size          |
//! | 16     | 8    | features_compat     |
//! | 24     | 8    | features_ro_compat  |
//! | 32     | 8    | features_incompat   |
//! | 40     | 16   | uuid                |
//! | 56     | 8    | block_count         |
//! | 64     | 8    | root_block          |
//! | 72     | 8    | journal_start       |
//! | 80     | 8    | journal_blocks      |
//! | 88     | 8    | bitmap_start        |
//! | 96     | 8    | bitmap_blocks       |
//! | 104    | 8    | sequence            |
//! | 112    | 8    | journal_tail        |
//! | 120    | 8    | journal_tail_seq    |
//! | 128    | 4    | state               |
//! | 132    | 4    | reserved (zero)     |
//! | 136    | 8    | created_time (s)    |
//! | 144    | 8    | mount_count         |
//! | 152    | 8    | last_mount_time (s) |
//! | 160    | 64   | label (NUL-padded)  |
//! | 224    | 3868 | reserved (zero)     |
//! | 4092   | 4    | crc32c of 0..4092   |

use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::block::{BlockAddr, BLOCK_SIZE, BLOCK_SIZE_U64};
use crate::FormatError;

/// The superblock magic.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"VEXFSVOL";
/// The format version this crate writes and the newest it reads. Readers accept every version
/// from 1 up to this one; version 2 is version 1 plus vector collections.
pub const FORMAT_VERSION: u32 = 2;
/// The first format version that stores vector collections (item kind
/// [`crate::key::ItemKind::Collection`], inodes flagged [`crate::inode::INODE_FLAG_SHARD`]).
/// A volume of an older version is read and written as it is, but gets no collections.
pub const FORMAT_VERSION_COLLECTIONS: u32 = 2;

const _: () = assert!(FORMAT_VERSION_COLLECTIONS <= FORMAT_VERSION);
/// Incompatible features this build understands (none yet).
pub const FEATURES_INCOMPAT_KNOWN: u64 = 0;
/// Read-only-compatible features this build understands (none yet).
pub const FEATURES_RO_COMPAT_KNOWN: u64 = 0;
/// `sequence` and `journal_tail_seq` lie below this (2^63).
pub const SEQUENCE_LIMIT: u64 = 1 << 63;
/// The two superblock slots.
pub const SUPERBLOCK_SLOTS: [BlockAddr; 2] = [BlockAddr(0), BlockAddr(1)];
const CRC_OFFSET: usize = BLOCK_SIZE - 4;

/// Whether the volume was unmounted cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum VolumeState {
    /// Unmounted cleanly: the journal is empty.
    Clean = 1,
    /// Mounted, or crashed while mounted: the journal may hold transactions to replay.
    Mounted = 2,
}

/// The decoded superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub format_version: u32,
    pub block_size: u32,
    pub features_compat: u64,
    pub features_ro_compat: u64,
    pub features_incompat: u64,
    pub uuid: [u8; 16],
    pub block_count: u64,
    pub root_block: BlockAddr,
    pub journal_start: BlockAddr,
    pub journal_blocks: u64,
    pub bitmap_start: BlockAddr,
    pub bitmap_blocks: u64,
    pub sequence: u64,
    pub journal_tail: u64,
    pub journal_tail_seq: u64,
    pub state: VolumeState,
    pub created_time: i64,
    pub mount_count: u64,
    pub last_mount_time: i64,
    pub label: [u8; 64],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawSuperblock {
    magic: [u8; 8],
    format_version: U32,
    block_size: U32,
    features_compat: U64,
    features_ro_compat: U64,
    features_incompat: U64,
    uuid: [u8; 16],
    block_count: U64,
    root_block: U64,
    journal_start: U64,
    journal_blocks: U64,
    bitmap_start: U64,
    bitmap_blocks: U64,
    sequence: U64,
    journal_tail: U64,
    journal_tail_seq: U64,
    state: U32,
    reserved: U32,
    created_time: I64,
    mount_count: U64,
    last_mount_time: I64,
    label: [u8; 64],
}

const RAW_SIZE: usize = 224;
const _: () = assert!(std::mem::size_of::<RawSuperblock>() == RAW_SIZE);

impl Superblock {
    /// The slot this superblock is written to.
    pub fn slot(&self) -> BlockAddr {
        SUPERBLOCK_SLOTS[(self.sequence % 2) as usize]
    }

    /// The volume UUID folded to 64 bits; journal blocks carry it so that blocks left by an
    /// earlier volume on the same device are never replayed.
    pub fn volume_id(&self) -> u64 {
        u64::from_le_bytes(self.uuid[..8].try_into().expect("8 bytes"))
            ^ u64::from_le_bytes(self.uuid[8..].try_into().expect("8 bytes"))
    }

    /// Encodes into a full block with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let raw = RawSuperblock {
            magic: SUPERBLOCK_MAGIC,
            format_version: self.format_version.into(),
            block_size: self.block_size.into(),
            features_compat: self.features_compat.into(),
            features_ro_compat: self.features_ro_compat.into(),
            features_incompat: self.features_incompat.into(),
            uuid: self.uuid,
            block_count: self.block_count.into(),
            root_block: self.root_block.0.into(),
            journal_start: self.journal_start.0.into(),
            journal_blocks: self.journal_blocks.into(),
            bitmap_start: self.bitmap_start.0.into(),
            bitmap_blocks: self.bitmap_blocks.into(),
            sequence: self.sequence.into(),
            journal_tail: self.journal_tail.into(),
            journal_tail_seq: self.journal_tail_seq.into(),
            state: (self.state as u32).into(),
            reserved: 0.into(),
            created_time: self.created_time.into(),
            mount_count: self.mount_count.into(),
            last_mount_time: self.last_mount_time.into(),
            label: self.label,
        };
        let mut block = vec![0u8; BLOCK_SIZE];
        raw.write_to(&mut block[..RAW_SIZE]).expect("size is constant");
        let crc = crc32c::crc32c(&block[..CRC_OFFSET]);
        block[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// Decodes and validates one superblock slot read from `addr`.
    pub fn decode(block: &[u8], addr: BlockAddr) -> Result<Superblock, FormatError> {
        assert_eq!(block.len(), BLOCK_SIZE);
        let raw = RawSuperblock::read_from_bytes(&block[..RAW_SIZE]).expect("size is constant");
        if raw.magic != SUPERBLOCK_MAGIC {
            return Err(FormatError::NotVexfs { found: raw.magic });
        }
        let stored = u32::from_le_bytes(block[CRC_OFFSET..].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&block[..CRC_OFFSET]);
        if stored != computed {
            return Err(FormatError::Checksum { addr: addr.0, stored, computed });
        }
        let superblock = Superblock::from_raw(&raw, addr)?;
        superblock.validate(addr)?;
        if block[RAW_SIZE..CRC_OFFSET].iter().any(|&b| b != 0) {
            return Err(FormatError::malformed(addr.0, "superblock: reserved bytes are not zero"));
        }
        Ok(superblock)
    }

    fn from_raw(raw: &RawSuperblock, addr: BlockAddr) -> Result<Superblock, FormatError> {
        let state = match raw.state.get() {
            1 => VolumeState::Clean,
            2 => VolumeState::Mounted,
            other => return Err(FormatError::malformed(addr.0, format!("superblock: unknown state {other}"))),
        };
        Ok(Superblock {
            format_version: raw.format_version.get(),
            block_size: raw.block_size.get(),
            features_compat: raw.features_compat.get(),
            features_ro_compat: raw.features_ro_compat.get(),
            features_incompat: raw.features_incompat.get(),
            uuid: raw.uuid,
            block_count: raw.block_count.get(),
            root_block: BlockAddr(raw.root_block.get()),
            journal_start: BlockAddr(raw.journal_start.get()),
            journal_blocks: raw.journal_blocks.get(),
            bitmap_start: BlockAddr(raw.bitmap_start.get()),
            bitmap_blocks: raw.bitmap_blocks.get(),
            sequence: raw.sequence.get(),
            journal_tail: raw.journal_tail.get(),
            journal_tail_seq: raw.journal_tail_seq.get(),
            state,
            created_time: raw.created_time.get(),
            mount_count: raw.mount_count.get(),
            last_mount_time: raw.last_mount_time.get(),
            label: raw.label,
        })
    }

    /// Checks version, features and that the regions lie inside the volume without overlapping.
    fn validate(&self, addr: BlockAddr) -> Result<(), FormatError> {
        if self.format_version == 0 || self.format_version > FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: self.format_version, supported: FORMAT_VERSION });
        }
        if self.block_size as usize != BLOCK_SIZE {
            return Err(FormatError::UnsupportedBlockSize { found: self.block_size, supported: BLOCK_SIZE as u32 });
        }
        let unknown =
            (self.features_incompat & !FEATURES_INCOMPAT_KNOWN) | (self.features_ro_compat & !FEATURES_RO_COMPAT_KNOWN);
        if unknown != 0 {
            return Err(FormatError::UnknownFeatures { flags: unknown });
        }
        let bad = |what: &str| Err(FormatError::malformed(addr.0, format!("superblock: {what}")));
        let layout = crate::mkfs::Layout::for_block_count(self.block_count, self.journal_blocks);
        match layout {
            Some(layout) if layout.matches(self) => {}
            _ => return bad("region layout is inconsistent with the block count"),
        }
        if self.journal_tail >= self.journal_blocks {
            return bad("journal tail lies outside the journal");
        }
        // Both only ever grow by one from mkfs's 0 and 1; a value no volume can reach would make
        // the next increment overflow.
        if self.sequence >= SEQUENCE_LIMIT || self.journal_tail_seq >= SEQUENCE_LIMIT {
            return bad("sequence number past 2^63");
        }
        Ok(())
    }

    /// Checks that the volume fits the device it was read from. Decoding cannot know the device,
    /// so mount and fsck call this before anything is sized by `block_count`: once it passes,
    /// the allocator's free counts and fsck's block claims are bounded by the device, whatever
    /// the superblock says. Division, not multiplication, so no block count can wrap around.
    pub fn check_device(&self, device_bytes: u64) -> Result<(), FormatError> {
        let device_blocks = device_bytes / BLOCK_SIZE_U64;
        if self.block_count > device_blocks {
            return Err(FormatError::LargerThanDevice { block_count: self.block_count, device_blocks, device_bytes });
        }
        Ok(())
    }

    /// Picks the superblock to use from the two slots: the valid one with the higher sequence.
    /// When neither is valid, returns the error of slot 0 (the one a user would recognise).
    pub fn choose(
        slot0: Result<Superblock, FormatError>,
        slot1: Result<Superblock, FormatError>,
    ) -> Result<Superblock, FormatError> {
        match (slot0, slot1) {
            (Ok(a), Ok(b)) => Ok(if b.sequence > a.sequence { b } else { a }),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(b)) => Ok(b),
            (Err(a), Err(_)) => Err(a),
        }
    }

    /// The label as a string (up to the first NUL).
    pub fn label_str(&self) -> String {
        let end = self.label.iter().position(|&b| b == 0).unwrap_or(self.label.len());
        String::from_utf8_lossy(&self.label[..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        crate::mkfs::Layout::for_size(8 << 30).unwrap().superblock([7; 16], 1_700_000_000, "test")
    }

    #[test]
    fn round_trips() {
        let sb = sample();
        assert_eq!(Superblock::decode(&sb.encode(), BlockAddr(0)).unwrap(), sb);
    }

    #[test]
    fn refuses_bad_magic_version_features_and_checksum() {
        let sb = sample();
        let mut block = sb.encode();
        block[0] = b'X';
        assert!(matches!(Superblock::decode(&block, BlockAddr(0)), Err(FormatError::NotVexfs { .. })));

        let newer = Superblock { format_version: FORMAT_VERSION + 1, ..sb.clone() };
        assert!(matches!(
            Superblock::decode(&newer.encode(), BlockAddr(0)),
            Err(FormatError::UnsupportedVersion { found: 3, supported: 2 })
        ));
        let unknown = Superblock { features_incompat: 1 << 40, ..sb.clone() };
        assert!(matches!(
            Superblock::decode(&unknown.encode(), BlockAddr(0)),
            Err(FormatError::UnknownFeatures { .. })
        ));

        let mut block = sb.encode();
        block[300] = 1;
        assert!(matches!(Superblock::decode(&block, BlockAddr(1)), Err(FormatError::Checksum { addr: 1, .. })));
    }

    #[test]
    fn every_version_up_to_the_current_one_decodes() {
        for format_version in 1..=FORMAT_VERSION {
            let sb = Superblock { format_version, ..sample() };
            assert_eq!(Superblock::decode(&sb.encode(), BlockAddr(0)).unwrap(), sb);
        }
        let zero = Superblock { format_version: 0, ..sample() };
        assert!(matches!(
            Superblock::decode(&zero.encode(), BlockAddr(0)),
            Err(FormatError::UnsupportedVersion { found: 0, .. })
        ));
        assert_eq!(sample().format_version, FORMAT_VERSION, "mkfs writes the current version");
    }

    #[test]
    fn a_block_count_beyond_the_device_is_refused_without_overflow() {
        let sb = sample();
        let device_bytes = sb.block_count * BLOCK_SIZE_U64;
        assert_eq!(sb.check_device(device_bytes), Ok(()));
        assert_eq!(sb.check_device(device_bytes + 4095), Ok(()));
        assert!(matches!(sb.check_device(device_bytes - 1), Err(FormatError::LargerThanDevice { .. })));
        // 2^52 + n blocks is n blocks' worth of bytes once multiplied out in 64 bits.
        let wrapping = Superblock { block_count: (1 << 52) + sb.block_count, ..sb };
        let error = wrapping.check_device(device_bytes).unwrap_err();
        assert!(error.to_string().contains(&format!("{} blocks", (1u64 << 52) + (8u64 << 30) / 4096)), "{error}");
    }

    #[test]
    fn sequence_numbers_that_could_overflow_are_refused() {
        for sb in
            [Superblock { sequence: SEQUENCE_LIMIT, ..sample() }, Superblock { journal_tail_seq: u64::MAX, ..sample() }]
        {
            assert!(matches!(
                Superblock::decode(&sb.encode(), BlockAddr(0)),
                Err(FormatError::Malformed { addr: 0, .. })
            ));
        }
        let highest = Superblock { sequence: SEQUENCE_LIMIT - 1, journal_tail_seq: SEQUENCE_LIMIT - 1, ..sample() };
        assert_eq!(Superblock::decode(&highest.encode(), BlockAddr(0)).unwrap(), highest);
    }

    #[test]
    fn choose_prefers_the_newer_valid_slot() {
        let a = sample();
        let b = Superblock { sequence: a.sequence + 1, ..a.clone() };
        assert_eq!(Superblock::choose(Ok(a.clone()), Ok(b.clone())).unwrap().sequence, b.sequence);
        assert_eq!(Superblock::choose(Ok(a.clone()), Err(FormatError::NotVexfs { found: [0; 8] })).unwrap(), a);
    }
}
