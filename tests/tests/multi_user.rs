//! Collections shared between users: every collection operation, through every door a local user
//! has (the `vexfs` CLI, the ioctls from C, query files, the insert stream, the parameter xattrs,
//! text search), checked against the permission table of `docs/COLLECTIONS.md` ("Permissions").
//!
//! Method: root makes collections with chosen owners, groups and modes; the unprivileged users
//! every Debian system has (`nobody`, 65534, and `daemon`, 1) then try each operation, with
//! `setpriv` setting their ids and supplementary groups exactly. Each refusal is checked for its
//! errno, and for leaving nothing changed or leaking nothing (root's view afterwards). The three
//! reproductions of the issue that made the service are here: an insert and a delete by another
//! user, a snippet of an unreadable document in a text search, and an embedder URL chosen by the
//! caller. Without root or `/dev/fuse` each test prints SKIP (fails under `CI=true`).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vexfs_tests::{
    args, c_program, fvecs_bytes, require_root_and_fuse, run, vexfs_ok, CmdOutput, Mount, MountOptions, TestVolume,
    User, MIB,
};

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A collection of `count` 4-d vectors made by root in `dir`, with `owner:group` and `mode`.
fn collection(dir: &Path, count: usize, owner: (u32, u32), mode: u32) {
    vexfs_ok(&args!["collection", "create", dir, "--dim", "4", "--metric", "l2"]);
    if count > 0 {
        let values: Vec<f32> = (0..count * 4).map(|i| (i / 4) as f32).collect();
        let file = dir.with_extension("fvecs");
        fs::write(&file, fvecs_bytes(4, &values)).expect("writing vectors");
        vexfs_ok(&args!["insert", dir, &file, "--sync"]);
    }
    chown(dir, Some(owner.0), Some(owner.1)).expect("chown");
    chmod(dir, mode);
}

/// The vector count root sees.
fn vectors(dir: &Path) -> u64 {
    let stats: serde_json::Value = serde_json::from_str(&vexfs_ok(&args!["stats", dir, "--json"])).expect("stats JSON");
    stats["vectors"].as_u64().expect("a vector count")
}

/// Runs `ioctl_as` (tests/c/ioctl_as.c): `op` on `dir` as `user`, the directory opened by root
/// first when `root_opens`. Returns what it printed ("ok", "errno EACCES", "open errno ...").
fn ioctl_as(user: &User, root_opens: bool, op: &str, dir: &Path) -> String {
    let mut gids = vec![user.gid.to_string()];
    gids.extend(user.groups.iter().map(u32::to_string));
    let mut cmd = Command::new(c_program("ioctl_as"));
    cmd.arg(user.uid.to_string()).arg(gids.join(",")).arg(if root_opens { "1" } else { "0" }).arg(op).arg(dir);
    let output = run(&mut cmd, Duration::from_secs(60)).expect("running ioctl_as");
    assert!(output.success(), "ioctl_as could not run:\n{output}");
    output.stdout.trim().to_string()
}

fn refused(output: &CmdOutput, needle: &str) {
    assert_eq!(output.code(), 1, "expected a refusal:\n{output}");
    assert!(output.stdout.is_empty(), "printed results on a refusal:\n{output}");
    assert!(output.stderr.contains(needle), "stderr lacks {needle:?}:\n{output}");
}

fn succeeded(output: &CmdOutput) -> String {
    assert!(output.success() && output.stderr.is_empty(), "expected success:\n{output}");
    output.stdout.clone()
}

