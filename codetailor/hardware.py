"""What this machine can do fast, and the number formats chosen from it.

bfloat16 halves memory traffic, but it is only fast where the CPU multiplies it
natively: AVX-512 BF16 (`avx512_bf16`) or AMX tiles (`amx_bf16`). Without either,
oneDNN refuses bf16 matmuls and torch falls back to a loop that runs several
times slower than float32 (an AVX2 EPYC: 45.7 GFLOP/s float32 vs 7.9 bf16 on a
512x896x4864 linear layer). So `auto` picks bfloat16 only where it is native,
and float32 everywhere else; a CUDA GPU always takes bfloat16.

`detect()` reads the machine once; `choose_dtypes()` is a pure function of what it
read, so every decision can be unit-tested for any CPU. This module is the one
place that names the dtypes training and the engine compute in.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

BF16 = "bfloat16"
FP32 = "float32"
FP16 = "float16"
AUTO = "auto"
# Adapter files are stored in bfloat16 whatever the compute dtype: half the bytes of
# float32, and the engine casts them to its own dtype on load.
ADAPTER_STORAGE = BF16
DTYPE_BYTES = {BF16: 2, FP16: 2, FP32: 4}

# The /proc/cpuinfo flags that decide the number formats and the kernels torch and vLLM pick.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                  "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Capability:
    """The facts about this machine that the defaults depend on."""

    cpu_model: str = ""
    arch: str = ""
    cores: int = 1                        # cores this process may run on (its affinity mask)
    flags: tuple[str, ...] = ()           # the RELEVANT_FLAGS the CPU reports, sorted
    torch_avx512_bf16: bool | None = None  # torch.cpu._is_avx512_bf16_supported(); None: not asked
    torch_capability: str | None = None    # torch.backends.cpu.get_cpu_capability(), e.g. "AVX512"
    cuda_device: str | None = None         # the first CUDA device's name, if any

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def native_bf16(self) -> bool:
        return (self.has("avx512_bf16") or self.has("amx_bf16") or bool(self.torch_avx512_bf16))

    @property
    def isa(self) -> str:
        """A short label of the CPU kind, for bench tables and doctor."""
        if self.has("amx_bf16"):
            return "AMX-BF16"
        if self.has("avx512_bf16") or self.torch_avx512_bf16:
            return "AVX-512 BF16"
        if self.has("avx512f"):
            return "AVX-512"
        if self.has("avx2"):
            return "AVX2"
        return self.arch or "unknown"


@dataclass(frozen=True)
class Choice:
    value: str
    reason: str


@dataclass(frozen=True)
class DtypePlan:
    engine: Choice         # vLLM's model dtype
    base_weights: Choice   # training's frozen base weights (LoRA matrices stay float32)
    autocast: Choice       # training's autocast dtype; float32 means no autocast

    def as_dict(self) -> dict[str, Any]:
        return {k: asdict(v) for k, v in (("engine", self.engine), ("base_weights", self.base_weights),
                                           ("autocast", self.autocast))}


def _fast_dtype(cap: Capability) -> Choice:
    if cap.cuda_device:
        return Choice(BF16, f"CUDA device {cap.cuda_device}: bfloat16 runs on its tensor cores")
    if cap.has("amx_bf16"):
        return Choice(BF16, "the CPU has AMX BF16 tiles: bfloat16 matmuls run natively (oneDNN)")
    if cap.has("avx512_bf16") or cap.torch_avx512_bf16:
        return Choice(BF16, "the CPU has AVX-512 BF16: bfloat16 matmuls run natively (oneDNN) "
                            "and move half the bytes of float32")
    have = "AVX-512 without BF16" if cap.has("avx512f") else ("AVX2" if cap.has("avx2") else "no AVX2")
    return Choice(FP32, f"the CPU has {have}: oneDNN has no bfloat16 matmul here and torch's fallback "
                        "runs several times slower than float32")


def choose_dtypes(cap: Capability, engine: str = AUTO, base_weights: str = AUTO,
                  autocast: str = AUTO) -> DtypePlan:
    """Each `auto` resolved from `cap`; an explicit value is kept, with that as its reason."""
    fast = _fast_dtype(cap)

    def pick(wanted: str) -> Choice:
        return fast if wanted == AUTO else Choice(wanted, "set explicitly in the configuration")

    return DtypePlan(engine=pick(engine), base_weights=pick(base_weights), autocast=pick(autocast))


def torch_dtype(name: str):
    import torch

    return {BF16: torch.bfloat16, FP16: torch.float16, FP32: torch.float32}[name]


# --- detection ------------------------------------------------------------------------

def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(model name, relevant flags) from /proc/cpuinfo's first processor."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, tuple(sorted(f for f in flags if f in RELEVANT_FLAGS))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _torch_facts() -> tuple[bool | None, str | None, str | None]:
    try:
        import torch
    except ImportError:
        return None, None, None
    bf16 = cap = cuda = None
    try:
        bf16 = bool(torch.cpu._is_avx512_bf16_supported())
    except Exception:  # a private API: absent on some builds
        pass
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:
        pass
    try:
        if torch.cuda.is_available():
            cuda = torch.cuda.get_device_name(0)
    except Exception:
        pass
    return bf16, cap, cuda


@lru_cache(maxsize=1)
def detect() -> Capability:
    """This machine's capability (imports torch, so call it after the OpenMP environment is set)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model, flags = parse_cpuinfo(f.read())
    except OSError:
        model, flags = "", ()
    bf16, cap, cuda = _torch_facts()
    return Capability(cpu_model=model or platform.processor() or platform.machine(), arch=platform.machine(),
                      cores=usable_cores(), flags=flags, torch_avx512_bf16=bf16, torch_capability=cap,
                      cuda_device=cuda)


