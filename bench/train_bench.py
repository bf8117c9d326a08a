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
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import apply_wait_policy, busy_core, load, record  # noqa: E402


def main() -> None:
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, default=site / "rich")
    ap.add_argument("--base", type=Path, default=ROOT / ".home" / "test" / "models" / "smollm2-135m-instruct")
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtype", default="auto", help="comma-separated: auto, float32, bfloat16")
    ap.add_argument("--busy", default="0", help="comma-separated: 0 (as idle as the machine is), 1 (one core taken)")
    ap.add_argument("--wait-policy", choices=["passive", "active"])
    ap.add_argument("--grad-accum", type=int, help="sequences per step (default: the config's); 1 lets a short "
                                                  "run on a loaded machine finish its first step")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    apply_wait_policy(args.wait_policy)

    import torch

    from codetailor.config import load_settings
    from codetailor.hardware import choose_dtypes, detect, torch_dtype
    from retrieval import Selection, select_files
    from codetailor.split import split_files
    from training.corpus import CorpusFile, public_files
    from training.loop import BudgetTooSmall, LoopConfig, run_loop, torch_threads
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
                try:
                    with busy_core(bool(busy)):
                        state = run_loop(pm, examples, loop, None, progress=False)
                except BudgetTooSmall:   # itself a figure: not one step in the time given
                    run = {"dtype": dtype, "threads": n, "busy_core": bool(busy), "no_step_within_s": args.seconds}
                    result["runs"].append(run)
                    print(json.dumps(run), flush=True)
                    continue
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
