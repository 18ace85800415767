//! B-tree algorithms over the page store (in progress).
