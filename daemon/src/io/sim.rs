//! [`SimStorage`]: an in-memory [`Storage`] for deterministic engine tests.
//!
//! Fault model (what a test can make the simulated device do):
//! - **Power cut.** The device keeps the durable image (contents as of the last successful flush)
//!   and the writes completed since, in completion order. [`SimStorage::crash_image`] builds what
//!   the device could hold after a power cut: each unflushed write is independently dropped,
//!   applied, or torn, with equal odds, applied in completion order so a later write to the same
//!   sector wins when both survive. A torn write persists a random, non-empty, proper subset of
//!   its 512-byte sectors; at most [`SimOptions::torn_writes_max`] writes are torn per image (the
//!   budget), and a write drawn as torn once the budget is spent is dropped. Flushed data is never
//!   lost, sectors are atomic, and no write lands at an address it was not sent to.
//! - **I/O errors.** [`SimStorage::fail_reads_after`], [`SimStorage::fail_writes_after`] and
//!   [`SimStorage::fail_flush_after`] let `n` more operations of that kind succeed; every later one
//!   fails with `EIO` until [`SimStorage::clear_faults`], like a device that has died.
//!   [`SimStorage::fail_one_write_after`] fails only the write after the next `n`, like a transient
//!   error (a path failover, a timeout). A failed write changes nothing; the writes before it in
//!   the batch stay applied. A failed flush makes nothing durable.
//!
//! Every outcome is a pure function of the operation history and the seed.

use std::fmt;
use std::io;

use parking_lot::Mutex;

use super::{assert_op, IoBuf};
use crate::storage::{Geometry, IoError, ReadOp, Storage, WriteOp};

/// The unit a power cut may tear a write at.
pub const SECTOR_SIZE: usize = 512;

/// A bound on the writes the simulator holds unflushed; an engine that exceeds it never flushes.
pub const UNFLUSHED_WRITES_MAX: usize = 1 << 20;

/// Knobs of the fault model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// At most this many unflushed writes are torn in one crash image.
    pub torn_writes_max: usize,
}

impl Default for SimOptions {
    /// One torn write per crash: the write the device was destaging when the power went.
    fn default() -> SimOptions {
        SimOptions { torn_writes_max: 1 }
    }
}

/// An in-memory device. See the module documentation for the fault model.
pub struct SimStorage {
    state: Mutex<SimState>,
    geometry: Geometry,
    options: SimOptions,
}

struct SimState {
    /// What a read returns: the durable image with every completed write applied.
    live: Vec<u8>,
    /// The image as of the last successful flush.
    durable: Vec<u8>,
    /// Writes completed since the last successful flush, in completion order.
    unflushed: Vec<UnflushedWrite>,
    reads_left: Option<u64>,
    writes_left: Option<u64>,
    /// Writes to let pass before the one write that fails ([`SimStorage::fail_one_write_after`]).
    transient_write_in: Option<u64>,
    flushes_left: Option<u64>,
}

struct UnflushedWrite {
    offset: usize,
    data: Vec<u8>,
}

impl SimStorage {
    /// A zeroed device of `size_bytes` (a positive multiple of 4096).
    pub fn new(size_bytes: u64) -> SimStorage {
        let size = usize::try_from(size_bytes).expect("simulated device fits in memory");
        SimStorage::from_image(vec![0; size])
    }

    /// A device whose durable contents are `image`, as after a reopen.
    pub fn from_image(image: Vec<u8>) -> SimStorage {
        SimStorage::with_options(image, SimOptions::default())
    }

    pub fn with_options(image: Vec<u8>, options: SimOptions) -> SimStorage {
        assert!(!image.is_empty(), "a simulated device of zero bytes");
        assert!(image.len().is_multiple_of(super::IO_ALIGN), "image size {} is not whole blocks", image.len());
        let geometry = Geometry {
            size_bytes: image.len() as u64,
            logical_block_size: SECTOR_SIZE as u32,
            dio_mem_align: SECTOR_SIZE as u32,
        };
        let state = SimState {
            live: image.clone(),
            durable: image,
            unflushed: Vec::new(),
            reads_left: None,
            writes_left: None,
            transient_write_in: None,
            flushes_left: None,
        };
        SimStorage { state: Mutex::new(state), geometry, options }
    }

