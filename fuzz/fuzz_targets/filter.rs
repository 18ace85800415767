//! The filter language: parsing any text, printing what parsed, and evaluating it against
//! attribute sets. What parses must print as text that parses to a filter printing the same
//! (the language's round trip), and evaluation must terminate without panicking.
//!
//! Input: the filter text up to the first NUL byte, then an encoded attribute set
//! (`format::collection` encoding; when it does not decode, the filter is evaluated against no
//! attributes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexfs_daemon::vector::search::filter::Filter;
use vexfs_format::collection::decode_attrs;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else { return };
    let Ok(filter) = Filter::parse(text) else { return };
    let printed = filter.to_string();
    let again = Filter::parse(&printed).unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
    assert_eq!(again.to_string(), printed, "{text:?}");
    let attrs = data.get(split + 1..).and_then(|rest| decode_attrs(rest).ok()).unwrap_or_default();
    let _ = filter.matches(&attrs);
    let _ = filter.matches(&[]);
    assert_eq!(again.matches(&attrs), filter.matches(&attrs), "{text:?}");
});
