//! Deterministic data for tests: a seeded generator, file contents derived from
//! `(seed, key)`, and a content hash.
//!
//! A seed fully determines everything produced here, so a failing run is replayed by
//! passing the seed it printed.

/// SplitMix64: small, fast, and good enough to drive test choices and fill buffers.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A generator for one `(seed, key)` pair, independent of other keys.
    pub fn for_key(seed: u64, key: u64) -> Rng {
        let mut rng = Rng::new(seed ^ key.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound`; `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Rng::below(0)");
        self.next_u64() % bound
    }

    /// A value in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "Rng::range({low}, {high})");
        low + self.below(high - low + 1)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// The bytes of file `key` under `seed`: pseudo-random, so a misplaced or stale block
/// never matches by accident.
pub fn content(seed: u64, key: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    Rng::for_key(seed, key).fill(&mut buf);
    buf
}

/// FNV-1a, 64 bits, fed incrementally.
#[derive(Clone, Debug)]
pub struct Hasher {
    state: u64,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher { state: 0xCBF2_9CE4_8422_2325, len: 0 }
    }
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.len += bytes.len() as u64;
    }

    /// The hash, with the length folded in so that trailing zeros change it.
    pub fn finish(&self) -> u64 {
        let mut h = self.state ^ self.len.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^ (h >> 33)
    }
}

pub fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = Hasher::default();
    hasher.update(bytes);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_deterministic_and_key_dependent() {
        assert_eq!(content(7, 1, 100), content(7, 1, 100));
        assert_ne!(content(7, 1, 100), content(7, 2, 100));
        assert_ne!(content(7, 1, 100), content(8, 1, 100));
        assert_eq!(content(7, 1, 13)[..], content(7, 1, 100)[..13]);
    }

    #[test]
    fn hash_sees_length_and_bytes() {
        assert_ne!(hash(b""), hash(b"\0"));
        assert_ne!(hash(b"ab"), hash(b"ba"));
        let mut h = Hasher::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), hash(b"hello world"));
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let v = rng.range(50, 1500);
            assert!((50..=1500).contains(&v));
        }
    }
}
