//! The B-tree item decoders: inode records, directory entries and index entries, extents,
//! extended attributes and keys. Whatever decodes must encode to a value that decodes the same.
//!
//! Input: a selector byte (which decoder), then the item value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_format::inode::InodeRecord;
use vexfs_format::items::{self, Extent};
use vexfs_format::key::{Key, KEY_SIZE};
use vexfs_fuzz::Bytes;

const ADDR: u64 = 1028;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let selector = input.u8();
    let value = input.rest();
    match selector % 6 {
        0 => {
            if let Ok(record) = InodeRecord::decode(value, 2, ADDR) {
                assert_eq!(InodeRecord::decode(&record.encode(), 2, ADDR).expect("re-encoded inode"), record);
                let _ = (record.kind(), record.is_dir());
            }
        }
        1 => {
            if let Ok(entries) = items::decode_dir_entries(value, ADDR) {
                let encoded = items::encode_dir_entries(&entries);
                assert_eq!(items::decode_dir_entries(&encoded, ADDR).expect("re-encoded entries"), entries);
            }
        }
        2 => {
            if let Ok((child, dtype, name)) = items::decode_dir_index(value, ADDR) {
                let encoded = items::encode_dir_index(child, dtype, name);
                assert_eq!(items::decode_dir_index(&encoded, ADDR).expect("re-encoded index"), (child, dtype, name));
            }
        }
        3 => {
            if let Ok(extent) = Extent::decode(value, ADDR) {
                assert_eq!(Extent::decode(&extent.encode(), ADDR).expect("re-encoded extent"), extent);
                let _ = extent.is_unwritten();
            }
        }
        4 => {
            if let Ok(xattrs) = items::decode_xattrs(value, ADDR) {
                let encoded = items::encode_xattrs(&xattrs);
                assert_eq!(items::decode_xattrs(&encoded, ADDR).expect("re-encoded xattrs"), xattrs);
            }
        }
        _ => {
            if value.len() >= KEY_SIZE {
                let key = Key::decode(value);
                assert_eq!(Key::decode(&key.encode()), key);
                let _ = (vexfs_format::key::ItemKind::from_u8(key.kind), items::name_hash(&value[KEY_SIZE..]));
            }
        }
    }
});
