//! Crash consistency at the engine boundary, deterministic and without a kernel.
//!
//! Method: format an in-memory device, run a seeded workload of creates, writes, overwrites,
//! renames and unlinks through the engine API with fsyncs at chosen points, then build a crash
//! image from the simulator (unflushed writes dropped, kept or torn, chosen by the seed). fsck
//! must find the image consistent, and after reopening (journal replay) every file as of the
//! last fsync must read back exactly. A failure names its seed.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{FixedClock, Rng};
use vexfs_daemon::engine::fs::Creds;
use vexfs_daemon::engine::{Engine, EngineHandle, EngineOptions};
use vexfs_daemon::io::sim::SimStorage;
use vexfs_format::inode::ROOT_INO;
use vexfs_format::{BlockAddr, BLOCK_SIZE};

const VOLUME_BYTES: u64 = 64 << 20;
const CREDS: Creds = Creds { uid: 0, gid: 0 };

fn fresh_image() -> Vec<u8> {
    common::fresh_image(VOLUME_BYTES, [9; 16], "sim")
}

fn open(image: Vec<u8>) -> (Arc<SimStorage>, Engine<Arc<SimStorage>>) {
    let sim = Arc::new(SimStorage::from_image(image));
    let options = EngineOptions { cache_bytes: 16 << 20, commit_interval: Duration::from_secs(3600) };
    let engine = Engine::open(Arc::clone(&sim), Arc::new(FixedClock), options).expect("open the volume");
    (sim, engine)
}

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn read_all(handle: &EngineHandle<Arc<SimStorage>>, ino: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let (buf, range) = handle.read(ino, out.len() as u64, (len - out.len()) as u32).expect("read");
        assert!(!range.is_empty(), "file shorter than expected");
        out.extend_from_slice(&buf[range]);
    }
    out
}

/// Runs the workload; returns the namespace (name -> contents) as of the last fsync, less the
/// files whose data was overwritten in place or truncated after it: such changes may reach the
/// device before a crash without an fsync, as on any file system.
fn workload(handle: &EngineHandle<Arc<SimStorage>>, rng: &mut Rng) -> BTreeMap<String, Vec<u8>> {
    let mut live: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut synced = BTreeMap::new();
    let mut touched = std::collections::HashSet::new();
    let mut inos: BTreeMap<String, u64> = BTreeMap::new();
    for step in 0..120 {
        let name = format!("f{}", rng.below(40));
        match (rng.below(10), live.contains_key(&name)) {
            (0..=4, false) => {
                let len = rng.below(40_000) as usize + 1;
                let data = rng.bytes(len);
                let attr = handle.mknod(ROOT_INO, name.as_bytes(), libc::S_IFREG | 0o644, 0, CREDS).expect("create");
                handle.write(attr.ino, 0, &data).expect("write");
                inos.insert(name.clone(), attr.ino);
                live.insert(name, data);
            }
            (0..=4, true) => {
                let ino = handle.lookup(ROOT_INO, name.as_bytes()).expect("lookup").ino;
                let len = rng.below(40_000) as usize + 1;
                let data = rng.bytes(len);
                let offset = rng.below(20_000) as usize;
                handle.write(ino, offset as u64, &data).expect("overwrite");
                touched.insert(ino);
                let file = live.get_mut(&name).expect("live");
                if file.len() < offset + data.len() {
                    file.resize(offset + data.len(), 0);
                }
                file[offset..offset + data.len()].copy_from_slice(&data);
            }
            (5..=6, true) => {
                handle.unlink(ROOT_INO, name.as_bytes()).expect("unlink");
                live.remove(&name);
                inos.remove(&name);
            }
            (7, true) => {
                let target = format!("f{}", rng.below(40));
                handle
                    .rename(ROOT_INO, name.as_bytes(), ROOT_INO, target.as_bytes(), Default::default())
                    .expect("rename");
                let data = live.remove(&name).expect("live");
                let ino = inos.remove(&name).expect("ino");
                inos.insert(target.clone(), ino);
                live.insert(target, data);
            }
            (8, true) => {
                let ino = handle.lookup(ROOT_INO, name.as_bytes()).expect("lookup").ino;
                let size = rng.below(50_000);
                handle.truncate(ino, size).expect("truncate");
                touched.insert(ino);
                live.get_mut(&name).expect("live").resize(size as usize, 0);
            }
            _ => {}
        }
        if step % 9 == 0 {
            handle.sync().expect("fsync");
            synced = live.iter().map(|(name, data)| (name.clone(), (inos[name], data.clone()))).collect();
            touched.clear();
        }
    }
    synced.into_iter().filter(|(_, (ino, _))| !touched.contains(ino)).map(|(name, (_, data))| (name, data)).collect()
}

fn fsck_clean(image: &[u8], seed: u64) {
    let mut read = |addr: BlockAddr, buf: &mut [u8]| -> Result<(), ()> {
        let at = addr.byte_offset() as usize;
        buf.copy_from_slice(&image[at..at + BLOCK_SIZE]);
        Ok(())
    };
    let report = vexfs_format::fsck::check(&mut read, image.len() as u64).expect("fsck runs");
    assert!(report.is_clean(), "seed {seed}: fsck of the crash image: {:?}", report.problems);
}

