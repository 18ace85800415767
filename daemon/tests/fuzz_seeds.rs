//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`): valid values made by
//! the encoders and taken from the golden images, in each target's input layout (documented at
//! the top of each `fuzz/fuzz_targets/<target>.rs`). Run by hand when a layout changes:
//!
//! ```sh
//! cargo test -p vexfs-daemon --test fuzz_seeds -- --ignored
//! ```
//!
//! Then minimise each corpus as `fuzz/README.md` says. Seeds are files named after what they
//! hold; an existing file of the same name is overwritten, others are left alone.

use std::path::{Path, PathBuf};

use vexfs_format::collection::{self, AttrValue, Attrs, DIM_MAX};
use vexfs_format::journal::{self, Image, JournalRegion};
use vexfs_format::key::ItemKind;
use vexfs_format::node::{claimed_kind, LeafRef};
use vexfs_format::superblock::Superblock;
use vexfs_format::{block, BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE};

/// One `== NAME, LEN bytes: NOTE` section of a golden file.
struct Section {
    title: String,
    bytes: Vec<u8>,
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand with --ignored"]
fn write_fuzz_seeds() {
    let golden = golden_files();
    superblock_seeds(&golden);
    journal_seeds(&golden);
    node_seeds(&golden);
    item_seeds(&golden);
    collection_seeds(&golden);
    fsck_seeds(&golden);
    fuse_request_seeds();
    ioctl_seeds();
    filter_seeds();
    vecfile_seeds();
    query_file_seeds();
    insert_stream_seeds();
}

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    dir
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(name), bytes).expect("write a seed");
}

/// Every golden file: (version-and-file name such as `v2-populated`, its sections).
fn golden_files() -> Vec<(String, Vec<Section>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../format/tests/golden");
    let mut files = Vec::new();
    for version in ["v1", "v2"] {
        for name in ["mkfs", "populated", "collections", "encodings"] {
            let path = root.join(version).join(format!("{name}.hex"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                files.push((format!("{version}-{name}"), parse_hex(&text)));
            }
        }
    }
    assert!(files.len() >= 7, "golden files not found under {}", root.display());
    files
}

/// Parses the annotated hex of `format/tests/golden.rs` (its header explains the rows).
fn parse_hex(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("== ") {
            let (title, rest) = header.split_once(", ").expect("a section header");
            let len: usize = rest.split(' ').next().expect("a length").parse().expect("a length");
            sections.push(Section { title: title.to_owned(), bytes: vec![0; len] });
        } else if let Some((offsets, hex)) = line.split_once(": ") {
            if line.starts_with('#') {
                continue;
            }
            let row: Vec<u8> = hex
                .split(' ')
                .flat_map(|word| (0..word.len()).step_by(2).map(move |i| &word[i..i + 2]))
                .map(|pair| u8::from_str_radix(pair, 16).expect("hex"))
                .collect();
            let (first, end) = match offsets.split_once("..") {
                Some((first, end)) => {
                    (usize::from_str_radix(first, 16).unwrap(), usize::from_str_radix(end, 16).unwrap())
                }
                None => {
                    let first = usize::from_str_radix(offsets, 16).unwrap();
                    (first, first + row.len())
                }
            };
            let bytes = &mut sections.last_mut().expect("a section").bytes;
            for at in (first..end).step_by(row.len()) {
                let n = row.len().min(bytes.len() - at);
                bytes[at..at + n].copy_from_slice(&row[..n]);
            }
        }
    }
    sections
}

/// The golden image blocks: (file name, block address, contents).
fn golden_blocks(golden: &[(String, Vec<Section>)]) -> Vec<(String, u64, Vec<u8>)> {
    let mut blocks = Vec::new();
    for (file, sections) in golden {
        for section in sections {
            if let Some(addr) = section.title.strip_prefix("block ") {
                blocks.push((file.clone(), addr.parse().expect("a block address"), section.bytes.clone()));
            }
        }
    }
    blocks
}

fn superblock_seeds(golden: &[(String, Vec<Section>)]) {
    for (file, addr, block) in golden_blocks(golden) {
        if addr < 2 {
            seed("superblock", &format!("{file}-slot{addr}"), &[&[(addr as u8) << 1][..], &block].concat());
        }
    }
}

