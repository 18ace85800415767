//! `docs/FORMAT.md` against the code: every structure table's offsets and sizes, the enum and
//! limit tables, the layout examples and the checksum test vectors.
//!
//! Method: parse the markdown tables of FORMAT.md. A structure table (header `offset | size |
//! field`) is matched, by its section heading and its position under it, with a probe built from
//! the real encoders. For a field that can change alone, the probe encodes two values that differ
//! in every byte of that field, and the bytes that differ are where the code puts the field and
//! how wide it is. For a field that cannot change alone (counts, checksums, derived values,
//! nested structures), the probe names the exact bytes the field must hold. Every documented row
//! must then sit where the probe finds its field, rows named reserved (or `—`, free space) must
//! be zero in every encoding, the rows must tile the structure without gaps or overlaps, and the
//! last row must end where the encoding ends. Offsets and sizes may be expressions such as
//! `40 + 24n` or `16 × tag_count`; the probe supplies the variables of its sample. A failure
//! names the FORMAT.md line, the table, the field, the documented offset and size and the actual
//! ones. The code is the truth for version 1: a failure means FORMAT.md has a bug, unless the
//! encoding changed, which the golden tests catch too.

use std::collections::{BTreeMap, BTreeSet};

use zerocopy::IntoBytes;

use vexfs_format::bitmap::{self, BITS_PER_BITMAP_BLOCK};
use vexfs_format::block::{self, BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE, META_MAGIC};
use vexfs_format::collection::{
    self, AttrValue, Attrs, CollectionRecord, ElemType, LogKind, Metric, TextParams, ATTRS_MAX, ATTR_KEY_MAX,
    ATTR_STR_MAX, ATTR_TYPE_FLOAT, ATTR_TYPE_INT, ATTR_TYPE_STR, CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, DIM_MAX,
    EMBEDDER_MAX, LOG_HEADER_SIZE, LOG_RECORD_BYTES_MAX, SHARDS_MAX,
};
use vexfs_format::inode::InodeRecord;
use vexfs_format::items::{
    self, DirEntry, Extent, Xattr, EXTENT_BLOCKS_MAX, FILE_SIZE_MAX, NAME_MAX, SYMLINK_MAX, XATTR_VALUE_MAX,
};
use vexfs_format::journal::{self, Image, JournalRegion, TAGS_PER_DESCRIPTOR};
use vexfs_format::key::{ItemKind, Key, COLLECTION_KIND_LAST, RESERVED_KIND_FIRST};
use vexfs_format::mkfs::{Layout, JOURNAL_BLOCKS_MAX, JOURNAL_BLOCKS_MIN, MIN_BLOCKS};
use vexfs_format::node::{
    self, LeafItem, OverflowRef, HEIGHT_MAX, INLINE_VALUE_MAX, INTERNAL_ENTRIES_MAX, LEAF_ITEMS_MAX,
    OVERFLOW_BLOCKS_MAX, OVERFLOW_DATA_SIZE, VALUE_MAX,
};
use vexfs_format::root::VolumeRoot;
use vexfs_format::superblock::{Superblock, VolumeState, SEQUENCE_LIMIT, SUPERBLOCK_MAGIC};

fn format_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

fn report(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "docs/FORMAT.md disagrees with the code ({what}):\n{}", problems.join("\n"));
}

#[test]
fn structure_tables_match_the_encoders() {
    let text = format_md();
    let tables = parse_tables(&text);
    let mut probes = probes();
    let mut problems = Vec::new();
    let mut ordinals: BTreeMap<&str, usize> = BTreeMap::new();
    for table in tables.iter().filter(|table| table.header.starts_with(&["offset", "size", "field"].map(String::from)))
    {
        let ordinal = ordinals.entry(&table.heading).or_default();
        let found = probes.iter().position(|probe| probe.heading == table.heading && probe.ordinal == *ordinal);
        *ordinal += 1;
        match found {
            Some(index) => check_table(table, &probes.swap_remove(index), &mut problems),
            None => problems.push(format!("{}: no probe in format_doc.rs checks this table", table.name())),
        }
    }
    for probe in probes {
        problems.push(format!("no table #{} under the heading `{}` for its probe", probe.ordinal + 1, probe.heading));
    }
    report("structure tables", &problems);
}

#[test]
fn enum_tables_match_the_discriminants() {
    let text = format_md();
    let tables = parse_tables(&text);
    let mut problems = Vec::new();
    check_block_kinds(find_table(&tables, &["value", "kind", "block"]), &mut problems);
    check_item_kinds(find_table(&tables, &["value", "kind", "key", "value"]), &mut problems);
    check_volume_states(find_table(&tables, &["value", "name", "meaning"]), &mut problems);
    let metrics = Metric::ALL.map(|metric| (u32::from(metric as u8), format!("{metric:?}")));
    check_discriminants(find_table(&tables, &["value", "metric", "distance"]), &BTreeMap::from(metrics), &mut problems);
    let elems = (0..=u8::MAX).filter_map(|v| ElemType::from_u8(v).map(|elem| (u32::from(v), format!("{elem:?}"))));
    check_discriminants(find_table(&tables, &["value", "element", "bytes"]), &elems.collect(), &mut problems);
    let kinds = (0..=u8::MAX).filter_map(|v| LogKind::from_u8(v).map(|kind| (u32::from(v), format!("{kind:?}"))));
    check_discriminants(find_table(&tables, &["value", "log kind", "payload"]), &kinds.collect(), &mut problems);
    let types = [(ATTR_TYPE_INT, "Int"), (ATTR_TYPE_FLOAT, "Float"), (ATTR_TYPE_STR, "Str")];
    let types = types.map(|(value, name)| (u32::from(value), name.to_string()));
    check_discriminants(find_table(&tables, &["value", "type", "value bytes"]), &BTreeMap::from(types), &mut problems);
    report("enum tables", &problems);
}

#[test]
fn limits_and_layout_examples_match_the_constants() {
    let text = format_md();
    let tables = parse_tables(&text);
    let mut problems = Vec::new();
    check_limits(find_table(&tables, &["name", "value", "meaning"]), &mut problems);
    check_layout_examples(
        find_table(&tables, &["volume", "block_count", "journal", "bitmap", "tree root", "first free"]),
        &mut problems,
    );
    report("limits and layout", &problems);
}

#[test]
fn test_vectors_match_the_hash_functions() {
    let text = format_md();
    let mut problems = Vec::new();
    let mut checked = 0;
    // Vectors are written in code spans as `function("argument") = 0xHEX`.
    for span in text.split('`').skip(1).step_by(2) {
        let Some((call, hex)) = span.split_once(") = 0x") else { continue };
        let Some((function, argument)) = call.split_once("(\"") else { continue };
        let argument = argument.strip_suffix('"').unwrap_or(argument).as_bytes();
        let documented = u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad hex in `{span}`"));
        let actual = match function {
            "crc32c" => u64::from(crc32c::crc32c(argument)),
            "name_hash" => items::name_hash(argument),
            _ => continue,
        };
        checked += 1;
        if documented != actual {
            problems.push(format!("`{span}`: the code computes {actual:#X}"));
        }
    }
    assert!(checked >= 3, "FORMAT.md lost its test vectors (found {checked})");
    report("test vectors", &problems);
}

// ---------------------------------------------------------------------------------------------
// Markdown tables
// ---------------------------------------------------------------------------------------------

