//! The collection ioctls' wire structs, shared by the daemon (which answers them) and the client
//! (which issues them). They mirror `client/include/vexfs.h` field for field; that header is the
//! documentation, and `tests/tests/collections.rs` checks the two agree (sizes and command
//! numbers, by compiling and running a C program). Not an on-disk format: nothing here is stored.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes of inline payload in the insert and search requests.
pub const PAYLOAD: usize = 16256;
/// Ids in one delete request.
pub const DELETE_IDS: usize = 2032;

pub const CREATE_TEXT: u32 = 1;
pub const INSERT_IDS: u32 = 1;
pub const INSERT_SYNC: u32 = 2;

#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Create {
    pub dim: u32,
    pub metric: u32,
    pub shards: u32,
    pub flags: u32,
    pub chunk_bytes: u32,
    pub chunk_overlap: u32,
    pub reserved: [u64; 5],
    pub embedder: [u8; 256],
}

#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Insert {
    pub dim: u32,
    pub count: u32,
    pub flags: u32,
    pub reserved0: u32,
    pub first_id: u64,
    pub reserved: [u64; 6],
    pub payload: [u8; PAYLOAD],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SearchResult {
    pub id: u64,
    pub distance: f32,
    pub reserved: u32,
}

#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Search {
    pub dim: u32,
    pub nq: u32,
    pub k: u32,
    pub filter_len: u32,
    pub radius: f32,
    pub reserved0: u32,
    pub reserved: [u64; 5],
    pub payload: [u8; PAYLOAD],
}

#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Delete {
    pub count: u32,
    pub flags: u32,
    pub deleted: u64,
    pub reserved: [u64; 6],
    pub ids: [u64; DELETE_IDS],
}

#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Stats {
    pub dim: u32,
    pub metric: u32,
    pub elem: u32,
    pub shards: u32,
    pub flags: u32,
    pub reserved0: u32,
    pub vectors: u64,
    pub dead_rows: u64,
    pub log_bytes: u64,
    pub pending_bytes: u64,
    pub memory_bytes: u64,
    pub inserts: u64,
    pub deletes: u64,
    pub searches: u64,
    pub queries: u64,
    pub search_micros: u64,
    pub docs_queued: u64,
    pub docs_indexed: u64,
    pub docs_skipped: u64,
    pub chunks: u64,
    pub reserved: [u64; 4],
    pub simd: [u8; 32],
    pub embedder: [u8; 256],
}

/// The most results one text search ioctl returns.
pub const TEXT_K_MAX: usize = 32;

#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TextSearch {
    pub k: u32,
    pub text_len: u32,
    pub filter_len: u32,
    pub count: u32,
    pub reserved: [u64; 6],
    pub payload: [u8; PAYLOAD],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TextHit {
    pub id: u64,
    pub ino: u64,
    pub start: u64,
    pub end: u64,
    pub distance: f32,
    pub chunk: u32,
    pub name_len: u16,
    pub snippet_len: u16,
    pub reserved: u32,
}

const MAGIC: u32 = 0x56;
const WRITE: u32 = 1;
const READ: u32 = 2;

/// `_IOC(dir, 'V', nr, size)` in the asm-generic encoding (x86-64, arm64, riscv64).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (MAGIC << 8) | nr
}

pub const IOC_CREATE: u32 = ioc(WRITE, 1, size_of::<Create>());
pub const IOC_INSERT: u32 = ioc(READ | WRITE, 2, size_of::<Insert>());
pub const IOC_KNN: u32 = ioc(READ | WRITE, 3, size_of::<Search>());
pub const IOC_RANGE: u32 = ioc(READ | WRITE, 4, size_of::<Search>());
pub const IOC_STATS: u32 = ioc(READ, 5, size_of::<Stats>());
pub const IOC_DELETE: u32 = ioc(READ | WRITE, 6, size_of::<Delete>());
pub const IOC_SYNC: u32 = ioc(0, 7, 0);
pub const IOC_SEARCH_TEXT: u32 = ioc(READ | WRITE, 8, size_of::<TextSearch>());

const _: () = assert!(size_of::<Create>() == 320);
const _: () = assert!(size_of::<Insert>() == 16328);
const _: () = assert!(size_of::<Search>() == 16320);
const _: () = assert!(size_of::<Delete>() == 16320);
const _: () = assert!(size_of::<Stats>() == 456);
const _: () = assert!(size_of::<SearchResult>() == 16);
const _: () = assert!(size_of::<TextSearch>() == 16320);
const _: () = assert!(size_of::<TextHit>() == 48);
// The largest hits (255-byte name, 200-byte snippet, padding) fit TEXT_K_MAX to a payload.
const _: () = assert!(TEXT_K_MAX * (48 + 256 + 200) <= PAYLOAD);

/// The bytes of a NUL-padded fixed-size string field, up to the first NUL.
pub fn c_str(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Copies `text` into a fixed-size field, NUL-padded, cut to leave at least one NUL.
pub fn set_c_str(field: &mut [u8], text: &str) {
    field.fill(0);
    let n = text.len().min(field.len() - 1);
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_numbers_match_the_c_header() {
        // Printed by a C program including client/include/vexfs.h.
        assert_eq!(IOC_CREATE, 0x4140_5601);
        assert_eq!(IOC_INSERT, 0xffc8_5602);
        assert_eq!(IOC_KNN, 0xffc0_5603);
        assert_eq!(IOC_RANGE, 0xffc0_5604);
        assert_eq!(IOC_STATS, 0x81c8_5605);
        assert_eq!(IOC_DELETE, 0xffc0_5606);
        assert_eq!(IOC_SYNC, 0x5607);
        assert_eq!(IOC_SEARCH_TEXT, 0xffc0_5608);
    }
}