fn journal_seeds(golden: &[(String, Vec<Section>)]) {
    // The populated images' ring: one committed transaction at positions 0..8.
    for (file, sections) in golden.iter().filter(|(file, _)| file.ends_with("populated")) {
        let blocks: Vec<&Section> = sections.iter().filter(|s| s.title.starts_with("block ")).collect();
        let sb = Superblock::decode(&blocks[0].bytes, BlockAddr(0)).expect("golden superblock");
        let ring: Vec<Vec<u8>> = (3..11u64)
            .map(|addr| {
                let title = format!("block {addr}");
                blocks.iter().find(|s| s.title == title).map_or(vec![0; BLOCK_SIZE], |s| s.bytes.clone())
            })
            .collect();
        let input = journal_input(7, 0, sb.journal_tail_seq, sb.volume_id(), &ring);
        seed("journal", &format!("{file}-ring"), &input);
    }
    // Rings written by the encoder: two transactions, one wrapping around the end of the ring.
    let region = JournalRegion { start: BlockAddr(3), blocks: 16, volume_id: 0x5eed };
    for (name, tail, sizes) in [("two", 0u64, [3usize, 2]), ("wrapping", 11, [4, 3]), ("one-then-torn", 2, [1, 5])] {
        let mut ring = vec![vec![0u8; BLOCK_SIZE]; 16];
        let mut pos = tail;
        for (i, &images) in sizes.iter().enumerate() {
            let blocks: Vec<Vec<u8>> = (0..images).map(|n| leaf_image(2000 + n as u64)).collect();
            let list: Vec<Image<'_>> =
                blocks.iter().enumerate().map(|(n, b)| Image { home: BlockAddr(2000 + n as u64), block: b }).collect();
            for (addr, block) in journal::encode_transaction(&region, pos, 9 + i as u64, &list) {
                ring[(addr.0 - 3) as usize] = block;
            }
            pos = (pos + JournalRegion::blocks_for(images)) % 16;
        }
        if name == "one-then-torn" {
            ring[((tail + 3) % 16) as usize][100] ^= 1;
        }
        seed("journal", &format!("encoded-{name}"), &journal_input(15, tail as u8, 9, region.volume_id, &ring));
    }
}

fn leaf_image(home: u64) -> Vec<u8> {
    let key = vexfs_format::Key::new(home, ItemKind::Inode, 0);
    let mut leaf = vexfs_format::node::build_leaf(BlockAddr(home), &[(key, &[7u8; 40][..])]).expect("a leaf");
    block::seal(&mut leaf, 9);
    leaf
}

fn journal_input(ring_minus_one: u8, tail: u8, tail_seq: u64, volume_id: u64, ring: &[Vec<u8>]) -> Vec<u8> {
    let mut input = vec![0, ring_minus_one, tail];
    input.extend_from_slice(&tail_seq.to_le_bytes());
    input.extend_from_slice(&volume_id.to_le_bytes());
    for block in ring {
        let used = trimmed(block);
        input.extend_from_slice(&(used.len() as u16).to_le_bytes());
        input.extend_from_slice(used);
    }
    input
}

/// `block` without its trailing zeros.
fn trimmed(block: &[u8]) -> &[u8] {
    let end = block.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1);
    &block[..end]
}

fn node_seeds(golden: &[(String, Vec<Section>)]) {
    let mut state = 0x6e6f_6465u64;
    for (file, addr, block) in golden_blocks(golden) {
        let Some(kind @ (BlockKind::Leaf | BlockKind::Internal | BlockKind::Overflow)) = claimed_kind(&block) else {
            continue;
        };
        let used = trimmed(&block);
        let mut input = vec![0];
        input.extend_from_slice(&(used.len() as u16).to_le_bytes());
        input.extend_from_slice(used);
        // Edit commands: a fixed pseudo-random tail, so each seed also edits the node.
        input.extend((0..96).map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        }));
        seed("node", &format!("{file}-block{addr}-{}", kind.name().replace(' ', "-")), &input);
    }
}

