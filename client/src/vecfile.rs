//! Readers for the vector files the CLI takes: `.fvecs` and `.npy`.
//!
//! Both return `(dim, values)`: `values` holds `values.len() / dim` vectors of `dim` float32s,
//! row after row. Every way a file can be wrong (truncated, trailing bytes, inconsistent
//! dimensions, an unsupported dtype, not 2-D, Fortran order, no vectors) is a [`VecFileError`]
//! naming the file and the problem; no input makes a reader panic, and the sizes a header claims
//! are checked against the file's length before anything is allocated for them.
//!
//! - `.fvecs` (the format of the TEXMEX corpora, SIFT and GIST): each vector is a little-endian
//!   `i32` dimension followed by that many little-endian `f32`s; every vector has the same
//!   dimension. It is trivial, so it is read by hand.
//! - `.npy` (NumPy's `np.save`): a 2-D array in C order, shape `(rows, dim)`. The header is also
//!   read by hand: the `npyz` crate would pull in a Python-literal parser (`py_literal`, `pest`,
//!   `num-bigint`) for a header that is one small dict, multiplies the shape without an overflow
//!   check, and sizes its reads from the header; we would validate shape, order and length
//!   ourselves anyway to name each problem. dtypes: `<f4` (float32) is read as is; `<f8`
//!   (float64, NumPy's default, what `np.random.rand` makes) is accepted and converted to float32,
//!   refusing values outside float32's range rather than turning them into infinities. Any other
//!   dtype is refused with its name (convert with `a.astype(np.float32)`).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// The largest `.npy` header accepted. NumPy pads headers to 64 bytes; a few KiB is already
/// unusual, so a bigger one is a corrupt length field rather than a header.
pub const NPY_HEADER_MAX: usize = 1 << 20;

/// The largest vector dimension a file may declare (VexFS's own limit, `DIM_MAX`).
pub const DIM_MAX: usize = vexfs_format::collection::DIM_MAX as usize;

/// A vector file that cannot be read; the message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VecFileError {
    /// The file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (part of the message, so not also a `source()`).
        error: io::Error,
    },
    /// The file's contents are not a valid vector file of its kind.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, as a sentence fragment.
        problem: String,
    },
}

/// The kinds of vector file, told apart by the file name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VecFileKind {
    /// `.fvecs`.
    Fvecs,
    /// `.npy`.
    Npy,
}

impl VecFileKind {
    /// The kind of `path`, from its extension (`.fvecs`, `.npy`, any case).
    pub fn of(path: &Path) -> Result<VecFileKind, VecFileError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if extension.eq_ignore_ascii_case("fvecs") {
            Ok(VecFileKind::Fvecs)
        } else if extension.eq_ignore_ascii_case("npy") {
            Ok(VecFileKind::Npy)
        } else {
            Err(invalid(path, "unknown vector file type: the name must end in .npy or .fvecs".to_owned()))
        }
    }
}

/// Reads a `.npy` or `.fvecs` file (by extension): `(dim, values)`.
pub fn read(path: &Path) -> Result<(usize, Vec<f32>), VecFileError> {
    match VecFileKind::of(path)? {
        VecFileKind::Fvecs => read_fvecs(path),
        VecFileKind::Npy => read_npy(path),
    }
}

fn invalid(path: &Path, problem: String) -> VecFileError {
    VecFileError::Invalid { path: path.to_path_buf(), problem }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> VecFileError + '_ {
    move |error| VecFileError::Io { path: path.to_path_buf(), error }
}

/// Opens `path` and returns it with its length in bytes.
fn open(path: &Path) -> Result<(BufReader<File>, u64), VecFileError> {
    let file = File::open(path).map_err(io_error(path))?;
    let metadata = file.metadata().map_err(io_error(path))?;
    if !metadata.is_file() {
        return Err(invalid(path, "is not a regular file".to_owned()));
    }
    Ok((BufReader::with_capacity(1 << 20, file), metadata.len()))
}

// ---- fvecs ------------------------------------------------------------------------------------

/// Reads an `.fvecs` file: `(dim, values)`.
pub fn read_fvecs(path: &Path) -> Result<(usize, Vec<f32>), VecFileError> {
    let (reader, len) = open(path)?;
    read_fvecs_from(reader, len, path)
}