struct Table {
    /// The nearest heading above the table, without its `#`s.
    heading: String,
    /// The last line of prose before the table.
    caption: String,
    /// 1-based line of the header row.
    line: usize,
    header: Vec<String>,
    rows: Vec<Row>,
}

struct Row {
    line: usize,
    cells: Vec<String>,
}

impl Table {
    fn label(&self) -> String {
        match self.caption.as_str() {
            "" => format!("`{}`", self.heading),
            caption => format!("`{}` ({caption})", self.heading),
        }
    }

    fn name(&self) -> String {
        format!("FORMAT.md:{}: table {}", self.line, self.label())
    }

    fn field(&self, row: &Placed<'_>) -> String {
        format!("FORMAT.md:{}: table {}, field `{}`", row.row.line, self.label(), row.name)
    }
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    line.split('|').map(|cell| cell.trim().to_string()).collect()
}

fn parse_tables(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let (mut heading, mut caption, mut in_code) = (String::new(), String::new(), false);
    let mut tables = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        index += 1;
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if in_code || line.starts_with("```") {
            continue;
        }
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
            caption.clear();
            continue;
        }
        let starts_table = line.starts_with('|') && lines.get(index).is_some_and(|next| next.starts_with("|---"));
        if !starts_table {
            let paragraph_start = index < 2 || lines[index - 2].is_empty() || lines[index - 2].starts_with('#');
            if !line.is_empty() && paragraph_start {
                caption = caption_of(line);
            }
            continue;
        }
        let mut table = Table {
            heading: heading.clone(),
            caption: caption.clone(),
            line: index,
            header: cells(line),
            rows: Vec::new(),
        };
        index += 1;
        while index < lines.len() && lines[index].starts_with('|') {
            table.rows.push(Row { line: index + 1, cells: cells(lines[index]) });
            index += 1;
        }
        tables.push(table);
    }
    tables
}

/// The start of a paragraph, shortened, to name the table that follows it.
fn caption_of(line: &str) -> String {
    const CHARS_MAX: usize = 60;
    match line.char_indices().nth(CHARS_MAX) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_string(),
    }
}

fn find_table<'t>(tables: &'t [Table], header: &[&str]) -> &'t Table {
    let mut found = tables.iter().filter(|table| table.header.iter().map(String::as_str).eq(header.iter().copied()));
    let table = found.next().unwrap_or_else(|| panic!("FORMAT.md has no table with the header {header:?}"));
    assert!(found.next().is_none(), "FORMAT.md has several tables with the header {header:?}");
    table
}

/// The identifier a field cell names: its first code span, or its text up to a `:`, `(` or `,`.
fn field_name(cell: &str) -> String {
    match cell.strip_prefix('`') {
        Some(rest) => rest.split('`').next().unwrap_or_default().to_string(),
        None => cell.split([':', '(', ',']).next().unwrap_or_default().trim().to_string(),
    }
}

/// Evaluates an offset or size such as `40`, `40 + 24n`, `16 × tag_count` or `5 + name_len`.
fn evaluate(expression: &str, vars: &[(&str, usize)]) -> Result<usize, String> {
    let expression = expression.replace('`', "");
    let mut sum = 0;
    for term in expression.split('+') {
        let mut product = 1;
        for factor in term.split(['×', '*']) {
            let factor = factor.trim();
            let digits = factor.find(|c: char| !c.is_ascii_digit()).unwrap_or(factor.len());
            let (number, name) = factor.split_at(digits);
            let mut value = if number.is_empty() { 1 } else { number.parse::<usize>().map_err(|e| e.to_string())? };
            if !name.is_empty() {
                let var = vars.iter().find(|(var, _)| *var == name.trim());
                value *= var.ok_or_else(|| format!("`{expression}` uses `{name}`, which the probe does not define"))?.1;
            }
            if number.is_empty() && name.is_empty() {
                return Err(format!("cannot evaluate `{expression}`"));
            }
            product *= value;
        }
        sum += product;
    }
    Ok(sum)
}

// ---------------------------------------------------------------------------------------------
// Structure tables
// ---------------------------------------------------------------------------------------------

/// What the code says about one field.
enum Check {
    /// Two encodings that differ in this field alone, in every byte of it.
    Diff { before: Vec<u8>, after: Vec<u8> },
    /// The field holds exactly these bytes of `samples[sample]`.
    Holds { sample: usize, bytes: Vec<u8> },
    /// The bytes are zero in every sample.
    Zero,
}

/// A structure as the code encodes it.
struct Probe {
    heading: &'static str,
    /// Which structure table under the heading, from 0.
    ordinal: usize,
    /// The encoded size (of these samples, for variable-length structures).
    size: usize,
    vars: Vec<(&'static str, usize)>,
    samples: Vec<Vec<u8>>,
    fields: Vec<(&'static str, Check)>,
}

impl Probe {
    fn new(heading: &'static str, ordinal: usize, size: usize) -> Probe {
        Probe { heading, ordinal, size, vars: Vec::new(), samples: Vec::new(), fields: Vec::new() }
    }

    fn var(mut self, name: &'static str, value: usize) -> Probe {
        self.vars.push((name, value));
        self
    }

    /// Adds an encoding; returns its index for [`Probe::holds`].
    fn sample(&mut self, bytes: Vec<u8>) -> usize {
        assert_eq!(bytes.len(), self.size, "{}: a sample has the wrong size", self.heading);
        self.samples.push(bytes);
        self.samples.len() - 1
    }

    fn diff(&mut self, name: &'static str, before: Vec<u8>, after: Vec<u8>) {
        self.sample(before.clone());
        self.sample(after.clone());
        self.fields.push((name, Check::Diff { before, after }));
    }

    fn holds(&mut self, name: &'static str, sample: usize, bytes: &[u8]) {
        self.fields.push((name, Check::Holds { sample, bytes: bytes.to_vec() }));
    }

    fn zero(&mut self, name: &'static str) {
        self.fields.push((name, Check::Zero));
    }
}

/// Where a documented row says a field is.
struct Placed<'t> {
    row: &'t Row,
    name: String,
    offset: usize,
    end: usize,
}

impl Placed<'_> {
    fn size(&self) -> usize {
        self.end - self.offset
    }
}

fn check_table(table: &Table, probe: &Probe, problems: &mut Vec<String>) {
    let problems_before = problems.len();
    check_rows(table, probe, problems);
    if problems.len() > problems_before {
        problems.push(format!("{}: {}", table.name(), code_layout(probe)));
    }
}

fn check_rows(table: &Table, probe: &Probe, problems: &mut Vec<String>) {
    let placed = match place_rows(table, probe, problems) {
        Ok(placed) => placed,
        Err(what) => return problems.push(format!("{}: {what}", table.name())),
    };
    let mut documented = BTreeSet::new();
    for row in &placed {
        documented.insert(row.name.as_str());
        let checks: Vec<&Check> = probe.fields.iter().filter(|(name, _)| *name == row.name).map(|(_, c)| c).collect();
        let zero = matches!(row.name.as_str(), "reserved" | "—");
        if checks.is_empty() && !zero {
            let what = "is documented, but the code's probe has no such field (add it to format_doc.rs)";
            problems.push(format!("{} {what}", table.field(row)));
        }
        if row.end > probe.size {
            let what = format!(
                "documented offset {} size {} runs past the {} byte structure",
                row.offset,
                row.size(),
                probe.size
            );
            problems.push(format!("{}: {what}", table.field(row)));
            continue;
        }
        if zero {
            check_row(table, probe, row, &Check::Zero, problems);
        }
        for check in checks {
            check_row(table, probe, row, check, problems);
        }
    }
    for (name, _) in &probe.fields {
        if !documented.contains(name) {
            problems.push(format!("{}: the code has a field `{name}` that the table does not document", table.name()));
        }
    }
}

