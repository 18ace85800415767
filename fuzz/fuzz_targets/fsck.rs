//! A whole image through fsck: superblocks, journal replay, the volume root, the tree walk,
//! items, namespace, extents, collections and their shard logs, the bitmap and the counters.
//! fsck must never panic, whatever the image, and always return a report or an error; its work
//! is bounded by the device.
//!
//! Input: a [`vexfs_fuzz::SparseImage`] (the non-zero blocks of a 16 MiB device); the seeds are
//! the golden images, so mutations start from volumes fsck finds clean.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_format::block::BLOCK_SIZE_U64;
use vexfs_format::fsck::{self, PROBLEMS_MAX};
use vexfs_fuzz::SparseImage;

fuzz_target!(|data: &[u8]| {
    let image = SparseImage::parse(data);
    let mut read = |addr, buf: &mut [u8]| image.read(addr, buf);
    match fsck::check(&mut read, image.device_blocks * BLOCK_SIZE_U64) {
        Ok(report) => {
            assert!(report.problems.len() <= PROBLEMS_MAX);
            for problem in &report.problems {
                let _ = problem.to_string();
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
