//! The engine against a model, with device faults (redb's `fuzz_redb.rs` is the pattern).
//!
//! Goal: random sequences of engine operations never panic, never answer differently from a
//! simple in-memory model of the namespace, and never lose what an fsync made durable, even when
//! the device starts failing part-way.
//!
//! Method: each case formats a 16 MiB `SimStorage` volume and runs a seeded sequence of creates,
//! writes at offsets, truncates, unlinks, renames, mkdir/rmdir, setxattr/removexattr, fsyncs and
//! crash-and-reopens through `EngineHandle`, applying each successful operation to the model (a
//! `BTreeMap` of paths to contents and xattrs) and checking the touched paths after every step and
//! the whole tree every few steps. Some cases arm a device fault on a countdown (reads, writes,
//! one transient write, or flushes fail after `n` more succeed). From then on an operation may fail
//! with an I/O error or EROFS and is then treated as not done (its metadata is rolled back; a
//! failed write leaves the file's bytes unknown, so its contents are no longer compared); every
//! answer that does come back must still match the model.
//!
//! A crash takes a `SimStorage::crash_image`, which fsck must find clean; after reopening, the
//! namespace (paths, kinds, sizes, xattrs) must equal the model after some operation at or after
//! the last successful fsync (the engine also commits on its own, under cache or journal
//! pressure), and every file whose bytes were not written or truncated since that fsync must read
//! back exactly. A case is fully determined by its seed; a failure names it.
//!
//! Environment: `VEXFS_MODEL_CASES` (default 24) cases, seeds from `VEXFS_MODEL_SEED` (default 1)
//! on; `VEXFS_MODEL_STEPS` (default 150) operations per case.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{FixedClock, Rng};
use vexfs_daemon::engine::fs::{Creds, RenameFlags};
use vexfs_daemon::engine::items::XattrMode;
use vexfs_daemon::engine::{Engine, EngineError, EngineHandle, EngineOptions};
use vexfs_daemon::errno::Errno;
use vexfs_daemon::io::sim::SimStorage;
use vexfs_format::inode::ROOT_INO;
use vexfs_format::{BlockAddr, BLOCK_SIZE};

const VOLUME_BYTES: u64 = 16 << 20;
const CREDS: Creds = Creds { uid: 0, gid: 0 };
/// Names in every directory; directories nest at most two deep, so the tree stays small.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
const DEPTH_MAX: usize = 2;
const FILE_BYTES_MAX: u64 = 192 << 10;
const XATTR_NAMES: [&str; 3] = ["user.x", "user.y", "trusted.z"];

type Handle = EngineHandle<Arc<SimStorage>>;

/// One node of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    /// `id` names the file across renames, for the set of files whose bytes are uncertain.
    File {
        id: u64,
        data: Vec<u8>,
        xattrs: BTreeMap<String, Vec<u8>>,
    },
    Dir {
        xattrs: BTreeMap<String, Vec<u8>>,
    },
}

impl Node {
    fn xattrs(&self) -> &BTreeMap<String, Vec<u8>> {
        match self {
            Node::File { xattrs, .. } | Node::Dir { xattrs } => xattrs,
        }
    }

    fn xattrs_mut(&mut self) -> &mut BTreeMap<String, Vec<u8>> {
        match self {
            Node::File { xattrs, .. } | Node::Dir { xattrs } => xattrs,
        }
    }
}

/// Paths (without a leading slash; "" is the root) to nodes.
type Tree = BTreeMap<String, Node>;

/// A tree without file contents: (path, is a directory, size, xattrs) of every node.
type Shape = Vec<(String, bool, usize, BTreeMap<String, Vec<u8>>)>;

fn shape(tree: &Tree) -> Shape {
    tree.iter()
        .map(|(path, node)| match node {
            Node::File { data, xattrs, .. } => (path.clone(), false, data.len(), xattrs.clone()),
            Node::Dir { xattrs } => (path.clone(), true, 0, xattrs.clone()),
        })
        .collect()
}

