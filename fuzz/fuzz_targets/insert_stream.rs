//! The insert stream's framing (`service::stream::Framer`): bytes arrive in any pieces, and every
//! batch that comes out is whole (ids and values of the header's count and dimension), no input
//! panics, and nothing is made room for before the header passed its checks and was admitted.
//!
//! Input: the collection's dimension (1..=16), a byte choosing whether admissions are refused,
//! then piece lengths and bytes interleaved: a length byte (0 means 1), then that many bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_daemon::service::stream::Framer;
use vexfs_daemon::service::{Bound, ServiceError};
use vexfs_fuzz::Bytes;

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes::new(data);
    let dim = u32::from(bytes.u8() % 16) + 1;
    let refuse = bytes.u8() & 1 != 0;
    let mut framer = Framer::new(dim);
    let mut admitted = 0usize;
    loop {
        let len = usize::from(bytes.u8()).max(1);
        let piece = bytes.take(len);
        if piece.is_empty() {
            return;
        }
        let mut rest = piece;
        while !rest.is_empty() {
            let admit = |len: usize| {
                if refuse {
                    return Err(ServiceError::limit(Bound::Quota, "refused"));
                }
                admitted = len;
                Ok(())
            };
            match framer.take(rest, admit) {
                Ok((used, batch)) => {
                    assert!(used > 0 && used <= rest.len());
                    rest = &rest[used..];
                    if let Some(batch) = batch {
                        assert!(!refuse, "a batch came out of a refused admission");
                        let count = batch.values.len() / dim as usize;
                        assert_eq!(batch.values.len(), count * dim as usize);
                        assert!(count >= 1);
                        if let Some(ids) = &batch.ids {
                            assert_eq!(ids.len(), count);
                        }
                        let ids_bytes = batch.ids.as_ref().map_or(0, |ids| 8 * ids.len());
                        assert_eq!(batch.charged(), admitted);
                        assert_eq!(32 + ids_bytes + 4 * batch.values.len(), admitted);
                    }
                }
                // A refused stream takes nothing more (the service fails it).
                Err(_) => return,
            }
        }
    }
});