fn item_seeds(golden: &[(String, Vec<Section>)]) {
    let selector = |kind: u8| match ItemKind::from_u8(kind) {
        Some(ItemKind::Inode) => Some(0u8),
        Some(ItemKind::DirEntry) => Some(1),
        Some(ItemKind::DirIndex) => Some(2),
        Some(ItemKind::Extent) => Some(3),
        Some(ItemKind::Xattr) => Some(4),
        _ => None,
    };
    for (file, addr, block) in golden_blocks(golden) {
        let Ok(leaf) = LeafRef::parse(&block, BlockAddr(MetaHeader::read(&block).addr.get())) else { continue };
        for (index, item) in leaf.items().enumerate() {
            if let (Some(s), false) = (selector(item.key.kind), item.overflow) {
                seed("items", &format!("{file}-block{addr}-item{index}"), &[&[s][..], item.value].concat());
            }
            seed("items", &format!("{file}-block{addr}-key{index}"), &[&[5][..], &item.key.encode()].concat());
        }
    }
    for (file, sections) in golden.iter().filter(|(file, _)| file.ends_with("encodings")) {
        for section in sections {
            let s = match section.title.as_str() {
                "inode record" => 0u8,
                "dir entries" => 1,
                "dir index" => 2,
                "extent" | "extent unwritten" => 3,
                "xattrs" => 4,
                "key" => 5,
                _ => continue,
            };
            seed("items", &format!("{file}-{}", section.title.replace(' ', "-")), &[&[s][..], &section.bytes].concat());
        }
    }
}

fn collection_seeds(golden: &[(String, Vec<Section>)]) {
    for (file, sections) in golden.iter().filter(|(file, _)| file.ends_with("encodings")) {
        for section in sections {
            let name = format!("{file}-{}", section.title.replace(' ', "-"));
            if section.title.contains("collection record") {
                seed("collection", &name, &[&[0][..], &section.bytes].concat());
            } else if section.title == "attributes" {
                seed("collection", &name, &[&[1][..], &section.bytes].concat());
            } else if section.title.starts_with("log ") {
                // Dimension 3: the u16 field holds dim - 1.
                seed("collection", &name, &[&[2, 2, 0][..], &section.bytes].concat());
            }
        }
    }
    // Shard log blocks of the collections image, with the dimension that decodes them.
    for (file, addr, block) in golden_blocks(golden).into_iter().filter(|(file, _, _)| file.ends_with("collections")) {
        let log = trimmed(&block);
        let padded = &block[..log.len().next_multiple_of(8)];
        let Some(dim) = (1..=64u32).find(|&dim| collection::decode_record(padded, dim).is_ok()) else { continue };
        let dim_field = ((dim - 1) as u16).to_le_bytes();
        seed("collection", &format!("{file}-block{addr}-log"), &[&[2][..], &dim_field, padded].concat());
    }
    // Records made by the encoders: every kind, with and without attributes, in one log.
    let attrs: Vec<Attrs> = vec![
        vec![("genre".into(), AttrValue::Str("jazz".into())), ("year".into(), AttrValue::Int(1959))],
        vec![],
        vec![("score".into(), AttrValue::Float(0.5)), ("vexfs.doc".into(), AttrValue::Int(7))],
    ];
    let mut log = Vec::new();
    collection::encode_insert(&mut log, 1, 2, &[0, 1, 2], &[0.5, -1.0, 2.0, 0.0, 1e-30, 3e30], &attrs);
    collection::encode_delete(&mut log, 2, &[1]);
    collection::encode_insert(&mut log, 3, 2, &[5], &[1.0, 1.0], &[]);
    seed("collection", "encoded-log-dim2", &[&[3, 1, 0][..], &log].concat());
    let mut one = Vec::new();
    collection::encode_attrs(&attrs[0], &mut one);
    seed("collection", "encoded-attrs", &[&[1][..], &one].concat());
    let wide = u16::try_from(DIM_MAX - 1).unwrap_or(u16::MAX).to_le_bytes();
    seed("collection", "dimension-max-empty", &[&[2][..], &wide].concat());
}

fn fsck_seeds(golden: &[(String, Vec<Section>)]) {
    for (file, sections) in golden.iter().filter(|(file, _)| !file.ends_with("encodings")) {
        for flags in [0u8, 1] {
            let mut input = vec![flags];
            for section in sections {
                let Some(addr) = section.title.strip_prefix("block ") else { continue };
                let addr: u16 = addr.parse().expect("a block address");
                let used = trimmed(&section.bytes);
                input.extend_from_slice(&addr.to_le_bytes());
                input.extend_from_slice(&(used.len() as u16).to_le_bytes());
                input.extend_from_slice(used);
            }
            seed("fsck", &format!("{file}-flags{flags}"), &input);
        }
    }
}

/// A FUSE request: header, then the argument bytes.
fn fuse_request(opcode: u32, nodeid: u64, args: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((40 + args.len()) as u32).to_le_bytes());
    out.extend_from_slice(&opcode.to_le_bytes());
    out.extend_from_slice(&(u64::from(opcode) + 100).to_le_bytes());
    out.extend_from_slice(&nodeid.to_le_bytes());
    for id in [1000u32, 1000, 4242] {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(args);
    out
}

