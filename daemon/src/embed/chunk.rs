//! Splitting a document into overlapping chunks for embedding.
//!
//! Invariants of [`chunks`] (checked by the property tests below):
//! - Chunks are non-empty byte ranges of `text` on char boundaries, and each begins and ends with
//!   a non-whitespace char: whitespace at a seam is trimmed, never embedded on its own.
//! - Starts and ends both strictly increase.
//! - Coverage: every non-whitespace byte of `text` lies in some chunk. Whitespace-only text gives
//!   no chunks.
//! - Size: `end - start <= target_bytes`, unless the chunk is a single char wider than
//!   `target_bytes` (only possible when `target_bytes < 4`). A word longer than the target is cut
//!   at a char boundary rather than emitted whole.
//! - Count: at most `4 * text.len() / target_bytes + 1` chunks for targets of 8 bytes or more
//!   (see [`count_max`]).
//! - Determinism: the result depends on the arguments only.
//!
//! Where a chunk ends: the last break in the second half of its window, preferring in order a
//! blank line (paragraph), a line end, a sentence end (". ", "? ", "! "), whitespace; failing all
//! of them, the window's end. Where the next one starts: the first word start at or after
//! `end - overlap`, so the two share about `overlap_bytes`.

use std::ops::Range;

/// A chunk: the byte range `start..end` of the text it was cut from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
}

