"""Embedding encoders on CPU: today's torch encoder against ONNX Runtime (float32 and int8 dynamic
quantisation of the same model), 1 and 2 threads, batches grouped by length or not; chunks/s and
semantic hit@3 on held-out lines (the retrieval bench's quality cases, exact cosine search).

    .venv/bin/python bench/embed_bench.py [--repo PATH] [--chunks 384] [--cases 100] [--json out.json]

The variants are built here (torch's exporter, a float32 and an int8 graph in a temporary folder), to
compare what the product does not ship; the product's own encoders are compared through the index by
`bench/retrieval_bench.py --encoders torch,onnx-int8`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def corpus(repo: Path, n_cases: int):
    """(rows, quality cases) from a repository: syntax chunks and the retrieval bench's held-out lines."""
    from bench.retrieval_bench import held_out_cases
    from codetailor.config import RetrievalConfig
    from retrieval.embed import embedding_text
    from retrieval.selection import Selection, file_chunks, select_files

    cfg = RetrievalConfig()
    files = select_files(repo, Selection(), cfg).files
    rows = [(c.path, embedding_text(c.path, c.symbol, c.text), c.text)
            for sf in files for c in file_chunks(sf, Selection(), cfg)]
    return rows, held_out_cases(((sf.path, sf.text) for sf in files if sf.path.endswith(".py")), n_cases)


def hit_at_3(encode, rows, cases) -> float:
    from retrieval.tokens import identifiers

    vecs = encode([t for _, t, _ in rows])
    qv = encode([w for _, w, _ in cases])
    hits = 0
    for (path, _, targets), q in zip(cases, qv):
        scores = vecs @ q
        order = [i for i in np.argsort(-scores) if rows[i][0] != path][:3]
        hits += any(targets & identifiers(rows[i][2]) for i in order)
    return round(hits / len(cases), 3)


class TorchEncoder:
    def __init__(self, threads: int):
        from retrieval.embed import load_model

        self.model, self.threads = load_model("all-MiniLM-L6-v2"), threads

    def __call__(self, texts):
        import torch

        torch.set_num_threads(self.threads)
        return self.model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


class OrtEncoder:
    def __init__(self, path: Path, threads: int, grouped: bool, tokenizer, max_len: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.tok, self.grouped, self.max_len = tokenizer, grouped, max_len

    def __call__(self, texts):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if self.grouped else list(range(len(texts)))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for s in range(0, len(order), 32):
            idx = order[s:s + 32]
            enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_len,
                           return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self.sess.run(None, feeds)[0]
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out[idx] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def export(work: Path) -> tuple[Path, Path, object, int]:
    """The float32 graph (the product's exporter) and its int8 quantisation, both kept here."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from retrieval.embed import load_model
    from retrieval.onnx_encoder import export_float32

    st = load_model("all-MiniLM-L6-v2")
    fp32 = work / "minilm.onnx"
    export_float32(st, fp32)
    int8 = work / "minilm-int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8, st.tokenizer, st.max_seq_length


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(Path(sys.prefix) / "lib/python3.11/site-packages/pathspec"))
    ap.add_argument("--chunks", type=int, default=384, help="chunks timed per variant")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--json")
    a = ap.parse_args()
    rows, cases = corpus(Path(a.repo), a.cases)
    texts = [t for _, t, _ in rows]
    timed = (texts * (a.chunks // len(texts) + 1))[:a.chunks]
    random.Random(1).shuffle(timed)
    work = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    fp32, int8, tok, max_len = export(work)
    variants = {}
    for threads in (1, 2):
        variants[f"torch t{threads}"] = TorchEncoder(threads)
        variants[f"onnx-fp32 t{threads}"] = OrtEncoder(fp32, threads, True, tok, max_len)
        variants[f"onnx-int8 t{threads}"] = OrtEncoder(int8, threads, True, tok, max_len)
    variants["onnx-fp32 t1 ungrouped"] = OrtEncoder(fp32, 1, False, tok, max_len)
    reference = variants["torch t1"](texts[:64])
    out = {"repo": a.repo, "chunks_in_repo": len(rows), "timed_chunks": len(timed), "cases": len(cases),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), "variants": {}}
    for name, enc in variants.items():
        enc(timed[:32])   # warm
        t0 = time.perf_counter()
        enc(timed)
        rate = len(timed) / (time.perf_counter() - t0)
        cos = float(np.mean(np.sum(enc(texts[:64]) * reference, axis=1)))
        out["variants"][name] = {"chunks_per_s": round(rate, 2), "hit_at_3": hit_at_3(enc, rows, cases),
                                 "mean_cosine_to_torch": round(cos, 4)}
        print(name, out["variants"][name], file=sys.stderr, flush=True)
    out["load_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