fn fuse_request_seeds() {
    let le32 = |v: u32| v.to_le_bytes().to_vec();
    let le64 = |v: u64| v.to_le_bytes().to_vec();
    let zeros = |n: usize| vec![0u8; n];
    let write_in = [le64(3), le64(4096), le32(5), le32(0), le64(0), le32(2), le32(0)].concat();
    let setxattr_in = [le32(5), le32(0), le32(0), le32(0)].concat();
    let init_in = [le32(7), le32(45), le32(1 << 17), le32(0x7fff_ffff), le32(0x3), zeros(44)].concat();
    let forgets = [le32(2), le32(0), le64(5), le64(1), le64(6), le64(2)].concat();
    let ioctl_in = [le64(1), le32(0), le32(0xc040_5602), le64(0), le32(8), le32(8)].concat();
    // (name, opcode, fixed argument struct, what follows it)
    let requests: Vec<(&str, u32, Vec<u8>, Vec<u8>)> = vec![
        ("lookup", 1, vec![], b"hello.txt\0".to_vec()),
        ("forget", 2, le64(3), vec![]),
        ("getattr", 3, zeros(16), vec![]),
        ("setattr", 4, [le32(0x1ff), zeros(84)].concat(), vec![]),
        ("readlink", 5, vec![], vec![]),
        ("symlink", 6, vec![], b"link\0../target\0".to_vec()),
        ("mknod", 8, [le32(0o100644), le32(0), le32(0o22), le32(0)].concat(), b"file\0".to_vec()),
        ("mkdir", 9, [le32(0o755), le32(0o22)].concat(), b"dir\0".to_vec()),
        ("unlink", 10, vec![], b"file\0".to_vec()),
        ("rmdir", 11, vec![], b"dir\0".to_vec()),
        ("rename", 12, le64(1), b"a\0b\0".to_vec()),
        ("link", 13, le64(5), b"hard\0".to_vec()),
        ("open", 14, [le32(2), le32(0)].concat(), vec![]),
        ("read", 15, [le64(3), le64(0), le32(4096), zeros(20)].concat(), vec![]),
        ("write", 16, write_in, b"hello".to_vec()),
        ("statfs", 17, vec![], vec![]),
        ("release", 18, zeros(24), vec![]),
        ("fsync", 20, zeros(16), vec![]),
        ("setxattr", 21, setxattr_in, b"user.a\0value".to_vec()),
        ("getxattr", 22, [le32(64), le32(0)].concat(), b"user.a\0".to_vec()),
        ("listxattr", 23, [le32(256), le32(0)].concat(), vec![]),
        ("removexattr", 24, vec![], b"user.a\0".to_vec()),
        ("flush", 25, zeros(24), vec![]),
        ("init", 26, init_in, vec![]),
        ("opendir", 27, zeros(8), vec![]),
        ("readdir", 28, [le64(1), le64(0), le32(4096), zeros(20)].concat(), vec![]),
        ("releasedir", 29, zeros(24), vec![]),
        ("fsyncdir", 30, zeros(16), vec![]),
        ("getlk", 31, zeros(48), vec![]),
        ("access", 34, [le32(4), le32(0)].concat(), vec![]),
        ("create", 35, [le32(0o102), le32(0o100644), le32(0o22), le32(0)].concat(), b"new\0".to_vec()),
        ("interrupt", 36, le64(7), vec![]),
        ("bmap", 37, zeros(16), vec![]),
        ("destroy", 38, vec![], vec![]),
        ("ioctl", 39, ioctl_in, le64(42)),
        ("batch-forget", 42, forgets[..8].to_vec(), forgets[8..].to_vec()),
        ("fallocate", 43, [le64(1), le64(0), le64(1 << 20), le32(1), le32(0)].concat(), vec![]),
        ("readdirplus", 44, [le64(1), le64(0), le32(4096), zeros(20)].concat(), vec![]),
        ("rename2", 45, [le64(1), le32(2), le32(0)].concat(), b"a\0b\0".to_vec()),
        ("lseek", 46, [le64(1), le64(0), le32(3), le32(0)].concat(), vec![]),
        ("copy-file-range", 47, [le64(1), le64(0), le64(5), le64(2), le64(0), le64(100), le64(0)].concat(), vec![]),
        ("syncfs", 50, zeros(8), vec![]),
        ("tmpfile", 51, [le32(0o100600), le32(2), le32(0o22), le32(0)].concat(), b"tmp\0".to_vec()),
        ("unknown", 999, zeros(8), vec![]),
    ];
    for (name, opcode, op_in, rest) in requests {
        let contiguous = fuse_request(opcode, 1, &[op_in.clone(), rest.clone()].concat());
        seed("fuse_request", name, &[&[5][..], &contiguous].concat());
        let split = [&[3][..], &(op_in.len() as u16).to_le_bytes(), &contiguous].concat();
        seed("fuse_request", &format!("{name}-split"), &split);
    }
}