/// What the model knows: the live tree, the trees a crash may leave (the live tree after every
/// operation since the last fsync), and the files whose bytes are not known exactly.
struct Model {
    live: Tree,
    since_sync: Vec<Tree>,
    /// Files written or truncated since the last fsync: a crash may leave any of their bytes.
    dirty_since_sync: BTreeSet<u64>,
    /// Files whose live bytes are unknown (a failed write); never compared again.
    unknown: BTreeSet<u64>,
    next_id: u64,
}

impl Model {
    fn new() -> Model {
        let mut live = Tree::new();
        live.insert(String::new(), Node::Dir { xattrs: BTreeMap::new() });
        Model {
            since_sync: vec![live.clone()],
            live,
            dirty_since_sync: BTreeSet::new(),
            unknown: BTreeSet::new(),
            next_id: 1,
        }
    }

    fn applied(&mut self) {
        self.since_sync.push(self.live.clone());
    }

    fn synced(&mut self) {
        self.since_sync = vec![self.live.clone()];
        self.dirty_since_sync.clear();
    }

    fn children(&self, dir: &str) -> Vec<String> {
        self.live.keys().filter(|path| !path.is_empty() && parent_of(path) == dir).cloned().collect()
    }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn depth(path: &str) -> usize {
    if path.is_empty() {
        0
    } else {
        path.split('/').count()
    }
}

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        // Runs of one byte make torn or misplaced blocks easy to see in a diff.
        let fill = self.next() as u8;
        (0..len).map(|i| fill.wrapping_add((i / 512) as u8)).collect()
    }
}

fn fresh_image() -> Vec<u8> {
    common::fresh_image(VOLUME_BYTES, [3; 16], "model")
}

fn open(sim: &Arc<SimStorage>) -> Engine<Arc<SimStorage>> {
    // A small cache and journal pressure make the engine commit and evict on its own.
    let options = EngineOptions { cache_bytes: 1 << 20, commit_interval: Duration::from_secs(3600) };
    Engine::open(Arc::clone(sim), Arc::new(FixedClock), options).expect("open the volume")
}

fn fsck_clean(image: &[u8], what: &str) {
    let mut read = |addr: BlockAddr, buf: &mut [u8]| -> Result<(), ()> {
        let at = addr.byte_offset() as usize;
        buf.copy_from_slice(&image[at..at + BLOCK_SIZE]);
        Ok(())
    };
    let report = vexfs_format::fsck::check(&mut read, image.len() as u64).expect("fsck runs");
    assert!(report.is_clean(), "{what}: fsck: {:?}", report.problems);
}

/// The ino of `path`, walking from the root.
fn resolve(handle: &Handle, path: &str) -> Result<u64, EngineError> {
    let mut ino = ROOT_INO;
    for name in path.split('/').filter(|name| !name.is_empty()) {
        ino = handle.lookup(ino, name.as_bytes())?.ino;
    }
    Ok(ino)
}

fn read_all(handle: &Handle, ino: u64, len: usize) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::new();
    while out.len() < len {
        let (buf, range) = handle.read(ino, out.len() as u64, (len - out.len()).min(1 << 20) as u32)?;
        assert!(!range.is_empty(), "file shorter than its size");
        out.extend_from_slice(&buf[range]);
    }
    Ok(out)
}

/// What the engine holds at `path`, read back the way the model stores it (bytes only when
/// `with_data`).
fn observe(handle: &Handle, path: &str, with_data: bool) -> Result<Option<Node>, EngineError> {
    let ino = match resolve(handle, path) {
        Ok(ino) => ino,
        Err(EngineError::NotFound) => return Ok(None),
        Err(error) => return Err(error),
    };
    let attr = handle.getattr(ino)?;
    let mut xattrs = BTreeMap::new();
    for name in handle.listxattr(ino)? {
        let value = handle.getxattr(ino, &name)?;
        xattrs.insert(String::from_utf8(name).expect("names are ASCII"), value);
    }
    Ok(Some(if attr.record.is_dir() {
        Node::Dir { xattrs }
    } else {
        let size = attr.record.size as usize;
        let data = if with_data { read_all(handle, ino, size)? } else { vec![0; size] };
        Node::File { id: 0, data, xattrs }
    }))
}

