#!/usr/bin/env bash
# The whole VexFS test suite: tool check, formatting, lints, release build, all tests, and a
# short run of every fuzz target.
#
#   scripts/test.sh
#
# The integration tests in tests/ mount real FUSE file systems: they need root and /dev/fuse,
# and print a SKIP line and pass otherwise. Environment knobs they read:
#   VEXFS_CRASH_ITERATIONS  crash-test iterations per variant (default 10; the long run uses 1000)
#   VEXFS_CRASH_SEED        replay a crash-test run with the seed it printed
#   VEXFS_BIN_DIR           take vexfs/vexfsd from this directory instead of target/release
#   VEXFS_KEEP_TEMP=1       keep the scratch directories under /var/tmp after the tests
#   VEXFS_FUZZ_SMOKE_SECONDS  seconds each fuzz target runs in the smoke (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
    echo
    echo "=== $* ($(date +%H:%M:%S))"
}

START=$SECONDS

step "tool check (scripts/setup.sh --check)"
if ! scripts/setup.sh --check; then
    echo "test: required tools are missing; run scripts/setup.sh first (as root or with sudo)" >&2
    exit 1
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --release"
cargo build --release

step "cargo test --workspace --release"
if [ "$(id -u)" -ne 0 ]; then
    echo "test: not root: the mount tests in tests/ will print SKIP and pass"
fi
# vexfsd serves FUSE over io_uring when the kernel allows it; the tests run the mounts that way
# (daemon/tests/fuse_hello.rs covers /dev/fuse too).
URING=/sys/module/fuse/parameters/enable_uring
if [ "$(id -u)" -eq 0 ] && [ -w "$URING" ]; then
    echo Y > "$URING"
    echo "test: FUSE-over-io_uring enabled ($URING)"
fi
cargo test --workspace --release

# Every fuzz target, briefly, from its checked-in corpus: the targets build, the corpus still
# passes, and the first minutes of fuzzing find nothing. Long runs: scripts/fuzz.sh.
step "fuzz smoke (scripts/fuzz.sh ${VEXFS_FUZZ_SMOKE_SECONDS:-10})"
scripts/fuzz.sh "${VEXFS_FUZZ_SMOKE_SECONDS:-10}"

echo
echo "test: all steps passed in $((SECONDS - START)) s"