/// Resolves each row's offset and size. `..` as an offset continues the previous row, `..` as a
/// size runs to the next row or the end of the structure, and `.. N` runs to offset N. Rows that
/// leave a gap or overlap are reported; the rows are still returned for the field checks.
fn place_rows<'t>(table: &'t Table, probe: &Probe, problems: &mut Vec<String>) -> Result<Vec<Placed<'t>>, String> {
    let mut placed: Vec<Placed<'t>> = Vec::new();
    for (index, row) in table.rows.iter().enumerate() {
        let [offset, size, field, ..] = &row.cells[..] else {
            return Err(format!("row at line {} is short", row.line));
        };
        let previous_end = placed.last().map_or(0, |previous| previous.end);
        let offset = if offset == ".." { previous_end } else { evaluate(offset, &probe.vars)? };
        let end = match size.strip_prefix("..").map(str::trim) {
            Some("") => match table.rows.get(index + 1) {
                Some(next) => evaluate(&next.cells[0], &probe.vars)?,
                None => probe.size,
            },
            Some(end) => evaluate(end, &probe.vars)?,
            None => offset + evaluate(size, &probe.vars)?,
        };
        let row = Placed { row, name: field_name(field), offset, end: end.max(offset) };
        if offset != previous_end {
            let what = format!("starts at {offset}, but the row before ends at {previous_end} (a gap or an overlap)");
            problems.push(format!("{}: {what}", table.field(&row)));
        }
        placed.push(row);
    }
    let end = placed.last().map_or(0, |row| row.end);
    if end != probe.size {
        problems.push(format!(
            "{}: the rows end at byte {end}, but the code's structure is {} bytes",
            table.name(),
            probe.size
        ));
    }
    Ok(placed)
}

fn check_row(table: &Table, probe: &Probe, row: &Placed<'_>, check: &Check, problems: &mut Vec<String>) {
    let (offset, size) = (row.offset, row.size());
    let at = table.field(row);
    let documented = format!("documented offset {offset} size {size}");
    match (check, actual_place(probe, check, Some(offset))) {
        (Check::Zero, _) => {
            for sample in &probe.samples {
                if let Some(i) = (offset..row.end).find(|&i| sample[i] != 0) {
                    let what = format!("the code writes {:#04x} at offset {i}", sample[i]);
                    problems.push(format!("{at}: {documented} is reserved, but {what}"));
                    break;
                }
            }
        }
        (_, Some(actual)) if actual == (offset, size) => {}
        (_, Some((actual_offset, actual_size))) => {
            problems.push(format!("{at}: {documented}, actual offset {actual_offset} size {actual_size}"));
        }
        (Check::Holds { bytes, .. }, None) => {
            let what = format!("actual size {}, offset not found (or not unique) in the encoding", bytes.len());
            problems.push(format!("{at}: {documented}, {what}"));
        }
        (Check::Diff { .. }, None) => unreachable!("a diff always places its field"),
    }
}

/// Where the code puts a field, as (offset, size), when the probe can tell: the bytes a diff
/// changes, or where the expected bytes are (at `documented` if they are there, else their only
/// occurrence in the sample).
fn actual_place(probe: &Probe, check: &Check, documented: Option<usize>) -> Option<(usize, usize)> {
    match check {
        Check::Diff { before, after } => {
            let first = before.iter().zip(after).position(|(a, b)| a != b).expect("the probe changes its field");
            let last = before.iter().zip(after).rposition(|(a, b)| a != b).expect("the probe changes its field");
            assert!((first..=last).all(|i| before[i] != after[i]), "the probe's values must differ in every byte");
            Some((first, last + 1 - first))
        }
        Check::Holds { sample, bytes } => {
            let sample = &probe.samples[*sample];
            let holds = |offset: usize| sample.get(offset..offset + bytes.len()) == Some(&bytes[..]);
            if let Some(offset) = documented.filter(|&offset| holds(offset)) {
                return Some((offset, bytes.len()));
            }
            let mut found = (0..sample.len()).filter(|&offset| holds(offset));
            match (found.next(), found.next()) {
                (Some(offset), None) => Some((offset, bytes.len())),
                _ => None,
            }
        }
        Check::Zero => None,
    }
}

/// The code's layout of a structure, as far as the probe can place its fields, to fix a table by.
fn code_layout(probe: &Probe) -> String {
    let mut fields: Vec<(usize, usize, &str)> = probe
        .fields
        .iter()
        .filter_map(|(name, check)| actual_place(probe, check, None).map(|(offset, size)| (offset, size, *name)))
        .collect();
    fields.sort_unstable();
    fields.dedup();
    let rows: Vec<String> =
        fields.iter().map(|(offset, size, name)| format!("    | {offset} | {size} | {name} |")).collect();
    format!("the code's layout (fields the probe can place, of a {} byte sample):\n{}", probe.size, rows.join("\n"))
}

// ---------------------------------------------------------------------------------------------
// Probes: one per structure table, built from the public encoders
// ---------------------------------------------------------------------------------------------

fn probes() -> Vec<Probe> {
    vec![
        superblock_probe(),
        meta_header_probe(),
        volume_root_probe(),
        bitmap_probe(),
        key_probe(),
        leaf_probe(),
        leaf_item_probe(),
        overflow_ref_probe(),
        overflow_block_probe(),
        internal_probe(),
        internal_entry_probe(),
        inode_probe(),
        dir_entry_probe(),
        dir_index_probe(),
        extent_probe(),
        xattr_probe(),
        descriptor_probe(),
        tag_probe(),
        commit_probe(),
        collection_record_probe(),
        log_record_probe(),
        log_header_probe(),
        insert_payload_probe(),
        delete_payload_probe(),
        attr_set_probe(),
        numeric_attr_probe(),
        string_attr_probe(),
    ]
}

/// `len` bytes, none zero and none below 0x80, so they differ from small or zero values in
/// every byte; `seed` makes patterns of different fields differ.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| 0x80 | (seed.wrapping_mul(16).wrapping_add(i as u8) & 0x7f)).collect()
}

fn p64(seed: u8) -> u64 {
    u64::from_le_bytes(pattern(seed, 8).try_into().expect("8 bytes"))
}

fn p32(seed: u8) -> u32 {
    u32::from_le_bytes(pattern(seed, 4).try_into().expect("4 bytes"))
}

fn p16(seed: u8) -> u16 {
    u16::from_le_bytes(pattern(seed, 2).try_into().expect("2 bytes"))
}

fn array<const N: usize>(seed: u8) -> [u8; N] {
    pattern(seed, N).try_into().expect("N bytes")
}

/// A field's name and a change of that field alone.
type Setter<T> = (&'static str, fn(&mut T));

/// The encodings of `base` and of `base` changed by each setter.
fn diffs<T: Clone>(probe: &mut Probe, base: &T, encode: impl Fn(&T) -> Vec<u8>, setters: &[Setter<T>]) {
    for (name, set) in setters {
        let mut changed = base.clone();
        set(&mut changed);
        probe.diff(name, encode(base), encode(&changed));
    }
}

/// The header `MetaHeader::init` writes for a fresh block.
fn fresh_header(kind: BlockKind, level: u16, addr: BlockAddr) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK_SIZE];
    MetaHeader::init(&mut block, kind, level, addr);
    block[..size_of::<MetaHeader>()].to_vec()
}

