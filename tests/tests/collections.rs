//! Vector collections through a real mount: the C ioctl program (`tests/c/ioctl_test.c`, built
//! against `client/include/vexfs.h` with the system C compiler), the read-only parameter xattrs,
//! persistence across remount and across `kill -9` after a sync, and fsck of a volume holding
//! collections. Without root or `/dev/fuse` each test prints SKIP.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vexfs_tests::{
    assert_fsck_clean, c_program, expect_errno, fsck_with, require_root_and_fuse, run, sys, Mount, MountOptions,
    TestVolume, MIB,
};

/// The C program, compiled once per test run.
fn ioctl_program() -> PathBuf {
    c_program("ioctl_test")
}

fn run_c(args: &[&Path], mode: &str) {
    let mut cmd = Command::new(ioctl_program());
    cmd.arg(mode).args(args);
    let output = run(&mut cmd, Duration::from_secs(60)).expect("run ioctl_test");
    assert!(output.success() && output.stdout.contains("ioctl_test: ok"), "ioctl_test {mode} failed:\n{output}");
}

fn volume() -> TestVolume {
    TestVolume::create(256 * MIB).expect("creating a test volume with vexfs mkfs")
}

#[test]
fn c_program_drives_the_ioctls_and_results_survive_remount() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = volume();
    let mount = Mount::start(&volume, &MountOptions::default()).expect("starting vexfsd");
    let coll = mount.path().join("sift");
    let plain = mount.path().join("plain");
    fs::create_dir(&coll).unwrap();
    fs::create_dir(&plain).unwrap();
    run_c(&[&coll, &plain], "populate");

    // Parameters are read-only xattrs.
    assert_eq!(sys::getxattr(&coll, "user.vexfs.dim").unwrap(), b"8");
    assert_eq!(sys::getxattr(&coll, "user.vexfs.metric").unwrap(), b"l2");
    assert_eq!(sys::getxattr(&coll, "user.vexfs.elem").unwrap(), b"float32");
    expect_errno(sys::setxattr(&coll, "user.vexfs.dim", b"9", 0), libc::EPERM, "setxattr of a parameter");
    expect_errno(sys::getxattr(&plain, "user.vexfs.dim"), libc::ENODATA, "parameter xattr of a plain directory");
    // An ordinary xattr on a collection still works.
    sys::setxattr(&coll, "user.note", b"hello", 0).unwrap();

    let mount = mount.remount().expect("remount");
    run_c(&[&coll], "verify");
    assert_eq!(sys::getxattr(&coll, "user.note").unwrap(), b"hello");
    mount.unmount().expect("clean unmount");
    assert_fsck_clean(&volume, "with a collection");
    // fsck counts what the shard logs hold: 150 vectors inserted (100 + 50), one delete.
    let (code, json) = fsck_with(&volume, &["--json"]).expect("vexfs fsck --json");
    let report: serde_json::Value = serde_json::from_str(json.trim()).expect("fsck JSON");
    assert_eq!(code, 0, "{json}");
    assert_eq!(report["collections"], 1, "{json}");
    assert_eq!(report["log_vectors"], 150, "{json}");
    assert_eq!(report["log_deletes"], 1, "{json}");
}

#[test]
fn synced_vectors_survive_kill_9() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = volume();
    let mount = Mount::start(&volume, &MountOptions::default()).expect("starting vexfsd");
    let coll = mount.path().join("c");
    let plain = mount.path().join("p");
    fs::create_dir(&coll).unwrap();
    fs::create_dir(&plain).unwrap();
    // populate ends with VEXFS_IOC_SYNC: everything it did is acknowledged as durable.
    run_c(&[&coll, &plain], "populate");
    mount.kill9().expect("kill -9 vexfsd");
    assert_fsck_clean(&volume, "after kill -9");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("restarting vexfsd");
    run_c(&[&coll], "verify");
    mount.unmount().expect("clean unmount");
}

#[test]
fn rmdir_removes_a_collection_and_frees_its_space() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = volume();
    let mount = Mount::start(&volume, &MountOptions::default()).expect("starting vexfsd");
    let coll = mount.path().join("gone");
    let plain = mount.path().join("plain");
    fs::create_dir(&coll).unwrap();
    fs::create_dir(&plain).unwrap();
    run_c(&[&coll, &plain], "populate");
    fs::remove_dir(&coll).expect("rmdir of a collection");
    fs::create_dir(&coll).unwrap();
    expect_errno(sys::getxattr(&coll, "user.vexfs.dim"), libc::ENODATA, "a new directory under the old name");
    mount.unmount().expect("clean unmount");
    assert_fsck_clean(&volume, "after removing a collection");
}

