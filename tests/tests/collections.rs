//! Vector collections through a real mount: the C ioctl program (`tests/c/ioctl_test.c`, built
//! against `client/include/vexfs.h` with the system C compiler), the read-only parameter xattrs,
//! persistence across remount and across `kill -9` after a sync, and fsck of a volume holding
//! collections. Without root or `/dev/fuse` each test prints SKIP.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use vexfs_tests::{
    assert_fsck_clean, expect_errno, require_root_and_fuse, run, sys, workspace_root, Mount, MountOptions, ScratchDir,
    TestVolume, MIB,
};

/// The C program, compiled once per test run.
fn ioctl_program() -> &'static Path {
    static PROGRAM: OnceLock<(ScratchDir, PathBuf)> = OnceLock::new();
    let (_, path) = PROGRAM.get_or_init(|| {
        let dir = ScratchDir::new("vexfs-ioctl-c-").expect("scratch directory");
        let root = workspace_root();
        let out = dir.path().join("ioctl_test");
        let output = run(
            Command::new("cc")
                .args(["-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
                .arg(root.join("client/include"))
                .arg(root.join("tests/c/ioctl_test.c"))
                .arg("-o")
                .arg(&out)
                .arg("-lm"),
            Duration::from_secs(60),
        )
        .expect("run cc");
        assert!(output.success(), "compiling tests/c/ioctl_test.c failed:\n{output}");
        (dir, out)
    });
    path
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