/// Reads `.fvecs` contents of `len` bytes from `reader`; `path` only names them in errors. The
/// reader behind [`read_fvecs`], public for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn read_fvecs_from(mut reader: impl Read, len: u64, path: &Path) -> Result<(usize, Vec<f32>), VecFileError> {
    if len == 0 {
        return Err(invalid(path, "holds no vectors (the file is empty)".to_owned()));
    }
    let mut word = [0u8; 4];
    read_exact(&mut reader, &mut word, path, len)?;
    let dim = fvecs_dim(i32::from_le_bytes(word), 0, path)?;
    // Worked example: dim 128 makes 4 + 128 * 4 = 516-byte records; a 5160-byte file holds 10.
    let record_bytes = 4 + dim as u64 * 4;
    if !len.is_multiple_of(record_bytes) {
        let whole = len / record_bytes;
        return Err(invalid(
            path,
            format!(
                "truncated: {len} bytes is not a whole number of {record_bytes}-byte records of dimension {dim} \
                 ({whole} whole records, then {} bytes)",
                len % record_bytes
            ),
        ));
    }
    let count = len / record_bytes;
    let mut values = Vec::with_capacity(count as usize * dim);
    let mut row = vec![0u8; dim * 4];
    for index in 0..count {
        if index > 0 {
            read_exact(&mut reader, &mut word, path, len)?;
            let found = fvecs_dim(i32::from_le_bytes(word), index, path)?;
            if found != dim {
                return Err(invalid(
                    path,
                    format!("inconsistent dimensions: vector 0 has dimension {dim}, vector {index} has {found}"),
                ));
            }
        }
        read_exact(&mut reader, &mut row, path, len)?;
        values.extend(row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    }
    Ok((dim, values))
}

/// Checks the dimension field of `.fvecs` record `index`.
fn fvecs_dim(field: i32, index: u64, path: &Path) -> Result<usize, VecFileError> {
    if field <= 0 || field as usize > DIM_MAX {
        return Err(invalid(
            path,
            format!("vector {index} declares dimension {field}, not in 1..={DIM_MAX} (is this an .fvecs file?)"),
        ));
    }
    Ok(field as usize)
}

/// `read_exact`, with a short read reported as truncation.
fn read_exact(reader: &mut impl Read, buf: &mut [u8], path: &Path, len: u64) -> Result<(), VecFileError> {
    reader.read_exact(buf).map_err(|error| match error.kind() {
        io::ErrorKind::UnexpectedEof => {
            invalid(path, format!("truncated: the file ended early ({len} bytes; did it change while being read?)"))
        }
        _ => io_error(path)(error),
    })
}

// ---- npy --------------------------------------------------------------------------------------

/// The magic string every `.npy` file starts with.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element types of `.npy` files that can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NpyDtype {
    F32,
    F64,
}

impl NpyDtype {
    fn size(self) -> usize {
        match self {
            NpyDtype::F32 => 4,
            NpyDtype::F64 => 8,
        }
    }
}

/// What a `.npy` header says.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    dtype: NpyDtype,
    rows: usize,
    dim: usize,
    /// Bytes before the data: magic, version, length field, header text.
    data_offset: u64,
}

/// Reads a `.npy` file of a 2-D float32 (or float64, converted) array: `(dim, values)`.
pub fn read_npy(path: &Path) -> Result<(usize, Vec<f32>), VecFileError> {
    let (reader, len) = open(path)?;
    read_npy_from(reader, len, path)
}

/// Reads `.npy` contents of `len` bytes from `reader`; `path` only names them in errors. The
/// reader behind [`read_npy`], public for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn read_npy_from(mut reader: impl Read, len: u64, path: &Path) -> Result<(usize, Vec<f32>), VecFileError> {
    let header = read_npy_header(&mut reader, len).map_err(|problem| invalid(path, problem))?;
    let data_bytes = (header.rows * header.dim) as u64 * header.dtype.size() as u64;
    let expected = header.data_offset + data_bytes;
    if len < expected {
        return Err(invalid(
            path,
            format!("truncated: shape ({}, {}) needs {expected} bytes, the file has {len}", header.rows, header.dim),
        ));
    }
    if len > expected {
        return Err(invalid(
            path,
            format!(
                "{} bytes after the data of shape ({}, {}) (not a single array?)",
                len - expected,
                header.rows,
                header.dim
            ),
        ));
    }
    let values = read_npy_data(&mut reader, &header, path, len)?;
    Ok((header.dim, values))
}