    /// Lets `n` more read operations succeed; every later one fails.
    pub fn fail_reads_after(&self, n: u64) {
        self.state.lock().reads_left = Some(n);
    }

    /// Lets `n` more write operations succeed; every later one fails.
    pub fn fail_writes_after(&self, n: u64) {
        self.state.lock().writes_left = Some(n);
    }

    /// Lets `n` more write operations succeed, fails the one after, and lets later ones succeed.
    pub fn fail_one_write_after(&self, n: u64) {
        self.state.lock().transient_write_in = Some(n);
    }

    /// Lets `n` more flushes succeed; every later one fails.
    pub fn fail_flush_after(&self, n: u64) {
        self.state.lock().flushes_left = Some(n);
    }

    pub fn clear_faults(&self) {
        let mut state = self.state.lock();
        state.reads_left = None;
        state.writes_left = None;
        state.transient_write_in = None;
        state.flushes_left = None;
    }

    /// What a read of the whole device returns now.
    pub fn image(&self) -> Vec<u8> {
        self.state.lock().live.clone()
    }

    /// The contents as of the last successful flush.
    pub fn durable_image(&self) -> Vec<u8> {
        self.state.lock().durable.clone()
    }

    pub fn unflushed_write_count(&self) -> usize {
        self.state.lock().unflushed.len()
    }

    /// What the device could hold after a power cut now; the same seed gives the same image.
    pub fn crash_image(&self, seed: u64) -> Vec<u8> {
        let state = self.state.lock();
        let mut rng = SplitMix64(seed);
        let mut image = state.durable.clone();
        let mut torn_left = self.options.torn_writes_max;
        for write in &state.unflushed {
            let target = &mut image[write.offset..write.offset + write.data.len()];
            match rng.below(3) {
                0 => {}
                1 => target.copy_from_slice(&write.data),
                _ if torn_left == 0 => {}
                _ => {
                    torn_left -= 1;
                    tear(&mut rng, target, &write.data);
                }
            }
        }
        image
    }
}

/// Copies a random non-empty proper subset of the sectors of `data` into `target`.
fn tear(rng: &mut SplitMix64, target: &mut [u8], data: &[u8]) {
    let sector_count = data.len() / SECTOR_SIZE;
    assert!(sector_count >= 2, "a write of one sector cannot tear");
    let mut keep: Vec<bool> = (0..sector_count).map(|_| rng.below(2) == 1).collect();
    // Force a genuine tear: at least one sector persisted and one lost.
    let pivot = rng.below(sector_count as u64) as usize;
    if keep.iter().all(|&k| k) || keep.iter().all(|&k| !k) {
        keep.fill(false);
        keep[pivot] = true;
    }
    let sectors = target.chunks_exact_mut(SECTOR_SIZE).zip(data.chunks_exact(SECTOR_SIZE));
    for ((target, data), keep) in sectors.zip(keep) {
        if keep {
            target.copy_from_slice(data);
        }
    }
}

/// Takes one operation off a countdown; false once the countdown has run out.
fn countdown(left: &mut Option<u64>) -> bool {
    match left {
        None => true,
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
    }
}