/// Whether a failure is one a device fault explains.
fn is_fault(error: &EngineError) -> bool {
    let fault = matches!(error, EngineError::Io(_) | EngineError::Failed);
    if fault {
        REFUSED_BY_FAULT.fetch_add(1, Ordering::Relaxed);
    }
    fault
}

/// One case: the engine, its device and the model, and whether a fault has been armed.
struct Case {
    seed: u64,
    rng: Rng,
    sim: Arc<SimStorage>,
    engine: Option<Engine<Arc<SimStorage>>>,
    model: Model,
    faulty: bool,
    step: usize,
    /// The operations so far, for the failure message.
    trace: Vec<String>,
}

impl Case {
    fn handle(&self) -> Handle {
        self.engine.as_ref().expect("open").handle()
    }

    fn fail(&self, what: String) -> ! {
        let recent = &self.trace[self.trace.len().saturating_sub(30)..];
        panic!("seed {} step {}: {what}\nthe last operations:\n  {}", self.seed, self.step, recent.join("\n  "))
    }

    fn note(&mut self, what: String) {
        self.trace.push(format!("{}: {what}", self.step));
    }

    /// Checks an operation's outcome against the model's expectation: `Ok` when the model
    /// applies it, or the errno the model predicts. A fault may explain any failure once armed.
    /// Returns whether the operation took effect.
    fn outcome(&mut self, what: &str, result: Result<(), EngineError>, expected: Result<(), i32>) -> bool {
        self.note(format!("{what}: {result:?}"));
        match (result, expected) {
            (Ok(()), Ok(())) => true,
            (Err(error), _) if self.faulty && is_fault(&error) => false,
            (Err(error), Err(errno)) if error.errno() == errno => false,
            (result, expected) => self.fail(format!("{what}: engine gave {result:?}, the model expects {expected:?}")),
        }
    }

    fn compare(&self, path: &str, with_data: bool) {
        let handle = self.handle();
        let found = match observe(&handle, path, with_data) {
            Ok(found) => found,
            Err(error) if self.faulty && is_fault(&error) => return,
            Err(error) => self.fail(format!("reading {path:?}: {error}")),
        };
        let expected = self.model.live.get(path);
        match (found, expected) {
            (None, None) => {}
            (Some(Node::Dir { xattrs }), Some(Node::Dir { xattrs: want })) if xattrs == *want => {}
            (Some(Node::File { data, xattrs, .. }), Some(Node::File { id, data: want, xattrs: want_x })) => {
                let known = !self.model.unknown.contains(id);
                if xattrs != *want_x || (known && data.len() != want.len()) {
                    self.fail(format!(
                        "{path:?}: engine has {} bytes and {xattrs:?}, model {} and {want_x:?}",
                        data.len(),
                        want.len()
                    ));
                }
                if known && with_data && data != *want {
                    let at = data.iter().zip(want).position(|(a, b)| a != b).expect("a difference");
                    let end = (at..data.len()).find(|&i| data[i] == want[i]).unwrap_or(data.len());
                    self.fail(format!("{path:?}: bytes {at}..{end} of {} differ from the model's", data.len()));
                }
            }
            (found, expected) => self.fail(format!("{path:?}: engine has {found:?}, model {expected:?}")),
        }
    }

    /// Every directory lists exactly the model's children, and every path matches.
    fn compare_all(&self) {
        let handle = self.handle();
        for (path, node) in &self.model.live {
            if let Node::Dir { .. } = node {
                let Ok(ino) = resolve(&handle, path) else { continue };
                let mut names = BTreeSet::new();
                let listed = handle.readdir(ino, 0, false, |item| {
                    if item.name != b"." && item.name != b".." {
                        names.insert(String::from_utf8_lossy(&item.name).into_owned());
                    }
                    true
                });
                match listed {
                    Ok(()) => {}
                    Err(error) if self.faulty && is_fault(&error) => continue,
                    Err(error) => self.fail(format!("readdir {path:?}: {error}")),
                }
                let want: BTreeSet<String> = self.model.children(path).iter().map(|p| name_of(p).to_owned()).collect();
                if names != want {
                    self.fail(format!("readdir {path:?}: engine lists {names:?}, model {want:?}"));
                }
            }
            self.compare(path, true);
        }
    }