fn read_npy_data(reader: &mut impl Read, header: &NpyHeader, path: &Path, len: u64) -> Result<Vec<f32>, VecFileError> {
    let total = header.rows * header.dim;
    let size = header.dtype.size();
    let mut values = Vec::with_capacity(total);
    // Read in chunks of whole elements, so a float64 is never split between two reads.
    let mut chunk = vec![0u8; (1 << 16) * size];
    let mut done = 0;
    while done < total {
        let n = (total - done).min(1 << 16);
        let bytes = &mut chunk[..n * size];
        read_exact(reader, bytes, path, len)?;
        match header.dtype {
            NpyDtype::F32 => {
                values.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            }
            NpyDtype::F64 => {
                for (i, b) in bytes.chunks_exact(8).enumerate() {
                    let wide = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    let narrow = wide as f32;
                    if wide.is_finite() && !narrow.is_finite() {
                        let at = done + i;
                        return Err(invalid(
                            path,
                            format!(
                                "vector {} component {} is {wide}, outside float32's range",
                                at / header.dim,
                                at % header.dim
                            ),
                        ));
                    }
                    values.push(narrow);
                }
            }
        }
        done += n;
    }
    Ok(values)
}

/// Reads and checks the magic, version, header length and header of a `.npy` file of `len` bytes.
fn read_npy_header(reader: &mut impl Read, len: u64) -> Result<NpyHeader, String> {
    let truncated = |what: &str| format!("truncated: the file ends inside the {what} ({len} bytes)");
    let mut prefix = [0u8; 8];
    if len < 8 || reader.read_exact(&mut prefix).is_err() || &prefix[..6] != NPY_MAGIC {
        return Err(not_npy(len));
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let length_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(format!("npy format version {major}.{minor} is not supported (1.0, 2.0, 3.0 are)")),
    };
    let mut length = [0u8; 4];
    reader.read_exact(&mut length[..length_bytes]).map_err(|_| truncated("npy header length"))?;
    let header_len = u32::from_le_bytes(length) as usize;
    let data_offset = (8 + length_bytes + header_len) as u64;
    if header_len > NPY_HEADER_MAX {
        return Err(format!("the npy header claims {header_len} bytes (at most {NPY_HEADER_MAX}): corrupt?"));
    }
    if data_offset > len {
        return Err(truncated("npy header"));
    }
    let mut text = vec![0u8; header_len];
    reader.read_exact(&mut text).map_err(|_| truncated("npy header"))?;
    let text = std::str::from_utf8(&text).map_err(|_| "the npy header is not text".to_owned())?;
    let (dtype, fortran_order, shape) = parse_npy_dict(text)?;
    let dtype = match dtype.as_str() {
        "<f4" => NpyDtype::F32,
        "<f8" => NpyDtype::F64,
        other => return Err(unsupported_dtype(other)),
    };
    if fortran_order {
        return Err("the array is in Fortran order; save a C-order array (np.ascontiguousarray(a))".to_owned());
    }
    let (rows, dim) = match shape[..] {
        [rows, dim] => (rows, dim),
        _ => return Err(format!("shape {} is not 2-D (rows, dim)", shape_text(&shape))),
    };
    if rows == 0 {
        return Err(format!("holds no vectors (shape ({rows}, {dim}))"));
    }
    if dim == 0 || dim > DIM_MAX {
        return Err(format!("dimension {dim} (shape ({rows}, {dim})) is not in 1..={DIM_MAX}"));
    }
    // Bounded by the file length before anything is allocated: rows * dim * size <= len.
    let fits = rows.checked_mul(dim).and_then(|n| n.checked_mul(dtype.size())).is_some_and(|n| n as u64 <= len);
    if !fits {
        return Err(format!("truncated: shape ({rows}, {dim}) needs more than the file's {len} bytes"));
    }
    Ok(NpyHeader { dtype, rows, dim, data_offset })
}