/// The header of a sealed block: as [`fresh_header`], with the generation and checksum stamped.
fn sealed_header(block: &[u8], kind: BlockKind, addr: BlockAddr, generation: u64) -> Vec<u8> {
    let header = MetaHeader {
        magic: META_MAGIC.into(),
        kind: (kind as u16).into(),
        level: 0.into(),
        addr: addr.0.into(),
        generation: generation.into(),
        checksum: block::block_checksum(block).into(),
        reserved: 0.into(),
    };
    header.as_bytes().to_vec()
}

fn superblock_probe() -> Probe {
    let mut probe = Probe::new("Superblock", 0, BLOCK_SIZE);
    let base = Layout::for_size(MIN_BLOCKS * BLOCK_SIZE as u64).expect("layout").superblock([0; 16], 0, "");
    let base = Superblock { format_version: 0, block_size: 0, journal_tail_seq: 0, ..base };
    let base = Superblock { block_count: 0, root_block: BlockAddr(0), journal_start: BlockAddr(0), ..base };
    let base = Superblock { journal_blocks: 0, bitmap_start: BlockAddr(0), bitmap_blocks: 0, ..base };
    // The checksum changes with every field; blank it so that a diff shows the field alone.
    let crc_at = crc_offset(&base.encode());
    let encode = |sb: &Superblock| {
        let mut block = sb.encode();
        block[crc_at..crc_at + 4].fill(0);
        block
    };
    let setters: &[Setter<Superblock>] = &[
        ("format_version", |sb| sb.format_version = p32(1)),
        ("block_size", |sb| sb.block_size = p32(2)),
        ("features_compat", |sb| sb.features_compat = p64(3)),
        ("features_ro_compat", |sb| sb.features_ro_compat = p64(4)),
        ("features_incompat", |sb| sb.features_incompat = p64(5)),
        ("uuid", |sb| sb.uuid = array(6)),
        ("block_count", |sb| sb.block_count = p64(7)),
        ("root_block", |sb| sb.root_block = BlockAddr(p64(8))),
        ("journal_start", |sb| sb.journal_start = BlockAddr(p64(9))),
        ("journal_blocks", |sb| sb.journal_blocks = p64(10)),
        ("bitmap_start", |sb| sb.bitmap_start = BlockAddr(p64(11))),
        ("bitmap_blocks", |sb| sb.bitmap_blocks = p64(12)),
        ("sequence", |sb| sb.sequence = p64(13)),
        ("journal_tail", |sb| sb.journal_tail = p64(14)),
        ("journal_tail_seq", |sb| sb.journal_tail_seq = p64(15)),
        ("created_time", |sb| sb.created_time = p64(16) as i64),
        ("mount_count", |sb| sb.mount_count = p64(17)),
        ("last_mount_time", |sb| sb.last_mount_time = p64(18) as i64),
        ("label", |sb| sb.label = array(19)),
    ];
    diffs(&mut probe, &base, encode, setters);
    let plain = probe.sample(base.encode());
    probe.holds("magic", plain, &SUPERBLOCK_MAGIC);
    probe.holds("crc", plain, &crc32c::crc32c(&base.encode()[..crc_at]).to_le_bytes());
    let mounted = probe.sample(Superblock { state: VolumeState::Mounted, ..base.clone() }.encode());
    probe.holds("state", mounted, &(VolumeState::Mounted as u32).to_le_bytes());
    probe
}

/// Where the superblock keeps its checksum: the offset whose 4 bytes are the crc32c of all
/// bytes before them.
fn crc_offset(block: &[u8]) -> usize {
    let mut crc = 0u32;
    for offset in 0..=block.len() - 4 {
        if block[offset..offset + 4] == crc.to_le_bytes() {
            return offset;
        }
        crc = crc32c::crc32c_append(crc, &block[offset..offset + 1]);
    }
    panic!("the superblock holds no crc32c of its leading bytes")
}

fn meta_header_probe() -> Probe {
    let mut probe = Probe::new("Metadata block header", 0, size_of::<MetaHeader>());
    let base = MetaHeader::read(&[0u8; BLOCK_SIZE]);
    let setters: &[Setter<MetaHeader>] = &[
        ("magic", |h| h.magic = p32(1).into()),
        ("kind", |h| h.kind = p16(2).into()),
        ("level", |h| h.level = p16(3).into()),
        ("addr", |h| h.addr = p64(4).into()),
        ("generation", |h| h.generation = p64(5).into()),
        ("checksum", |h| h.checksum = p32(6).into()),
    ];
    diffs(&mut probe, &base, |header| header.as_bytes().to_vec(), setters);
    let fresh = probe.sample(fresh_header(BlockKind::Leaf, 0, BlockAddr(9)));
    probe.holds("magic", fresh, b"VXMB");
    probe
}

fn volume_root_probe() -> Probe {
    let mut probe = Probe::new("Volume root", 0, BLOCK_SIZE);
    let addr = BlockAddr(2);
    let base = VolumeRoot {
        tree_root: BlockAddr(0),
        next_ino: 0,
        inode_count: 0,
        free_blocks: 0,
        next_generation: 0,
        collection_root: 0,
        index_root: 0,
    };
    let setters: &[Setter<VolumeRoot>] = &[
        ("tree_root", |r| r.tree_root = BlockAddr(p64(1))),
        ("next_ino", |r| r.next_ino = p64(2)),
        ("inode_count", |r| r.inode_count = p64(3)),
        ("free_blocks", |r| r.free_blocks = p64(4)),
        ("next_generation", |r| r.next_generation = p64(5)),
        ("collection_root", |r| r.collection_root = p64(6)),
        ("index_root", |r| r.index_root = p64(7)),
    ];
    diffs(&mut probe, &base, |root| root.build(addr), setters);
    probe.holds("MetaHeader", 0, &fresh_header(BlockKind::Root, 0, addr));
    probe
}

fn bitmap_probe() -> Probe {
    let mut probe = Probe::new("Free-space bitmap", 0, BLOCK_SIZE);
    let addr = BlockAddr(1027);
    let all_free = bitmap::build(0, addr, BITS_PER_BITMAP_BLOCK, 0);
    let all_used = bitmap::build(0, addr, BITS_PER_BITMAP_BLOCK, BITS_PER_BITMAP_BLOCK);
    probe.diff("bits", all_free, all_used);
    probe.holds("MetaHeader", 0, &fresh_header(BlockKind::Bitmap, 0, addr));
    probe
}

fn key_probe() -> Probe {
    let mut probe = Probe::new("Keys", 0, Key::MIN.encode().len());
    let setters: &[Setter<Key>] = &[
        ("object", |k| k.object = p64(1)),
        ("kind", |k| k.kind = pattern(2, 1)[0]),
        ("offset", |k| k.offset = p64(3)),
    ];
    diffs(&mut probe, &Key::MIN, |key| key.encode().to_vec(), setters);
    probe
}

fn any_key(seed: u8) -> Key {
    Key { object: p64(seed), kind: pattern(seed + 1, 1)[0], offset: p64(seed + 2) }
}