    fn random_dir(&mut self) -> String {
        let dirs: Vec<String> =
            self.model.live.iter().filter(|(_, n)| matches!(n, Node::Dir { .. })).map(|(p, _)| p.clone()).collect();
        self.rng.pick(&dirs).expect("the root").clone()
    }

    fn random_path(&mut self) -> String {
        let dir = self.random_dir();
        let name = *self.rng.pick(&NAMES).expect("names");
        join(&dir, name)
    }

    fn random_file(&mut self) -> Option<String> {
        let files: Vec<String> =
            self.model.live.iter().filter(|(_, n)| matches!(n, Node::File { .. })).map(|(p, _)| p.clone()).collect();
        self.rng.pick(&files).cloned()
    }

    fn run(&mut self, steps: usize) {
        for step in 0..steps {
            self.step = step;
            if !self.faulty && self.rng.below(100) == 0 {
                self.arm_fault();
            }
            let touched = match self.rng.below(24) {
                0..=3 => self.create(),
                4..=8 => self.write(),
                9 | 10 => self.truncate(),
                11 => self.unlink(),
                12 | 13 => self.rename(),
                14 => self.mkdir(),
                15 => self.rmdir(),
                16 | 17 => self.setxattr(),
                18 => self.removexattr(),
                19..=21 => self.fsync(),
                _ => {
                    self.crash_and_reopen();
                    Vec::new()
                }
            };
            for path in touched {
                self.compare(&path, true);
            }
            if step % 16 == 15 {
                self.compare_all();
            }
        }
        self.crash_and_reopen();
    }

    fn arm_fault(&mut self) {
        let n = self.rng.below(40);
        match self.rng.below(4) {
            0 => self.sim.fail_reads_after(n * 4),
            1 => self.sim.fail_writes_after(n),
            2 => self.sim.fail_one_write_after(n),
            _ => self.sim.fail_flush_after(n / 8),
        }
        self.faulty = true;
        FAULTS_ARMED.fetch_add(1, Ordering::Relaxed);
        self.note(format!("fault armed after {n}"));
    }

    fn create(&mut self) -> Vec<String> {
        let path = self.random_path();
        let handle = self.handle();
        let expected = if self.model.live.contains_key(&path) { Err(libc::EEXIST) } else { Ok(()) };
        let result = resolve(&handle, parent_of(&path))
            .and_then(|dir| handle.mknod(dir, name_of(&path).as_bytes(), libc::S_IFREG | 0o644, 0, CREDS))
            .map(|_| ());
        if self.outcome(&format!("create {path:?}"), result, expected) {
            let id = self.model.next_id;
            self.model.next_id += 1;
            self.model.live.insert(path.clone(), Node::File { id, data: Vec::new(), xattrs: BTreeMap::new() });
            self.model.applied();
        }
        vec![path]
    }

    fn write(&mut self) -> Vec<String> {
        let Some(path) = self.random_file() else { return Vec::new() };
        let offset = match self.rng.below(3) {
            0 => 0,
            1 => self.rng.below(FILE_BYTES_MAX / 2) / BLOCK_SIZE as u64 * BLOCK_SIZE as u64,
            _ => self.rng.below(FILE_BYTES_MAX / 2),
        };
        let len = (self.rng.below(3) * 30_000 + self.rng.below(30_000) + 1) as usize;
        let data = self.rng.bytes(len);
        let handle = self.handle();
        let result = resolve(&handle, &path).and_then(|ino| handle.write(ino, offset, &data)).map(|_| ());
        self.note(format!("write {path:?} {offset}+{len}: {result:?}"));
        let Some(Node::File { id, data: contents, .. }) = self.model.live.get_mut(&path) else { unreachable!() };
        let id = *id;
        self.model.dirty_since_sync.insert(id);
        match result {
            Ok(()) => {
                let end = offset as usize + len;
                if contents.len() < end {
                    contents.resize(end, 0);
                }
                contents[offset as usize..end].copy_from_slice(&data);
                self.model.applied();
            }
            Err(error) if self.faulty && is_fault(&error) => {
                self.model.unknown.insert(id);
            }
            Err(error) => self.fail(format!("write {path:?} at {offset}: {error}")),
        }
        vec![path]
    }

