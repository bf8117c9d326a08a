"""Training throughput on this machine: tokens/s for the SmolLM2 base, the epoch time of a
~1 MB real repository (plus replay) extrapolated from it, and the adapter's size.

    .venv/bin/python bench/train_bench.py [--repo DIR] [--seconds 90] [--threads 1,2] \
        [--dtype auto,float32,bfloat16] [--busy 0,1] [--wait-policy passive|active] [--json out.json]

The repo defaults to the `rich` package in the project's .venv (pure Python, ~1.2 MB
of .py files; not written here). Each setting trains for --seconds through the real
loop (examples built by the shared prompt format, LoRA r16 on all Llama linear
layers) and reports processed tokens/s; one epoch's time is the epoch's token count
divided by that rate. --dtype sets the frozen weights and autocast together ("auto":
codetailor/hardware.py's choice); --busy 1 runs with another process spinning on one
core; --wait-policy sets OMP_WAIT_POLICY before torch loads. The machine is shared:
`uptime` load is recorded with every number.

    python bench/train_bench.py --device cuda [--models smollm2-135m-instruct,...] [--seconds 30] \
        [--seq-len 1024] [--rows 8] [--json out.json]

On a CUDA GPU: each catalog model built from its shape with random weights
(bench/model_shapes.py; no weights travel), LoRA r16 on all linear layers, bf16,
trained through the product's batched loop (training.loop.run_loop with
`batch_tokens` = rows x seq_len, i.e. 8 x 1,024 packed tokens per step) on random
token windows; it reports tokens/s against half the HF + PEFT anchor measured on an
H200, and checks on the GPU that the batched loss equals the per-sequence loss.
This mode imports only torch, transformers, peft and the loop's own modules (no
pydantic), so it runs on a machine with just those.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import apply_wait_policy, busy_core, load, record  # noqa: E402


def loss_check(pm, torch, device: str, dtype) -> dict:
    """The batched objective against the per-sequence one on mixed-length examples, on `device`."""
    from training.batches import batch_loss, make_batch
    from training.examples import Example
    from training.loop import autocast, sequence_loss

    g = torch.Generator().manual_seed(1)
    vocab = pm.get_base_model().config.vocab_size
    examples = []
    for n in (700, 300, 1024, 90, 512):
        ids = tuple(torch.randint(0, vocab, (n,), generator=g).tolist())
        examples.append(Example(ids, n // 4, "tenant", "window", "random"))
    pm.eval()
    with torch.no_grad(), autocast(dtype, device):
        per_seq = sum(float(loss) / n for loss, n in (sequence_loss(pm, e) for e in examples)) / len(examples)
        batched, _ = batch_loss(pm, make_batch(examples, scale=1 / len(examples), row_len=1024).to(device))
    pm.train()
    return {"per_sequence_loss": round(per_seq, 5), "batched_loss": round(float(batched), 5),
            "relative_difference": abs(float(batched) - per_seq) / per_seq}


def bench_model(config, device: str, dtype, seq_len: int, rows: int, seconds: float, warmup: float = 5.0) -> dict:
    """Tokens/s of the product's batched loop on a random-weight model of `config`: LoRA r16 on all
    linear layers, `rows` x `seq_len` random tokens per step, one forward pass per step."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.examples import Example
    from training.loop import LoopConfig, run_loop
    from training.lora import attach_lora

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
    pm = attach_lora(model, 16, 32, seed=0)
    examples = [Example(tuple(torch.randint(0, config.vocab_size, (seq_len,)).tolist()), 16, "tenant", "window",
                        "random") for _ in range(64)]
    check = loss_check(pm, torch, device, dtype)
    loop = LoopConfig(lr=2e-4, grad_accum=rows, epochs=10_000, warmup_fraction=0.05, seed=0, autocast=dtype,
                      batch_tokens=rows * seq_len)
    run_loop(pm, examples, replace(loop, time_budget=warmup), None, progress=False)   # kernels, allocator
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    state = run_loop(pm, examples, replace(loop, time_budget=seconds), None, progress=False)
    run = {"parameters": sum(p.numel() for p in model.parameters()), "steps": state.step, "tokens": state.tokens,
           "seconds": round(state.seconds, 1), "tokens_per_second": round(state.tokens / state.seconds),
           "loss_check": check}
    if device == "cuda":
        run["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return run


def gpu_main(args) -> None:
    import torch

    from bench.model_shapes import H200_ANCHOR_TOKENS_PER_S, SHAPES, build_config

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    result = {**record(), "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "seq_len": args.seq_len, "rows": args.rows, "runs": []}
    for name in (args.models.split(",") if args.models else list(SHAPES)):
        run = bench_model(build_config(name), "cuda", torch.bfloat16, args.seq_len, args.rows, args.seconds)
        anchor = H200_ANCHOR_TOKENS_PER_S[name]
        run = {"model": name, **run, "h200_anchor": anchor,
               "ratio_to_anchor": round(run["tokens_per_second"] / anchor, 3),
               "at_least_half_of_anchor": run["tokens_per_second"] >= anchor / 2}
        result["runs"].append(run)
        print(json.dumps(run), flush=True)
        torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def main() -> None:
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, default=site / "rich")
    ap.add_argument("--base", type=Path, default=ROOT / ".home" / "test" / "models" / "smollm2-135m-instruct")
    ap.add_argument("--seconds", type=float, default=90, help="timed training per setting (per model on cuda)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtype", default="auto", help="comma-separated: auto, float32, bfloat16")
    ap.add_argument("--busy", default="0", help="comma-separated: 0 (as idle as the machine is), 1 (one core taken)")
    ap.add_argument("--wait-policy", choices=["passive", "active"])
    ap.add_argument("--grad-accum", type=int, help="sequences per step (default: the config's)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--models", help="--device cuda: comma-separated catalog names (default: all)")
    ap.add_argument("--seq-len", type=int, default=1024, help="--device cuda: tokens per sequence")
    ap.add_argument("--rows", type=int, default=8, help="--device cuda: sequences per step (one forward pass)")
    args = ap.parse_args()
    if args.device == "cuda":
        gpu_main(args)
        return
    apply_wait_policy(args.wait_policy)

    import torch

    from codetailor.config import load_settings
    from codetailor.hardware import choose_dtypes, detect, torch_dtype
    from retrieval import Selection, select_files
    from codetailor.split import split_files
    from training.corpus import CorpusFile, public_files
    from training.loop import LoopConfig, run_loop, torch_threads
    from training.lora import attach_lora, load_base, save_adapter
    from training.run import build_examples, example_builder, replay_examples

    settings = load_settings()
    cfg = settings.training
    t = time.time()
    sel = select_files(args.repo, Selection(), settings.retrieval)
    files = [CorpusFile(f.path, f.text) for f in sel.files if f.language == "python"]
    split = split_files([f.path for f in files], cfg.split_seed, cfg.heldout_fraction)
    train = [f for f in files if f.path not in set(split.heldout)]
    result = {**record(wait_policy=args.wait_policy or "default"), "torch": torch.__version__,
              "repo": str(args.repo), "repo_bytes": sum(len(f.text.encode()) for f in files),
              "train_bytes": sum(len(f.text.encode()) for f in train), "files": len(files),
              "seq_len": cfg.seq_len, "target_tokens": cfg.target_tokens, "packing": cfg.packing, "runs": []}
    examples = epoch_tokens = None
    pm = None
    for wanted in args.dtype.split(","):
        dtype = choose_dtypes(detect(), base_weights=wanted).base_weights.value
        pm = None
        model, tok = load_base(args.base, dtype)
        if examples is None:
            builder = example_builder(tok, settings)   # training.packing etc. as `codetailor train` uses them
            tenant_ex = build_examples(builder, train, "tenant", cfg.seed)
            public_ex = replay_examples(builder, tenant_ex, public_files(), cfg.replay_ratio, cfg.seed + 2)
            examples = tenant_ex + public_ex
            random.Random(0).shuffle(examples)
            epoch_tokens = sum(len(e.ids) for e in examples)
            result.update(tenant_examples=len(tenant_ex), public_examples=len(public_ex), epoch_tokens=epoch_tokens,
                          epoch_target_tokens=sum(e.n_target for e in examples),
                          prep_seconds=round(time.time() - t, 1))
            print(json.dumps({k: v for k, v in result.items() if k != "runs"}), flush=True)
        pm = attach_lora(model, cfg.rank, cfg.alpha, cfg.seed)
        for n in [int(x) for x in args.threads.split(",")]:
            torch_threads(n)
            for busy in [int(x) for x in args.busy.split(",")]:
                before = load()
                loop = LoopConfig(lr=cfg.lr, grad_accum=args.grad_accum or cfg.grad_accum, epochs=1.0,
                                  warmup_fraction=cfg.warmup_fraction, seed=cfg.seed, time_budget=args.seconds,
                                  autocast=torch_dtype(dtype))
                with busy_core(bool(busy)):
                    state = run_loop(pm, examples, loop, None, progress=False)
                tps = state.tokens / state.seconds
                run = {"dtype": dtype, "asked": wanted, "threads": n, "busy_core": bool(busy),
                       "wait_policy": args.wait_policy or "default", "seconds": round(state.seconds, 1),
                       "sequences": state.micro, "tokens": state.tokens, "tokens_per_second": round(tps, 1),
                       "epoch_minutes_extrapolated": round(epoch_tokens / tps / 60, 1),
                       "load_before": before, "load_after": load()}
                result["runs"].append(run)
                print(json.dumps(run), flush=True)
    with tempfile.TemporaryDirectory() as d:
        result["adapter_bytes"] = save_adapter(pm, Path(d), args.base)
    print(json.dumps({"adapter_bytes": result["adapter_bytes"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