fn leaf(items: &[LeafItem<'_>]) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK_SIZE];
    node::build_leaf_into(&mut block, BlockAddr(1000), items).expect("the items fit a leaf");
    block
}

fn inline(key: Key, value: &[u8]) -> LeafItem<'_> {
    LeafItem { key, value, overflow: false }
}

fn leaf_probe() -> Probe {
    let mut probe = Probe::new("Leaf node", 0, BLOCK_SIZE).var("item_count", 2).var("n", 2).var("values_start", 4088);
    let (low, high) = (Key { object: 1, kind: 1, offset: 0 }, any_key(1));
    let sample = probe.sample(leaf(&[inline(low, b"abc"), inline(high, b"defgh")]));
    probe.holds("MetaHeader", sample, &fresh_header(BlockKind::Leaf, 0, BlockAddr(1000)));
    probe.holds("item_count", sample, &2u16.to_le_bytes());
    probe.holds("values_start", sample, &4088u16.to_le_bytes());
    // Values are packed downwards in insertion order: "abc" at 4093, then "defgh" at 4088.
    let entry = |key: Key, offset: u16, len: u16| {
        [&key.encode()[..], &offset.to_le_bytes(), &len.to_le_bytes(), &[0, 0, 0]].concat()
    };
    probe.holds("item table", sample, &[entry(low, 4093, 3), entry(high, 4088, 5)].concat());
    probe.zero("free gap");
    probe.holds("values", sample, b"defghabc");
    probe
}

fn leaf_item_probe() -> Probe {
    let mut probe = Probe::new("Leaf node", 1, 24);
    let first_entry = |block: Vec<u8>| block[40..64].to_vec();
    let before = first_entry(leaf(&[inline(Key::MIN, b"abc")]));
    let after = first_entry(leaf(&[inline(any_key(1), b"abc")]));
    probe.diff("key", before, after);
    probe.holds("value_offset", 0, &4093u16.to_le_bytes());
    probe.holds("value_len", 0, &3u16.to_le_bytes());
    let reference = OverflowRef { first: BlockAddr(5), total_len: 2000, crc: 0 }.encode();
    let overflow = LeafItem { key: Key::MIN, value: &reference, overflow: true };
    let sample = probe.sample(first_entry(leaf(&[overflow])));
    probe.holds("flags", sample, &[1]);
    probe
}

fn overflow_ref_probe() -> Probe {
    let mut probe = Probe::new("Overflow reference", 0, 16);
    let base = OverflowRef { first: BlockAddr(0), total_len: 0, crc: 0 };
    let setters: &[Setter<OverflowRef>] = &[
        ("first", |r| r.first = BlockAddr(p64(1))),
        ("total_len", |r| r.total_len = p32(2)),
        ("crc", |r| r.crc = p32(3)),
    ];
    diffs(&mut probe, &base, |reference| reference.encode().to_vec(), setters);
    probe
}

fn overflow_block_probe() -> Probe {
    let mut probe = Probe::new("Overflow block", 0, BLOCK_SIZE);
    let (addr, data) = (BlockAddr(77), pattern(1, 1000));
    let build = |next: Option<BlockAddr>| {
        let mut block = vec![0u8; BLOCK_SIZE];
        node::build_overflow_into(&mut block, addr, next, &data);
        block
    };
    probe.diff("next", build(None), build(Some(BlockAddr(p64(2)))));
    probe.holds("MetaHeader", 0, &fresh_header(BlockKind::Overflow, 0, addr));
    probe.holds("used", 0, &1000u32.to_le_bytes());
    let mut stored = data.clone();
    stored.resize(OVERFLOW_DATA_SIZE, 0);
    probe.holds("data", 0, &stored);
    probe
}

fn internal(entries: &[(Key, BlockAddr)]) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK_SIZE];
    node::build_internal_into(&mut block, BlockAddr(1000), 1, entries).expect("a valid internal node");
    block
}

fn internal_probe() -> Probe {
    let mut probe = Probe::new("Internal node", 0, BLOCK_SIZE).var("count", 3).var("n", 3);
    let entries = [(Key::MIN, BlockAddr(5)), (any_key(1), BlockAddr(p64(4))), (any_key(5), BlockAddr(7))];
    let sample = probe.sample(internal(&entries));
    probe.holds("MetaHeader", sample, &fresh_header(BlockKind::Internal, 1, BlockAddr(1000)));
    probe.holds("count", sample, &3u16.to_le_bytes());
    let encoded: Vec<u8> =
        entries.iter().flat_map(|(key, child)| [&key.encode()[..], &child.0.to_le_bytes()].concat()).collect();
    probe.holds("entries", sample, &encoded);
    probe.zero("free space");
    probe
}

fn internal_entry_probe() -> Probe {
    let mut probe = Probe::new("Internal node", 1, 25);
    let first_entry = |entries: &[(Key, BlockAddr)]| internal(entries)[40..65].to_vec();
    let low_child = BlockAddr(0x0101_0101_0101_0101);
    probe.diff("key", first_entry(&[(Key::MIN, low_child)]), first_entry(&[(any_key(1), low_child)]));
    probe.diff("child", first_entry(&[(Key::MIN, low_child)]), first_entry(&[(Key::MIN, BlockAddr(p64(4)))]));
    probe
}

fn inode_probe() -> Probe {
    let mut probe = Probe::new("Inode record", 0, InodeRecord::default().encode().len());
    let setters: &[Setter<InodeRecord>] = &[
        ("mode", |r| r.mode = p32(1)),
        ("uid", |r| r.uid = p32(2)),
        ("gid", |r| r.gid = p32(3)),
        ("flags", |r| r.flags = p32(4)),
        ("nlink", |r| r.nlink = p32(5)),
        ("rdev", |r| r.rdev = p32(6)),
        ("size", |r| r.size = p64(7)),
        ("blocks", |r| r.blocks = p64(8)),
        ("atime_sec", |r| r.atime.sec = p64(9) as i64),
        ("mtime_sec", |r| r.mtime.sec = p64(10) as i64),
        ("ctime_sec", |r| r.ctime.sec = p64(11) as i64),
        ("crtime_sec", |r| r.crtime.sec = p64(12) as i64),
        ("atime_nsec", |r| r.atime.nsec = p32(13)),
        ("mtime_nsec", |r| r.mtime.nsec = p32(14)),
        ("ctime_nsec", |r| r.ctime.nsec = p32(15)),
        ("crtime_nsec", |r| r.crtime.nsec = p32(16)),
        ("generation", |r| r.generation = p64(17)),
        ("dir_next_index", |r| r.dir_next_index = p64(18)),
        ("parent", |r| r.parent = p64(19)),
    ];
    diffs(&mut probe, &InodeRecord::default(), |record| record.encode().to_vec(), setters);
    probe
}

fn dir_entry_probe() -> Probe {
    let mut probe = Probe::new("DirEntry", 0, 8 + 8 + 1 + 1 + 5).var("name_len", 5);
    let base = DirEntry { child: 0, index: 0, dtype: 0, name: b"hello".to_vec() };
    let setters: &[Setter<DirEntry>] = &[
        ("child", |e| e.child = p64(1)),
        ("index", |e| e.index = p64(2)),
        ("dtype", |e| e.dtype = pattern(3, 1)[0]),
        ("name", |e| e.name = b"HELLO".to_vec()),
    ];
    diffs(&mut probe, &base, |entry| items::encode_dir_entries(std::slice::from_ref(entry)), setters);
    probe.holds("name_len", 0, &[5]);
    probe
}

