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
