#!/usr/bin/env bash
# Builds VexFS and serves ./vexfs.img at /mnt/vexfs in the foreground (Ctrl-C unmounts).
#
#   scripts/run.sh [extra vexfsd options, e.g. --threads 2 --cache-size 512M]
#
# Environment: VEXFS_IMAGE (default ./vexfs.img), VEXFS_SIZE (default 8G, used only when the
# image is created), VEXFS_MOUNT (default /mnt/vexfs).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${VEXFS_IMAGE:-./vexfs.img}"
SIZE="${VEXFS_SIZE:-8G}"
MOUNT_DIR="${VEXFS_MOUNT:-/mnt/vexfs}"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    SUDO=(sudo)
fi

echo "run: cargo build --release"
cargo build --release

BIN=target/release
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    BIN="$CARGO_TARGET_DIR/release"
fi

if [ ! -e "$IMAGE" ]; then
    echo "run: vexfs mkfs $IMAGE --size $SIZE"
    if ! "$BIN/vexfs" mkfs "$IMAGE" --size "$SIZE"; then
        rm -f "$IMAGE"
        echo "run: vexfs mkfs failed; $IMAGE removed" >&2
        exit 1
    fi
else
    echo "run: using existing $IMAGE"
fi

if awk -v dir="$MOUNT_DIR" '$5 == dir { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "run: $MOUNT_DIR is already a mount point (a daemon still running, or one that died);" >&2
    echo "     stop that daemon, or unmount the dead mount with" >&2
    echo "     fusermount3 -u -z $MOUNT_DIR" >&2
    exit 1
fi
if [ ! -d "$MOUNT_DIR" ]; then
    echo "run: creating $MOUNT_DIR"
    "${SUDO[@]}" mkdir -p "$MOUNT_DIR"
fi

# vexfsd serves FUSE over io_uring (one queue per CPU) when the kernel allows it.
URING=/sys/module/fuse/parameters/enable_uring
if [ -e "$URING" ] && [ "$(cat "$URING")" != "Y" ]; then
    echo "run: enabling FUSE-over-io_uring ($URING)"
    echo Y | "${SUDO[@]}" tee "$URING" >/dev/null || echo "run: could not enable it; serving over /dev/fuse"
fi

echo "run: serving $IMAGE at $MOUNT_DIR (stop with Ctrl-C or: fusermount3 -u $MOUNT_DIR)"
exec "${SUDO[@]}" "$BIN/vexfsd" --device "$IMAGE" --mount "$MOUNT_DIR" "$@"