    fn truncate(&mut self) -> Vec<String> {
        let Some(path) = self.random_file() else { return Vec::new() };
        let size = self.rng.below(FILE_BYTES_MAX);
        let handle = self.handle();
        let result = resolve(&handle, &path).and_then(|ino| handle.truncate(ino, size));
        self.note(format!("truncate {path:?} {size}: {result:?}"));
        let Some(Node::File { id, data, .. }) = self.model.live.get_mut(&path) else { unreachable!() };
        let id = *id;
        self.model.dirty_since_sync.insert(id);
        match result {
            Ok(()) => {
                data.resize(size as usize, 0);
                self.model.applied();
            }
            Err(error) if self.faulty && is_fault(&error) => {
                self.model.unknown.insert(id);
            }
            Err(error) => self.fail(format!("truncate {path:?} to {size}: {error}")),
        }
        vec![path]
    }

    fn unlink(&mut self) -> Vec<String> {
        let path = self.random_path();
        let expected = match self.model.live.get(&path) {
            None => Err(libc::ENOENT),
            Some(Node::Dir { .. }) => Err(libc::EISDIR),
            Some(Node::File { .. }) => Ok(()),
        };
        let handle = self.handle();
        let result = resolve(&handle, parent_of(&path)).and_then(|dir| handle.unlink(dir, name_of(&path).as_bytes()));
        if self.outcome(&format!("unlink {path:?}"), result, expected) {
            self.model.live.remove(&path);
            self.model.applied();
        }
        vec![path]
    }

    fn rename(&mut self) -> Vec<String> {
        let Some(source) =
            self.rng.pick(&self.model.live.keys().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>()).cloned()
        else {
            return Vec::new();
        };
        let target = self.random_path();
        let Some(expected) = self.rename_expectation(&source, &target) else { return Vec::new() };
        let handle = self.handle();
        let result = resolve(&handle, parent_of(&source)).and_then(|from| {
            let to = resolve(&handle, parent_of(&target))?;
            handle.rename(from, name_of(&source).as_bytes(), to, name_of(&target).as_bytes(), RenameFlags::default())
        });
        if self.outcome(&format!("rename {source:?} to {target:?}"), result, expected) && source != target {
            let moved: Vec<(String, Node)> = self
                .model
                .live
                .iter()
                .filter(|(p, _)| **p == source || p.starts_with(&format!("{source}/")))
                .map(|(p, n)| (p.clone(), n.clone()))
                .collect();
            self.model.live.remove(&target);
            for (path, node) in moved {
                self.model.live.remove(&path);
                self.model.live.insert(format!("{target}{}", &path[source.len()..]), node);
            }
            self.model.applied();
        }
        vec![source, target]
    }

    /// The outcome POSIX gives a rename, or None for the cases the model leaves out (a directory
    /// moved so deep that the model's depth bound would break).
    fn rename_expectation(&self, source: &str, target: &str) -> Option<Result<(), i32>> {
        let live = &self.model.live;
        if target.starts_with(&format!("{source}/")) {
            return Some(Err(libc::EINVAL));
        }
        let subtree_depth =
            live.keys().filter(|p| p.starts_with(&format!("{source}/"))).map(|p| depth(p) - depth(source)).max();
        if depth(target) + subtree_depth.unwrap_or(0) > DEPTH_MAX + 1 {
            return None;
        }
        if source == target {
            return Some(Ok(()));
        }
        Some(match (&live[source], live.get(target)) {
            (_, None) => Ok(()),
            (Node::File { .. }, Some(Node::File { .. })) => Ok(()),
            (Node::File { .. }, Some(Node::Dir { .. })) => Err(libc::EISDIR),
            (Node::Dir { .. }, Some(Node::File { .. })) => Err(libc::ENOTDIR),
            (Node::Dir { .. }, Some(Node::Dir { .. })) if self.model.children(target).is_empty() => Ok(()),
            (Node::Dir { .. }, Some(Node::Dir { .. })) => Err(libc::ENOTEMPTY),
        })
    }

