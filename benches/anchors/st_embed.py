"""The embedding anchor: sentence-transformers running all-MiniLM-L6-v2 with PyTorch on the CPU,
loaded from the same model directory as VexFS's builtin embedder.

    st_embed.py serve MODEL_DIR THREADS

Loads the model (no network: HF_HUB_OFFLINE), sets torch's intra-op threads to THREADS, encodes
a warm-up batch and prints one JSON line (versions, threads, max_seq_length). Then, for each JSON
line on stdin, {"chunks": FILE, "out": FILE.npy}, it reads FILE (JSON lines, one per document: the
list of that document's chunk texts), encodes every chunk in one `encode` call (batch size 32,
normalize_embeddings=True; sentence-transformers sorts the texts by length itself), timing only
that call, saves the vectors to OUT (float32, one row per chunk, in file order) and prints one
JSON line: documents per second and the counts. Exits at the end of stdin.
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

BATCH = 32


def serve(model_dir, threads):
    torch.set_num_threads(threads)
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(["warm-up: " + "word " * 200] * BATCH, batch_size=BATCH, show_progress_bar=False)
    print(json.dumps({
        "ready": True,
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "max_seq_length": model.max_seq_length,
    }), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        with open(request["chunks"], encoding="utf-8") as f:
            documents = [json.loads(row) for row in f if row.strip()]
        texts = [chunk for document in documents for chunk in document]
        start = time.perf_counter()
        vectors = model.encode(
            texts,
            batch_size=BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        seconds = time.perf_counter() - start
        np.save(request["out"], np.ascontiguousarray(vectors, dtype=np.float32))
        # Token counts before truncation, outside the timed call: how much truncation cut.
        lengths = [len(ids) for ids in model.tokenizer(texts, truncation=False)["input_ids"]]
        print(json.dumps({
            "docs_per_s": len(documents) / seconds,
            "seconds": seconds,
            "documents": len(documents),
            "chunks": len(texts),
            "tokens_mean": sum(min(n, model.max_seq_length) for n in lengths) / len(lengths),
            "truncated": sum(n > model.max_seq_length for n in lengths),
            "threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: st_embed.py serve MODEL_DIR THREADS")