fn injected() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl Storage for SimStorage {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    #[track_caller]
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        for op in ops.iter() {
            assert_op(op.offset, op.buf.as_ptr(), op.buf.len(), self.geometry.size_bytes);
        }
        let mut state = self.state.lock();
        for op in ops.iter_mut() {
            if !countdown(&mut state.reads_left) {
                return Err(IoError::Op { op: "read", offset: op.offset, source: injected() });
            }
            let start = op.offset as usize;
            op.buf.copy_from_slice(&state.live[start..start + op.buf.len()]);
        }
        Ok(())
    }

    #[track_caller]
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<(), IoError> {
        for op in ops {
            assert_op(op.offset, op.buf.as_ptr(), op.buf.len(), self.geometry.size_bytes);
        }
        let mut state = self.state.lock();
        for op in ops {
            let transient = match state.transient_write_in {
                Some(0) => {
                    state.transient_write_in = None;
                    true
                }
                Some(n) => {
                    state.transient_write_in = Some(n - 1);
                    false
                }
                None => false,
            };
            if !countdown(&mut state.writes_left) || transient {
                return Err(IoError::Op { op: "write", offset: op.offset, source: injected() });
            }
            assert!(state.unflushed.len() < UNFLUSHED_WRITES_MAX, "{UNFLUSHED_WRITES_MAX} unflushed writes");
            let start = op.offset as usize;
            state.live[start..start + op.buf.len()].copy_from_slice(op.buf);
            state.unflushed.push(UnflushedWrite { offset: start, data: op.buf.to_vec() });
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), IoError> {
        let mut state = self.state.lock();
        if !countdown(&mut state.flushes_left) {
            return Err(IoError::Flush(injected()));
        }
        let SimState { durable, unflushed, .. } = &mut *state;
        for write in unflushed.drain(..) {
            durable[write.offset..write.offset + write.data.len()].copy_from_slice(&write.data);
        }
        Ok(())
    }

    fn alloc_buffer(&self, len: usize) -> IoBuf {
        IoBuf::heap(len)
    }
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStorage")
            .field("geometry", &self.geometry)
            .field("options", &self.options)
            .field("unflushed_write_count", &self.unflushed_write_count())
            .finish()
    }
}

