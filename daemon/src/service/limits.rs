//! Every bound the collection service enforces on what a request may make the daemon hold or
//! compute, by name. `docs/COLLECTIONS.md` ("Limits") lists them with the error each gives; a
//! test in `tests/tests/limits.rs` exceeds each one through the mount.
//!
//! Per-user bounds count the fsuid of the caller. Root is bounded like everyone else: the bounds
//! protect the daemon's memory, not a policy between users.

/// Query text one query file holds (EFBIG beyond).
pub const QUERY_FILE_BYTES_MAX: usize = 16 << 20;
/// Query files one user has at once, over every collection (EDQUOT beyond).
pub const QUERY_FILES_PER_USER_MAX: usize = 64;
/// Query text and results one user's query files hold together (EDQUOT beyond).
pub const QUERY_BYTES_PER_USER_MAX: usize = 128 << 20;
/// Results one query file produces: running stops with an error line for the queries after the
/// bound.
pub const QUERY_RESULTS_BYTES_MAX: usize = 32 << 20;
/// Queries one query file holds (lines that are not blank).
pub const QUERY_LINES_MAX: usize = 100_000;

/// One batch on an insert stream, header included (EFBIG beyond; the CLI sends 64 MiB).
pub const STREAM_BATCH_BYTES_MAX: usize = 128 << 20;
/// Insert streams one user has open at once (EDQUOT beyond).
pub const STREAMS_PER_USER_MAX: usize = 16;
/// Bytes of incomplete batches one user's insert streams hold together (EDQUOT beyond): each
/// batch is charged whole when its header arrives.
pub const STREAM_BYTES_PER_USER_MAX: usize = 256 << 20;
/// Batches applied through one open insert stream, each leaving a receipt (ENOSPC beyond: open the
/// stream again).
pub const STREAM_RECEIPTS_MAX: usize = 1 << 16;

/// The text service's bounds: documents indexed up to [`DOC_BYTES_MAX`] bytes and
/// [`CHUNKS_PER_DOC_MAX`] chunks (larger ones are stored, not indexed); at most
/// [`CHUNKS_PER_ROUND_MAX`] chunks embedded per embedder call; [`QUEUE_MAX`] queued documents per
/// collection (beyond, the collection is compared with its directory as a whole instead);
/// k of a text search up to [`TEXT_K_MAX`].
pub use crate::text::{CHUNKS_PER_DOC_MAX, CHUNKS_PER_ROUND_MAX, DOC_BYTES_MAX, QUEUE_MAX, TEXT_K_MAX};
/// The vector service's own bounds, enforced where its requests arrive: the largest k
/// ([`K_MAX`]), range limit ([`RANGE_LIMIT_MAX`]) and query count ([`QUERIES_MAX`]) of a search;
/// results per search request, queries × k or × limit ([`RESULTS_MAX`], E2BIG beyond); the
/// largest vector id ([`ID_MAX`]: given ids above it are refused, EINVAL, and a collection whose
/// assigned ids would pass it refuses the insert, ENOSPC).
pub use crate::vector::{ID_MAX, K_MAX, QUERIES_MAX, RANGE_LIMIT_MAX, RESULTS_MAX};

use std::collections::HashMap;

use super::{Bound, Result, ServiceError};

/// One user's use of a kind of resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Share {
    count: usize,
    bytes: usize,
}

/// Per-user shares of one kind of resource (query files, insert streams): how many each user
/// has, and the bytes they hold, each bounded.
#[derive(Debug)]
pub struct Shares {
    /// What is counted, in refusals ("query files").
    what: &'static str,
    count_max: usize,
    bytes_max: usize,
    users: HashMap<u32, Share>,
}

impl Shares {
    pub fn new(what: &'static str, count_max: usize, bytes_max: usize) -> Shares {
        Shares { what, count_max, bytes_max, users: HashMap::new() }
    }

    /// Counts one more for `uid`; refused (EDQUOT) at the bound.
    pub fn add(&mut self, uid: u32) -> Result<()> {
        let share = self.users.entry(uid).or_default();
        if share.count >= self.count_max {
            let (what, max) = (self.what, self.count_max);
            return Err(ServiceError::limit(Bound::Quota, format!("this user has {max} {what}, the most allowed")));
        }
        share.count += 1;
        Ok(())
    }

    /// One of `uid`'s is gone, with the `bytes` it held.
    pub fn remove(&mut self, uid: u32, bytes: usize) {
        if let Some(share) = self.users.get_mut(&uid) {
            share.count = share.count.saturating_sub(1);
            share.bytes = share.bytes.saturating_sub(bytes);
            if *share == Share::default() {
                self.users.remove(&uid);
            }
        }
    }

    /// Charges `uid` `delta` bytes more (or, negative, refunds them); a charge past the bound is
    /// refused (EDQUOT) and changes nothing.
    pub fn charge(&mut self, uid: u32, delta: isize) -> Result<()> {
        let share = self.users.entry(uid).or_default();
        let bytes = share.bytes.saturating_add_signed(delta);
        if delta > 0 && bytes > self.bytes_max {
            let (what, max) = (self.what, self.bytes_max);
            return Err(ServiceError::limit(
                Bound::Quota,
                format!("this user's {what} would hold {bytes} bytes: at most {max}"),
            ));
        }
        share.bytes = bytes;
        Ok(())
    }

    /// The bytes `uid` may still be charged.
    pub fn bytes_left(&self, uid: u32) -> usize {
        self.bytes_max.saturating_sub(self.users.get(&uid).map_or(0, |s| s.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_count_charge_and_refund() {
        let mut shares = Shares::new("things", 2, 100);
        shares.add(7).unwrap();
        shares.add(7).unwrap();
        let full = shares.add(7).unwrap_err();
        assert!(matches!(full, ServiceError::Limit { bound: Bound::Quota, .. }), "{full}");
        assert!(full.to_string().contains("this user has 2 things"), "{full}");
        shares.add(8).expect("another user's share is its own");
        shares.charge(7, 100).unwrap();
        assert!(shares.charge(7, 1).unwrap_err().to_string().contains("would hold 101 bytes: at most 100"));
        assert_eq!(shares.bytes_left(7), 0);
        shares.charge(7, -40).unwrap();
        assert_eq!(shares.bytes_left(7), 40);
        shares.remove(7, 60);
        shares.add(7).expect("a removed one frees its count");
        assert_eq!(shares.bytes_left(7), 100);
    }
}