fn dir_index_probe() -> Probe {
    let mut probe = Probe::new("DirIndex", 0, 8 + 1 + 1 + 5).var("name_len", 5);
    let base = DirEntry { child: 0, index: 0, dtype: 0, name: b"hello".to_vec() };
    let setters: &[Setter<DirEntry>] = &[
        ("child", |e| e.child = p64(1)),
        ("dtype", |e| e.dtype = pattern(3, 1)[0]),
        ("name", |e| e.name = b"HELLO".to_vec()),
    ];
    diffs(&mut probe, &base, |e| items::encode_dir_index(e.child, e.dtype, &e.name), setters);
    probe.holds("name_len", 0, &[5]);
    probe
}

fn extent_probe() -> Probe {
    let mut probe = Probe::new("Extent", 0, Extent::SIZE);
    let setters: &[Setter<Extent>] =
        &[("start", |e| e.start = p64(1)), ("length", |e| e.length = p32(2)), ("flags", |e| e.flags = p32(3))];
    diffs(&mut probe, &Extent { start: 0, length: 0, flags: 0 }, |extent| extent.encode().to_vec(), setters);
    probe
}

fn xattr_probe() -> Probe {
    let mut probe = Probe::new("Xattr", 0, 1 + 4 + 6 + 10).var("name_len", 6).var("value_len", 10);
    let base = Xattr { name: b"abcdef".to_vec(), value: vec![0; 10] };
    let setters: &[Setter<Xattr>] =
        &[("name", |x| x.name = b"ABCDEF".to_vec()), ("value", |x| x.value = pattern(1, 10))];
    diffs(&mut probe, &base, |xattr| items::encode_xattrs(std::slice::from_ref(xattr)), setters);
    probe.holds("name_len", 0, &[6]);
    probe.holds("value_len", 0, &10u32.to_le_bytes());
    probe
}

const JOURNAL_START: BlockAddr = BlockAddr(100);
const SEQ: u64 = 0x0102_0304;

/// A transaction of two images written at the start of a ring; `home` is the first image's home.
fn transaction(home: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let region = JournalRegion { start: JOURNAL_START, blocks: 64, volume_id: p64(9) };
    let images = vec![pattern(1, BLOCK_SIZE), pattern(2, BLOCK_SIZE)];
    let tagged = [Image { home: BlockAddr(home), block: &images[0] }, Image { home: BlockAddr(5), block: &images[1] }];
    let blocks = journal::encode_transaction(&region, 0, SEQ, &tagged).into_iter().map(|(_, block)| block).collect();
    (blocks, images)
}

fn descriptor_probe() -> Probe {
    let mut probe = Probe::new("Descriptor block", 0, BLOCK_SIZE).var("tag_count", 2);
    let (blocks, images) = transaction(3);
    let descriptor = probe.sample(blocks[0].clone());
    let header = sealed_header(&blocks[0], BlockKind::JournalDescriptor, JOURNAL_START, SEQ);
    probe.holds("MetaHeader", descriptor, &header);
    probe.holds("tag_count", descriptor, &2u32.to_le_bytes());
    probe.holds("volume_id", descriptor, &p64(9).to_le_bytes());
    let tag =
        |home: u64, image: &[u8]| [&home.to_le_bytes()[..], &crc32c::crc32c(image).to_le_bytes(), &[0; 4]].concat();
    probe.holds("tags", descriptor, &[tag(3, &images[0]), tag(5, &images[1])].concat());
    probe
}

fn tag_probe() -> Probe {
    let mut probe = Probe::new("Descriptor block", 1, 16);
    let first_tag = |home: u64| transaction(home).0[0][48..64].to_vec();
    probe.diff("home", first_tag(0x0101_0101_0101_0101), first_tag(p64(4)));
    let crc = crc32c::crc32c(&transaction(3).1[0]);
    probe.holds("crc", 0, &crc.to_le_bytes());
    probe
}

fn commit_probe() -> Probe {
    let mut probe = Probe::new("Commit block", 0, BLOCK_SIZE);
    let (blocks, _) = transaction(3);
    let commit = probe.sample(blocks[3].clone());
    let header = sealed_header(&blocks[3], BlockKind::JournalCommit, BlockAddr(JOURNAL_START.0 + 3), SEQ);
    probe.holds("MetaHeader", commit, &header);
    probe.holds("descriptor_count", commit, &1u32.to_le_bytes());
    probe.holds("block_count", commit, &4u32.to_le_bytes());
    probe.holds("volume_id", commit, &p64(9).to_le_bytes());
    let descriptor_checksum = MetaHeader::read(&blocks[0]).checksum.get().to_le_bytes();
    probe.holds("descriptors_crc", commit, &crc32c::crc32c(&descriptor_checksum).to_le_bytes());
    probe
}

fn collection_record_probe() -> Probe {
    let size = 16 + 2 * 8 + 1 + 6 + 4 + 4;
    let mut probe = Probe::new("Collection record", 0, size).var("shard_count", 2).var("embedder_len", 6);
    let text = TextParams { embedder: "abcdef".to_string(), chunk_bytes: 0x000f_8283, chunk_overlap: 0x8485 };
    let base = CollectionRecord {
        dim: 0x8182,
        metric: Metric::L2,
        elem: ElemType::F32,
        shards: vec![p64(1), p64(2)],
        text: Some(text),
    };
    let setters: &[Setter<CollectionRecord>] = &[
        ("metric", |r| r.metric = Metric::Manhattan),
        ("shards", |r| r.shards = vec![p64(3), p64(4)]),
        ("embedder", |r| r.text.as_mut().expect("text").embedder = "ABCDEF".to_string()),
    ];
    diffs(&mut probe, &base, collection::encode_collection, setters);
    probe.holds("record_version", 0, &[1]);
    probe.holds("elem", 0, &[ElemType::F32 as u8]);
    probe.holds("flags", 0, &[1]);
    probe.holds("dim", 0, &0x8182u32.to_le_bytes());
    probe.holds("shard_count", 0, &2u32.to_le_bytes());
    probe.holds("embedder_len", 0, &[6]);
    probe.holds("chunk_bytes", 0, &0x000f_8283u32.to_le_bytes());
    probe.holds("chunk_overlap", 0, &0x8485u32.to_le_bytes());
    probe
}

/// An insert record of `ids` with `dim`-dimensional vectors and optional attributes.
fn insert_record(seq: u64, dim: u32, ids: &[u64], vectors: &[f32], attrs: &[Attrs]) -> Vec<u8> {
    let mut out = Vec::new();
    collection::encode_insert(&mut out, seq, dim, ids, vectors, attrs);
    out
}

fn log_record_probe() -> Probe {
    // One id and one float: 12 payload bytes, padded by 4.
    let mut probe = Probe::new("Shard logs", 0, 80).var("payload_len", 12);
    let sample = probe.sample(insert_record(1, 1, &[p64(1)], &[1.5], &[]));
    let header = probe.samples[sample][..LOG_HEADER_SIZE].to_vec();
    probe.holds("header", sample, &header);
    probe.holds("payload", sample, &[&p64(1).to_le_bytes()[..], &1.5f32.to_le_bytes()].concat());
    probe.zero("padding");
    probe
}