fn not_npy(len: u64) -> String {
    format!("not an npy file (it does not start with \\x93NUMPY; {len} bytes)")
}

fn unsupported_dtype(dtype: &str) -> String {
    let what = match dtype {
        ">f4" | ">f8" => " (big-endian)",
        "<f2" | "|f2" => " (float16)",
        _ => "",
    };
    format!(
        "dtype {dtype:?}{what} is not supported: float32 ('<f4') or float64 ('<f8') only; convert with a.astype(np.float32)"
    )
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Parses the header dict, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (20, 32), }`
/// (NumPy pads it with spaces and ends it with a newline). Returns (descr, fortran_order, shape).
fn parse_npy_dict(text: &str) -> Result<(String, bool, Vec<usize>), String> {
    let mut parser = DictParser { text: text.as_bytes(), at: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    parser.expect(b'{')?;
    loop {
        if parser.eat(b'}') {
            break;
        }
        let key = parser.string()?;
        parser.expect(b':')?;
        match key.as_str() {
            "descr" => descr = Some(parser.descr()?),
            "fortran_order" => fortran_order = Some(parser.boolean()?),
            "shape" => shape = Some(parser.shape()?),
            other => return Err(format!("the npy header has an unknown key {other:?}")),
        }
        if !parser.eat(b',') {
            parser.expect(b'}')?;
            break;
        }
    }
    parser.skip_space();
    if parser.at != parser.text.len() {
        return Err("the npy header has bytes after its dict".to_owned());
    }
    let missing = |key: &str| format!("the npy header lacks the key {key:?}");
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran_order = fortran_order.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;
    Ok((descr, fortran_order, shape))
}

/// A parser for the Python literals an npy header holds: strings, booleans, tuples of integers.
struct DictParser<'t> {
    text: &'t [u8],
    at: usize,
}

impl DictParser<'_> {
    const SHAPE_DIMS_MAX: usize = 32;

    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        let found = self.text.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.eat(byte) {
            return Ok(());
        }
        Err(format!("the npy header is malformed: expected '{}' at byte {}", byte as char, self.at))
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.text.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("the npy header is malformed: expected a string at byte {}", self.at)),
        };
        let start = self.at + 1;
        let Some(length) = self.text[start..].iter().position(|&b| b == quote) else {
            return Err("the npy header is malformed: an unterminated string".to_owned());
        };
        self.at = start + length + 1;
        Ok(String::from_utf8_lossy(&self.text[start..start + length]).into_owned())
    }

    /// A `descr`: a type string, or a list for structured dtypes (refused).
    fn descr(&mut self) -> Result<String, String> {
        self.skip_space();
        if self.text.get(self.at) == Some(&b'[') {
            return Err("a structured dtype (a record per row) is not supported: float32 or float64 only".to_owned());
        }
        self.string()
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.text[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        Err(format!("the npy header is malformed: expected True or False at byte {}", self.at))
    }

    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut shape = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(shape);
            }
            if shape.len() == Self::SHAPE_DIMS_MAX {
                return Err(format!("the npy shape has more than {} dimensions", Self::SHAPE_DIMS_MAX));
            }
            shape.push(self.integer()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(shape);
            }
        }
    }

    fn integer(&mut self) -> Result<usize, String> {
        self.skip_space();
        let start = self.at;
        while self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.text[start..self.at]).expect("ASCII digits");
        // Also refuses "", a sign and numbers beyond usize.
        digits.parse().map_err(|_| format!("the npy header is malformed: expected a size at byte {start}"))
    }
}

// ---- tests ------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            static SEQUENCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("vexfs-vecfile-{}-{name}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fvecs_bytes(dim: usize, values: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for row in values.chunks(dim) {
            out.extend_from_slice(&(dim as i32).to_le_bytes());
            for v in row {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// An npy file as `np.save` writes it: version 1.0, the header padded with spaces and a
    /// newline so that the data starts at a multiple of 64.
    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let mut text = header.to_owned();
        while !(10 + text.len() + 1).is_multiple_of(64) {
            text.push(' ');
        }
        text.push('\n');
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn sample(count: usize, dim: usize) -> Vec<f32> {
        (0..count * dim).map(|i| i as f32 * 0.25 - 3.0).collect()
    }

    fn problem(result: Result<(usize, Vec<f32>), VecFileError>) -> String {
        match result {
            Ok((dim, values)) => panic!("read a bad file as {} values of dimension {dim}", values.len()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn fvecs_round_trips() {
        let dir = TempDir::new("fvecs");
        let values = sample(7, 5);
        let path = dir.write("a.fvecs", &fvecs_bytes(5, &values));
        assert_eq!(read(&path).unwrap(), (5, values));
    }

    #[test]
    fn fvecs_malformed_files_are_named_errors() {
        let dir = TempDir::new("fvecs-bad");
        let good = fvecs_bytes(4, &sample(3, 4));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty.fvecs", Vec::new(), "holds no vectors"),
            ("truncated.fvecs", good[..good.len() - 3].to_vec(), "truncated"),
            ("zero-dim.fvecs", 0i32.to_le_bytes().to_vec(), "declares dimension 0"),
            ("negative-dim.fvecs", (-5i32).to_le_bytes().to_vec(), "declares dimension -5"),
            ("huge-dim.fvecs", i32::MAX.to_le_bytes().to_vec(), "not in 1..=65536"),
            ("short.fvecs", vec![1, 0], "truncated"),
            (
                "inconsistent.fvecs",
                [fvecs_bytes(4, &sample(1, 4)), fvecs_bytes(2, &sample(1, 2)), vec![0; 8]].concat(),
                "vector 1 has 2",
            ),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.write(name, &bytes);
            let message = problem(read(&path));
            assert!(message.contains(name), "{message}");
            assert!(message.contains(expected), "{name}: {message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn npy_float32_round_trips() {
        let dir = TempDir::new("npy");
        let values = sample(3, 4);
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
        let path = dir.write("a.npy", &npy_bytes(header, &f32_bytes(&values)));
        assert_eq!(read(&path).unwrap(), (4, values.clone()));
        // Version 2.0 (a 4-byte header length), double quotes, no trailing comma, more spaces.
        let text = "{\"shape\" : ( 3 , 4 ) , \"fortran_order\": False, \"descr\": \"<f4\"}\n";
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[2, 0]);
        bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(&f32_bytes(&values));
        let path = dir.write("v2.npy", &bytes);
        assert_eq!(read(&path).unwrap(), (4, values));
    }

    #[test]
    fn npy_float64_is_converted_and_range_checked() {
        let dir = TempDir::new("npy64");
        let wide = [0.5f64, -1.25, 3.0, 1e-3];
        let data: Vec<u8> = wide.iter().flat_map(|v| v.to_le_bytes()).collect();
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
        let path = dir.write("a.npy", &npy_bytes(header, &data));
        assert_eq!(read(&path).unwrap(), (2, wide.iter().map(|&v| v as f32).collect()));
        let data: Vec<u8> = [1.0f64, 1e300].iter().flat_map(|v| v.to_le_bytes()).collect();
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
        let path = dir.write("big.npy", &npy_bytes(header, &data));
        let message = problem(read(&path));
        assert!(message.contains("vector 0 component 1") && message.contains("float32's range"), "{message}");
    }

    #[test]
    fn npy_malformed_files_are_named_errors() {
        let dir = TempDir::new("npy-bad");
        let data = f32_bytes(&sample(2, 3));
        let header = |descr: &str, fortran: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
        };
        let good = npy_bytes(&header("<f4", "False", "(2, 3)"), &data);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty.npy", Vec::new(), "not an npy file"),
            ("text.npy", b"hello, world, this is not numpy".to_vec(), "not an npy file"),
            ("truncated-data.npy", good[..good.len() - 1].to_vec(), "truncated"),
            ("truncated-header.npy", good[..20].to_vec(), "truncated"),
            ("trailing.npy", [good.clone(), vec![0; 4]].concat(), "4 bytes after the data"),
            ("int.npy", npy_bytes(&header("<i4", "False", "(2, 3)"), &data), "dtype \"<i4\""),
            ("big-endian.npy", npy_bytes(&header(">f4", "False", "(2, 3)"), &data), "big-endian"),
            ("half.npy", npy_bytes(&header("<f2", "False", "(2, 3)"), &data[..12]), "float16"),
            ("fortran.npy", npy_bytes(&header("<f4", "True", "(2, 3)"), &data), "Fortran order"),
            ("one-d.npy", npy_bytes(&header("<f4", "False", "(6,)"), &data), "shape (6,) is not 2-D"),
            ("three-d.npy", npy_bytes(&header("<f4", "False", "(1, 2, 3)"), &data), "shape (1, 2, 3) is not 2-D"),
            ("scalar.npy", npy_bytes(&header("<f4", "False", "()"), &data[..4]), "shape () is not 2-D"),
            ("no-rows.npy", npy_bytes(&header("<f4", "False", "(0, 3)"), &[]), "holds no vectors"),
            ("zero-dim.npy", npy_bytes(&header("<f4", "False", "(3, 0)"), &[]), "dimension 0"),
            ("overflow.npy", npy_bytes(&header("<f4", "False", "(18446744073709551615, 4096)"), &data), "truncated"),
            ("too-big.npy", npy_bytes(&header("<f4", "False", "(99999999999999999999999, 3)"), &data), "malformed"),
            ("negative.npy", npy_bytes(&header("<f4", "False", "(-2, 3)"), &data), "malformed"),
            (
                "structured.npy",
                npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", &data),
                "structured",
            ),
            (
                "missing-key.npy",
                npy_bytes("{'descr': '<f4', 'shape': (2, 3), }", &data),
                "lacks the key \"fortran_order\"",
            ),
            (
                "unknown-key.npy",
                npy_bytes(&format!("{{'x': 1, {}", &header("<f4", "False", "(2, 3)")[1..]), &data),
                "unknown key",
            ),
            ("unclosed.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", &data), "malformed"),
            ("unterminated.npy", npy_bytes("{'descr: '<f4}", &data), "malformed"),
            ("version.npy", [&NPY_MAGIC[..], &[9, 0], &good[8..]].concat(), "version 9.0"),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.write(name, &bytes);
            let message = problem(read(&path));
            assert!(message.contains(name), "{message}");
            assert!(message.contains(expected), "{name}: {message:?} lacks {expected:?}");
        }
        // A header length beyond the file.
        let mut bytes = good.clone();
        bytes[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        let message = problem(read(&dir.write("long-header.npy", &bytes)));
        assert!(message.contains("truncated"), "{message}");
    }

    #[test]
    fn unknown_extensions_and_missing_files_are_named() {
        let dir = TempDir::new("kinds");
        let path = dir.write("vectors.csv", b"1,2,3\n");
        let message = problem(read(&path));
        assert!(message.contains("vectors.csv") && message.contains(".npy or .fvecs"), "{message}");
        let missing = dir.0.join("missing.npy");
        let message = problem(read(&missing));
        assert!(message.contains("missing.npy"), "{message}");
        assert_eq!(VecFileKind::of(Path::new("A.FVECS")).unwrap(), VecFileKind::Fvecs);
    }

    /// Every prefix of a valid file, and every single-byte corruption of its header, is an error
    /// or a successful read: never a panic.
    #[test]
    fn no_prefix_or_header_corruption_panics() {
        let dir = TempDir::new("prefixes");
        let npy = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &f32_bytes(&sample(2, 3)));
        let fvecs = fvecs_bytes(3, &sample(2, 3));
        for (name, bytes) in [("p.npy", &npy), ("p.fvecs", &fvecs)] {
            for end in 0..bytes.len() {
                let _ = read(&dir.write(name, &bytes[..end]));
            }
            for at in 0..bytes.len().min(128) {
                for value in [0u8, b'(', b')', b',', b'9', b'\'', b'}', 0xff] {
                    let mut corrupt = bytes.clone();
                    corrupt[at] = value;
                    let _ = read(&dir.write(name, &corrupt));
                }
            }
        }
    }
}
