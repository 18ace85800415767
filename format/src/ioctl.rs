//! The collection ioctls' wire structs, shared by the daemon (which answers them) and the client
//! (which issues them). They mirror `client/include/vexfs.h` field for field; that header is the
//! documentation, and `tests/tests/collections.rs` checks the two agree (sizes and command
//! numbers, by compiling and running a C program). Not an on-disk format: nothing here is stored.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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

// ---------------------------------------------------------------------------------------------
// The insert stream
// ---------------------------------------------------------------------------------------------

/// The name of a collection's insert stream, the special file that takes batches larger than an
/// ioctl payload (`docs/COLLECTIONS.md`).
pub const INSERT_STREAM_NAME: &str = ".vexfs-insert";
/// Magic of a batch on the insert stream: the bytes `"VXIB"`.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"VXIB");
/// The batch layout version this code writes and reads.
pub const BATCH_VERSION: u16 = 1;
/// Batch flag: `count` ids follow the header.
pub const BATCH_FLAG_IDS: u16 = 1;
/// The longest batch, header included (1 GiB): the daemon holds a batch whole before it applies it.
pub const BATCH_BYTES_MAX: usize = 1 << 30;

/// The 32-byte header of a batch on the insert stream, all little-endian; `count` u64 ids follow
/// when flagged, then `count × dim` f32 values.
#[derive(Clone, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchHeader {
    magic: U32,
    version: U16,
    flags: U16,
    dim: U32,
    count: U32,
    reserved: [u8; 16],
}

const _: () = assert!(size_of::<BatchHeader>() == 32);

impl BatchHeader {
    /// The header of a batch of `count` vectors of dimension `dim`, with ids or without.
    pub fn new(dim: u32, count: u32, with_ids: bool) -> BatchHeader {
        let flags = if with_ids { BATCH_FLAG_IDS } else { 0 };
        BatchHeader {
            magic: BATCH_MAGIC.into(),
            version: BATCH_VERSION.into(),
            flags: flags.into(),
            dim: dim.into(),
            count: count.into(),
            reserved: [0; 16],
        }
    }

    /// Reads and checks the header at the start of `bytes` (at least 32 of them): magic, version,
    /// flags, reserved bytes, a dimension and count of at least 1, and a batch length within
    /// [`BATCH_BYTES_MAX`]. The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, String> {
        let (header, _) = BatchHeader::read_from_prefix(bytes).map_err(|_| "a batch header is 32 bytes".to_owned())?;
        if header.magic.get() != BATCH_MAGIC {
            return Err("a batch does not start with the VXIB magic".to_owned());
        }
        if header.version.get() != BATCH_VERSION {
            return Err(format!("batch version {} (this daemon reads version {BATCH_VERSION})", header.version.get()));
        }
        if header.flags.get() & !BATCH_FLAG_IDS != 0 || header.reserved != [0; 16] {
            return Err("unknown batch flags or non-zero reserved bytes".to_owned());
        }
        if header.dim.get() == 0 || header.count.get() == 0 {
            return Err(format!("batch of {} vectors of dimension {}", header.count.get(), header.dim.get()));
        }
        let len = header.batch_len();
        if len > BATCH_BYTES_MAX as u64 {
            return Err(format!("batch of {len} bytes (at most 1 GiB)"));
        }
        Ok(header)
    }

    pub fn dim(&self) -> usize {
        self.dim.get() as usize
    }

    pub fn count(&self) -> usize {
        self.count.get() as usize
    }

    pub fn with_ids(&self) -> bool {
        self.flags.get() & BATCH_FLAG_IDS != 0
    }

    /// The whole batch's length in bytes, header included; `u64::MAX` for a count and dimension
    /// whose product does not fit (far past any limit).
    pub fn batch_len(&self) -> u64 {
        let ids = if self.with_ids() { 8 } else { 0 };
        // At most 8 + 4 × (2³² − 1): fits.
        let row = ids + 4 * u64::from(self.dim.get());
        u64::from(self.count.get()).saturating_mul(row).saturating_add(size_of::<BatchHeader>() as u64)
    }
}

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

    #[test]
    fn batch_headers_are_fixed_and_checked() {
        let header = BatchHeader::new(128, 3, true);
        #[rustfmt::skip]
        let expected: [u8; 32] = [
            b'V', b'X', b'I', b'B', // magic
            1, 0,                   // version
            1, 0,                   // flags: ids
            128, 0, 0, 0,           // dim
            3, 0, 0, 0,             // count
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        ];
        assert_eq!(header.as_bytes(), &expected);
        assert_eq!(header.batch_len(), 32 + 3 * (8 + 512));
        let parsed = BatchHeader::parse(&expected).unwrap();
        assert_eq!((parsed.dim(), parsed.count(), parsed.with_ids()), (128, 3, true));
        let refused = |at: usize, value: u8| {
            let mut bytes = expected;
            bytes[at] = value;
            BatchHeader::parse(&bytes).unwrap_err()
        };
        assert!(refused(0, b'X').contains("magic"));
        assert!(refused(4, 2).contains("version 2"));
        assert!(refused(6, 3).contains("flags"));
        assert!(refused(31, 1).contains("reserved"));
        assert!(refused(8, 0).contains("dimension 0"));
        assert!(refused(12, 0).contains("0 vectors"));
        assert!(BatchHeader::parse(&expected[..31]).unwrap_err().contains("32 bytes"));
        let huge = BatchHeader::new(65_536, 4096, false);
        assert!(BatchHeader::parse(huge.as_bytes()).unwrap_err().contains("at most 1 GiB"));
        // A count and dimension whose product passes u64 (found by the insert_stream target).
        let beyond = BatchHeader::new(u32::MAX, u32::MAX, true);
        assert_eq!(beyond.batch_len(), u64::MAX);
        assert!(BatchHeader::parse(beyond.as_bytes()).unwrap_err().contains("at most 1 GiB"));
    }
}
