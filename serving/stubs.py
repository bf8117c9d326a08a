"""Generate the gRPC stubs from proto/ into serving/_gen/ (git-ignored).

`python -m serving.stubs` (called by scripts/gen_proto.sh at setup) generates
them; `load()` imports them and regenerates first when they are missing or older
than the .proto files, so a fresh clone works without a setup step. Generation
goes to a staging directory renamed into place under a file lock, so concurrent
processes (Ray workers, test runners) never import half-written modules.

protoc writes `from codetailor.v1 import x_pb2`, which would collide with our
`codetailor` package; the imports are rewritten to `serving._gen.codetailor.v1`.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
GEN_DIR = Path(__file__).resolve().parent / "_gen"
PROTOS = ("codetailor/v1/completion.proto", "codetailor/v1/admin.proto")
_STAMP = "STAMP"
_PKG = "serving._gen.codetailor.v1"


def _fingerprint() -> str:
    import grpc_tools

    h = hashlib.sha256(getattr(grpc_tools, "__version__", "").encode())
    for rel in PROTOS:
        h.update(rel.encode())
        h.update((PROTO_DIR / rel).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def is_fresh() -> bool:
    try:
        return (GEN_DIR / _STAMP).read_text().strip() == _fingerprint()
    except FileNotFoundError:
        return False


def generate() -> Path:
    """(Re)generate serving/_gen; returns its path. Safe to call concurrently."""
    from grpc_tools import protoc

    GEN_DIR.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives outside the tree (only serving/_gen is git-ignored).
    lock_path = Path(tempfile.gettempdir()) / f"codetailor-stubs-{hashlib.sha1(str(GEN_DIR).encode()).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_fresh():
            return GEN_DIR
        stage = Path(tempfile.mkdtemp(prefix="._gen.", suffix=".partial", dir=GEN_DIR.parent))
        try:
            include = Path(protoc.__file__).resolve().parent / "_proto"
            args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={stage}",
                    f"--pyi_out={stage}", f"--grpc_python_out={stage}", *PROTOS]
            if protoc.main(args) != 0:
                raise RuntimeError("protoc failed to compile " + ", ".join(PROTOS))
            for py in stage.rglob("*.py"):
                text = py.read_text()
                text = re.sub(r"^from codetailor\.v1 import", f"from {_PKG} import", text, flags=re.M)
                py.write_text(text)
            for d in [stage, *[p for p in stage.rglob("*") if p.is_dir()]]:
                (d / "__init__.py").touch()
            (stage / _STAMP).write_text(_fingerprint() + "\n")
            old = GEN_DIR.parent / f"._gen.{os.getpid()}.old"
            if GEN_DIR.exists():
                os.replace(GEN_DIR, old)
            os.replace(stage, GEN_DIR)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    importlib.invalidate_caches()
    return GEN_DIR


def load() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    """(completion_pb2, completion_pb2_grpc, admin_pb2, admin_pb2_grpc), generated if needed."""
    if not is_fresh():
        generate()
        for name in [m for m in sys.modules if m.startswith("serving._gen")]:
            del sys.modules[name]
    mods = [importlib.import_module(f"{_PKG}.{m}")
            for m in ("completion_pb2", "completion_pb2_grpc", "admin_pb2", "admin_pb2_grpc")]
    return tuple(mods)  # type: ignore[return-value]


if __name__ == "__main__":
    out = generate()
    print(f"gRPC stubs in {out.relative_to(ROOT)} ({(out / _STAMP).read_text().strip()})")
