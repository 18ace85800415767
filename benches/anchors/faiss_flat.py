"""The exact-search anchor: FAISS IndexFlatL2 / IndexFlatIP on the same vectors as VexFS.

    faiss_flat.py prepare SRC_DIR OUT_DIR    float16 .npy data set -> float32 base.npy, queries.npy
    faiss_flat.py knn OUT_DIR l2|ip K        one timed search of every query; prints one JSON line

The search is timed alone (loading and adding are not), with FAISS's default threading (all CPUs).
The ids found are written to OUT_DIR/faiss_<metric>_ids.u64 (little-endian uint64, row-major), so
the caller can compare answers.
"""
import json
import os
import sys
import time

import numpy as np


def prepare(src, out):
    os.makedirs(out, exist_ok=True)
    for name in ("base", "queries"):
        target = os.path.join(out, f"{name}.npy")
        if not os.path.exists(target):
            data = np.load(os.path.join(src, f"{name}.f16.npy")).astype(np.float32)
            np.save(target, np.ascontiguousarray(data))
    print(json.dumps({"prepared": out}))


def knn(out, metric, k):
    import faiss

    base = np.load(os.path.join(out, "base.npy"))
    queries = np.load(os.path.join(out, "queries.npy"))
    index = faiss.IndexFlatL2(base.shape[1]) if metric == "l2" else faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    index.search(queries[:8], k)  # warm-up
    start = time.perf_counter()
    _, ids = index.search(queries, k)
    seconds = time.perf_counter() - start
    ids.astype("<u8").tofile(os.path.join(out, f"faiss_{metric}_ids.u64"))
    print(json.dumps({
        "qps": len(queries) / seconds,
        "seconds": seconds,
        "threads": faiss.omp_get_max_threads(),
        "faiss": faiss.__version__,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "knn":
        knn(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