impl Chunk {
    pub fn range(self) -> Range<usize> {
        self.start..self.end
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// Kinds of break, best first. A break at `p` cuts the text between bytes `p - 1` and `p`.
const BREAK_KINDS: [fn(&[u8], usize) -> bool; 4] =
    [is_paragraph_break, is_line_break, is_sentence_break, is_space_break];

/// Splits `text` into chunks of at most `target_bytes` that overlap by about `overlap_bytes`.
///
/// Panics when `target_bytes` is 0 or `overlap_bytes >= target_bytes` (caller bugs: collection
/// parameters are validated when the collection is created).
pub fn chunks(text: &str, target_bytes: usize, overlap_bytes: usize) -> Vec<Chunk> {
    assert!(target_bytes > 0, "chunk target must be positive");
    assert!(overlap_bytes < target_bytes, "chunk overlap must be below the target");
    let count_max = count_max(text.len(), target_bytes);
    let mut result = Vec::new();
    let mut start = skip_whitespace(text, 0);
    // A chunk must end past this, so ends strictly increase and no chunk lies inside another.
    let mut end_min = start + 1;
    while start < text.len() {
        let end = chunk_end(text, start, end_min, target_bytes);
        assert!(end > start);
        assert!(end >= end_min);
        let trimmed = start + text[start..end].trim_end().len();
        assert!(trimmed > start, "a chunk starts with non-whitespace");
        result.push(Chunk { start, end: trimmed });
        assert!(result.len() <= count_max, "chunk count bound exceeded");
        let resume = skip_whitespace(text, end);
        if resume == text.len() {
            break;
        }
        start = skip_whitespace(text, next_start(text, start, end, overlap_bytes));
        if floor_char_boundary(text, start + target_bytes) <= resume {
            // The window would end before the first new byte: drop the overlap.
            start = resume;
        }
        end_min = resume + 1;
    }
    result
}

/// The most chunks [`chunks`] makes. Every chunk but the last spans at least half the target
/// before trimming (less only when a char near the window's end is multi-byte, hence the
/// separate rule for small targets), and each step advances by at least half a chunk.
fn count_max(text_len: usize, target_bytes: usize) -> usize {
    if target_bytes >= 8 {
        4 * text_len / target_bytes + 1
    } else {
        text_len
    }
}

/// The end of the chunk that starts at `start` (a non-whitespace char boundary); at least
/// `end_min`, which the caller keeps within the window.
fn chunk_end(text: &str, start: usize, end_min: usize, target_bytes: usize) -> usize {
    if text.len() - start <= target_bytes {
        return text.len();
    }
    let limit = floor_char_boundary(text, start + target_bytes);
    if limit == start {
        // A single char wider than the whole target: emit it alone.
        return ceil_char_boundary(text, start + 1);
    }
    // Breaks in the first half of the window would make small chunks and many of them.
    let lowest = (start + target_bytes / 2).max(end_min);
    assert!(limit >= end_min, "the window reaches past the previous chunk");
    let bytes = text.as_bytes();
    for is_break in BREAK_KINDS {
        if let Some(p) = (lowest..=limit).rev().find(|&p| is_break(bytes, p)) {
            return p;
        }
    }
    limit
}

/// Where the chunk after `start..end` begins: the first word start at or after `end - overlap`,
/// or that position itself when no word starts before `end`.
fn next_start(text: &str, start: usize, end: usize, overlap_bytes: usize) -> usize {
    // At most half the chunk overlaps, so every step advances by at least half a chunk.
    let overlap = overlap_bytes.min((end - start) / 2);
    let desired = ceil_char_boundary(text, (end - overlap).max(start + 1));
    let bytes = text.as_bytes();
    let word_start = (desired..end).find(|&p| is_space_break(bytes, p));
    let next = word_start.unwrap_or(desired);
    assert!(next > start);
    assert!(next <= end);
    next
}

fn is_paragraph_break(bytes: &[u8], p: usize) -> bool {
    // The line ending at p - 1 is blank: "\n\n", "\n \t\n" or "\r\n\r\n".
    if !is_line_break(bytes, p) {
        return false;
    }
    let before = &bytes[..p - 1];
    match before.iter().rposition(|&b| b == b'\n') {
        Some(q) => before[q + 1..].iter().all(u8::is_ascii_whitespace),
        None => false,
    }
}

fn is_line_break(bytes: &[u8], p: usize) -> bool {
    p >= 1 && p < bytes.len() && bytes[p - 1] == b'\n'
}

fn is_sentence_break(bytes: &[u8], p: usize) -> bool {
    p >= 2 && p < bytes.len() && matches!(&bytes[p - 2..p], b". " | b"? " | b"! ")
}

/// A cut after ASCII whitespace and before non-whitespace (a word start). `p` is then a char
/// boundary, since byte `p - 1` is ASCII.
fn is_space_break(bytes: &[u8], p: usize) -> bool {
    p >= 1 && p < bytes.len() && bytes[p - 1].is_ascii_whitespace() && !bytes[p].is_ascii_whitespace()
}

fn skip_whitespace(text: &str, from: usize) -> usize {
    text.len() - text[from..].trim_start().len()
}

/// The largest char boundary at or below `index` (`str::floor_char_boundary` is newer than
/// the workspace's minimum Rust).
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    //! Goal: the invariants in the module header hold for arbitrary text (proptest), and the
    //! break preferences pick paragraphs, lines and sentences on hand-written examples.
    use super::*;
    use proptest::prelude::*;

    fn texts(chunks: &[Chunk], text: &str) -> Vec<String> {
        chunks.iter().map(|c| text[c.range()].to_string()).collect()
    }

    fn check_invariants(text: &str, target: usize, overlap: usize) {
        let result = chunks(text, target, overlap);
        assert_eq!(result, chunks(text, target, overlap), "deterministic");
        assert!(result.len() <= count_max(text.len(), target), "count bound");
        if text.trim().is_empty() {
            assert!(result.is_empty(), "whitespace-only text gives no chunks");
            return;
        }
        for chunk in &result {
            assert!(chunk.start < chunk.end, "non-empty: {chunk:?}");
            assert!(text.is_char_boundary(chunk.start) && text.is_char_boundary(chunk.end));
            let body = &text[chunk.range()];
            assert_eq!(body.trim(), body, "trimmed: {chunk:?}");
            assert!(chunk.len() <= target || body.chars().count() == 1, "size bound: {chunk:?} target {target}");
        }
        for pair in result.windows(2) {
            assert!(pair[0].start < pair[1].start, "starts increase: {pair:?}");
            assert!(pair[0].end < pair[1].end, "ends increase: {pair:?}");
            if pair[1].start > pair[0].end {
                let gap = &text[pair[0].end..pair[1].start];
                assert!(gap.trim().is_empty(), "uncovered non-whitespace {gap:?}");
            }
        }
        assert!(text[..result[0].start].trim().is_empty(), "leading gap");
        assert!(text[result.last().unwrap().end..].trim().is_empty(), "trailing gap");
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        // Words, punctuation, line and paragraph breaks and multi-byte chars, so every break kind
        // and the char-boundary fallback are reached.
        let piece = prop_oneof![
            "[a-z]{1,12}",
            Just(" ".to_string()),
            Just(". ".to_string()),
            Just("? ".to_string()),
            Just("\n".to_string()),
            Just("\n\n".to_string()),
            Just("\r\n\r\n".to_string()),
            "[é€😀]{1,4}",
            "[a-zé]{20,60}",
            "[ \t\n]{1,10}",
        ];
        proptest::collection::vec(piece, 0..120).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn invariants(text in text_strategy(), target in 1usize..200, overlap_percent in 0usize..100) {
            let overlap = target * overlap_percent / 100;
            check_invariants(&text, target, overlap.min(target - 1));
        }

        #[test]
        fn invariants_any_unicode(text in "\\PC{0,300}", target in 1usize..40) {
            check_invariants(&text, target, target / 3);
        }
    }

    #[test]
    fn whitespace_only_and_empty() {
        assert!(chunks("", 10, 2).is_empty());
        assert!(chunks(" \n\t\r\n  ", 10, 2).is_empty());
        assert_eq!(chunks("  hi  ", 10, 2), vec![Chunk { start: 2, end: 4 }]);
    }

    #[test]
    fn prefers_paragraphs_then_lines_then_sentences() {
        let text = "First paragraph here.\n\nSecond one, longer text. More words follow here.";
        assert_eq!(texts(&chunks(text, 40, 0)[..1], text), ["First paragraph here."]);
        let text = "line one is here\nline two is here. and more text";
        assert_eq!(texts(&chunks(text, 40, 0)[..1], text), ["line one is here\nline two is here."]);
        let text = "One sentence here. Another sentence! And yet more words";
        assert_eq!(texts(&chunks(text, 40, 0)[..1], text), ["One sentence here. Another sentence!"]);
    }

    #[test]
    fn long_word_is_cut_at_char_boundaries() {
        let text = "ééééé"; // 10 bytes
        assert_eq!(texts(&chunks(text, 3, 0), text), ["é", "é", "é", "é", "é"]);
        let text = "😀x"; // a 4-byte char wider than the target
        assert_eq!(texts(&chunks(text, 2, 0), text), ["😀", "x"]);
    }

    #[test]
    fn consecutive_chunks_overlap_by_about_the_overlap() {
        let text = (0..200).map(|i| format!("word{i:03}")).collect::<Vec<_>>().join(" ");
        let result = chunks(&text, 100, 20);
        assert!(result.len() > 5);
        for pair in result.windows(2) {
            let shared = pair[0].end.saturating_sub(pair[1].start);
            assert!((12..=28).contains(&shared), "overlap {shared} in {pair:?}");
            assert!(text[pair[1].range()].starts_with("word"), "starts at a word");
        }
    }
}
