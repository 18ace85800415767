#!/usr/bin/env bash
# Tools only the benchmarks need (kept out of scripts/setup.sh so CI stays fast): fio, and a
# Python virtual environment with numpy and faiss-cpu (the exact-search anchor).
#
#   benches/setup.sh            # as root: apt packages; the venv goes to $VEXFS_BENCH_VENV
#
# VEXFS_BENCH_VENV defaults to /var/tmp/vexfs-bench/venv; vexfs-bench finds it there.
set -euo pipefail
VENV=${VEXFS_BENCH_VENV:-/var/tmp/vexfs-bench/venv}
if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -q --no-install-recommends fio python3-venv >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check numpy faiss-cpu
"$VENV/bin/python" -c 'import faiss, numpy; print("bench setup: faiss", faiss.__version__, "numpy", numpy.__version__)'