#[test]
fn other_users_change_a_collection_only_as_its_mode_allows() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(256 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    chmod(mount.path(), 0o755);
    let (nobody, daemon) = (User::nobody(), User::daemon());
    let demo = mount.path().join("demo");
    collection(&demo, 1000, (0, 0), 0o755);
    let vectors_file = volume.dir().join("v.fvecs");
    fs::write(&vectors_file, fvecs_bytes(4, &[0.25; 40])).expect("writing vectors");
    chmod(&vectors_file, 0o644);

    // The reproduction: another user's delete and insert on root's 0755 collection are refused,
    // through the CLI and through the ioctls from C, and change nothing.
    refused(&nobody.vexfs(&args!["delete", &demo, "5", "6", "7", "--sync"]), "Permission denied");
    refused(&nobody.vexfs(&args!["insert", &demo, &vectors_file]), "Permission denied");
    refused(&nobody.vexfs(&args!["sync", &demo]), "Permission denied");
    for op in ["insert", "delete", "sync"] {
        assert_eq!(ioctl_as(&nobody, false, op, &demo), "errno EACCES", "{op} by nobody");
    }
    assert_eq!(ioctl_as(&nobody, false, "create", &demo), "errno EPERM", "create on another's directory");
    // The insert stream is the collection's to write: the kernel and the service both refuse.
    let stream = demo.join(".vexfs-insert");
    let script = format!("printf 'VXIB' > '{}'", stream.display());
    assert!(!nobody.sh(&script).success(), "nobody opened the insert stream for writing");
    assert_eq!(vectors(&demo), 1000, "a refused change changed the collection");

    // Reading is allowed by r: searches, stats, parameters.
    let found = succeeded(&nobody.vexfs(&args!["search", &demo, "--vector", "3,3,3,3", "-k", "1", "--json"]));
    assert!(found.contains("\"id\": 3,"), "{found}");
    succeeded(&nobody.vexfs(&args!["range", &demo, "--vector", "3,3,3,3", "--radius", "0.5"]));
    succeeded(&nobody.vexfs(&args!["stats", &demo]));
    for op in ["knn", "range", "stats"] {
        assert_eq!(ioctl_as(&nobody, false, op, &demo), "ok", "{op} by nobody");
    }
    let dim = nobody.sh(&format!("getfattr --absolute-names --only-values -n user.vexfs.dim '{}'", demo.display()));
    assert_eq!(succeeded(&dim), "4");

    // Receipts of the insert stream are read, so a writer without read permission cannot open
    // it read-write; removing a collection is rmdir's rule (write on the parent).
    let drop_box = mount.path().join("dropbox");
    collection(&drop_box, 0, (0, 0), 0o733);
    let script = format!("exec 3<>'{}'", drop_box.join(".vexfs-insert").display());
    assert!(!nobody.sh(&script).success(), "opened the insert stream read-write without read permission");
    let output = nobody.sh(&format!("rmdir '{}'", demo.display()));
    assert!(!output.success() && output.stderr.contains("Permission denied"), "{output}");
    assert_eq!(vectors(&demo), 1000);

    // A descriptor a privileged process opened grants nothing: on a 0700 collection, every
    // request of another user is refused by the service itself (the kernel checked no one).
    let private = mount.path().join("private");
    collection(&private, 10, (0, 0), 0o700);
    for op in ["knn", "range", "stats", "insert", "delete", "sync"] {
        assert_eq!(ioctl_as(&nobody, true, op, &private), "errno EACCES", "{op} through root's descriptor");
    }
    assert_eq!(ioctl_as(&User { uid: 0, gid: 0, groups: vec![] }, false, "insert", &private), "ok", "root");

    // Group members change a 0770 collection of their group: the supplementary groups count.
    let team = mount.path().join("team");
    collection(&team, 10, (0, 4242), 0o770);
    assert_eq!(ioctl_as(&daemon.clone().with_groups(&[4242]), false, "insert", &team), "ok", "a member");
    succeeded(&daemon.clone().with_groups(&[7, 4242]).vexfs(&args!["insert", &team, &vectors_file]));
    assert_eq!(ioctl_as(&daemon, true, "insert", &team), "errno EACCES", "not a member");
    assert_eq!(vectors(&team), 21);

    // An owner's collection is the owner's: nobody makes and fills its own, daemon cannot.
    let mine = mount.path().join("mine");
    fs::create_dir(&mine).expect("mkdir");
    chown(&mine, Some(nobody.uid), Some(nobody.gid)).expect("chown");
    succeeded(&nobody.vexfs(&args!["collection", "create", &mine, "--dim", "4", "--metric", "l2"]));
    succeeded(&nobody.vexfs(&args!["insert", &mine, &vectors_file, "--sync"]));
    refused(&daemon.vexfs(&args!["insert", &mine, &vectors_file]), "Permission denied");
    assert_eq!(vectors(&mine), 10);

    // Making a directory a collection is its owner's right, even in a directory open to all.
    let shared = mount.path().join("shared");
    fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o777);
    refused(&nobody.vexfs(&args!["collection", "create", &shared, "--dim", "4", "--metric", "l2"]), "not permitted");
    vexfs_ok(&args!["collection", "create", &shared, "--dim", "4", "--metric", "l2"]);
    mount.unmount().expect("unmounting");
}

