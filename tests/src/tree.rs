//! Directory trees on the host and on a mount: a seeded generator, and a manifest (path, kind,
//! size, content hash) to compare two trees with.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::content::{self, Hasher, Rng};

/// What a manifest records of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { len: u64, hash: u64 },
    Symlink(PathBuf),
    Other(String),
}

/// Walks `root` (without following symlinks) and records every path below it, relative to it.
pub fn manifest(root: &Path) -> Result<BTreeMap<String, Node>> {
    const ENTRIES_MAX: usize = 1_000_000;
    let mut nodes = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let entries = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = relative.join(entry.file_name());
            let full = root.join(&path);
            let kind = entry.file_type().with_context(|| format!("file type of {}", full.display()))?;
            let node = if kind.is_dir() {
                pending.push(path.clone());
                Node::Dir
            } else if kind.is_symlink() {
                Node::Symlink(fs::read_link(&full).with_context(|| format!("readlink {}", full.display()))?)
            } else if kind.is_file() {
                file_node(&full)?
            } else {
                Node::Other(format!("{kind:?}"))
            };
            nodes.insert(path.to_string_lossy().into_owned(), node);
            if nodes.len() > ENTRIES_MAX {
                bail!("more than {ENTRIES_MAX} entries below {}", root.display());
            }
        }
    }
    Ok(nodes)
}

fn file_node(path: &Path) -> Result<Node> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok(Node::File { len, hash: hasher.finish() })
}

/// Lines describing how `actual` differs from `expected` (empty when they are equal).
pub fn diff(expected: &BTreeMap<String, Node>, actual: &BTreeMap<String, Node>) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => lines.push(format!("missing: {path} ({want:?})")),
            Some(got) if got != want => lines.push(format!("differs: {path}: expected {want:?}, found {got:?}")),
            Some(_) => {}
        }
    }
    for (path, got) in actual {
        if !expected.contains_key(path) {
            lines.push(format!("unexpected: {path} ({got:?})"));
        }
    }
    lines
}

/// File sizes that sit on or next to common block and page boundaries.
const EDGE_SIZES: [usize; 12] = [0, 1, 511, 512, 4095, 4096, 4097, 65535, 65536, 131_085, 1_048_576, 3_000_000];

/// Fills `root` (which must exist) with `files` regular files spread over nested directories,
/// plus a few symlinks and an empty directory. Sizes run from 0 to 3 MB, edge sizes first.
/// Returns the total number of file bytes written.
pub fn generate(root: &Path, seed: u64, files: usize) -> Result<u64> {
    let mut rng = Rng::new(seed);
    let mut dirs = vec![PathBuf::new()];
    for i in 0..12 {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let dir = parent.join(format!("dir-{i:02}"));
        fs::create_dir(root.join(&dir))?;
        dirs.push(dir);
    }
    fs::create_dir(root.join("empty-dir"))?;
    let mut total = 0u64;
    for i in 0..files {
        let len = match EDGE_SIZES.get(i) {
            Some(&len) => len,
            None if rng.chance(1, 10) => rng.range(1_000_000, 3_000_000) as usize,
            None => rng.below(200_000) as usize,
        };
        let dir = &dirs[rng.below(dirs.len() as u64) as usize];
        let path = root.join(dir).join(format!("file-{i:04}.bin"));
        fs::write(&path, content::content(seed, i as u64, len))
            .with_context(|| format!("writing {}", path.display()))?;
        total += len as u64;
    }
    for i in 0..5 {
        let target = format!("../target-{i}/{}", "x".repeat(i * 40));
        symlink(&target, root.join(format!("link-{i}")))?;
    }
    Ok(total)
}