    fn mkdir(&mut self) -> Vec<String> {
        let path = self.random_path();
        if depth(&path) > DEPTH_MAX {
            return Vec::new();
        }
        let expected = if self.model.live.contains_key(&path) { Err(libc::EEXIST) } else { Ok(()) };
        let handle = self.handle();
        let result = resolve(&handle, parent_of(&path))
            .and_then(|dir| handle.mkdir(dir, name_of(&path).as_bytes(), 0o755, CREDS))
            .map(|_| ());
        if self.outcome(&format!("mkdir {path:?}"), result, expected) {
            self.model.live.insert(path.clone(), Node::Dir { xattrs: BTreeMap::new() });
            self.model.applied();
        }
        vec![path]
    }

    fn rmdir(&mut self) -> Vec<String> {
        let path = self.random_path();
        let expected = match self.model.live.get(&path) {
            None => Err(libc::ENOENT),
            Some(Node::File { .. }) => Err(libc::ENOTDIR),
            Some(Node::Dir { .. }) if !self.model.children(&path).is_empty() => Err(libc::ENOTEMPTY),
            Some(Node::Dir { .. }) => Ok(()),
        };
        let handle = self.handle();
        let result = resolve(&handle, parent_of(&path)).and_then(|dir| handle.rmdir(dir, name_of(&path).as_bytes()));
        if self.outcome(&format!("rmdir {path:?}"), result, expected) {
            self.model.live.remove(&path);
            self.model.applied();
        }
        vec![path]
    }

    fn setxattr(&mut self) -> Vec<String> {
        let keys: Vec<String> = self.model.live.keys().cloned().collect();
        let path = self.rng.pick(&keys).expect("the root").clone();
        let name = *self.rng.pick(&XATTR_NAMES).expect("names");
        let len = if self.rng.below(4) == 0 { self.rng.below(6000) } else { self.rng.below(64) } as usize;
        let value = self.rng.bytes(len);
        let handle = self.handle();
        let result =
            resolve(&handle, &path).and_then(|ino| handle.setxattr(ino, name.as_bytes(), &value, XattrMode::Any));
        if self.outcome(&format!("setxattr {path:?} {name}"), result, Ok(())) {
            self.model.live.get_mut(&path).expect("live").xattrs_mut().insert(name.to_owned(), value);
            self.model.applied();
        }
        vec![path]
    }

    fn removexattr(&mut self) -> Vec<String> {
        let keys: Vec<String> = self.model.live.keys().cloned().collect();
        let path = self.rng.pick(&keys).expect("the root").clone();
        let name = *self.rng.pick(&XATTR_NAMES).expect("names");
        let present = self.model.live[&path].xattrs().contains_key(name);
        let expected = if present { Ok(()) } else { Err(libc::ENODATA) };
        let handle = self.handle();
        let result = resolve(&handle, &path).and_then(|ino| handle.removexattr(ino, name.as_bytes()));
        if self.outcome(&format!("removexattr {path:?} {name}"), result, expected) {
            self.model.live.get_mut(&path).expect("live").xattrs_mut().remove(name);
            self.model.applied();
        }
        vec![path]
    }

    fn fsync(&mut self) -> Vec<String> {
        let result = self.handle().sync();
        self.note(format!("fsync: {result:?}"));
        match result {
            Ok(()) => self.model.synced(),
            Err(error) if self.faulty && is_fault(&error) => {}
            Err(error) => self.fail(format!("fsync: {error}")),
        }
        Vec::new()
    }