/// One `.vexfs-insert` batch: header, optional ids, values.
fn batch(dim: u32, ids: Option<&[u64]>, values: &[f32]) -> Vec<u8> {
    let count = (values.len() / dim as usize) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"VXIB");
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&u16::from(ids.is_some()).to_le_bytes());
    out.extend_from_slice(&dim.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&[0u8; 16]);
    for id in ids.unwrap_or(&[]) {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[test]
fn large_batches_stream_through_the_insert_file_and_query_files_answer_in_json() {
    if !require_root_and_fuse() {
        return;
    }
    use std::io::Write;
    let volume = volume();
    let mount = Mount::start(&volume, &MountOptions::default()).expect("starting vexfsd");
    let coll = mount.path().join("big");
    let plain = mount.path().join("plain");
    fs::create_dir(&coll).unwrap();
    fs::create_dir(&plain).unwrap();
    // The C program makes it a collection of dimension 8 with ids 0..149 (10 deleted).
    run_c(&[&coll, &plain], "populate");

    // 20,000 vectors in one batch (640 KB, far over an ioctl), written in odd-sized pieces.
    let ids: Vec<u64> = (10_000..30_000).collect();
    let values: Vec<f32> = ids.iter().flat_map(|&id| [id as f32; 8]).collect();
    let bytes = batch(8, Some(&ids), &values);
    let mut stream = fs::OpenOptions::new().write(true).open(coll.join(".vexfs-insert")).expect("open .vexfs-insert");
    for piece in bytes.chunks(77_777) {
        stream.write_all(piece).unwrap();
    }
    stream.sync_all().expect("fsync of the stream");
    // A bad batch (wrong dimension) is refused and leaves the stream unusable; nothing stored.
    let bad = batch(9, None, &[1.0; 9]);
    expect_errno(stream.write_all(&bad), libc::EINVAL, "a batch of the wrong dimension");
    drop(stream);
    // Opened read-write, the stream answers each batch with a receipt, read from offset 0 of
    // the file (the file position is past what was written): the ids the daemon assigned.
    let rw = fs::OpenOptions::new().read(true).write(true).open(coll.join(".vexfs-insert")).expect("open read-write");
    (&rw).write_all(&batch(8, None, &[7.0; 24])).unwrap();
    (&rw).write_all(&batch(8, Some(&[40_000, 40_001]), &[8.0; 16])).unwrap();
    let mut receipts = vec![0u8; 4096];
    let n = std::os::unix::fs::FileExt::read_at(&rw, &mut receipts, 0).expect("read the receipts");
    assert_eq!(
        String::from_utf8_lossy(&receipts[..n]),
        "{\"batch\": 0, \"count\": 3, \"assigned_from\": 30000}\n{\"batch\": 1, \"count\": 2, \"assigned_from\": null}\n"
    );
    drop(rw);
    // An incomplete batch fails fsync.
    let mut stream = fs::OpenOptions::new().write(true).open(coll.join(".vexfs-insert")).unwrap();
    stream.write_all(&batch(8, None, &[1.0; 8])[..20]).unwrap();
    expect_errno(stream.sync_all(), libc::EINVAL, "fsync with half a batch");
    drop(stream);

    // Query files: write JSON lines, read JSON lines back.
    let queries = coll.join(".vexfs-query");
    let q = queries.join("q1");
    fs::write(
        &q,
        "{\"vector\": [12345, 12345, 12345, 12345, 12345, 12345, 12345, 12345.5], \"k\": 2}\n{\"vector\": [1, 2]}\n",
    )
    .expect("write a query file");
    let answer = fs::read_to_string(&q).expect("read the answers");
    let lines: Vec<serde_json::Value> = answer.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 2, "{answer}");
    assert_eq!(lines[0]["query"], 0);
    assert_eq!(lines[0]["results"][0]["id"], 12345, "{answer}");
    assert!((lines[0]["results"][0]["distance"].as_f64().unwrap() - 0.5).abs() < 1e-4, "{answer}");
    assert_eq!(lines[0]["results"].as_array().unwrap().len(), 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("dimension 8"), "{answer}");
    let listed: Vec<String> =
        fs::read_dir(&queries).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(listed, vec!["q1".to_owned()]);

    // The same with shell tools only.
    let script = format!(
        "echo '{{\"vector\": [29999,29999,29999,29999,29999,29999,29999,29999], \"radius\": 3.0}}' > {q2} && cat {q2}",
        q2 = queries.join("q2").display()
    );
    let output = run(Command::new("sh").arg("-c").arg(&script), Duration::from_secs(30)).unwrap();
    assert!(output.success(), "{output}");
    let line: serde_json::Value = serde_json::from_str(output.stdout.trim()).expect("one JSON line");
    let ids: Vec<u64> = line["results"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![29999, 29998], "{output}");
    fs::remove_file(queries.join("q2")).unwrap();
    expect_errno(fs::remove_file(coll.join(".vexfs-insert")), libc::EPERM, "unlink of a special file");

    // Everything the stream's fsync acknowledged survives kill -9.
    mount.kill9().expect("kill -9");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("restart");
    fs::write(&q, "{\"vector\": [20000, 20000, 20000, 20000, 20000, 20000, 20000, 20000], \"k\": 1}\n").unwrap();
    let answer = fs::read_to_string(&q).unwrap();
    assert!(answer.contains("\"id\": 20000"), "{answer}");
    mount.unmount().expect("clean unmount");
    assert_fsck_clean(&volume, "after streamed inserts");
}
