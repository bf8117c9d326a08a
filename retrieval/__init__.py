"""Retrieval: ingest a tenant's repositories and search them (BM25 + Qdrant, hybrid).

Public surface:
- `index_source(settings, paths, root, source=..., selection=..., chunking=..., embed=True)` -> summary dict
  (searchable by BM25 once chunked; `embed=False` leaves the vectors pending)
- `embed_pending(settings, paths)`: embed chunks still without a vector (resumable)
- `vectors_pending(paths)`: how many live chunks have no vector yet
- `index_status(paths)`: the published index per source and overall (reads files only; `codetailor status`)
- `search(settings, paths, query, mode="hybrid", top_k=None, exclude_paths=())` -> list[Hit]
- `Selection`, `select_files`, `file_chunks`, `iter_selected_files`: the selection knobs and the
  secret-free file listing
- `retrieval.files`: the files the index selected, re-read with their hash checked (what training
  and evaluation use instead of selecting again), and whether a tenant has an index
- `drop_source(settings, paths, source)`: remove one source's rows (BM25, vectors, symbols); the
  other sources stay as they are
- `drop_tenant_vectors(settings, paths)`: called when a tenant is deleted

Importing this package is cheap: bm25s (numba/llvmlite), torch, onnxruntime and Qdrant load on first use.
A process that also runs a vLLM-CPU engine must start the engine *before* its first
index or search call: loading numba first broke the engine worker (environment notes).
"""

from __future__ import annotations

from retrieval.search import Hit, NotIndexed, query_from_file, search, vectors_pending
from retrieval.selection import FileScan, Selection, SourceFile, file_chunks, iter_selected_files, select_files

__all__ = ["FileScan", "Hit", "NotIndexed", "Selection", "SourceFile", "drop_source", "drop_tenant_vectors",
           "embed_pending", "file_chunks", "index_source", "index_status", "iter_selected_files", "query_from_file",
           "search", "select_files", "vectors_pending"]


def index_source(*args, **kwargs) -> dict:
    from retrieval.ingest import index_source as _index

    return _index(*args, **kwargs)


def embed_pending(*args, **kwargs) -> dict:
    from retrieval.ingest import embed_pending as _embed

    return _embed(*args, **kwargs)


def drop_source(*args, **kwargs) -> dict:
    from retrieval.ingest import drop_source as _drop

    return _drop(*args, **kwargs)


def index_status(paths) -> dict:
    from retrieval.status import index_status as _status

    return _status(paths)


def drop_tenant_vectors(settings, paths) -> None:
    """Remove a tenant's vectors (the service store keeps them outside the tenant's directory)."""
    from retrieval.search import forget
    from retrieval.vectors import open_store

    forget(paths)
    open_store(settings, paths, dim=1).drop()
