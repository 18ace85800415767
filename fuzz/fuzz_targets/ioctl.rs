//! The collection ioctls as the FUSE door answers them (`fuse::collections::ioctl`), and the
//! insert stream's batch header (`format::ioctl::BatchHeader::parse`).
//!
//! The door reads each request struct with zerocopy and checks every size, count, offset and
//! flag before it calls the collection service; this target drives the real door over the
//! collection service on an in-memory volume (`SimStorage`) holding one collection of dimension
//! 4. Every request must be answered with bytes or an errno, never a panic. The service state is
//! built again every `REBUILD_EVERY` inputs so that inserted vectors do not pile up. The only
//! embedder defined is the builtin one, whose model directory does not exist: a request can name
//! nothing else, so no input reaches the network.
//!
//! Input: a selector byte (the ioctl, or the batch header), flags (bit 0: on a plain directory
//! instead of the collection; bit 1: pass the bytes at their own length instead of the struct's;
//! bit 2: as an unprivileged user who neither owns nor may write the collection), then the
//! request bytes.
#![no_main]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vexfs_daemon::embed::registry::Registry;
use vexfs_daemon::engine::fs::Creds;
use vexfs_daemon::engine::{Clock, Engine, EngineOptions};
use vexfs_daemon::fuse::collections;
use vexfs_daemon::io::sim::SimStorage;
use vexfs_daemon::service::{Caller, Collections, Interrupt};
use vexfs_daemon::text::Texts;
use vexfs_daemon::vector::Vectors;
use vexfs_format::collection::Metric;
use vexfs_format::inode::{Timestamp, ROOT_INO};
use vexfs_format::ioctl::{self, BatchHeader, Create, Delete, Insert, Search, TextSearch};
use vexfs_format::mkfs::{image, MkfsParams};
use zerocopy::{FromZeros, IntoBytes};

const VOLUME_BYTES: u64 = 64 << 20;
const REBUILD_EVERY: u32 = 1000;
const DIM: u32 = 4;
const COMMANDS: [u32; 8] = [
    ioctl::IOC_CREATE,
    ioctl::IOC_INSERT,
    ioctl::IOC_KNN,
    ioctl::IOC_RANGE,
    ioctl::IOC_STATS,
    ioctl::IOC_DELETE,
    ioctl::IOC_SYNC,
    ioctl::IOC_SEARCH_TEXT,
];

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp { sec: 1_800_000_000, nsec: 0 }
    }
}

/// A volume with a collection (`collection`) and a plain directory (`plain`), served by a vector
/// and text service as vexfsd builds them.
struct Door {
    service: Collections<Arc<SimStorage>>,
    _engine: Engine<Arc<SimStorage>>,
    collection: u64,
    plain: u64,
    inputs: u32,
}

impl Door {
    fn new() -> Door {
        let params = MkfsParams {
            size_bytes: VOLUME_BYTES,
            uuid: [5; 16],
            now: FixedClock.now(),
            label: "fuzz",
            uid: 0,
            gid: 0,
        };
        let sim = Arc::new(SimStorage::from_image(image(&params).expect("mkfs image")));
        let options = EngineOptions { cache_bytes: 8 << 20, commit_interval: Duration::from_secs(3600) };
        let engine = Engine::open(sim, Arc::new(FixedClock), options).expect("open the volume");
        let vectors = Arc::new(Vectors::new(engine.handle(), 1));
        // No model directory: a text collection's create fails naming the model.
        let embedders = Registry::builtin("/nonexistent/vexfs-fuzz-models".into());
        let service = Collections::new(Arc::new(Texts::new(vectors, Arc::new(embedders))));
        let creds = Creds { uid: 0, gid: 0 };
        let collection = engine.handle().mkdir(ROOT_INO, b"c", 0o755, creds).expect("mkdir").ino;
        let plain = engine.handle().mkdir(ROOT_INO, b"p", 0o755, creds).expect("mkdir").ino;
        let mut create = Create::new_zeroed();
        (create.dim, create.metric, create.shards) = (DIM, Metric::L2 as u32, 2);
        collections::ioctl(
            &service,
            &Caller::root(),
            collection,
            ioctl::IOC_CREATE,
            create.as_bytes(),
            &Interrupt::none(),
        )
        .expect("our command")
        .expect("create the collection");
        Door { service, _engine: engine, collection, plain, inputs: 0 }
    }
}

thread_local! {
    static DOOR: RefCell<Option<Door>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let selector = data.first().copied().unwrap_or(0);
    let flags = data.get(1).copied().unwrap_or(0);
    let bytes = data.get(2..).unwrap_or(&[]);
    let Some(&cmd) = COMMANDS.get(usize::from(selector) % (COMMANDS.len() + 1)) else {
        batch_header(bytes);
        return;
    };
    let request = if flags & 2 != 0 { bytes.to_vec() } else { sized(cmd, bytes) };
    let caller = if flags & 4 != 0 { Caller::with_groups(1000, 1000, vec![]) } else { Caller::root() };
    DOOR.with(|door| {
        let mut door = door.borrow_mut();
        let state = door.get_or_insert_with(Door::new);
        let dir = if flags & 1 != 0 { state.plain } else { state.collection };
        let answer = collections::ioctl(&state.service, &caller, dir, cmd, &request, &Interrupt::none())
            .expect("one of our commands");
        if let Ok(out) = answer {
            assert!(out.len() == request.len() || out.is_empty() || cmd == ioctl::IOC_STATS);
        }
        state.inputs += 1;
        if state.inputs == REBUILD_EVERY {
            *door = None;
        }
    });
});

/// `bytes` cut or zero-padded to the size of `cmd`'s struct.
fn sized(cmd: u32, bytes: &[u8]) -> Vec<u8> {
    let size = match cmd {
        ioctl::IOC_CREATE => size_of::<Create>(),
        ioctl::IOC_INSERT => size_of::<Insert>(),
        ioctl::IOC_KNN | ioctl::IOC_RANGE => size_of::<Search>(),
        ioctl::IOC_DELETE => size_of::<Delete>(),
        ioctl::IOC_SEARCH_TEXT => size_of::<TextSearch>(),
        _ => 0,
    };
    let mut out = bytes[..bytes.len().min(size)].to_vec();
    out.resize(size, 0);
    out
}

/// A batch header that parses describes a batch of at least one vector within the limit.
fn batch_header(bytes: &[u8]) {
    let Ok(header) = BatchHeader::parse(bytes) else { return };
    assert!(header.dim() >= 1 && header.count() >= 1);
    let row = if header.with_ids() { 8 } else { 0 } + 4 * header.dim() as u64;
    assert_eq!(header.batch_len(), 32 + header.count() as u64 * row);
    assert!(header.batch_len() <= ioctl::BATCH_BYTES_MAX as u64);
}