/// Log record headers with their checksums blanked, so that a diff shows one field alone.
fn blanked_delete_header(seq: &u64) -> Vec<u8> {
    let mut out = Vec::new();
    collection::encode_delete(&mut out, *seq, &[7]);
    out[32..40].fill(0);
    out[..LOG_HEADER_SIZE].to_vec()
}

fn log_header_probe() -> Probe {
    let mut probe = Probe::new("Shard logs", 1, LOG_HEADER_SIZE);
    diffs(&mut probe, &0u64, blanked_delete_header, &[("seq", |seq| *seq = p64(1))]);
    let (dim, count) = (0x0102u32, 3usize);
    let vectors = vec![0.5f32; count * dim as usize];
    let record = insert_record(9, dim, &[1, 2, 3], &vectors, &[Vec::new(), Vec::new(), Vec::new()]);
    let payload_len = 8 * count + 4 * count * dim as usize + 4 * (count + 1) + 3 * 2;
    let mut header = record[..LOG_HEADER_SIZE].to_vec();
    let sample = probe.sample(header.clone());
    probe.holds("magic", sample, b"VXLR");
    probe.holds("kind", sample, &[LogKind::Insert as u8]);
    probe.holds("flags", sample, &[collection::LOG_FLAG_ATTRS]);
    probe.holds("count", sample, &(count as u32).to_le_bytes());
    probe.holds("dim", sample, &dim.to_le_bytes());
    probe.holds("payload_len", sample, &(payload_len as u64).to_le_bytes());
    let payload = &record[LOG_HEADER_SIZE..LOG_HEADER_SIZE + payload_len];
    probe.holds("payload_crc", sample, &crc32c::crc32c(payload).to_le_bytes());
    let stored_header_crc = header[36..40].to_vec();
    header[36..40].fill(0);
    assert_eq!(crc32c::crc32c(&header).to_le_bytes()[..], stored_header_crc[..], "header_crc definition");
    probe.holds("header_crc", sample, &stored_header_crc);
    probe
}

/// The payload of an insert record of three 2-dimensional vectors with attributes.
fn insert_payload(ids: &[u64], vectors: &[f32]) -> Vec<u8> {
    let record = insert_record(1, 2, ids, vectors, &insert_attrs());
    let payload_len = u64::from_le_bytes(record[16..24].try_into().expect("8 bytes")) as usize;
    record[LOG_HEADER_SIZE..LOG_HEADER_SIZE + payload_len].to_vec()
}

fn insert_attrs() -> Vec<Attrs> {
    vec![vec![("a".to_string(), AttrValue::Int(-1))], Vec::new(), vec![("b".to_string(), AttrValue::Str("x".into()))]]
}

fn insert_payload_probe() -> Probe {
    let attrs_len: Vec<usize> = insert_attrs().iter().map(collection::encoded_attrs_len).collect();
    let size = 3 * 8 + 3 * 2 * 4 + 4 * 4 + attrs_len.iter().sum::<usize>();
    let mut probe = Probe::new("Shard logs", 2, size).var("count", 3).var("dim", 2);
    probe.diff("ids", insert_payload(&[0; 3], &[0.0; 6]), insert_payload(&[p64(1), p64(2), p64(3)], &[0.0; 6]));
    let floats: Vec<f32> = (1..=6).map(|seed| f32::from_bits(p32(seed))).collect();
    probe.diff("vectors", insert_payload(&[0; 3], &[0.0; 6]), insert_payload(&[0; 3], &floats));
    let offsets = [0, attrs_len[0], attrs_len[0] + attrs_len[1], attrs_len.iter().sum()];
    let offsets: Vec<u8> = offsets.iter().flat_map(|&offset| (offset as u32).to_le_bytes()).collect();
    probe.holds("attr_offsets", 0, &offsets);
    let mut sets = Vec::new();
    for set in insert_attrs() {
        collection::encode_attrs(&set, &mut sets);
    }
    probe.holds("attrs", 0, &sets);
    probe
}

fn delete_payload_probe() -> Probe {
    let mut probe = Probe::new("Shard logs", 3, 16).var("count", 2);
    let payload = |ids: &[u64]| {
        let mut out = Vec::new();
        collection::encode_delete(&mut out, 1, ids);
        out[LOG_HEADER_SIZE..].to_vec()
    };
    probe.diff("ids", payload(&[0, 0]), payload(&[p64(1), p64(2)]));
    probe
}

fn encoded_attrs(attrs: &Attrs) -> Vec<u8> {
    let mut out = Vec::new();
    collection::encode_attrs(attrs, &mut out);
    out
}

fn attr_set_probe() -> Probe {
    let set = vec![("k".to_string(), AttrValue::Int(p64(1) as i64))];
    let mut probe = Probe::new("Attributes", 0, 2 + 1 + 1 + 1 + 8);
    let sample = probe.sample(encoded_attrs(&set));
    probe.holds("count", sample, &1u16.to_le_bytes());
    let attribute = [&[1, b'k', ATTR_TYPE_INT][..], &p64(1).to_le_bytes()].concat();
    probe.holds("attributes", sample, &attribute);
    probe
}

/// One attribute as encoded in a set of one, without the set's count.
fn one_attr(attr: &(String, AttrValue)) -> Vec<u8> {
    encoded_attrs(&vec![attr.clone()])[2..].to_vec()
}

fn numeric_attr_probe() -> Probe {
    let mut probe = Probe::new("Attributes", 1, 1 + 3 + 1 + 8).var("key_len", 3);
    let setters: &[Setter<(String, AttrValue)>] =
        &[("key", |a| a.0 = "ABC".to_string()), ("value", |a| a.1 = AttrValue::Int(p64(1) as i64))];
    diffs(&mut probe, &("abc".to_string(), AttrValue::Int(0)), one_attr, setters);
    probe.holds("key_len", 0, &[3]);
    probe.holds("type", 0, &[ATTR_TYPE_INT]);
    let float = probe.sample(one_attr(&("abc".to_string(), AttrValue::Float(-0.75))));
    probe.holds("type", float, &[ATTR_TYPE_FLOAT]);
    probe.holds("value", float, &(-0.75f64).to_bits().to_le_bytes());
    probe
}

fn string_attr_probe() -> Probe {
    let mut probe = Probe::new("Attributes", 2, 1 + 3 + 1 + 2 + 5).var("key_len", 3).var("len", 5);
    let setters: &[Setter<(String, AttrValue)>] =
        &[("key", |a| a.0 = "ABC".to_string()), ("string", |a| a.1 = AttrValue::Str("HELLO".to_string()))];
    diffs(&mut probe, &("abc".to_string(), AttrValue::Str("hello".to_string())), one_attr, setters);
    probe.holds("key_len", 0, &[3]);
    probe.holds("type", 0, &[ATTR_TYPE_STR]);
    probe.holds("len", 0, &5u16.to_le_bytes());
    probe
}

// ---------------------------------------------------------------------------------------------
// Enum, limit and layout tables
// ---------------------------------------------------------------------------------------------

fn code_span(cell: &str) -> &str {
    cell.trim().trim_matches('`')
}

/// Values in a cell such as `7`, `64..=127` or `0, 8..=63, 128..=255`; `None` for prose.
fn values(cell: &str) -> Option<Vec<u32>> {
    let mut values = Vec::new();
    for part in cell.split(',') {
        let part = part.trim();
        match part.split_once("..=") {
            Some((first, last)) => values.extend(first.parse::<u32>().ok()?..=last.parse::<u32>().ok()?),
            None => values.push(part.parse().ok()?),
        }
    }
    Some(values)
}