/// splitmix64 (Steele, Lea, Flood 2014). Hand-written rather than taken from `rand` so that a seed
/// printed by a failing test replays the same crash image in every future build: `rand` does not
/// promise its generators' output across versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound`; the modulo bias is below 2^-50 for the small bounds used here.
    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 4096;

    fn write(storage: &SimStorage, block: u64, byte: u8) {
        let mut buf = storage.alloc_buffer(BLOCK);
        buf.fill(byte);
        storage.write_batch(&[WriteOp { offset: block * BLOCK as u64, buf: &buf }]).unwrap();
    }

    fn read(storage: &SimStorage, block: u64) -> IoBuf {
        let mut buf = storage.alloc_buffer(BLOCK);
        storage.read_batch(&mut [ReadOp { offset: block * BLOCK as u64, buf: &mut buf }]).unwrap();
        buf
    }

    fn block_of(image: &[u8], block: usize) -> &[u8] {
        &image[block * BLOCK..(block + 1) * BLOCK]
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut rng = SplitMix64(1234567);
        let expected = [6457827717110365317, 3203168211198807973, 9817491932198370423];
        assert_eq!([rng.next(), rng.next(), rng.next()], expected);
    }

    #[test]
    fn reads_see_completed_writes_and_flush_makes_them_durable() {
        let storage = SimStorage::new(16 * BLOCK as u64);
        write(&storage, 3, 0xA5);
        assert!(read(&storage, 3).iter().all(|&b| b == 0xA5));
        assert!(block_of(&storage.durable_image(), 3).iter().all(|&b| b == 0));
        assert_eq!(storage.unflushed_write_count(), 1);
        storage.flush().unwrap();
        assert_eq!(storage.unflushed_write_count(), 0);
        assert!(block_of(&storage.durable_image(), 3).iter().all(|&b| b == 0xA5));
        assert_eq!(storage.crash_image(7), storage.image());
    }

    #[test]
    fn crash_images_are_deterministic_and_keep_flushed_data() {
        let storage = SimStorage::new(64 * BLOCK as u64);
        write(&storage, 0, 1);
        storage.flush().unwrap();
        for block in 1..40 {
            write(&storage, block, block as u8);
        }
        for seed in 0..50 {
            let image = storage.crash_image(seed);
            assert_eq!(image, storage.crash_image(seed), "seed {seed} is not deterministic");
            assert!(block_of(&image, 0).iter().all(|&b| b == 1), "seed {seed} lost flushed data");
            for block in 1..40 {
                let sectors = block_of(&image, block).chunks(SECTOR_SIZE);
                // Each sector holds either the old contents or the written ones, never a mix.
                for sector in sectors {
                    let byte = sector[0];
                    assert!(byte == 0 || byte == block as u8, "seed {seed} block {block}");
                    assert!(sector.iter().all(|&b| b == byte), "seed {seed} tore a sector");
                }
            }
        }
        assert_ne!(storage.crash_image(1), storage.crash_image(2));
    }

    #[test]
    fn torn_writes_stay_within_the_budget() {
        let options = SimOptions { torn_writes_max: 2 };
        let storage = SimStorage::with_options(vec![0; 64 * BLOCK], options);
        for block in 0..64 {
            write(&storage, block, 0xFF);
        }
        let mut torn_seen = 0;
        for seed in 0..100 {
            let image = storage.crash_image(seed);
            let torn = (0..64)
                .filter(|&block| {
                    let data = block_of(&image, block);
                    data.contains(&0) && data.contains(&0xFF)
                })
                .count();
            assert!(torn <= 2, "seed {seed} tore {torn} writes");
            torn_seen += torn;
        }
        assert!(torn_seen > 0, "no seed tore a write");
    }

    #[test]
    fn later_writes_to_the_same_block_win_when_both_survive() {
        let storage = SimStorage::with_options(vec![0; BLOCK], SimOptions { torn_writes_max: 0 });
        write(&storage, 0, 1);
        write(&storage, 0, 2);
        let outcomes: std::collections::BTreeSet<u8> = (0..64).map(|seed| storage.crash_image(seed)[0]).collect();
        // Old contents, only the first write, or the second write: all three are possible.
        assert_eq!(outcomes.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn write_faults_fail_after_the_countdown_and_keep_earlier_writes() {
        let storage = SimStorage::new(8 * BLOCK as u64);
        storage.fail_writes_after(1);
        let bufs = [storage.alloc_buffer(BLOCK), storage.alloc_buffer(BLOCK)];
        let mut bufs = bufs;
        bufs[0].fill(1);
        bufs[1].fill(2);
        let ops = [WriteOp { offset: 0, buf: &bufs[0] }, WriteOp { offset: 4096, buf: &bufs[1] }];
        let error = storage.write_batch(&ops).unwrap_err();
        assert!(matches!(error, IoError::Op { op: "write", offset: 4096, .. }), "{error}");
        assert_eq!(storage.image()[0], 1);
        assert_eq!(storage.image()[4096], 0);
        storage.clear_faults();
        write(&storage, 1, 2);
    }

    #[test]
    fn read_and_flush_faults_fail_after_the_countdown() {
        let storage = SimStorage::new(8 * BLOCK as u64);
        storage.fail_reads_after(2);
        read(&storage, 0);
        read(&storage, 1);
        let mut buf = storage.alloc_buffer(BLOCK);
        let result = storage.read_batch(&mut [ReadOp { offset: 0, buf: &mut buf }]);
        assert!(matches!(result, Err(IoError::Op { op: "read", offset: 0, .. })));
        write(&storage, 2, 9);
        storage.fail_flush_after(0);
        assert!(matches!(storage.flush(), Err(IoError::Flush(_))));
        assert_eq!(storage.unflushed_write_count(), 1, "a failed flush makes nothing durable");
        storage.clear_faults();
        storage.flush().unwrap();
        assert_eq!(storage.unflushed_write_count(), 0);
    }

    #[test]
    fn from_image_reopens_a_crash_image() {
        let storage = SimStorage::new(4 * BLOCK as u64);
        write(&storage, 1, 0x11);
        storage.flush().unwrap();
        write(&storage, 2, 0x22);
        let reopened = SimStorage::from_image(storage.crash_image(3));
        assert!(read(&reopened, 1).iter().all(|&b| b == 0x11));
        assert_eq!(reopened.unflushed_write_count(), 0);
    }

    #[test]
    #[should_panic(expected = "not a multiple of 4096")]
    fn misaligned_offsets_panic() {
        let storage = SimStorage::new(4 * BLOCK as u64);
        let buf = storage.alloc_buffer(BLOCK);
        let _ = storage.write_batch(&[WriteOp { offset: 512, buf: &buf }]);
    }

    #[test]
    #[should_panic(expected = "runs past the device end")]
    fn writes_past_the_end_panic() {
        let storage = SimStorage::new(4 * BLOCK as u64);
        let buf = storage.alloc_buffer(BLOCK);
        let _ = storage.write_batch(&[WriteOp { offset: 4 * BLOCK as u64, buf: &buf }]);
    }
}