fn ioctl_seeds() {
    let le32 = |v: u32| v.to_le_bytes().to_vec();
    let le64 = |v: u64| v.to_le_bytes().to_vec();
    let f32s = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let filter = b"genre = \"jazz\" and year > 1950\0\0".to_vec();
    let seeds: Vec<(&str, u8, u8, Vec<u8>)> = vec![
        ("create", 0, 1, [le32(8), le32(1), le32(2), le32(0), le32(0), le32(0)].concat()),
        ("create-text", 0, 1, [le32(384), le32(1), le32(1), le32(1), le32(1000), le32(100)].concat()),
        (
            "insert",
            1,
            0,
            [le32(4), le32(2), le32(0), le32(0), le64(0), vec![0; 48], f32s(&[1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5])]
                .concat(),
        ),
        (
            "insert-ids-sync",
            1,
            0,
            [le32(4), le32(1), le32(3), le32(0), le64(0), vec![0; 48], le64(77), f32s(&[1.0, 0.0, 0.0, 0.0])].concat(),
        ),
        ("knn", 2, 0, [le32(4), le32(1), le32(3), le32(0), le32(0), le32(0), vec![0; 40], f32s(&[1.0; 4])].concat()),
        (
            "knn-filter",
            2,
            0,
            [le32(4), le32(1), le32(3), le32(30), le32(0), le32(0), vec![0; 40], filter.clone(), f32s(&[1.0; 4])]
                .concat(),
        ),
        (
            "range",
            3,
            0,
            [le32(4), le32(2), le32(5), le32(0), 2.5f32.to_le_bytes().to_vec(), le32(0), vec![0; 40], f32s(&[0.0; 8])]
                .concat(),
        ),
        ("stats", 4, 0, vec![]),
        ("delete", 5, 0, [le32(2), le32(2), le64(0), vec![0; 48], le64(0), le64(77)].concat()),
        ("sync", 6, 0, vec![]),
        ("search-text", 7, 0, [le32(3), le32(5), le32(0), le32(0), vec![0; 48], b"hello\0\0\0".to_vec()].concat()),
        ("batch-header", 8, 0, vexfs_format::ioctl::BatchHeader::new(4, 10, true).as_bytes_vec()),
        ("batch-header-no-ids", 8, 0, vexfs_format::ioctl::BatchHeader::new(384, 1, false).as_bytes_vec()),
    ];
    for (name, selector, flags, bytes) in seeds {
        seed("ioctl", name, &[&[selector, flags][..], &bytes].concat());
    }
}

/// The bytes of a zerocopy value, through the one trait the seeds need.
trait AsBytesVec {
    fn as_bytes_vec(&self) -> Vec<u8>;
}

