//! The collection decoders of `format/src/collection.rs`: collection records, attribute sets and
//! shard log records (a log read front to back, as a shard replays it and fsck checks it).
//! Whatever decodes must encode to bytes that decode to the same value.
//!
//! Input: a selector byte. Selector 0: a collection record follows. Selector 1: an attribute
//! set follows. Selector 2 and 3: a u16 dimension (mod `DIM_MAX`, plus 1), then log records back
//! to back; with 3 their header and payload checksums are restamped first, so that mutated
//! records get past them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_format::collection::{self, LogBody, DIM_MAX};
use vexfs_fuzz::{fix_log_records, Bytes};

const ADDR: u64 = 1028;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    match input.u8() % 4 {
        0 => {
            if let Ok(record) = collection::decode_collection(input.rest(), ADDR) {
                let encoded = collection::encode_collection(&record);
                assert_eq!(collection::decode_collection(&encoded, ADDR).expect("re-encoded record"), record);
            }
        }
        1 => {
            if let Ok(attrs) = collection::decode_attrs(input.rest()) {
                let mut encoded = Vec::new();
                collection::encode_attrs(&attrs, &mut encoded);
                assert_eq!(encoded.len(), collection::encoded_attrs_len(&attrs));
                assert_eq!(collection::decode_attrs(&encoded).expect("re-encoded attributes"), attrs);
            }
        }
        selector => {
            let dim = u32::from(input.u16()) % DIM_MAX + 1;
            let mut log = input.rest().to_vec();
            if selector == 3 {
                fix_log_records(&mut log);
            }
            replay(&log, dim);
        }
    }
});

/// Decodes records from the start of `log` until one does not decode, as a shard's replay does.
fn replay(log: &[u8], dim: u32) {
    let mut at = 0;
    while at < log.len() {
        let Ok((record, len)) = collection::decode_record(&log[at..], dim) else { return };
        assert!(len > 0 && len <= log.len() - at, "record of {len} bytes at {at} of {}", log.len());
        let mut encoded = Vec::new();
        match &record.body {
            LogBody::Insert { ids, vectors, attrs } => {
                assert_eq!(vectors.len(), ids.len() * dim as usize);
                assert!(attrs.is_empty() || attrs.len() == ids.len());
                // Logs never hold non-finite values the encoder would write; a decoder that lets
                // one through is checked by the shard, not here.
                if vectors.iter().all(|v| v.is_finite()) {
                    collection::encode_insert(&mut encoded, record.seq, dim, ids, vectors, attrs);
                }
            }
            LogBody::Delete { ids } => collection::encode_delete(&mut encoded, record.seq, ids),
        }
        if !encoded.is_empty() {
            let (again, again_len) = collection::decode_record(&encoded, dim).expect("a re-encoded record decodes");
            assert_eq!(again, record);
            assert_eq!(again_len, encoded.len());
        }
        at += len;
    }
}
