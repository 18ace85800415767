//! A bounded collector of the best candidates seen so far.
//!
//! Invariants:
//! - Candidates are ordered by `(distance, id)` with [`f32::total_cmp`] on distances, so equal
//!   distances are broken by the smaller id and the result never depends on the order in which
//!   candidates arrive (shards, blocks, GEMM or direct path).
//! - The collector holds at most `capacity` candidates, each with `distance <= bound`; a NaN
//!   distance is never accepted (it would compare greater than every bound).
//! - [`TopK::threshold`] never increases: it starts at `bound` and falls to the worst kept
//!   distance once the collector is full, so a scan may skip any candidate above it without
//!   calling [`TopK::push`].

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Neighbor;

/// The heap preallocates at most this many entries, so that `k = usize::MAX` (a range search
/// without a limit) does not allocate up front; it grows as candidates arrive.
const PREALLOCATE_MAX: usize = 1024;

/// A [`Neighbor`] ordered by `(distance, id)`, the heap's element.
#[derive(Clone, Copy, Debug)]
struct Ranked(Neighbor);

impl Ranked {
    fn key_cmp(&self, other: &Self) -> Ordering {
        self.0.distance.total_cmp(&other.0.distance).then(self.0.id.cmp(&other.0.id))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.key_cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key_cmp(other)
    }
}

/// Keeps the `capacity` smallest `(distance, id)` pairs with `distance <= bound`.
#[derive(Debug)]
pub struct TopK {
    /// A max-heap: the root is the worst kept candidate, the first to be evicted.
    heap: BinaryHeap<Ranked>,
    capacity: usize,
    bound: f32,
    /// Cached [`TopK::threshold`], read once per candidate by the scans.
    threshold: f32,
}

impl TopK {
    /// A collector for the `capacity` nearest candidates (k-NN: `bound = f32::INFINITY`).
    pub fn new(capacity: usize, bound: f32) -> TopK {
        assert!(!bound.is_nan(), "the bound must be a number");
        let threshold = if capacity == 0 { f32::NEG_INFINITY } else { bound };
        TopK { heap: BinaryHeap::with_capacity(capacity.min(PREALLOCATE_MAX)), capacity, bound, threshold }
    }

    /// The largest distance a new candidate may have and still be kept. Candidates at exactly
    /// the threshold may be kept (their id decides), so scans skip only `distance > threshold`.
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offers a candidate; keeps it if it is among the best `capacity` seen and within the bound.
    #[inline]
    pub fn push(&mut self, id: u64, distance: f32) {
        // `<=` is false for NaN, so NaN is refused here.
        if distance <= self.threshold {
            self.push_slow(Ranked(Neighbor { id, distance }));
        }
    }

    fn push_slow(&mut self, candidate: Ranked) {
        debug_assert!(candidate.0.distance <= self.bound);
        if self.capacity == 0 {
            return;
        }
        if self.heap.len() < self.capacity {
            self.heap.push(candidate);
        } else {
            let mut worst = self.heap.peek_mut().expect("a full collector with capacity > 0 is not empty");
            if candidate >= *worst {
                return;
            }
            *worst = candidate;
        }
        if self.heap.len() == self.capacity {
            let worst = self.heap.peek().expect("a full collector is not empty").0.distance;
            assert!(worst <= self.threshold, "the threshold never increases");
            self.threshold = worst;
        }
    }

    /// The kept candidates, nearest first.
    pub fn into_sorted(self) -> Vec<Neighbor> {
        let sorted: Vec<Neighbor> = self.heap.into_sorted_vec().into_iter().map(|ranked| ranked.0).collect();
        assert!(sorted.len() <= self.capacity);
        sorted
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the collector returns exactly the `capacity` smallest `(distance, id)` pairs within
    //! the bound, whatever the arrival order. Method: compare with sorting everything.
    use super::*;
    use proptest::prelude::*;

    fn expected(candidates: &[(u64, f32)], capacity: usize, bound: f32) -> Vec<Neighbor> {
        let mut all: Vec<Neighbor> = candidates
            .iter()
            .filter(|(_, distance)| *distance <= bound)
            .map(|&(id, distance)| Neighbor { id, distance })
            .collect();
        all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        all.truncate(capacity);
        all
    }

    #[test]
    fn ties_go_to_the_smaller_id() {
        let mut top = TopK::new(2, f32::INFINITY);
        for id in [9, 3, 7, 1, 5] {
            top.push(id, 1.0);
        }
        let ids: Vec<u64> = top.into_sorted().iter().map(|n| n.id).collect();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn nan_and_zero_capacity_are_refused() {
        let mut top = TopK::new(3, f32::INFINITY);
        top.push(1, f32::NAN);
        top.push(2, f32::INFINITY);
        assert_eq!(top.into_sorted(), [Neighbor { id: 2, distance: f32::INFINITY }]);
        let mut none = TopK::new(0, f32::INFINITY);
        none.push(1, 0.0);
        none.push(2, f32::NEG_INFINITY);
        assert!(none.into_sorted().is_empty());
    }

    proptest! {
        #[test]
        fn keeps_the_best(
            candidates in prop::collection::vec((0u64..50, prop_oneof![-5.0f32..5.0, Just(1.0f32)]), 0..200),
            capacity in 0usize..40,
            bound in prop_oneof![Just(f32::INFINITY), -5.0f32..5.0],
        ) {
            let mut top = TopK::new(capacity, bound);
            for &(id, distance) in &candidates {
                top.push(id, distance);
                prop_assert!(top.len() <= capacity);
            }
            prop_assert_eq!(top.into_sorted(), expected(&candidates, capacity, bound));
        }
    }
}
