//! The query-file language (`service::query::parse_query`): any line must parse to a query or to
//! the message its answer line carries, never panic; a query that parses has a k or limit in its
//! bounds, and its filter text either parses or is the caller's error to see.
//!
//! Input: the bytes of a query file; each line is parsed as the service parses it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_daemon::service::query::{parse_query, Query};
use vexfs_daemon::vector::search::filter::Filter;
use vexfs_daemon::vector::{K_MAX, RANGE_LIMIT_MAX};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let filter = match parse_query(line) {
            Ok(Query::Knn { k, filter, .. }) => {
                assert!((1..=K_MAX).contains(&k), "{line:?}");
                filter
            }
            Ok(Query::Range { limit, radius, filter, .. }) => {
                assert!((1..=RANGE_LIMIT_MAX).contains(&limit), "{line:?}");
                let _ = radius;
                filter
            }
            Ok(Query::Text { k, filter, .. }) => {
                assert!((1..=vexfs_daemon::text::TEXT_K_MAX).contains(&k), "{line:?}");
                filter
            }
            Err(message) => {
                assert!(!message.is_empty(), "{line:?}");
                None
            }
        };
        if let Some(filter) = filter {
            let _ = Filter::parse(&filter);
        }
    }
});