/// Documents of a text collection: a secret only root may read, and public ones on other
/// subjects, enough to fill k.
const PUBLIC: [(&str, &str); 4] = [
    ("bread.md", "Baking bread: mix flour, water and salt, knead, let it rise, then bake it in a hot oven."),
    ("bike.md", "Fixing a flat bicycle tire: remove the wheel, patch the inner tube and pump it up again."),
    ("garden.md", "Growing tomatoes: plant seedlings in a sunny spot after the frost and water them deeply."),
    ("vault.md", "The office vault is opened by facilities staff; ask them at the front desk for access."),
];
const SECRET: &str = "The vault password is hunter2-correct-horse; never share the vault passphrase.";

#[test]
fn text_search_returns_only_documents_the_caller_may_read() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(256 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    chmod(mount.path(), 0o755);
    let notes = mount.path().join("notes");
    vexfs_ok(&args!["collection", "create", &notes, "--embed"]);
    chmod(&notes, 0o755);
    for (name, text) in PUBLIC {
        fs::write(notes.join(name), text).expect("writing a document");
        chmod(&notes.join(name), 0o644);
    }
    let secret = notes.join("secret.txt");
    fs::write(&secret, SECRET).expect("writing the secret");
    chmod(&secret, 0o600);
    vexfs_ok(&args!["sync", &notes]);
    let question = "what is the vault password";
    let root_view = vexfs_ok(&args!["search", &notes, question, "-k", "1", "--json"]);
    assert!(root_view.contains("secret.txt") && root_view.contains("hunter2"), "root reads it: {root_view}");

    // The reproduction: nobody cannot cat it, and the search neither names it nor quotes it, and
    // still answers with the full k from the documents it may read.
    let nobody = User::nobody();
    assert!(!nobody.sh(&format!("cat '{}'", secret.display())).success(), "nobody read the secret file");
    let found = succeeded(&nobody.vexfs(&args!["search", &notes, question, "-k", "4", "--json"]));
    assert!(!found.contains("secret.txt") && !found.contains("hunter2"), "leaked: {found}");
    let value: serde_json::Value = serde_json::from_str(&found).expect("JSON");
    assert_eq!(value["results"].as_array().map(Vec::len), Some(4), "k = 4 kept: {found}");
    let people = succeeded(&nobody.vexfs(&args!["search", &notes, question, "-k", "2"]));
    assert!(!people.contains("hunter2"), "{people}");
    // The same through a query file and through the ioctl from C.
    let query = notes.join(".vexfs-query/q");
    let script = format!("echo '{{\"text\": \"{question}\", \"k\": 5}}' > '{q}' && cat '{q}'", q = query.display());
    let answers = succeeded(&nobody.sh(&script));
    assert!(!answers.contains("secret.txt") && !answers.contains("hunter2"), "{answers}");
    assert_eq!(answers.matches("\"path\"").count(), 4, "{answers}");
    assert_eq!(ioctl_as(&nobody, false, "textsearch", &notes), "ok");

    // Modes take effect at once: readable, it is found; private again, it is gone.
    chmod(&secret, 0o644);
    let found = succeeded(&nobody.vexfs(&args!["search", &notes, question, "-k", "1", "--json"]));
    assert!(found.contains("secret.txt"), "{found}");
    chmod(&secret, 0o600);
    let found = succeeded(&nobody.vexfs(&args!["search", &notes, question, "-k", "5", "--json"]));
    assert!(!found.contains("secret.txt"), "{found}");
    // Without search permission on the directory no document can be opened: none is returned.
    chmod(&notes, 0o754);
    let found = succeeded(&nobody.vexfs(&args!["search", &notes, question, "-k", "3", "--json"]));
    assert!(found.contains("\"results\": []"), "{found}");
    mount.unmount().expect("unmounting");
}

