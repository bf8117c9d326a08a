"""Number formats on this CPU: a linear layer's GFLOP/s and embedding chunks/s, float32 vs
bfloat16, as idle as the machine is and with another process spinning on one core.

    .venv/bin/python bench/cpu_bench.py [--threads 1,2] [--busy 0,1] [--chunks 128] [--json out.json]

The linear layer is 512 tokens x 896 -> 4864 (a Qwen2.5-0.5B MLP projection): where the
CPU lacks native bf16 (no AVX-512 BF16 / AMX) oneDNN refuses the bf16 matmul and torch's
fallback is several times slower than float32, which is what codetailor/hardware.py
decides on. Embedding runs retrieval's model on real code chunks (20-line windows of
the Python standard library), batch 32, with the model cast to each dtype.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import apply_wait_policy, busy_core, load, record  # noqa: E402

DTYPES = ("float32", "bfloat16")


def linear_gflops(dtype, seconds: float = 3.0) -> float:
    import torch

    x = torch.randn(512, 896, dtype=dtype)
    w = torch.randn(4864, 896, dtype=dtype)
    torch.nn.functional.linear(x, w)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        torch.nn.functional.linear(x, w)
        n += 1
    return 2 * 512 * 896 * 4864 * n / (time.perf_counter() - t) / 1e9


def stdlib_chunks(n: int) -> list[str]:
    out: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for i in range(0, len(lines) - 20, 20):
            out.append(f"{path.name}\n" + "\n".join(lines[i:i + 20]))
            if len(out) == n:
                return out
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--busy", default="0,1")
    ap.add_argument("--chunks", type=int, default=128)
    ap.add_argument("--wait-policy", choices=["passive", "active"])
    ap.add_argument("--skip-embedding", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    apply_wait_policy(args.wait_policy)
    import torch

    from codetailor.config import load_settings
    from codetailor.hardware import torch_dtype

    result = {**record(wait_policy=args.wait_policy or "default"), "linear": [], "embedding": []}
    busy_list = [int(b) for b in args.busy.split(",")]
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for busy in busy_list:
            for name in DTYPES:
                before = load()
                with busy_core(bool(busy)):
                    g = linear_gflops(torch_dtype(name))
                row = {"dtype": name, "threads": threads, "busy_core": bool(busy), "gflops": round(g, 1),
                       "load_before": before}
                result["linear"].append(row)
                print(json.dumps(row), flush=True)
    if not args.skip_embedding:
        from retrieval.embed import load_model

        texts = stdlib_chunks(args.chunks)
        model = load_model(load_settings().retrieval.embedding_model)
        torch.set_num_threads(1)   # retrieval.embed_threads' default
        for name in DTYPES:
            model = model.to(torch_dtype(name))
            model.encode(texts[:32], batch_size=32)   # warm-up
            for busy in busy_list:
                before = load()
                with busy_core(bool(busy)):
                    t = time.perf_counter()
                    model.encode(texts, batch_size=32, normalize_embeddings=True)
                    dt = time.perf_counter() - t
                row = {"dtype": name, "threads": 1, "busy_core": bool(busy), "chunks": len(texts),
                       "chunks_per_s": round(len(texts) / dt, 1), "load_before": before}
                result["embedding"].append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
