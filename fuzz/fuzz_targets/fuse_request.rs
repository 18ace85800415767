//! The FUSE request parser, on both layouts: a contiguous request as `/dev/fuse` delivers it
//! (`Request::parse_with`) and the three buffers of a FUSE-over-io_uring entry
//! (`Request::parse_split`). A request that parses is printed and named, which reads every
//! borrowed field; a request that does not gives an error that still names its `unique` when the
//! header was whole.
//!
//! Input: flags (bit 0: the session negotiated FUSE_SETXATTR_EXT; bit 1: split layout; bit 2:
//! make the header's `len` match the request), then for the split layout a u16 length of the
//! argument struct, then the request bytes (header first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_daemon::fuse::request::{ParseOptions, Request};
use vexfs_fuzz::Bytes;

const HEADER_SIZE: usize = 40;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let flags = input.u8();
    let options = ParseOptions { setxattr_ext: flags & 1 != 0 };
    if flags & 2 != 0 {
        let op_in_len = usize::from(input.u16());
        let rest = input.rest();
        let (header, rest) = rest.split_at(rest.len().min(HEADER_SIZE));
        let (op_in, payload) = rest.split_at(rest.len().min(op_in_len));
        check(Request::parse_split(header, op_in, payload, options), header.len());
    } else {
        let mut bytes = input.rest().to_vec();
        if flags & 4 != 0 && bytes.len() >= 4 {
            let len = bytes.len() as u32;
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        check(Request::parse_with(&bytes, options), bytes.len());
    }
});

/// Checks the outcome of parsing a request whose header buffer held `len` bytes.
fn check(result: Result<Request<'_>, vexfs_daemon::fuse::request::RequestError>, len: usize) {
    match result {
        Ok(request) => {
            let _ = format!("{request:?} {} {}", request.op.name(), request.op.expects_reply());
        }
        Err(error) => {
            assert_eq!(error.unique().is_none(), len < HEADER_SIZE, "{error}");
            let _ = error.to_string();
        }
    }
}