/// Cuts the power under `engine` (it is dropped, never closed): the crash image of seed `seed`,
/// which fsck must find clean, opened again.
fn crash_and_reopen(sim: &SimStorage, engine: Engine<Arc<SimStorage>>, seed: u64) -> Engine<Arc<SimStorage>> {
    let image = sim.crash_image(seed);
    drop(engine);
    fsck_clean(&image, seed);
    open(image).1
}

#[test]
fn fsynced_state_survives_crash_images() {
    for seed in 0..24 {
        let (sim, engine) = open(fresh_image());
        let handle = engine.handle();
        let synced = workload(&handle, &mut Rng(seed));
        drop(handle);
        let engine = crash_and_reopen(&sim, engine, seed);
        let handle = engine.handle();
        for (name, data) in &synced {
            let attr =
                handle.lookup(ROOT_INO, name.as_bytes()).unwrap_or_else(|e| panic!("seed {seed}: {name} lost: {e}"));
            assert_eq!(attr.record.size, data.len() as u64, "seed {seed}: size of {name}");
            assert!(read_all(&handle, attr.ino, data.len()) == *data, "seed {seed}: contents of {name}");
        }
        drop(handle);
        engine.close().expect("close");
    }
}

#[test]
fn clean_close_leaves_a_clean_volume() {
    let (sim, engine) = open(fresh_image());
    let handle = engine.handle();
    let synced = workload(&handle, &mut Rng(99));
    drop(handle);
    engine.close().expect("close");
    let image = sim.durable_image();
    fsck_clean(&image, 99);
    let (_, engine) = open(image);
    let handle = engine.handle();
    let mut names = Vec::new();
    handle
        .readdir(ROOT_INO, 0, false, |item| {
            names.push(String::from_utf8_lossy(&item.name).into_owned());
            true
        })
        .expect("readdir");
    assert!(names.len() >= synced.len() + 2, "readdir lists every file");
    drop(handle);
    engine.close().expect("close");
}

/// Appends `log[*base..]` to `ino` with [`EngineHandle::write_blocks`], as a shard log's writer
/// does: from the block boundary at or before the file's end (that partial block written again,
/// extended), in up to `buffers` block buffers, the last padded with zeros. Moves `base` to the
/// block holding the new end.
fn append_blocks(handle: &EngineHandle<Arc<SimStorage>>, ino: u64, log: &[u8], base: &mut usize, buffers: usize) {
    let tail = &log[*base..];
    let padded = tail.len().next_multiple_of(BLOCK_SIZE);
    let per = (padded / BLOCK_SIZE).div_ceil(buffers) * BLOCK_SIZE;
    let mut owned = Vec::new();
    for start in (0..padded).step_by(per) {
        let len = per.min(padded - start);
        let mut buf = handle.block_buffer(len);
        let data = &tail[start.min(tail.len())..(start + len).min(tail.len())];
        buf[..data.len()].copy_from_slice(data);
        buf[data.len()..].fill(0);
        owned.push(buf);
    }
    let slices: Vec<&[u8]> = owned.iter().map(|b| &b[..]).collect();
    handle.write_blocks(ino, *base as u64, &slices, log.len() as u64).expect("write_blocks");
    *base = log.len() / BLOCK_SIZE * BLOCK_SIZE;
}

/// Goal: appends through `write_blocks` (several buffers in one device batch, the partial last
/// block written again by the next append) keep a file exactly as appended, and a crash keeps at
/// least what was synced, the rest of the file a prefix of what was appended. Method: append
/// records of random lengths in random groups, sync now and then, read everything back, then
/// check crash images against the log.
#[test]
fn block_appends_survive_crash_images() {
    for seed in 0..8u64 {
        let (sim, engine) = open(fresh_image());
        let handle = engine.handle();
        let ino = handle.mknod(ROOT_INO, b"log", libc::S_IFREG | 0o644, 0, CREDS).expect("create").ino;
        let mut rng = Rng(seed);
        let mut log = Vec::new();
        let mut base = 0usize;
        let mut synced = 0usize;
        for step in 0..40 {
            let len = (rng.below(3) + 1) as usize * rng.below(200_000) as usize + 1;
            log.extend_from_slice(&rng.bytes(len));
            let buffers = rng.below(4) as usize + 1;
            append_blocks(&handle, ino, &log, &mut base, buffers);
            if step % 7 == 3 {
                handle.sync().expect("sync");
                synced = log.len();
            }
        }
        assert_eq!(handle.getattr(ino).expect("getattr").record.size, log.len() as u64, "seed {seed}");
        assert!(read_all(&handle, ino, log.len()) == log, "seed {seed}: the file reads back as appended");
        drop(handle);
        let engine = crash_and_reopen(&sim, engine, seed);
        let handle = engine.handle();
        let size = handle.getattr(ino).expect("the log survives").record.size as usize;
        assert!(size >= synced && size <= log.len(), "seed {seed}: size {size}, synced {synced}");
        assert!(read_all(&handle, ino, size) == log[..size], "seed {seed}: the log after a crash is a prefix");
        drop(handle);
        engine.close().expect("close");
    }
}