/// Compares a table of (value, name) rows with the code's discriminants. `named` maps every value
/// the code knows to its name; rows whose name is `—` must be values the code does not know.
fn check_discriminants(table: &Table, named: &BTreeMap<u32, String>, problems: &mut Vec<String>) {
    let mut documented = BTreeSet::new();
    for row in &table.rows {
        let Some(values) = values(&row.cells[0]) else { continue };
        let name = code_span(&row.cells[1]);
        for value in values {
            documented.insert(value);
            let actual = named.get(&value).map_or("—", String::as_str);
            if actual != name {
                problems.push(format!(
                    "FORMAT.md:{}: value {value} is documented as `{name}`, the code has `{actual}`",
                    row.line
                ));
            }
        }
    }
    for (value, name) in named {
        if !documented.contains(value) {
            problems.push(format!("{}: `{name}` = {value} is not documented", table.name()));
        }
    }
}

fn check_block_kinds(table: &Table, problems: &mut Vec<String>) {
    let named = (0..=u16::MAX).filter_map(|v| BlockKind::from_u16(v).map(|kind| (u32::from(v), format!("{kind:?}"))));
    check_discriminants(table, &named.collect(), problems);
}

fn check_item_kinds(table: &Table, problems: &mut Vec<String>) {
    let named = (0..=u8::MAX).filter_map(|v| ItemKind::from_u8(v).map(|kind| (u32::from(v), format!("{kind:?}"))));
    check_discriminants(table, &named.collect(), problems);
    let reserved: Vec<u32> = (RESERVED_KIND_FIRST..=COLLECTION_KIND_LAST).map(u32::from).collect();
    let row = table.rows.iter().find(|row| row.cells[3].contains("reserved"));
    match row.and_then(|row| values(&row.cells[0])) {
        Some(documented) if documented == reserved => {}
        _ => problems.push(format!("{}: the reserved kinds are not documented as {reserved:?}", table.name())),
    }
}

fn check_volume_states(table: &Table, problems: &mut Vec<String>) {
    // The match makes a new state fail to compile here until it is listed.
    let name = |state: VolumeState| match state {
        VolumeState::Clean => "Clean",
        VolumeState::Mounted => "Mounted",
    };
    let named = [VolumeState::Clean, VolumeState::Mounted].map(|state| (state as u32, name(state).to_string()));
    check_discriminants(table, &BTreeMap::from(named), problems);
}

fn check_limits(table: &Table, problems: &mut Vec<String>) {
    let constants: BTreeMap<&str, u64> = BTreeMap::from([
        ("BLOCK_SIZE", BLOCK_SIZE as u64),
        ("NAME_MAX", NAME_MAX as u64),
        ("SYMLINK_MAX", SYMLINK_MAX as u64),
        ("XATTR_VALUE_MAX", XATTR_VALUE_MAX as u64),
        ("XATTR_LIST_MAX", items::XATTR_LIST_MAX as u64),
        ("INLINE_VALUE_MAX", INLINE_VALUE_MAX as u64),
        ("VALUE_MAX", VALUE_MAX as u64),
        ("OVERFLOW_DATA_SIZE", OVERFLOW_DATA_SIZE as u64),
        ("OVERFLOW_BLOCKS_MAX", OVERFLOW_BLOCKS_MAX as u64),
        ("EXTENT_BLOCKS_MAX", u64::from(EXTENT_BLOCKS_MAX)),
        ("LEAF_ITEMS_MAX", LEAF_ITEMS_MAX as u64),
        ("INTERNAL_ENTRIES_MAX", INTERNAL_ENTRIES_MAX as u64),
        ("HEIGHT_MAX", HEIGHT_MAX as u64),
        ("TAGS_PER_DESCRIPTOR", TAGS_PER_DESCRIPTOR as u64),
        ("JOURNAL_BLOCKS_MIN", JOURNAL_BLOCKS_MIN),
        ("JOURNAL_BLOCKS_MAX", JOURNAL_BLOCKS_MAX),
        ("MIN_BLOCKS", MIN_BLOCKS),
        ("BITS_PER_BITMAP_BLOCK", BITS_PER_BITMAP_BLOCK),
        ("DIM_MAX", u64::from(DIM_MAX)),
        ("SHARDS_MAX", u64::from(SHARDS_MAX)),
        ("EMBEDDER_MAX", EMBEDDER_MAX as u64),
        ("CHUNK_BYTES_MIN", u64::from(CHUNK_BYTES_MIN)),
        ("CHUNK_BYTES_MAX", u64::from(CHUNK_BYTES_MAX)),
        ("ATTRS_MAX", ATTRS_MAX as u64),
        ("ATTR_KEY_MAX", ATTR_KEY_MAX as u64),
        ("ATTR_STR_MAX", ATTR_STR_MAX as u64),
        ("LOG_HEADER_SIZE", LOG_HEADER_SIZE as u64),
        ("LOG_RECORD_BYTES_MAX", LOG_RECORD_BYTES_MAX as u64),
        ("FILE_SIZE_MAX", FILE_SIZE_MAX),
        ("SEQUENCE_LIMIT", SEQUENCE_LIMIT),
    ]);
    // Rows about limits the format crate does not define as constants.
    let elsewhere = ["inode numbers", "nlink"];
    let mut documented = BTreeSet::new();
    for row in &table.rows {
        let name = code_span(&row.cells[0]);
        documented.insert(name);
        if elsewhere.contains(&name) {
            continue;
        }
        let digits = row.cells[1].split(|c: char| !c.is_ascii_digit()).next().unwrap_or_default();
        match (constants.get(name), digits.parse::<u64>()) {
            (Some(actual), Ok(value)) if *actual == value => {}
            (Some(actual), _) => problems.push(format!(
                "FORMAT.md:{}: `{name}` is documented as {}, the code has {actual}",
                row.line, row.cells[1]
            )),
            (None, _) => problems.push(format!("FORMAT.md:{}: `{name}` is not a constant this test knows", row.line)),
        }
    }
    for name in constants.keys().filter(|name| !documented.contains(*name)) {
        problems.push(format!("{}: `{name}` is not documented", table.name()));
    }
}

fn check_layout_examples(table: &Table, problems: &mut Vec<String>) {
    let span = |first: u64, count: u64| match count {
        1 => first.to_string(),
        _ => format!("{first}..={}", first + count - 1),
    };
    for row in &table.rows {
        let Ok(block_count) = row.cells[1].parse::<u64>() else {
            problems.push(format!("FORMAT.md:{}: block_count {:?} is not a number", row.line, row.cells[1]));
            continue;
        };
        let Ok(layout) = Layout::for_size(block_count * BLOCK_SIZE as u64) else {
            problems.push(format!("FORMAT.md:{}: {block_count} blocks is not a valid volume", row.line));
            continue;
        };
        let actual = [
            span(layout.journal_start.0, layout.journal_blocks),
            span(layout.bitmap_start.0, layout.bitmap_blocks),
            layout.tree_root.0.to_string(),
            layout.first_free.0.to_string(),
        ];
        if row.cells[2..6] != actual {
            problems.push(format!("FORMAT.md:{}: the layout of {block_count} blocks is {actual:?}", row.line));
        }
    }
}