    /// Cuts the power, checks the crash image with fsck, reopens it without faults and checks it
    /// against the trees the model allows.
    fn crash_and_reopen(&mut self) {
        self.note("crash and reopen".to_owned());
        CRASHES.fetch_add(1, Ordering::Relaxed);
        let image = self.sim.crash_image(self.seed ^ self.step as u64);
        drop(self.engine.take());
        fsck_clean(&image, &format!("seed {} step {}: crash image", self.seed, self.step));
        self.sim = Arc::new(SimStorage::from_image(image));
        self.engine = Some(open(&self.sim));
        self.faulty = false;
        let found = self.observe_tree();
        let found_shape = shape(&found);
        let Some(index) = self.model.since_sync.iter().rposition(|tree| shape(tree) == found_shape) else {
            self.fail(format!(
                "after a crash the volume holds {found_shape:?}, no state since the last fsync ({} of them, the last {:?})",
                self.model.since_sync.len(),
                shape(self.model.since_sync.last().expect("at least the synced tree"))
            ));
        };
        let mut tree = self.model.since_sync[index].clone();
        for (path, node) in tree.iter_mut() {
            if let (Node::File { id, data, .. }, Some(Node::File { data: read, .. })) = (&mut *node, found.get(path)) {
                let exact = !self.model.dirty_since_sync.contains(id) && !self.model.unknown.contains(id);
                if let Some(at) = (0..data.len()).find(|&at| data[at] != read[at]).filter(|_| exact) {
                    self.fail(format!("after a crash byte {at} of {path:?} ({} bytes) differs", data.len()));
                }
                // From here on the model holds what the volume holds.
                *data = read.clone();
                self.model.unknown.remove(id);
            }
        }
        self.model.live = tree;
        self.model.synced();
    }

    fn observe_tree(&self) -> Tree {
        let handle = self.handle();
        let mut tree = Tree::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            let node = observe(&handle, &dir, true).expect("read after reopen").expect("listed");
            tree.insert(dir.clone(), node);
            let ino = resolve(&handle, &dir).expect("listed");
            let mut names = Vec::new();
            handle
                .readdir(ino, 0, false, |item| {
                    if item.name != b"." && item.name != b".." {
                        names.push((String::from_utf8_lossy(&item.name).into_owned(), item.dtype));
                    }
                    true
                })
                .expect("readdir after reopen");
            for (name, dtype) in names {
                let path = join(&dir, &name);
                if dtype == libc::DT_DIR {
                    dirs.push(path);
                } else {
                    let node = observe(&handle, &path, true).expect("read after reopen").expect("listed");
                    tree.insert(path, node);
                }
            }
        }
        tree
    }
}

/// What the cases exercised, printed at the end so that a run shows its faults did happen.
static FAULTS_ARMED: AtomicU64 = AtomicU64::new(0);
static REFUSED_BY_FAULT: AtomicU64 = AtomicU64::new(0);
static CRASHES: AtomicU64 = AtomicU64::new(0);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn run_case(seed: u64, steps: usize) {
    let sim = Arc::new(SimStorage::from_image(fresh_image()));
    let engine = open(&sim);
    let mut case = Case {
        seed,
        rng: Rng(seed),
        sim,
        engine: Some(engine),
        model: Model::new(),
        faulty: false,
        step: 0,
        trace: Vec::new(),
    };
    case.run(steps);
    case.sim.clear_faults();
    let engine = case.engine.take().expect("open");
    engine.close().expect("close after the last reopen");
    fsck_clean(&case.sim.image(), &format!("seed {seed}: after close"));
}

#[test]
fn engine_matches_the_model_under_faults_and_crashes() {
    let cases = env_u64("VEXFS_MODEL_CASES", 24);
    let first = env_u64("VEXFS_MODEL_SEED", 1);
    let steps = env_u64("VEXFS_MODEL_STEPS", 150) as usize;
    let started = std::time::Instant::now();
    for seed in first..first + cases {
        let outcome = std::panic::catch_unwind(|| run_case(seed, steps));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("engine model: {message}\nreplay with VEXFS_MODEL_SEED={seed} VEXFS_MODEL_CASES=1");
        }
    }
    eprintln!(
        "engine model: {cases} cases of {steps} steps from seed {first} in {:.1?}: {} crashes, {} faults armed, {} answers refused by a fault",
        started.elapsed(),
        CRASHES.load(Ordering::Relaxed),
        FAULTS_ARMED.load(Ordering::Relaxed),
        REFUSED_BY_FAULT.load(Ordering::Relaxed)
    );
}
