//! The collection ioctls' decoding alone (`fuse::collections::decode`), at full speed: any bytes
//! as any command's struct must decode to a request whose parts agree with what the struct says,
//! or to an errno, never panic. (The `ioctl` target drives the same requests through the whole
//! door and service, much more slowly.)
//!
//! Input: a selector byte (the command), then the request bytes, cut or zero-padded to the
//! struct's size unless the selector's high bit asks for them at their own length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_daemon::fuse::collections::{decode, Decoded};
use vexfs_format::ioctl::{self, Create, Delete, Insert, Search, TextSearch, DELETE_IDS, TEXT_K_MAX};

const COMMANDS: [(u32, usize); 8] = [
    (ioctl::IOC_CREATE, size_of::<Create>()),
    (ioctl::IOC_INSERT, size_of::<Insert>()),
    (ioctl::IOC_KNN, size_of::<Search>()),
    (ioctl::IOC_RANGE, size_of::<Search>()),
    (ioctl::IOC_STATS, 0),
    (ioctl::IOC_DELETE, size_of::<Delete>()),
    (ioctl::IOC_SYNC, 0),
    (ioctl::IOC_SEARCH_TEXT, size_of::<TextSearch>()),
];

fuzz_target!(|data: &[u8]| {
    let selector = data.first().copied().unwrap_or(0);
    let bytes = data.get(1..).unwrap_or(&[]);
    let (cmd, size) = COMMANDS[usize::from(selector & 0x7f) % COMMANDS.len()];
    let request = if selector & 0x80 != 0 {
        bytes.to_vec()
    } else {
        let mut sized = bytes[..bytes.len().min(size)].to_vec();
        sized.resize(size, 0);
        sized
    };
    let Ok(decoded) = decode(cmd, &request).expect("one of our commands") else { return };
    match decoded {
        Decoded::Insert(raw, insert) => {
            let count = raw.count as usize;
            assert!(count >= 1 && insert.dim == raw.dim);
            assert_eq!(insert.values.len(), count * raw.dim as usize);
            assert!(insert.ids.as_ref().is_none_or(|ids| ids.len() == count));
        }
        Decoded::Search(raw, search) => {
            assert!(search.k >= 1 && search.dim == raw.dim);
            assert_eq!(search.queries.len(), raw.nq as usize * raw.dim as usize);
            assert_eq!(search.radius.is_some(), cmd == ioctl::IOC_RANGE);
        }
        Decoded::SearchText(_, query) => assert!((1..=TEXT_K_MAX).contains(&query.k) && !query.text.is_empty()),
        Decoded::Delete(raw, _) => assert!((1..=DELETE_IDS).contains(&(raw.count as usize))),
        Decoded::Create(_) | Decoded::Stats | Decoded::Sync => {}
    }
});