def hardware_record(plan: DtypePlan | None = None, cap: Capability | None = None, **extra: Any) -> dict[str, Any]:
    """The record written into run records and bench JSON: what the machine is and what was chosen."""
    cap = cap or detect()
    record: dict[str, Any] = {"cpu_model": cap.cpu_model, "isa": cap.isa, "cores": cap.cores,
                              "flags": list(cap.flags), "torch_capability": cap.torch_capability,
                              "cuda_device": cap.cuda_device}
    if plan is not None:
        record["dtypes"] = {k: v["value"] for k, v in plan.as_dict().items()}
    record.update(extra)
    return record


# --- OpenMP -----------------------------------------------------------------------------

# Read once, when the OpenMP runtime loads (with torch): they must be in the environment before
# torch is imported, in this process and in the engine process vLLM spawns. Spinning workers
# (the default "active" wait) steal the core a preempted sibling needs on a loaded machine,
# so every op waits for a time slice; passive workers sleep at once (docs/bench-cpu.md).
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def openmp_env() -> dict[str, str]:
    """The OpenMP settings codetailor starts processes with (values already set in the environment win)."""
    return {k: os.environ.get(k, v) for k, v in OPENMP_DEFAULTS.items()}


def apply_openmp_env() -> dict[str, str]:
    """Put openmp_env() into os.environ; call before torch is imported to take effect here."""
    env = openmp_env()
    os.environ.update(env)
    return env


def openmp_runtimes(maps_path: str = "/proc/self/maps") -> list[str]:
    """The OpenMP runtime libraries this process has loaded (libgomp, libiomp5, libomp), by file name."""
    found: set[str] = set()
    try:
        with open(maps_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name = line.rsplit("/", 1)[-1].strip()
                if name.startswith(("libgomp", "libiomp", "libomp")):
                    found.add(name)
    except OSError:
        pass
    return sorted(found)


# --- threads ---------------------------------------------------------------------------

def choose_threads(cap: Capability, wanted: int, what: str) -> Choice:
    """Threads for `what` (training, engine): `wanted`, or (0) every core this process may use."""
    if wanted:
        return Choice(str(wanted), "set explicitly in the configuration")
    return Choice(str(cap.cores), f"every core this process may use ({cap.cores}); with passive OpenMP "
                                  f"waits a busy core costs {what} about its share, not a stall")


def memory() -> dict[str, float]:
    """Total and available memory in GiB, from /proc/meminfo."""
    out: dict[str, float] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    out[key] = round(int(rest.split()[0]) / (1 << 20), 1)
    except (OSError, ValueError):
        pass
    return {"total_gib": out.get("MemTotal", 0.0), "available_gib": out.get("MemAvailable", 0.0)}


def child_processes(pid: int | None = None) -> list[dict[str, Any]]:
    """The direct children of `pid` (default: this process), each with the OpenMP runtimes it loaded."""
    import glob

    pid = pid or os.getpid()
    kids: set[int] = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path, encoding="ascii") as f:
                kids.update(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    out = []
    for kid in sorted(kids):
        try:
            with open(f"/proc/{kid}/comm", encoding="utf-8", errors="replace") as f:
                name = f.read().strip()
        except OSError:
            continue
        out.append({"pid": kid, "name": name, "openmp_runtimes": openmp_runtimes(f"/proc/{kid}/maps")})
    return out
