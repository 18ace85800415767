//! Vector collections on disk: the collection record, vector attributes and the shard log.
//!
//! A collection is a directory with a `(dir, Collection, 0)` item holding a
//! [`CollectionRecord`]. Its vectors live in shard logs: hidden regular files (inodes flagged
//! [`crate::inode::INODE_FLAG_SHARD`], reachable only from the record) whose contents are a
//! sequence of [`LogRecord`]s, each 8-byte aligned. Collections exist from format version 2
//! ([`crate::superblock::FORMAT_VERSION_COLLECTIONS`]). `docs/FORMAT.md`, "Collections", is the
//! reference; this is a summary. All integers are little-endian.
//!
//! Collection record (the item value, 16 + 8 × shard_count bytes, plus the text parameters):
//!
//! | offset | size | field          | meaning                                                  |
//! |--------|------|----------------|----------------------------------------------------------|
//! | 0      | 1    | record_version | [`COLLECTION_RECORD_VERSION`] (1)                        |
//! | 1      | 1    | metric         | [`Metric`]                                               |
//! | 2      | 1    | elem           | [`ElemType`]                                             |
//! | 3      | 1    | flags          | bit 0 = [`COLLECTION_FLAG_TEXT`]; other bits zero        |
//! | 4      | 4    | dim            | 1..=[`DIM_MAX`]                                          |
//! | 8      | 4    | shard_count    | 1..=[`SHARDS_MAX`]                                       |
//! | 12     | 4    | reserved       | zero                                                     |
//! | 16     | 8 n  | shards         | shard log inode numbers, distinct                        |
//! | ..     | 1    | embedder_len   | text only: 1..=[`EMBEDDER_MAX`]                          |
//! | ..     | ..   | embedder       | text only: UTF-8                                         |
//! | ..     | 4    | chunk_bytes    | text only: [`CHUNK_BYTES_MIN`]..=[`CHUNK_BYTES_MAX`]     |
//! | ..     | 4    | chunk_overlap  | text only: less than `chunk_bytes`                       |
//!
//! Attributes of one vector: `count u16`, then per attribute `key_len u8 | key | type u8 |
//! value`, the value being 8 bytes for [`ATTR_TYPE_INT`] (i64) and [`ATTR_TYPE_FLOAT`] (f64
//! bits), and `len u16 | UTF-8 bytes` for [`ATTR_TYPE_STR`].
//!
//! Shard log record: a [`LOG_HEADER_SIZE`]-byte header, the payload, then zero padding to the next
//! multiple of 8, so that every record starts 8-byte aligned in the log.
//!
//! | offset | size | field       | meaning                                                     |
//! |--------|------|-------------|-------------------------------------------------------------|
//! | 0      | 4    | magic       | [`LOG_MAGIC`] (`"VXLR"`)                                    |
//! | 4      | 1    | kind        | [`LogKind`]                                                 |
//! | 5      | 1    | flags       | bit 0 = [`LOG_FLAG_ATTRS`] (inserts only); other bits zero  |
//! | 6      | 2    | reserved    | zero                                                        |
//! | 8      | 4    | count       | ids in the record, at least 1                               |
//! | 12     | 4    | dim         | inserts: the collection's dimension; deletes: 0             |
//! | 16     | 8    | payload_len | payload bytes (padding excluded)                            |
//! | 24     | 8    | seq         | strictly increasing within one shard log                    |
//! | 32     | 4    | payload_crc | crc32c of the payload                                       |
//! | 36     | 4    | header_crc  | crc32c of the 64 header bytes with this field taken as zero |
//! | 40     | 24   | reserved    | zero                                                        |
//!
//! Insert payload: `ids [u64; count] | vectors [f32; count × dim]`, then, with
//! [`LOG_FLAG_ATTRS`], `attr_offsets [u32; count + 1] | attribute sets`, the attributes of vector
//! `i` being the blob bytes `attr_offsets[i]..attr_offsets[i + 1]`. Delete payload:
//! `ids [u64; count]`.
//!
//! Invariants: every decoder refuses what its encoder cannot produce (unknown discriminants and
//! flags, non-zero reserved bytes, trailing bytes, non-finite floats), so a decoded value always
//! re-encodes to the bytes it came from; encoders assert their input is valid, so a writer never
//! produces bytes its reader refuses. Decoders never panic on any input.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::inode::FIRST_INO;
use crate::key::ORPHAN_OBJECT;
use crate::FormatError;

/// The largest vector dimension.
pub const DIM_MAX: u32 = 65_536;
/// The largest number of shards of one collection.
pub const SHARDS_MAX: u32 = 64;
/// The longest attribute key, in bytes.
pub const ATTR_KEY_MAX: usize = 255;
/// The longest string attribute value, in bytes.
pub const ATTR_STR_MAX: usize = 65_535;
/// The most attributes on one vector.
pub const ATTRS_MAX: usize = 1024;
/// Attribute keys starting with this prefix are set by VexFS itself (the document a text chunk
/// came from, its position); a caller's attributes may not use it.
pub const ATTR_RESERVED_PREFIX: &str = "vexfs.";

/// The version of the collection record's own layout (its first byte).
pub const COLLECTION_RECORD_VERSION: u8 = 1;
/// Collection record flag: the collection embeds text documents ([`TextParams`] follow).
pub const COLLECTION_FLAG_TEXT: u8 = 1;
/// The longest embedder name, in bytes.
pub const EMBEDDER_MAX: usize = 255;
/// The shortest chunk a text collection may ask for, in bytes.
pub const CHUNK_BYTES_MIN: u32 = 64;
/// The longest chunk a text collection may ask for, in bytes (1 MiB).
pub const CHUNK_BYTES_MAX: u32 = 1 << 20;
/// The fixed part of a collection record, before the shard inode numbers.
pub const COLLECTION_FIXED_SIZE: usize = 16;

/// Attribute value type: a signed 64-bit integer.
pub const ATTR_TYPE_INT: u8 = 1;
/// Attribute value type: a finite IEEE 754 double.
pub const ATTR_TYPE_FLOAT: u8 = 2;
/// Attribute value type: a UTF-8 string of at most [`ATTR_STR_MAX`] bytes.
pub const ATTR_TYPE_STR: u8 = 3;

/// Magic number at the start of every shard log record: the bytes `"VXLR"`.
pub const LOG_MAGIC: u32 = u32::from_le_bytes(*b"VXLR");
/// The size of a shard log record header.
pub const LOG_HEADER_SIZE: usize = 64;
/// Records start at multiples of this in a shard log; each is zero-padded to it.
pub const LOG_ALIGN: usize = 8;
/// Log record flag (inserts): the payload carries attribute sets.
pub const LOG_FLAG_ATTRS: u8 = 1;
/// The longest log record, header and padding included (256 MiB). Bounds the memory a reader
/// needs for one record; writers split larger batches into several records.
pub const LOG_RECORD_BYTES_MAX: usize = 256 << 20;

// Offsets always fit the u32 attribute offsets, and the limit keeps records aligned.
const _: () = assert!(LOG_RECORD_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(LOG_RECORD_BYTES_MAX.is_multiple_of(LOG_ALIGN));
const _: () = assert!(LOG_HEADER_SIZE.is_multiple_of(LOG_ALIGN));
// The largest record fits an inline B-tree value (1024 bytes), so it never needs overflow blocks.
const _: () =
    assert!(COLLECTION_FIXED_SIZE + 8 * SHARDS_MAX as usize + 1 + EMBEDDER_MAX + 8 <= crate::node::INLINE_VALUE_MAX);
// Counts and lengths fit the integers that store them.
const _: () = assert!(ATTRS_MAX <= u16::MAX as usize);
const _: () = assert!(ATTR_STR_MAX <= u16::MAX as usize);
const _: () = assert!(ATTR_KEY_MAX <= u8::MAX as usize);
const _: () = assert!(EMBEDDER_MAX <= u8::MAX as usize);

/// How the distance between two vectors is measured. Stored as a `u8`; discriminants are never
/// reused. Every metric reports a *distance*: smaller is closer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Metric {
    /// Euclidean distance, `sqrt(Σ (a−b)²)`.
    L2 = 1,
    /// `1 − cos(a, b)`; vectors are normalised when inserted, queries when searched.
    Cosine = 2,
    /// `−(a·b)`: the largest inner product is the nearest.
    Dot = 3,
    /// `Σ |a−b|`.
    Manhattan = 4,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::L2, Metric::Cosine, Metric::Dot, Metric::Manhattan];

    pub fn from_u8(value: u8) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| *m as u8 == value)
    }

    /// The name users type and see: `l2`, `cosine`, `dot`, `manhattan`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::Manhattan => "manhattan",
        }
    }

    /// Parses a user-supplied name (case-insensitive).
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// The element type of stored vectors. Stored as a `u8`. Version 1 of collections stores float32
/// only; see `docs/FORMAT.md` for how narrower types would be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ElemType {
    F32 = 1,
}