#[test]
fn query_files_are_private_to_their_maker() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(128 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    chmod(mount.path(), 0o755);
    let demo = mount.path().join("demo");
    collection(&demo, 100, (0, 0), 0o755);
    let queries = demo.join(".vexfs-query");
    let (nobody, daemon) = (User::nobody(), User::daemon());
    let write_and_read = |user: &User, name: &str, value: f32| {
        let q = queries.join(name);
        let script = format!(
            "echo '{{\"vector\": [{value}, {value}, {value}, {value}], \"k\": 1}}' > '{}' && cat '{}'",
            q.display(),
            q.display()
        );
        succeeded(&user.sh(&script))
    };
    let mine = write_and_read(&nobody, "q", 7.0);
    assert!(mine.contains("\"id\": 7,"), "{mine}");

    // Another user sees no file of nobody's, and its own "q" is its own.
    let listing = succeeded(&daemon.sh(&format!("ls -a '{}'", queries.display())));
    assert!(!listing.lines().any(|l| l == "q"), "daemon lists nobody's query file: {listing}");
    assert!(!daemon.sh(&format!("cat '{}/q'", queries.display())).success(), "daemon read nobody's file");
    let theirs = write_and_read(&daemon, "q", 42.0);
    assert!(theirs.contains("\"id\": 42,"), "{theirs}");
    let again = succeeded(&nobody.sh(&format!("cat '{}/q'", queries.display())));
    assert_eq!(again, mine, "another user's writes replaced nobody's query file");
    assert!(!daemon.sh(&format!("rm '{}/q' && cat '{}/q'", queries.display(), queries.display())).success());
    assert_eq!(succeeded(&nobody.sh(&format!("cat '{}/q'", queries.display()))), mine, "rm removed only daemon's");
    let attrs = succeeded(&nobody.sh(&format!("stat -c '%a %u' '{}/q'", queries.display())));
    assert_eq!(attrs.trim(), "600 65534");

    // Making a query file is reading the collection: refused without read permission on it.
    let hidden = mount.path().join("hidden");
    collection(&hidden, 10, (0, 0), 0o711);
    let script = format!("echo '{{\"vector\": [1, 1, 1, 1]}}' > '{}/.vexfs-query/q'", hidden.display());
    let output = nobody.sh(&script);
    assert!(!output.success() && output.stderr.contains("Permission denied"), "{output}");
    // Nor are its parameters readable, or even listed.
    let output = nobody.sh(&format!("getfattr --absolute-names -n user.vexfs.dim '{}'", hidden.display()));
    assert!(!output.success() && output.stderr.contains("Permission denied"), "{output}");
    let listed = nobody.sh(&format!("getfattr --absolute-names -m - '{}'", hidden.display()));
    assert!(listed.success() && !listed.stdout.contains("user.vexfs."), "{listed}");
    let listed = succeeded(&nobody.sh(&format!("getfattr --absolute-names -m - '{}'", demo.display())));
    assert!(listed.contains("user.vexfs.dim"), "{listed}");
    mount.unmount().expect("unmounting");
}

#[test]
fn embedders_are_the_administrators_and_requests_only_name_them() {
    if !require_root_and_fuse() {
        return;
    }
    // A port where a caller would like the daemon to connect.
    let bait = TcpListener::bind("127.0.0.1:0").expect("binding a listener");
    bait.set_nonblocking(true).expect("non-blocking");
    let port = bait.local_addr().expect("address").port();
    let volume = TestVolume::create(64 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    chmod(mount.path(), 0o777);
    let nobody = User::nobody();
    let ss = mount.path().join("ss");
    fs::create_dir(&ss).expect("mkdir");
    chown(&ss, Some(nobody.uid), Some(nobody.gid)).expect("chown");

    // The reproduction: a spec instead of a name is refused, and nothing connects to the port.
    let spec = format!("ollama:http://127.0.0.1:{port}/admin?x=:m");
    refused(&nobody.vexfs(&args!["collection", "create", &ss, "--embed", "--embedder", &spec]), "refused");
    refused(&nobody.vexfs(&args!["collection", "create", &ss, "--embed", "--embedder", "evil"]), "refused");
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        assert!(bait.accept().is_err(), "the daemon connected to a port a request named");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mount.log().contains("is not defined by vexfsd"), "the log names the refusal:\n{}", mount.log());
    // A defined name works for the owner.
    succeeded(&nobody.vexfs(&args!["collection", "create", &ss, "--embed", "--embedder", "all-minilm-l6-v2"]));
    mount.unmount().expect("unmounting");
}
