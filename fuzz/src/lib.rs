//! What the fuzz targets share: a cursor over the fuzzer's bytes, checksum fix-ups that let
//! mutated blocks and records past their checksums, and the sparse image the `fsck` target reads.
//!
//! Fix-ups matter because every on-disk structure is checksummed: a random mutation of a sealed
//! block only ever reaches the checksum test. Each target that decodes checksummed bytes takes a
//! flag from its input saying whether to restamp the checksums first, so the fuzzer explores both
//! the checksum test and everything behind it.

use std::collections::HashMap;

use vexfs_format::block::{self, META_MAGIC};
use vexfs_format::superblock::SUPERBLOCK_MAGIC;
use vexfs_format::{BlockAddr, MetaHeader, BLOCK_SIZE};

/// Reads the fuzzer's bytes front to back; past the end every read gives zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    pub fn u8(&mut self) -> u8 {
        let Some((&first, rest)) = self.data.split_first() else { return 0 };
        self.data = rest;
        first
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// Up to `len` bytes (fewer at the end of the input).
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// `bytes` as one block: cut or zero-padded to [`BLOCK_SIZE`].
pub fn block_of(bytes: &[u8]) -> Vec<u8> {
    let mut block = bytes[..bytes.len().min(BLOCK_SIZE)].to_vec();
    block.resize(BLOCK_SIZE, 0);
    block
}

/// Restamps the checksum of a block that looks like a metadata block or a superblock, keeping
/// every other byte; anything else is left alone. [`block::seal`] asserts what a block it seals
/// must look like, so those preconditions are tested here first.
pub fn reseal(block: &mut [u8]) {
    assert_eq!(block.len(), BLOCK_SIZE);
    if block[..8] == SUPERBLOCK_MAGIC {
        let crc = crc32c::crc32c(&block[..BLOCK_SIZE - 4]);
        block[BLOCK_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
        return;
    }
    let header = MetaHeader::read(block);
    if header.magic.get() == META_MAGIC && header.block_kind().is_some() && header.reserved.get() == 0 {
        block::seal(block, header.generation.get());
    }
}

/// Restamps the checksums of the shard-log records laid back to back in `bytes` (header and
/// payload crc32c), as far as their headers' lengths reach, so mutated records get past them.
pub fn fix_log_records(bytes: &mut [u8]) {
    const HEADER: usize = vexfs_format::collection::LOG_HEADER_SIZE;
    let mut at = 0;
    while at + HEADER <= bytes.len() {
        let record = &mut bytes[at..];
        let payload_len = u64::from_le_bytes(record[16..24].try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(payload_len).ok().and_then(|len| len.checked_add(HEADER)) else { return };
        if end > record.len() {
            return;
        }
        let payload_crc = crc32c::crc32c(&record[HEADER..end]);
        record[32..36].copy_from_slice(&payload_crc.to_le_bytes());
        record[36..40].fill(0);
        let header_crc = crc32c::crc32c(&record[..HEADER]);
        record[36..40].copy_from_slice(&header_crc.to_le_bytes());
        at += end.next_multiple_of(vexfs_format::collection::LOG_ALIGN);
    }
}

/// Blocks of the device the `fsck` target checks (16 MiB: the smallest volume mkfs makes).
pub const IMAGE_BLOCKS: u64 = 4096;

/// A device given as its non-zero blocks, the input of the `fsck` target.
///
/// Encoding: one flags byte (bit 0: restamp the checksum of every block that looks like a
/// metadata block or a superblock; bit 1: the device is twice [`IMAGE_BLOCKS`] long), then
/// records of a little-endian u16 block address (taken modulo the device's blocks), a u16 length
/// (at most [`BLOCK_SIZE`]) and that many bytes, the start of the block (the rest is zero). A
/// later record for the same block replaces the earlier one. Blocks without a record read as
/// zeros. The seeds (`daemon/tests/fuzz_seeds.rs`) are the golden images of
/// `format/tests/golden/` in this form.
pub struct SparseImage {
    pub device_blocks: u64,
    pub blocks: HashMap<u64, Vec<u8>>,
}

impl SparseImage {
    pub fn parse(data: &[u8]) -> SparseImage {
        let mut input = Bytes::new(data);
        let flags = input.u8();
        let device_blocks = if flags & 2 != 0 { 2 * IMAGE_BLOCKS } else { IMAGE_BLOCKS };
        let mut blocks = HashMap::new();
        while !input.data.is_empty() {
            let addr = u64::from(input.u16()) % device_blocks;
            let len = usize::from(input.u16());
            blocks.insert(addr, block_of(input.take(len)));
        }
        if flags & 1 != 0 {
            blocks.values_mut().for_each(|block| reseal(block));
        }
        SparseImage { device_blocks, blocks }
    }

    /// Fills `buf` with block `addr`, as a device read would.
    pub fn read(&self, addr: BlockAddr, buf: &mut [u8]) -> Result<(), String> {
        if addr.0 >= self.device_blocks {
            return Err(format!("block {addr} is past the end of the device"));
        }
        match self.blocks.get(&addr.0) {
            Some(block) => buf.copy_from_slice(block),
            None => buf.fill(0),
        }
        Ok(())
    }
}