impl<T: zerocopy::IntoBytes + zerocopy::Immutable> AsBytesVec for T {
    fn as_bytes_vec(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

fn filter_seeds() {
    let attrs: Attrs = vec![
        ("genre".into(), AttrValue::Str("jazz".into())),
        ("year".into(), AttrValue::Int(1959)),
        ("score".into(), AttrValue::Float(4.5)),
        ("vexfs.doc".into(), AttrValue::Int(12)),
    ];
    let mut encoded = Vec::new();
    collection::encode_attrs(&attrs, &mut encoded);
    let texts = [
        "genre = \"jazz\"",
        "year >= 1950 and year < 1970",
        "year in 1950..1969 or not exists score",
        "not (genre != 'rock') and score <= 4.5e0",
        "\"vexfs.doc\" = 12 or 'weird key' > -inf",
        "((true)) and not false or score = nan",
        "genre == 'a\\u{2713}\\n\\t\\\\' OR YEAR > 2",
        "exists genre and genre",
        "score > 4 and score < 5 and year != 1959.0",
    ];
    for (index, text) in texts.iter().enumerate() {
        seed("filter", &format!("filter-{index}"), &[text.as_bytes(), &[0], &encoded].concat());
    }
}

fn vecfile_seeds() {
    let npy = |descr: &str, shape: &str, data: &[u8], major: u8| {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let length_bytes = if major == 1 { 2 } else { 4 };
        let mut header = dict.into_bytes();
        while (8 + length_bytes + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend_from_slice(&[major, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes()[..length_bytes]);
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out
    };
    let f32s: Vec<u8> = (0..6).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let f64s: Vec<u8> = (0..6).flat_map(|i| (f64::from(i) - 2.5).to_le_bytes()).collect();
    seed("npy", "f4-2x3", &npy("<f4", "(2, 3)", &f32s, 1));
    seed("npy", "f8-3x2", &npy("<f8", "(3, 2)", &f64s, 1));
    seed("npy", "f4-1x6-v2", &npy("<f4", "(1, 6)", &f32s, 2));
    seed("npy", "f4-1d", &npy("<f4", "(6,)", &f32s, 1));
    seed("npy", "big-endian", &npy(">f4", "(2, 3)", &f32s, 1));
    let fvecs = |dim: u32, rows: u32| -> Vec<u8> {
        (0..rows)
            .flat_map(|r| {
                let mut row = dim.to_le_bytes().to_vec();
                row.extend((0..dim).flat_map(|c| ((r * dim + c) as f32).to_le_bytes()));
                row
            })
            .collect()
    };
    seed("fvecs", "dim4-rows3", &fvecs(4, 3));
    seed("fvecs", "dim1-rows1", &fvecs(1, 1));
    seed("fvecs", "dim16-rows2", &fvecs(16, 2));
}

fn query_file_seeds() {
    let files = [
        "{\"vector\": [0.5, 0.5, 0.5, 0.5], \"k\": 3}\n",
        "{\"vector\": [1, 2, 3, 4], \"k\": 10, \"filter\": \"year >= 1950\"}\n{\"vector\": [1, 2, 3, 4], \"k\": 10, \"filter\": \"year >= 1950\"}\n",
        "{\"vector\": [0, 0, 0, 1], \"radius\": 0.25, \"limit\": 100}\n",
        "{\"text\": \"how do I bake bread\", \"k\": 5, \"filter\": \"lang = 'en'\"}\n",
        "{\"vector\": [1], \"k\": 0}\n[1, 2]\n{\"text\": 3}\n{\"vector\": [\"x\"]}\n\n  \n{",
        "{\"vector\": [1e39, -1e39], \"k\": 1e30, \"radius\": \"far\"}\n",
    ];
    for (index, text) in files.iter().enumerate() {
        seed("query_file", &format!("query-{index}"), text.as_bytes());
    }
}

fn insert_stream_seeds() {
    use vexfs_format::ioctl::BatchHeader;
    use zerocopy::IntoBytes;
    // A batch of two 4-d vectors with ids, then one without, for a collection of dimension 4.
    let mut stream = BatchHeader::new(4, 2, true).as_bytes().to_vec();
    stream.extend_from_slice(&[7u64.to_le_bytes(), 9u64.to_le_bytes()].concat());
    stream.extend((0..8).flat_map(|i| (i as f32).to_le_bytes()));
    stream.extend_from_slice(BatchHeader::new(4, 1, false).as_bytes());
    stream.extend((0..4).flat_map(|i| (i as f32 * 0.5).to_le_bytes()));
    // Pieces of 7, 32 and 255 bytes: each piece is a length byte, then the bytes.
    for (name, piece) in [("pieces-7", 7usize), ("pieces-32", 32), ("pieces-255", 255)] {
        let mut input = vec![3, 0];
        for chunk in stream.chunks(piece) {
            input.push(chunk.len() as u8);
            input.extend_from_slice(chunk);
        }
        seed("insert_stream", name, &input);
    }
    // A header of the wrong dimension, and one refused at admission.
    let mut wrong = vec![7, 0, 32];
    wrong.extend_from_slice(BatchHeader::new(4, 1, false).as_bytes());
    seed("insert_stream", "wrong-dimension", &wrong);
    let mut refused = vec![3, 1, 32];
    refused.extend_from_slice(BatchHeader::new(4, 1, false).as_bytes());
    seed("insert_stream", "refused", &refused);
}