impl ElemType {
    pub fn from_u8(value: u8) -> Option<ElemType> {
        (value == 1).then_some(ElemType::F32)
    }

    pub fn name(self) -> &'static str {
        "float32"
    }
}

/// How a text collection turns documents into vectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextParams {
    /// The embedder: `builtin:<model name>` or `ollama:<url>:<model>` (at most 255 bytes).
    pub embedder: String,
    /// Target chunk length in bytes (chunks break at paragraph, line or word boundaries).
    pub chunk_bytes: u32,
    /// Bytes of overlap between consecutive chunks (less than `chunk_bytes`).
    pub chunk_overlap: u32,
}

/// The value of a `(dir, Collection, 0)` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionRecord {
    pub dim: u32,
    pub metric: Metric,
    pub elem: ElemType,
    /// The shard logs' inode numbers; a vector with id `i` lives in shard `i % shards.len()`.
    pub shards: Vec<u64>,
    /// Present for text collections (documents written into the directory are embedded).
    pub text: Option<TextParams>,
}

/// One attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Str(String),
}

/// The attributes of one vector: keys unique, in the order given.
pub type Attrs = Vec<(String, AttrValue)>;

/// What a shard log record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LogKind {
    /// Adds vectors, or replaces those whose ids already exist.
    Insert = 1,
    /// Removes vectors by id.
    Delete = 2,
}

