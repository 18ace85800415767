//! The `.npy` reader of the CLI (`client/src/vecfile.rs`): any bytes give `(dim, values)` with
//! `values.len()` a multiple of `dim`, or an error naming the file; nothing is allocated beyond
//! what the bytes can hold.
//!
//! Input: the file's bytes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vexfs_client::vecfile;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.npy");
    if let Ok((dim, values)) = vecfile::read_npy_from(data, data.len() as u64, path) {
        assert!((1..=vecfile::DIM_MAX).contains(&dim));
        assert!(!values.is_empty() && values.len() % dim == 0);
        assert!(values.len() * 4 <= data.len());
    }
});