impl LogKind {
    /// Decodes a stored discriminant.
    pub fn from_u8(value: u8) -> Option<LogKind> {
        match value {
            1 => Some(LogKind::Insert),
            2 => Some(LogKind::Delete),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Collection record
// ---------------------------------------------------------------------------------------------

/// Checks everything about a record that its types do not: the ranges of `dim`, the shard count
/// and inode numbers, and the text parameters. The error names the first problem.
pub fn validate_collection(record: &CollectionRecord) -> Result<(), String> {
    if record.dim == 0 || record.dim > DIM_MAX {
        return Err(format!("dimension {} is not in 1..={DIM_MAX}", record.dim));
    }
    let shard_count = record.shards.len();
    if shard_count == 0 || shard_count > SHARDS_MAX as usize {
        return Err(format!("{shard_count} shards is not in 1..={SHARDS_MAX}"));
    }
    for (index, &ino) in record.shards.iter().enumerate() {
        if !(FIRST_INO..ORPHAN_OBJECT).contains(&ino) {
            return Err(format!("shard {index} names inode {ino}, which is not a file inode number"));
        }
        if record.shards[..index].contains(&ino) {
            return Err(format!("shard {index} names inode {ino}, as an earlier shard does"));
        }
    }
    match &record.text {
        Some(text) => validate_text(text),
        None => Ok(()),
    }
}

fn validate_text(text: &TextParams) -> Result<(), String> {
    let embedder_len = text.embedder.len();
    if embedder_len == 0 || embedder_len > EMBEDDER_MAX {
        return Err(format!("embedder name of {embedder_len} bytes is not in 1..={EMBEDDER_MAX}"));
    }
    if text.embedder.contains('\0') {
        return Err("embedder name contains a NUL".to_string());
    }
    validate_chunking(text.chunk_bytes, text.chunk_overlap)
}

/// Checks a text collection's chunking: a size in [`CHUNK_BYTES_MIN`]..=[`CHUNK_BYTES_MAX`] and
/// an overlap below it.
pub fn validate_chunking(chunk_bytes: u32, chunk_overlap: u32) -> Result<(), String> {
    if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&chunk_bytes) {
        return Err(format!("chunk size {chunk_bytes} is not in {CHUNK_BYTES_MIN}..={CHUNK_BYTES_MAX}"));
    }
    if chunk_overlap >= chunk_bytes {
        return Err(format!("chunk overlap {chunk_overlap} is not below the chunk size {chunk_bytes}"));
    }
    Ok(())
}

/// Encodes a `Collection` item value. Panics if the record is invalid ([`validate_collection`]):
/// callers validate user input first.
pub fn encode_collection(record: &CollectionRecord) -> Vec<u8> {
    if let Err(what) = validate_collection(record) {
        panic!("encoding an invalid collection record: {what}");
    }
    let mut out = Vec::with_capacity(COLLECTION_FIXED_SIZE + 8 * record.shards.len() + 2 * EMBEDDER_MAX);
    out.push(COLLECTION_RECORD_VERSION);
    out.push(record.metric as u8);
    out.push(record.elem as u8);
    out.push(if record.text.is_some() { COLLECTION_FLAG_TEXT } else { 0 });
    out.extend_from_slice(&record.dim.to_le_bytes());
    out.extend_from_slice(&(record.shards.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for ino in &record.shards {
        out.extend_from_slice(&ino.to_le_bytes());
    }
    if let Some(text) = &record.text {
        out.push(text.embedder.len() as u8);
        out.extend_from_slice(text.embedder.as_bytes());
        out.extend_from_slice(&text.chunk_bytes.to_le_bytes());
        out.extend_from_slice(&text.chunk_overlap.to_le_bytes());
    }
    out
}

/// Decodes a `Collection` item value found in block `addr` (named in errors).
pub fn decode_collection(bytes: &[u8], addr: u64) -> Result<CollectionRecord, FormatError> {
    let malformed = |what: String| FormatError::malformed(addr, format!("collection record: {what}"));
    let mut cursor = Cursor::new(bytes);
    let fixed = cursor.take(COLLECTION_FIXED_SIZE).map_err(malformed)?;
    let (record_version, metric, elem, flags) = (fixed[0], fixed[1], fixed[2], fixed[3]);
    if record_version != COLLECTION_RECORD_VERSION {
        return Err(malformed(format!("unknown record version {record_version}")));
    }
    let metric = Metric::from_u8(metric).ok_or_else(|| malformed(format!("unknown metric {metric}")))?;
    let elem = ElemType::from_u8(elem).ok_or_else(|| malformed(format!("unknown element type {elem}")))?;
    if flags & !COLLECTION_FLAG_TEXT != 0 {
        return Err(malformed(format!("unknown flags {flags:#04x}")));
    }
    let dim = le_u32(&fixed[4..8]);
    let shard_count = le_u32(&fixed[8..12]);
    if fixed[12..16] != [0; 4] {
        return Err(malformed("reserved bytes are not zero".to_string()));
    }
    if shard_count == 0 || shard_count > SHARDS_MAX {
        return Err(malformed(format!("{shard_count} shards is not in 1..={SHARDS_MAX}")));
    }
    let shards = le_u64s(cursor.take(8 * shard_count as usize).map_err(malformed)?);
    let text =
        if flags & COLLECTION_FLAG_TEXT != 0 { Some(decode_text(&mut cursor).map_err(malformed)?) } else { None };
    if !cursor.rest().is_empty() {
        return Err(malformed(format!("{} trailing bytes", cursor.rest().len())));
    }
    let record = CollectionRecord { dim, metric, elem, shards, text };
    validate_collection(&record).map_err(malformed)?;
    Ok(record)
}

fn decode_text(cursor: &mut Cursor<'_>) -> Result<TextParams, String> {
    let embedder_len = usize::from(cursor.take(1)?[0]);
    let embedder = std::str::from_utf8(cursor.take(embedder_len)?)
        .map_err(|_| "embedder name is not UTF-8".to_string())?
        .to_string();
    let chunk_bytes = le_u32(cursor.take(4)?);
    let chunk_overlap = le_u32(cursor.take(4)?);
    Ok(TextParams { embedder, chunk_bytes, chunk_overlap })
}

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

/// Checks one vector's attributes: at most [`ATTRS_MAX`]; keys of 1..=[`ATTR_KEY_MAX`] bytes,
/// without NUL, unique, and outside [`ATTR_RESERVED_PREFIX`] unless `allow_reserved`; strings of
/// at most [`ATTR_STR_MAX`] bytes; floats finite. The error names the first problem.
pub fn validate_attrs(attrs: &Attrs, allow_reserved: bool) -> Result<(), String> {
    if attrs.len() > ATTRS_MAX {
        return Err(format!("{} attributes: at most {ATTRS_MAX}", attrs.len()));
    }
    for (key, value) in attrs {
        if key.is_empty() || key.len() > ATTR_KEY_MAX {
            return Err(format!("key {key:?} is {} bytes, not 1..={ATTR_KEY_MAX}", key.len()));
        }
        if key.contains('\0') {
            return Err(format!("key {key:?} contains a NUL"));
        }
        if !allow_reserved && key.starts_with(ATTR_RESERVED_PREFIX) {
            return Err(format!("key {key:?}: the prefix {ATTR_RESERVED_PREFIX:?} is reserved for VexFS"));
        }
        match value {
            AttrValue::Float(float) if !float.is_finite() => {
                return Err(format!("key {key:?}: the float {float} is not finite"));
            }
            AttrValue::Str(text) if text.len() > ATTR_STR_MAX => {
                return Err(format!("key {key:?}: the string is {} bytes, at most {ATTR_STR_MAX}", text.len()));
            }
            _ => {}
        }
    }
    match duplicate_key(attrs) {
        Some(key) => Err(format!("key {key:?} appears twice")),
        None => Ok(()),
    }
}

/// A key that appears more than once, if any.
fn duplicate_key(attrs: &Attrs) -> Option<&str> {
    // A vector usually has a handful of attributes: comparing pairs beats hashing or sorting.
    const PAIRWISE_MAX: usize = 16;
    if attrs.len() <= PAIRWISE_MAX {
        return attrs
            .iter()
            .enumerate()
            .find(|(index, (key, _))| attrs[..*index].iter().any(|(earlier, _)| earlier == key))
            .map(|(_, (key, _))| key.as_str());
    }
    let mut keys: Vec<&str> = attrs.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    keys.windows(2).find(|pair| pair[0] == pair[1]).map(|pair| pair[0])
}

/// The encoded size of one vector's attributes.
pub fn encoded_attrs_len(attrs: &Attrs) -> usize {
    let value_len = |value: &AttrValue| match value {
        AttrValue::Int(_) | AttrValue::Float(_) => 8,
        AttrValue::Str(text) => 2 + text.len(),
    };
    2 + attrs.iter().map(|(key, value)| 2 + key.len() + value_len(value)).sum::<usize>()
}

/// Appends the encoding of one vector's attributes to `out`. Panics if they are invalid
/// ([`validate_attrs`] with reserved keys allowed).
pub fn encode_attrs(attrs: &Attrs, out: &mut Vec<u8>) {
    let start = out.len();
    put_attrs(out, attrs);
    debug_assert_eq!(out.len() - start, encoded_attrs_len(attrs));
}

/// Writes the encoding of one vector's attributes to `out`. Panics if they are invalid.
fn put_attrs(out: &mut impl Sink, attrs: &Attrs) {
    if let Err(what) = validate_attrs(attrs, true) {
        panic!("encoding invalid attributes: {what}");
    }
    out.put(&(attrs.len() as u16).to_le_bytes());
    for (key, value) in attrs {
        out.put(&[key.len() as u8]);
        out.put(key.as_bytes());
        match value {
            AttrValue::Int(int) => {
                out.put(&[ATTR_TYPE_INT]);
                out.put(&int.to_le_bytes());
            }
            AttrValue::Float(float) => {
                out.put(&[ATTR_TYPE_FLOAT]);
                out.put(&float.to_bits().to_le_bytes());
            }
            AttrValue::Str(text) => {
                out.put(&[ATTR_TYPE_STR]);
                out.put(&(text.len() as u16).to_le_bytes());
                out.put(text.as_bytes());
            }
        }
    }
}

/// Decodes one vector's attributes: exactly the bytes of one encoding, validated as
/// [`validate_attrs`] with reserved keys allowed.
pub fn decode_attrs(bytes: &[u8]) -> Result<Attrs, String> {
    let mut cursor = Cursor::new(bytes);
    let count = usize::from(le_u16(cursor.take(2)?));
    if count > ATTRS_MAX {
        return Err(format!("{count} attributes: at most {ATTRS_MAX}"));
    }
    let mut attrs = Vec::with_capacity(count);
    for index in 0..count {
        let key_len = usize::from(cursor.take(1)?[0]);
        let key = std::str::from_utf8(cursor.take(key_len)?)
            .map_err(|_| format!("the key of attribute {index} is not UTF-8"))?
            .to_string();
        let value = match cursor.take(1)?[0] {
            ATTR_TYPE_INT => AttrValue::Int(i64::from_le_bytes(array(cursor.take(8)?))),
            ATTR_TYPE_FLOAT => AttrValue::Float(f64::from_bits(le_u64(cursor.take(8)?))),
            ATTR_TYPE_STR => {
                let len = usize::from(le_u16(cursor.take(2)?));
                let text = std::str::from_utf8(cursor.take(len)?)
                    .map_err(|_| format!("the string value of key {key:?} is not UTF-8"))?;
                AttrValue::Str(text.to_string())
            }
            other => return Err(format!("key {key:?} has unknown value type {other}")),
        };
        attrs.push((key, value));
    }
    if !cursor.rest().is_empty() {
        return Err(format!("{} trailing bytes", cursor.rest().len()));
    }
    validate_attrs(&attrs, true)?;
    Ok(attrs)
}

// ---------------------------------------------------------------------------------------------
// Shard log records
// ---------------------------------------------------------------------------------------------

/// One decoded shard log record.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub seq: u64,
    pub body: LogBody,
}

/// What a record does.
#[derive(Clone, Debug, PartialEq)]
pub enum LogBody {
    /// `vectors` holds `ids.len() × dim` values, vector `i` at `i × dim ..`; `attrs` is empty
    /// (no vector has attributes) or has exactly `ids.len()` entries.
    Insert {
        ids: Vec<u64>,
        vectors: Vec<f32>,
        attrs: Vec<Attrs>,
    },
    Delete {
        ids: Vec<u64>,
    },
}

impl LogRecord {
    /// The record's kind.
    pub fn kind(&self) -> LogKind {
        match self.body {
            LogBody::Insert { .. } => LogKind::Insert,
            LogBody::Delete { .. } => LogKind::Delete,
        }
    }
}

/// Why the bytes at the start of a slice are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The bytes end before the record does: `need` bytes from the record's start (its padding
    /// included) would hold it. At the end of a log, this is a torn append.
    #[error("the record needs {need} bytes, more than the log holds")]
    Truncated { need: usize },
    /// The bytes are not a valid record (bad magic or checksum, values out of range).
    #[error("{0}")]
    Corrupt(String),
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawLogHeader {
    magic: U32,
    kind: u8,
    flags: u8,
    reserved0: [u8; 2],
    count: U32,
    dim: U32,
    payload_len: U64,
    seq: U64,
    payload_crc: U32,
    header_crc: U32,
    reserved1: [u8; 24],
}

const _: () = assert!(std::mem::size_of::<RawLogHeader>() == LOG_HEADER_SIZE);
const HEADER_CRC_OFFSET: usize = std::mem::offset_of!(RawLogHeader, header_crc);

/// Rounds a length up to the next multiple of [`LOG_ALIGN`].
fn padded(len: usize) -> usize {
    len.next_multiple_of(LOG_ALIGN)
}

/// The encoded length of a record of `count` ids, padding included: an insert of `dim`-dimensional
/// vectors whose attribute sets encode to `attrs_bytes` bytes in all (the sum of
/// [`encoded_attrs_len`]; 0 for a record without attributes), or a delete when `dim` is 0.
///
/// Example: an insert of 3 vectors of dimension 5 without attributes is 64 + 3 × 8 + 3 × 5 × 4 =
/// 148 bytes, padded to 152; with attribute sets of 10 bytes in all it also has 4 × 4 offset
/// bytes: 64 + 24 + 60 + 16 + 10 = 174, padded to 176.
pub fn record_len(count: usize, dim: u32, attrs_bytes: usize) -> usize {
    let attrs = if attrs_bytes == 0 { 0 } else { 4 * (count + 1) + attrs_bytes };
    padded(LOG_HEADER_SIZE + 8 * count + 4 * count * dim as usize + attrs)
}

/// The encoded length of an insert record of `ids.len()` vectors of dimension `dim` with these
/// attribute sets (empty, or one per id), padding included: [`record_len`] with the attributes
/// measured.
pub fn insert_record_len(count: usize, dim: u32, attrs: &[Attrs]) -> usize {
    record_len(count, dim, attrs.iter().map(encoded_attrs_len).sum())
}

/// Appends one insert record to `out`: [`encode_insert_rows`] of the row-major `vectors`.
/// Panics also when `vectors.len() != ids.len() × dim`.
pub fn encode_insert(out: &mut Vec<u8>, seq: u64, dim: u32, ids: &[u64], vectors: &[f32], attrs: &[Attrs]) {
    assert_eq!(vectors.len(), ids.len() * dim as usize, "vectors must hold ids.len() × dim values");
    let start = out.len();
    out.resize(start + insert_record_len(ids.len(), dim, attrs), 0);
    let dim = dim as usize;
    let row = |index: usize| &vectors[index * dim..(index + 1) * dim];
    encode_insert_rows(&mut out[start..], seq, dim as u32, ids, row, attrs);
}

/// Writes one insert record over all of `out`, which must be exactly [`insert_record_len`] bytes
/// long: vector `i` (id `ids[i]`) is `row(i)`. Writing into a caller's buffer lets a log writer
/// encode straight into the block buffer it hands the device, from rows wherever they are.
///
/// Panics on caller bugs: no ids, a dimension outside 1..=[`DIM_MAX`], a row that is not `dim`
/// values long, a non-finite value (checked in debug builds only: callers validate before they
/// encode), `attrs` neither empty nor one entry per id, invalid attributes, a record longer than
/// [`LOG_RECORD_BYTES_MAX`], or `out` of another length.
pub fn encode_insert_rows<'v>(
    out: &mut [u8],
    seq: u64,
    dim: u32,
    ids: &[u64],
    row: impl Fn(usize) -> &'v [f32],
    attrs: &[Attrs],
) {
    assert!(!ids.is_empty(), "an insert record holds at least one vector");
    assert!((1..=DIM_MAX).contains(&dim), "dimension {dim} is not in 1..={DIM_MAX}");
    assert!(attrs.is_empty() || attrs.len() == ids.len(), "attrs must be empty or hold one entry per id");
    let len = insert_record_len(ids.len(), dim, attrs);
    assert!(len <= LOG_RECORD_BYTES_MAX, "a log record of {len} bytes exceeds LOG_RECORD_BYTES_MAX; split the batch");
    assert_eq!(out.len(), len, "the output must be exactly the record's length");
    let mut sink = SliceSink { out, at: LOG_HEADER_SIZE };
    put_u64s(&mut sink, ids);
    for index in 0..ids.len() {
        let values = row(index);
        assert_eq!(values.len(), dim as usize, "row {index} is not {dim} values long");
        debug_assert!(values.iter().all(|value| value.is_finite()), "vectors must be finite");
        put_f32s(&mut sink, values);
    }
    let flags = if attrs.is_empty() {
        0
    } else {
        let offsets_at = sink.at;
        sink.at += 4 * (attrs.len() + 1);
        let blob_at = sink.at;
        for (index, set) in attrs.iter().enumerate() {
            let offset = blob_offset(sink.at - blob_at);
            sink.out[offsets_at + 4 * index..][..4].copy_from_slice(&offset.to_le_bytes());
            put_attrs(&mut sink, set);
        }
        let end = blob_offset(sink.at - blob_at);
        sink.out[offsets_at + 4 * attrs.len()..][..4].copy_from_slice(&end.to_le_bytes());
        LOG_FLAG_ATTRS
    };
    let payload_len = sink.at - LOG_HEADER_SIZE;
    finish_record(out, LogKind::Insert, flags, ids.len(), dim, seq, payload_len);
}

/// Appends one delete record to `out`. Panics when `ids` is empty or the record would be longer
/// than [`LOG_RECORD_BYTES_MAX`].
pub fn encode_delete(out: &mut Vec<u8>, seq: u64, ids: &[u64]) {
    let start = out.len();
    out.resize(start + record_len(ids.len(), 0, 0), 0);
    encode_delete_into(&mut out[start..], seq, ids);
}

/// Writes one delete record over all of `out`, which must be exactly
/// [`record_len`]`(ids.len(), 0, 0)` bytes long. Panics when `ids` is empty, the record would be
/// longer than [`LOG_RECORD_BYTES_MAX`], or `out` has another length.
pub fn encode_delete_into(out: &mut [u8], seq: u64, ids: &[u64]) {
    assert!(!ids.is_empty(), "a delete record holds at least one id");
    let len = record_len(ids.len(), 0, 0);
    assert!(len <= LOG_RECORD_BYTES_MAX, "a log record of {len} bytes exceeds LOG_RECORD_BYTES_MAX; split the batch");
    assert_eq!(out.len(), len, "the output must be exactly the record's length");
    let mut sink = SliceSink { out, at: LOG_HEADER_SIZE };
    put_u64s(&mut sink, ids);
    finish_record(out, LogKind::Delete, 0, ids.len(), 0, seq, 8 * ids.len());
}

/// An attribute blob offset; the record length limit keeps it in range.
fn blob_offset(offset: usize) -> u32 {
    assert!(offset < LOG_RECORD_BYTES_MAX, "the record exceeds LOG_RECORD_BYTES_MAX");
    offset as u32
}

/// Fills in the header of `record` (header, `payload_len` payload bytes, then padding to the end
/// of the slice) and zeroes the padding.
fn finish_record(record: &mut [u8], kind: LogKind, flags: u8, count: usize, dim: u32, seq: u64, payload_len: usize) {
    let used = LOG_HEADER_SIZE + payload_len;
    assert_eq!(record.len(), padded(used), "a record is its header and payload, padded");
    record[used..].fill(0);
    let header = RawLogHeader {
        magic: LOG_MAGIC.into(),
        kind: kind as u8,
        flags,
        reserved0: [0; 2],
        count: (count as u32).into(),
        dim: dim.into(),
        payload_len: (payload_len as u64).into(),
        seq: seq.into(),
        payload_crc: crc32c::crc32c(&record[LOG_HEADER_SIZE..used]).into(),
        header_crc: 0.into(),
        reserved1: [0; 24],
    };
    let header_bytes = &mut record[..LOG_HEADER_SIZE];
    header.write_to(header_bytes).expect("the header size is constant");
    let header_crc = crc32c::crc32c(header_bytes);
    header_bytes[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].copy_from_slice(&header_crc.to_le_bytes());
    debug_assert_eq!(record.len(), record_len(count, dim, attrs_blob_len(flags, count, payload_len, dim)));
}

/// The attribute blob length of a record, for the debug check of [`record_len`].
fn attrs_blob_len(flags: u8, count: usize, payload_len: usize, dim: u32) -> usize {
    if flags & LOG_FLAG_ATTRS == 0 {
        return 0;
    }
    payload_len - 8 * count - 4 * count * dim as usize - 4 * (count + 1)
}

/// Decodes the record at the start of `bytes` of a log whose collection has dimension `dim`.
/// Returns the record and the bytes it occupies, padding included (the next record starts
/// there). [`LogError::Truncated`] when `bytes` end before the record does (an empty slice
/// included); [`LogError::Corrupt`] for anything else wrong. Never panics on any input.
pub fn decode_record(bytes: &[u8], dim: u32) -> Result<(LogRecord, usize), LogError> {
    assert!((1..=DIM_MAX).contains(&dim), "dimension {dim} is not in 1..={DIM_MAX}");
    let Some(header_bytes) = bytes.get(..LOG_HEADER_SIZE) else {
        return Err(LogError::Truncated { need: LOG_HEADER_SIZE });
    };
    let header = decode_header(header_bytes, dim)?;
    let len = padded(LOG_HEADER_SIZE + header.payload_len);
    let Some(record) = bytes.get(..len) else {
        return Err(LogError::Truncated { need: len });
    };
    let payload = &record[LOG_HEADER_SIZE..LOG_HEADER_SIZE + header.payload_len];
    let crc = crc32c::crc32c(payload);
    if crc != header.payload_crc {
        return Err(corrupt(format!(
            "payload checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.payload_crc
        )));
    }
    if record[LOG_HEADER_SIZE + header.payload_len..].iter().any(|&byte| byte != 0) {
        return Err(corrupt("padding after the record is not zero"));
    }
    let body = match header.kind {
        LogKind::Insert => decode_insert(payload, header.count, dim, header.flags)?,
        LogKind::Delete => LogBody::Delete { ids: le_u64s(payload) },
    };
    Ok((LogRecord { seq: header.seq, body }, len))
}

/// A header that passed its checks.
struct LogHeader {
    kind: LogKind,
    flags: u8,
    count: usize,
    payload_len: usize,
    payload_crc: u32,
    seq: u64,
}

fn corrupt(what: impl Into<String>) -> LogError {
    LogError::Corrupt(what.into())
}

/// Checks a header: magic, checksum, then every field against the others and `dim`.
fn decode_header(bytes: &[u8], dim: u32) -> Result<LogHeader, LogError> {
    let raw = RawLogHeader::read_from_bytes(bytes).expect("the header size is constant");
    if raw.magic.get() != LOG_MAGIC {
        return Err(corrupt(format!("bad magic {:#010x} (not a log record)", raw.magic.get())));
    }
    let mut zeroed: [u8; LOG_HEADER_SIZE] = array(bytes);
    zeroed[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].fill(0);
    let crc = crc32c::crc32c(&zeroed);
    if crc != raw.header_crc.get() {
        let stored = raw.header_crc.get();
        return Err(corrupt(format!("header checksum mismatch (stored {stored:#010x}, computed {crc:#010x})")));
    }
    if raw.reserved0 != [0; 2] || raw.reserved1 != [0; 24] {
        return Err(corrupt("reserved header bytes are not zero"));
    }
    let kind = LogKind::from_u8(raw.kind).ok_or_else(|| corrupt(format!("unknown record kind {}", raw.kind)))?;
    let (count, record_dim, payload_len) = (raw.count.get(), raw.dim.get(), raw.payload_len.get());
    if count == 0 {
        return Err(corrupt("record holds no ids"));
    }
    if payload_len > (LOG_RECORD_BYTES_MAX - LOG_HEADER_SIZE) as u64 {
        return Err(corrupt(format!("payload of {payload_len} bytes exceeds the record limit")));
    }
    // Both fit: the limit is far below usize::MAX and count ≤ u32::MAX.
    let (count, payload_len) = (count as usize, payload_len as usize);
    let expected = match kind {
        LogKind::Insert => insert_payload_range(count, record_dim, dim, raw.flags)?,
        LogKind::Delete if record_dim != 0 => return Err(corrupt(format!("delete record has dimension {record_dim}"))),
        LogKind::Delete if raw.flags != 0 => {
            return Err(corrupt(format!("delete record has flags {:#04x}", raw.flags)))
        }
        LogKind::Delete => (8 * count as u64, Some(8 * count as u64)),
    };
    let (min, max) = expected;
    if (payload_len as u64) < min || max.is_some_and(|max| payload_len as u64 != max) {
        let what = match max {
            Some(max) => format!("exactly {max}"),
            None => format!("at least {min}"),
        };
        return Err(corrupt(format!("payload is {payload_len} bytes; {count} ids need {what}")));
    }
    let flags = raw.flags;
    Ok(LogHeader { kind, flags, count, payload_len, payload_crc: raw.payload_crc.get(), seq: raw.seq.get() })
}

/// The payload length an insert header allows: (minimum, exact length if fixed).
fn insert_payload_range(count: usize, record_dim: u32, dim: u32, flags: u8) -> Result<(u64, Option<u64>), LogError> {
    if record_dim != dim {
        return Err(corrupt(format!("insert record has dimension {record_dim}, the collection {dim}")));
    }
    if flags & !LOG_FLAG_ATTRS != 0 {
        return Err(corrupt(format!("unknown flags {flags:#04x}")));
    }
    let (count, dim) = (count as u64, u64::from(dim));
    let vectors = 8 * count + 4 * count * dim;
    if flags & LOG_FLAG_ATTRS == 0 {
        return Ok((vectors, Some(vectors)));
    }
    // Offsets, then at least the 2-byte count of each attribute set.
    Ok((vectors + 4 * (count + 1) + 2 * count, None))
}

/// Decodes an insert payload whose length the header check has matched with `count` and `dim`.
fn decode_insert(payload: &[u8], count: usize, dim: u32, flags: u8) -> Result<LogBody, LogError> {
    let dim = dim as usize;
    let (ids, rest) = payload.split_at(8 * count);
    let (vectors, rest) = rest.split_at(4 * count * dim);
    let ids = le_u64s(ids);
    let vectors = le_f32s(vectors);
    if let Some(at) = vectors.iter().position(|value| !value.is_finite()) {
        return Err(corrupt(format!("element {} of vector {} is not finite", at % dim, at / dim)));
    }
    let attrs = if flags & LOG_FLAG_ATTRS == 0 { Vec::new() } else { decode_attr_sets(rest, count)? };
    Ok(LogBody::Insert { ids, vectors, attrs })
}

/// Decodes `attr_offsets [u32; count + 1]` and the blob after them.
fn decode_attr_sets(bytes: &[u8], count: usize) -> Result<Vec<Attrs>, LogError> {
    let (offsets, blob) = bytes.split_at(4 * (count + 1));
    let offsets: Vec<usize> = offsets.chunks_exact(4).map(|chunk| le_u32(chunk) as usize).collect();
    if offsets[0] != 0 || offsets[count] != blob.len() {
        return Err(corrupt(format!(
            "attribute offsets span {}..{}, the attribute bytes 0..{}",
            offsets[0],
            offsets[count],
            blob.len()
        )));
    }
    let mut attrs = Vec::with_capacity(count);
    for (index, pair) in offsets.windows(2).enumerate() {
        let (start, end) = (pair[0], pair[1]);
        if start > end || end > blob.len() {
            return Err(corrupt(format!("attribute offsets of vector {index} ({start}..{end}) are out of order")));
        }
        let set =
            decode_attrs(&blob[start..end]).map_err(|what| corrupt(format!("attributes of vector {index}: {what}")))?;
        attrs.push(set);
    }
    Ok(attrs)
}

// ---------------------------------------------------------------------------------------------
// Little-endian helpers. Bulk conversions go through `chunks_exact`, which the compiler turns
// into straight copies on little-endian hosts.
// ---------------------------------------------------------------------------------------------

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().expect("the caller passes exactly N bytes")
}

fn le_u16(bytes: &[u8]) -> u16 {
    u16::from_le_bytes(array(bytes))
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(array(bytes))
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(array(bytes))
}

fn le_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(le_u64).collect()
}

fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes(array(chunk))).collect()
}

/// Where encoders write: the end of a `Vec`, or a slice sized in advance.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes a slice front to back; running past its end is a caller bug (lengths are computed
/// before encoding) and panics.
struct SliceSink<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

fn put_u64s(out: &mut impl Sink, values: &[u64]) {
    if cfg!(target_endian = "little") {
        // The encoding is the memory image: one copy, no per-value loop.
        out.put(values.as_bytes());
        return;
    }
    for value in values {
        out.put(&value.to_le_bytes());
    }
}

fn put_f32s(out: &mut impl Sink, values: &[f32]) {
    if cfg!(target_endian = "little") {
        // The encoding is the memory image: one copy, no per-value loop.
        out.put(values.as_bytes());
        return;
    }
    for value in values {
        out.put(&value.to_le_bytes());
    }
}

/// Reads fields off the front of a byte string; running out is an error naming the need.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, at: 0 }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let Some(taken) = self.bytes.get(self.at..self.at.saturating_add(len)) else {
            return Err(format!("truncated: {len} bytes needed at offset {}, {} left", self.at, self.rest().len()));
        };
        self.at += len;
        Ok(taken)
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // -----------------------------------------------------------------------------------------
    // Fixed encodings, written out by hand field by field. Checksums are computed here from their
    // documented definitions, not by the encoder.
    // -----------------------------------------------------------------------------------------

    fn text_record() -> CollectionRecord {
        CollectionRecord {
            dim: 768,
            metric: Metric::Cosine,
            elem: ElemType::F32,
            shards: vec![16, 17],
            text: Some(TextParams { embedder: "builtin:mini".to_string(), chunk_bytes: 1000, chunk_overlap: 100 }),
        }
    }

    #[test]
    fn collection_record_encoding_is_fixed() {
        let expected: Vec<u8> = [
            &[1][..],                   // record_version
            &[2],                       // metric: Cosine
            &[1],                       // elem: F32
            &[1],                       // flags: text
            &[0x00, 0x03, 0, 0],        // dim 768
            &[2, 0, 0, 0],              // shard_count
            &[0, 0, 0, 0],              // reserved
            &[16, 0, 0, 0, 0, 0, 0, 0], // shard 0: inode 16
            &[17, 0, 0, 0, 0, 0, 0, 0], // shard 1: inode 17
            &[12],                      // embedder_len
            b"builtin:mini",            // embedder
            &[0xe8, 0x03, 0, 0],        // chunk_bytes 1000
            &[100, 0, 0, 0],            // chunk_overlap 100
        ]
        .concat();
        assert_eq!(encode_collection(&text_record()), expected);
        assert_eq!(decode_collection(&expected, 9).unwrap(), text_record());
        let plain = CollectionRecord { text: None, metric: Metric::L2, ..text_record() };
        let encoded = encode_collection(&plain);
        assert_eq!(encoded[..4], [1, 1, 1, 0]);
        assert_eq!(encoded.len(), COLLECTION_FIXED_SIZE + 16);
    }

    fn sample_attrs() -> Attrs {
        vec![
            ("lang".to_string(), AttrValue::Str("en".to_string())),
            ("n".to_string(), AttrValue::Int(-2)),
            ("w".to_string(), AttrValue::Float(0.5)),
        ]
    }

    #[test]
    fn attrs_encoding_is_fixed() {
        let expected: Vec<u8> = [
            &[3, 0][..],                                       // count
            &[4],                                              // key_len
            b"lang",                                           // key
            &[ATTR_TYPE_STR],                                  // type
            &[2, 0],                                           // string length
            b"en",                                             // string
            &[1],                                              // key_len
            b"n",                                              // key
            &[ATTR_TYPE_INT],                                  // type
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // -2
            &[1],                                              // key_len
            b"w",                                              // key
            &[ATTR_TYPE_FLOAT],                                // type
            &[0, 0, 0, 0, 0, 0, 0xe0, 0x3f],                   // 0.5
        ]
        .concat();
        let mut encoded = Vec::new();
        encode_attrs(&sample_attrs(), &mut encoded);
        assert_eq!(encoded, expected);
        assert_eq!(encoded_attrs_len(&sample_attrs()), expected.len());
        assert_eq!(decode_attrs(&expected).unwrap(), sample_attrs());
        let mut empty = Vec::new();
        encode_attrs(&Vec::new(), &mut empty);
        assert_eq!(empty, [0, 0]);
    }

    /// Stamps the documented checksums into a hand-written record: payload_crc over
    /// `payload`, then header_crc over the header with its own field zero.
    fn with_checksums(mut record: Vec<u8>, payload_len: usize) -> Vec<u8> {
        let payload_crc = crc32c::crc32c(&record[64..64 + payload_len]);
        record[32..36].copy_from_slice(&payload_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&record[..64]);
        record[36..40].copy_from_slice(&header_crc.to_le_bytes());
        record
    }

    #[test]
    fn insert_encoding_is_fixed() {
        let expected: Vec<u8> = [
            &b"VXLR"[..],               // magic
            &[1],                       // kind: Insert
            &[0],                       // flags: no attributes
            &[0, 0],                    // reserved
            &[1, 0, 0, 0],              // count
            &[2, 0, 0, 0],              // dim
            &[16, 0, 0, 0, 0, 0, 0, 0], // payload_len
            &[7, 0, 0, 0, 0, 0, 0, 0],  // seq
            &[0; 4],                    // payload_crc (stamped below)
            &[0; 4],                    // header_crc (stamped below)
            &[0; 24],                   // reserved
            &[5, 0, 0, 0, 0, 0, 0, 0],  // ids[0] = 5
            &[0, 0, 0x80, 0x3f],        // 1.0
            &[0, 0, 0, 0xc0],           // -2.0
        ]
        .concat();
        let expected = with_checksums(expected, 16);
        let mut encoded = Vec::new();
        encode_insert(&mut encoded, 7, 2, &[5], &[1.0, -2.0], &[]);
        assert_eq!(encoded, expected);
        let body = LogBody::Insert { ids: vec![5], vectors: vec![1.0, -2.0], attrs: Vec::new() };
        assert_eq!(decode_record(&expected, 2).unwrap(), (LogRecord { seq: 7, body }, 80));
    }

    #[test]
    fn insert_with_attrs_encoding_is_fixed() {
        let expected: Vec<u8> = [
            &b"VXLR"[..],               // magic
            &[1],                       // kind: Insert
            &[LOG_FLAG_ATTRS],          // flags
            &[0, 0],                    // reserved
            &[1, 0, 0, 0],              // count
            &[1, 0, 0, 0],              // dim
            &[33, 0, 0, 0, 0, 0, 0, 0], // payload_len: 8 + 4 + 8 + 13
            &[9, 0, 0, 0, 0, 0, 0, 0],  // seq
            &[0; 4],                    // payload_crc
            &[0; 4],                    // header_crc
            &[0; 24],                   // reserved
            &[1, 0, 0, 0, 0, 0, 0, 0],  // ids[0] = 1
            &[0, 0, 0x80, 0x3e],        // 0.25
            &[0, 0, 0, 0],              // attr_offsets[0]
            &[13, 0, 0, 0],             // attr_offsets[1]
            &[1, 0],                    // attribute count
            &[1, b'k', ATTR_TYPE_INT],  // key_len, key, type
            &[1, 0, 0, 0, 0, 0, 0, 0],  // 1
            &[0; 7],                    // padding: 97 bytes to 104
        ]
        .concat();
        let expected = with_checksums(expected, 33);
        let attrs = vec![vec![("k".to_string(), AttrValue::Int(1))]];
        let mut encoded = Vec::new();
        encode_insert(&mut encoded, 9, 1, &[1], &[0.25], &attrs);
        assert_eq!(encoded, expected);
        assert_eq!(record_len(1, 1, 13), 104);
        let body = LogBody::Insert { ids: vec![1], vectors: vec![0.25], attrs };
        assert_eq!(decode_record(&expected, 1).unwrap(), (LogRecord { seq: 9, body }, 104));
    }

    #[test]
    fn delete_encoding_is_fixed() {
        let expected: Vec<u8> = [
            &b"VXLR"[..],               // magic
            &[2],                       // kind: Delete
            &[0],                       // flags
            &[0, 0],                    // reserved
            &[2, 0, 0, 0],              // count
            &[0, 0, 0, 0],              // dim: 0 for deletes
            &[16, 0, 0, 0, 0, 0, 0, 0], // payload_len
            &[8, 0, 0, 0, 0, 0, 0, 0],  // seq
            &[0; 4],                    // payload_crc
            &[0; 4],                    // header_crc
            &[0; 24],                   // reserved
            &[5, 0, 0, 0, 0, 0, 0, 0],  // ids[0]
            &[6, 0, 0, 0, 0, 0, 0, 0],  // ids[1]
        ]
        .concat();
        let expected = with_checksums(expected, 16);
        let mut encoded = Vec::new();
        encode_delete(&mut encoded, 8, &[5, 6]);
        assert_eq!(encoded, expected);
        assert_eq!(record_len(2, 0, 0), 80);
        // Deletes decode whatever the collection's dimension.
        let record = LogRecord { seq: 8, body: LogBody::Delete { ids: vec![5, 6] } };
        assert_eq!(decode_record(&expected, 300).unwrap(), (record, 80));
    }

    #[test]
    fn records_follow_each_other_aligned() {
        let mut log = Vec::new();
        encode_insert(&mut log, 1, 3, &[1, 2], &[0.5; 6], &[sample_attrs(), Vec::new()]);
        let first = log.len();
        encode_delete(&mut log, 2, &[1]);
        encode_insert(&mut log, 3, 3, &[3], &[1.5; 3], &[]);
        let mut at = 0;
        let mut seqs = Vec::new();
        while at < log.len() {
            assert!(at.is_multiple_of(LOG_ALIGN));
            let (record, used) = decode_record(&log[at..], 3).unwrap();
            seqs.push(record.seq);
            at += used;
            if seqs.len() == 1 {
                assert_eq!(used, first);
            }
        }
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(decode_record(&[], 3), Err(LogError::Truncated { need: LOG_HEADER_SIZE }));
    }

    // -----------------------------------------------------------------------------------------
    // Refusals
    // -----------------------------------------------------------------------------------------

    fn refused(record: CollectionRecord, expected: &str) {
        let what = validate_collection(&record).expect_err(expected);
        assert!(what.contains(expected), "{what:?} does not mention {expected:?}");
    }

    #[test]
    fn invalid_collection_records_are_refused() {
        let base = text_record();
        refused(CollectionRecord { dim: 0, ..base.clone() }, "dimension");
        refused(CollectionRecord { dim: DIM_MAX + 1, ..base.clone() }, "dimension");
        refused(CollectionRecord { shards: vec![], ..base.clone() }, "shards");
        refused(CollectionRecord { shards: (16..16 + 65).collect(), ..base.clone() }, "shards");
        refused(CollectionRecord { shards: vec![16, 16], ..base.clone() }, "earlier shard");
        refused(CollectionRecord { shards: vec![1], ..base.clone() }, "not a file inode");
        refused(CollectionRecord { shards: vec![ORPHAN_OBJECT], ..base.clone() }, "not a file inode");
        let text = |embedder: &str, chunk_bytes: u32, chunk_overlap: u32| {
            Some(TextParams { embedder: embedder.to_string(), chunk_bytes, chunk_overlap })
        };
        refused(CollectionRecord { text: text("", 100, 0), ..base.clone() }, "embedder");
        refused(CollectionRecord { text: text(&"e".repeat(256), 100, 0), ..base.clone() }, "embedder");
        refused(CollectionRecord { text: text("a\0b", 100, 0), ..base.clone() }, "NUL");
        refused(CollectionRecord { text: text("e", 63, 0), ..base.clone() }, "chunk size");
        refused(CollectionRecord { text: text("e", CHUNK_BYTES_MAX + 1, 0), ..base.clone() }, "chunk size");
        refused(CollectionRecord { text: text("e", 100, 100), ..base.clone() }, "overlap");
        assert!(validate_collection(&CollectionRecord { text: text("e", 64, 63), ..base }).is_ok());
    }

    #[test]
    fn malformed_collection_bytes_are_refused() {
        let good = encode_collection(&text_record());
        let check = |bytes: Vec<u8>, expected: &str| {
            let error = decode_collection(&bytes, 42).expect_err(expected);
            assert!(matches!(&error, FormatError::Malformed { addr: 42, what } if what.contains(expected)), "{error}");
        };
        let patch = |at: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[at] = value;
            bytes
        };
        check(patch(0, 2), "record version");
        check(patch(1, 5), "unknown metric");
        check(patch(2, 2), "unknown element type");
        check(patch(3, 3), "unknown flags");
        check(patch(12, 1), "reserved");
        check(patch(8, 0), "shards");
        check(patch(3, 0), "trailing bytes");
        check(good[..good.len() - 1].to_vec(), "truncated");
        check([&good[..], &[0]].concat(), "trailing bytes");
        let mut not_utf8 = good.clone();
        not_utf8[33] = 0xff;
        check(not_utf8, "UTF-8");
    }

    #[test]
    fn invalid_attrs_are_refused() {
        let check = |attrs: Attrs, allow_reserved: bool, expected: &str| {
            let what = validate_attrs(&attrs, allow_reserved).expect_err(expected);
            assert!(what.contains(expected), "{what:?} does not mention {expected:?}");
        };
        let one = |key: &str, value: AttrValue| vec![(key.to_string(), value)];
        check(one("", AttrValue::Int(1)), true, "bytes");
        check(one(&"k".repeat(ATTR_KEY_MAX + 1), AttrValue::Int(1)), true, "bytes");
        check(one("a\0", AttrValue::Int(1)), true, "NUL");
        check(one("vexfs.doc", AttrValue::Int(1)), false, "reserved");
        assert!(validate_attrs(&one("vexfs.doc", AttrValue::Int(1)), true).is_ok());
        check(one("f", AttrValue::Float(f64::NAN)), true, "not finite");
        check(one("f", AttrValue::Float(f64::INFINITY)), true, "not finite");
        check(one("s", AttrValue::Str("x".repeat(ATTR_STR_MAX + 1))), true, "string");
        assert!(validate_attrs(&one("s", AttrValue::Str("x".repeat(ATTR_STR_MAX))), true).is_ok());
        check([one("a", AttrValue::Int(1)), one("a", AttrValue::Int(2))].concat(), true, "twice");
        let many: Attrs = (0..40).map(|i| (format!("k{}", i % 39), AttrValue::Int(i))).collect();
        check(many, true, "twice");
        let too_many: Attrs = (0..=ATTRS_MAX).map(|i| (format!("k{i}"), AttrValue::Int(0))).collect();
        check(too_many, true, "attributes");

        let mut encoded = Vec::new();
        encode_attrs(&one("f", AttrValue::Float(1.0)), &mut encoded);
        let mut nan = encoded.clone();
        // count (2), key_len (1), key (1), type (1), then the value.
        nan[5..13].copy_from_slice(&f64::NAN.to_bits().to_le_bytes());
        assert!(decode_attrs(&nan).unwrap_err().contains("not finite"));
        let mut bad_type = encoded.clone();
        bad_type[4] = 9;
        assert!(decode_attrs(&bad_type).unwrap_err().contains("unknown value type"));
        assert!(decode_attrs(&[&encoded[..], &[0]].concat()).unwrap_err().contains("trailing"));
        assert!(decode_attrs(&encoded[..5]).unwrap_err().contains("truncated"));
        assert!(decode_attrs(&[]).is_err());
    }

    /// Re-stamps both checksums of the record at the start of `bytes` after a deliberate edit, so
    /// that the edit reaches the field checks.
    fn restamp(bytes: &mut [u8]) {
        let payload_len = le_u64(&bytes[16..24]) as usize;
        let payload_crc = crc32c::crc32c(&bytes[64..64 + payload_len]);
        bytes[32..36].copy_from_slice(&payload_crc.to_le_bytes());
        bytes[36..40].fill(0);
        let header_crc = crc32c::crc32c(&bytes[..64]);
        bytes[36..40].copy_from_slice(&header_crc.to_le_bytes());
    }

    fn corrupt_reason(bytes: &[u8], dim: u32) -> String {
        match decode_record(bytes, dim) {
            Err(LogError::Corrupt(what)) => what,
            other => panic!("expected a corrupt record, got {other:?}"),
        }
    }

    #[test]
    fn well_checksummed_but_invalid_records_are_corrupt() {
        let mut insert = Vec::new();
        encode_insert(&mut insert, 1, 2, &[1, 2], &[1.0, 2.0, 3.0, 4.0], &[sample_attrs(), Vec::new()]);
        assert!(corrupt_reason(&insert, 3).contains("dimension 2, the collection 3"));
        let edit = |at: usize, bytes: &[u8]| {
            let mut record = insert.clone();
            record[at..at + bytes.len()].copy_from_slice(bytes);
            restamp(&mut record);
            corrupt_reason(&record, 2)
        };
        assert!(edit(0, b"XXXX").contains("magic"));
        assert!(edit(4, &[3]).contains("unknown record kind"));
        assert!(edit(5, &[3]).contains("unknown flags"));
        assert!(edit(6, &[1]).contains("reserved"));
        assert!(edit(63, &[1]).contains("reserved"));
        assert!(edit(8, &[0]).contains("no ids"));
        assert!(edit(8, &[200]).contains("payload is"));
        assert!(edit(64 + 16, &f32::NAN.to_le_bytes()).contains("element 0 of vector 0 is not finite"));
        assert!(edit(64 + 28, &f32::NEG_INFINITY.to_le_bytes()).contains("element 1 of vector 1"));
        // The attribute offsets follow the ids (16 bytes) and vectors (16 bytes).
        assert!(edit(64 + 32, &[1]).contains("offsets"));
        assert!(edit(64 + 36, &[0xff, 0xff, 0, 0]).contains("out of order"));
        assert!(edit(64 + 44, &[4]).contains("attributes of vector 0"));
        let mut delete = Vec::new();
        encode_delete(&mut delete, 1, &[1]);
        let mut with_dim = delete.clone();
        with_dim[12] = 2;
        restamp(&mut with_dim);
        assert!(corrupt_reason(&with_dim, 2).contains("delete record has dimension"));
        let mut with_flags = delete.clone();
        with_flags[5] = LOG_FLAG_ATTRS;
        restamp(&mut with_flags);
        assert!(corrupt_reason(&with_flags, 2).contains("delete record has flags"));
        let mut huge = delete.clone();
        huge[16..24].copy_from_slice(&(LOG_RECORD_BYTES_MAX as u64).to_le_bytes());
        restamp_header_only(&mut huge);
        assert!(corrupt_reason(&huge, 2).contains("exceeds the record limit"));
        let mut padded_insert = Vec::new();
        encode_insert(&mut padded_insert, 1, 1, &[1], &[1.0], &[]);
        let last = padded_insert.len() - 1;
        padded_insert[last] = 1;
        assert!(corrupt_reason(&padded_insert, 1).contains("padding"));
    }

    fn restamp_header_only(bytes: &mut [u8]) {
        bytes[36..40].fill(0);
        let header_crc = crc32c::crc32c(&bytes[..64]);
        bytes[36..40].copy_from_slice(&header_crc.to_le_bytes());
    }

    #[test]
    #[should_panic(expected = "ids.len() × dim")]
    fn encoding_mismatched_vectors_panics() {
        encode_insert(&mut Vec::new(), 1, 2, &[1], &[1.0], &[]);
    }

    #[test]
    #[should_panic(expected = "one entry per id")]
    fn encoding_mismatched_attrs_panics() {
        encode_insert(&mut Vec::new(), 1, 1, &[1, 2], &[1.0, 2.0], &[Vec::new()]);
    }

    #[test]
    #[should_panic(expected = "at least one")]
    fn encoding_an_empty_delete_panics() {
        encode_delete(&mut Vec::new(), 1, &[]);
    }

    /// The check is a debug assertion: callers validate, and release builds skip the pass.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "finite")]
    fn encoding_a_nan_panics() {
        encode_insert(&mut Vec::new(), 1, 1, &[1], &[f32::NAN], &[]);
    }

    #[test]
    #[should_panic(expected = "LOG_RECORD_BYTES_MAX")]
    fn encoding_an_oversized_record_panics() {
        let count = LOG_RECORD_BYTES_MAX / 8;
        encode_delete(&mut Vec::new(), 1, &vec![7; count]);
    }

    #[test]
    fn every_byte_flip_and_every_truncation_is_detected() {
        let mut samples = Vec::new();
        let mut insert = Vec::new();
        encode_insert(&mut insert, 3, 5, &[1, 2, 3], &[0.25; 15], &[sample_attrs(), Vec::new(), sample_attrs()]);
        samples.push(insert);
        let mut delete = Vec::new();
        encode_delete(&mut delete, 4, &[9, 10, 11]);
        samples.push(delete);
        for record in samples {
            flips_are_detected(&record, 5, 0..record.len());
            for len in 0..record.len() {
                let need = if len < LOG_HEADER_SIZE { LOG_HEADER_SIZE } else { record.len() };
                assert_eq!(decode_record(&record[..len], 5), Err(LogError::Truncated { need }), "length {len}");
            }
        }
    }

    /// Flipping any bit pattern of any byte in `positions` gives an error, never a panic or a
    /// different record.
    fn flips_are_detected(record: &[u8], dim: u32, positions: std::ops::Range<usize>) {
        let mut copy = record.to_vec();
        for at in positions {
            for mask in [0x01, 0x80, 0xff] {
                copy[at] ^= mask;
                let result = decode_record(&copy, dim);
                assert!(result.is_err(), "flipping byte {at} with {mask:#04x} went unnoticed: {result:?}");
                copy[at] ^= mask;
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Properties
    // -----------------------------------------------------------------------------------------

    fn attr_value() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            any::<i64>().prop_map(AttrValue::Int),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(AttrValue::Float),
            ".{0,24}".prop_map(AttrValue::Str),
        ]
    }

    fn attrs() -> impl Strategy<Value = Attrs> {
        proptest::collection::btree_map("(vexfs\\.)?[a-zA-Z0-9_é]{1,16}", attr_value(), 0..6)
            .prop_map(|map| map.into_iter().collect())
    }

    fn collection_record() -> impl Strategy<Value = CollectionRecord> {
        let text = proptest::option::of(("[ -~]{1,255}", CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX, any::<u32>()).prop_map(
            |(embedder, chunk_bytes, overlap)| TextParams {
                embedder,
                chunk_bytes,
                chunk_overlap: overlap % chunk_bytes,
            },
        ));
        let shards = proptest::collection::btree_set(FIRST_INO..ORPHAN_OBJECT, 1..=SHARDS_MAX as usize);
        (1..=DIM_MAX, proptest::sample::select(Metric::ALL.to_vec()), shards, text).prop_map(
            |(dim, metric, shards, text)| CollectionRecord {
                dim,
                metric,
                elem: ElemType::F32,
                shards: shards.into_iter().rev().collect(),
                text,
            },
        )
    }

    /// Finite floats of every magnitude (subnormals, zeros of both signs, the extremes) from a seed.
    fn floats(seed: u64, len: usize) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Clearing the lowest exponent bit of an infinity or NaN makes it finite.
                let value = f32::from_bits(state as u32);
                if value.is_finite() {
                    value
                } else {
                    f32::from_bits(state as u32 & !0x0080_0000)
                }
            })
            .collect()
    }

    /// An insert or delete body and the dimension of its collection.
    fn log_body() -> impl Strategy<Value = (u32, LogBody)> {
        let insert =
            (1u32..300, 1usize..50, any::<u64>(), proptest::option::of(proptest::collection::vec(attrs(), 50)))
                .prop_flat_map(|(dim, count, seed, attrs)| {
                    (proptest::collection::vec(any::<u64>(), count), Just((dim, seed, attrs)))
                })
                .prop_map(|(ids, (dim, seed, attrs))| {
                    let vectors = floats(seed, ids.len() * dim as usize);
                    let attrs = attrs.map(|mut all| {
                        all.truncate(ids.len());
                        all
                    });
                    (dim, LogBody::Insert { vectors, attrs: attrs.unwrap_or_default(), ids })
                });
        let delete = (1u32..300, proptest::collection::vec(any::<u64>(), 1..50))
            .prop_map(|(dim, ids)| (dim, LogBody::Delete { ids }));
        prop_oneof![3 => insert, 1 => delete]
    }

    fn encode(seq: u64, dim: u32, body: &LogBody) -> Vec<u8> {
        let mut out = Vec::new();
        match body {
            LogBody::Insert { ids, vectors, attrs } => encode_insert(&mut out, seq, dim, ids, vectors, attrs),
            LogBody::Delete { ids } => encode_delete(&mut out, seq, ids),
        }
        out
    }

    fn attrs_bytes(body: &LogBody) -> usize {
        match body {
            LogBody::Insert { attrs, .. } => attrs.iter().map(encoded_attrs_len).sum(),
            LogBody::Delete { .. } => 0,
        }
    }

    proptest! {
        #[test]
        fn collection_records_round_trip(record in collection_record()) {
            let encoded = encode_collection(&record);
            prop_assert_eq!(decode_collection(&encoded, 1).unwrap(), record);
            prop_assert!(encoded.len() <= crate::node::INLINE_VALUE_MAX);
        }

        #[test]
        fn attrs_round_trip(attrs in attrs(), prefix in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut encoded = prefix.clone();
            encode_attrs(&attrs, &mut encoded);
            prop_assert_eq!(encoded.len() - prefix.len(), encoded_attrs_len(&attrs));
            let decoded = decode_attrs(&encoded[prefix.len()..]).unwrap();
            // Bitwise, so that -0.0 and 0.0 count as different.
            prop_assert_eq!(format!("{decoded:?}"), format!("{attrs:?}"));
        }

        #[test]
        fn log_records_round_trip((dim, body) in log_body(), seq: u64, prefix in 0usize..3) {
            let encoded = encode(seq, dim, &body);
            let dim_of_record = if matches!(body, LogBody::Insert { .. }) { dim } else { 0 };
            let count = match &body { LogBody::Insert { ids, .. } | LogBody::Delete { ids } => ids.len() };
            prop_assert_eq!(encoded.len(), record_len(count, dim_of_record, attrs_bytes(&body)));
            // Decoding reads the record at the start of a longer log.
            let mut log = encoded.clone();
            for _ in 0..prefix {
                log.extend_from_slice(&encoded);
            }
            let (record, used) = decode_record(&log, dim).unwrap();
            prop_assert_eq!(used, encoded.len());
            let expected = LogRecord { seq, body };
            prop_assert_eq!(format!("{record:?}"), format!("{expected:?}"));
            prop_assert_eq!(encode(record.seq, dim, &record.body), encoded);
        }

        /// Encoding into a caller's buffer, rows gathered from anywhere, gives the bytes of
        /// [`encode_insert`] over those rows, whatever the buffer held before (stale bytes too).
        #[test]
        fn rows_encode_in_place((dim, body) in log_body(), seq: u64, stale: u8, order_seed: u64) {
            let LogBody::Insert { ids, vectors, attrs } = body else { return Ok(()) };
            let dim_usize = dim as usize;
            // The caller's rows sit in another order in a larger batch.
            let mut at: Vec<usize> = (0..ids.len()).collect();
            at.sort_by_key(|&i| (i as u64).wrapping_mul(order_seed | 1).rotate_left(17));
            let mut batch = vec![0.0f32; (ids.len() + 1) * dim_usize];
            for (i, &slot) in at.iter().enumerate() {
                batch[(slot + 1) * dim_usize..(slot + 2) * dim_usize].copy_from_slice(&vectors[i * dim_usize..(i + 1) * dim_usize]);
            }
            let mut expected = Vec::new();
            encode_insert(&mut expected, seq, dim, &ids, &vectors, &attrs);
            let mut out = vec![stale; insert_record_len(ids.len(), dim, &attrs)];
            let row = |i: usize| &batch[(at[i] + 1) * dim_usize..(at[i] + 2) * dim_usize];
            encode_insert_rows(&mut out, seq, dim, &ids, row, &attrs);
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn deletes_encode_in_place(ids in proptest::collection::vec(any::<u64>(), 1..50), seq: u64, stale: u8) {
            let mut expected = Vec::new();
            encode_delete(&mut expected, seq, &ids);
            let mut out = vec![stale; record_len(ids.len(), 0, 0)];
            encode_delete_into(&mut out, seq, &ids);
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn flipped_bytes_are_detected((dim, body) in log_body(), position: prop::sample::Index, mask in 1u8..=255) {
            let mut encoded = encode(1, dim, &body);
            let at = position.index(encoded.len());
            encoded[at] ^= mask;
            let result = decode_record(&encoded, dim);
            prop_assert!(matches!(result, Err(LogError::Corrupt(_))), "byte {} ^ {:#04x}: {:?}", at, mask, result);
        }

        #[test]
        fn truncated_records_are_truncated((dim, body) in log_body(), cut: prop::sample::Index) {
            let encoded = encode(1, dim, &body);
            let len = cut.index(encoded.len());
            let need = if len < LOG_HEADER_SIZE { LOG_HEADER_SIZE } else { encoded.len() };
            prop_assert_eq!(decode_record(&encoded[..len], dim), Err(LogError::Truncated { need }));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), dim in 1u32..8) {
            let _ = decode_collection(&bytes, 0);
            let _ = decode_attrs(&bytes);
            let _ = decode_record(&bytes, dim);
        }

        #[test]
        fn records_with_valid_checksums_never_panic(
            header in proptest::collection::vec(any::<u8>(), 64),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            dim in 1u32..8,
        ) {
            // Random headers almost never pass the checksum; stamp it so the field checks run.
            let mut bytes = [&header[..], &payload[..]].concat();
            bytes[0..4].copy_from_slice(&LOG_MAGIC.to_le_bytes());
            bytes[16..24].copy_from_slice(&((payload.len() as u64) % 320).to_le_bytes());
            bytes[6..8].fill(0);
            bytes[40..64].fill(0);
            bytes[4] = 1 + bytes[4] % 2;
            let record_dim = if bytes[4] == 1 { dim } else { 0 };
            bytes[12..16].copy_from_slice(&record_dim.to_le_bytes());
            bytes[5] &= LOG_FLAG_ATTRS;
            if bytes[4] == 2 { bytes[5] = 0; }
            let payload_len = (le_u64(&bytes[16..24]) as usize).min(payload.len());
            bytes[16..24].copy_from_slice(&(payload_len as u64).to_le_bytes());
            let count = 1 + u32::from(bytes[8]) % 4;
            bytes[8..12].copy_from_slice(&count.to_le_bytes());
            restamp(&mut bytes);
            let _ = decode_record(&bytes, dim);
        }
    }
}
