"""Where a tenant's index stands, read from what the indexer published: cheap enough to poll.

Reads the manifest and counts the symbol table; never loads the embedder, torch, bm25s
or the vector store, so `codetailor status` answers in a fraction of a second while an
index or `--embed-pending` runs in another process (neither takes the index lock).
"""

from __future__ import annotations

import sqlite3

from codetailor.artifacts import IndexManifest
from codetailor.home import TenantPaths

from retrieval.segments import manifest_path
from retrieval.symbol_table import table_path


def _symbols_by_source(paths: TenantPaths) -> dict[str, int] | None:
    """Definitions per source in the symbol table (read-only), or None when there is none."""
    path = table_path(paths)
    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute("SELECT f.source, count(*) FROM defs d JOIN files f ON f.id = d.file "
                               "GROUP BY f.source").fetchall()
        finally:
            con.close()
    except sqlite3.Error:   # being created by a first index, or of an older schema (rebuilt on next index)
        return None
    return {source: n for source, n in rows}


def index_status(paths: TenantPaths) -> dict:
    """The published index per source and overall. Key names match `index --json` and
    `search --json` (generation, files_indexed, chunks, vectors_pending); `symbols` is None
    before the symbol table exists. The generation is the tenant's: every source shares it."""
    manifest = IndexManifest.read_or_none(manifest_path(paths))
    if manifest is None:
        return {"indexed": False, "generation": 0, "files_indexed": 0, "chunks": 0, "vectors_pending": 0,
                "symbols": None, "embedding_model": None, "encoder": None, "updated_at": None, "sources": {}}
    pending = set(manifest.pending_ids)
    symbols = _symbols_by_source(paths)
    sources = {}
    for name in sorted(set(manifest.files) | set(manifest.sources)):
        files = manifest.files.get(name, {})
        ids = [i for f in files.values() for i in f.ids]
        info = manifest.sources.get(name)
        sources[name] = {"location": info.location if info else None,
                         "chunking": info.chunking if info else None,
                         "files_indexed": len(files), "chunks": len(ids),
                         "vectors_pending": sum(1 for i in ids if i in pending),
                         "symbols": None if symbols is None else symbols.get(name, 0)}
    return {"indexed": True, "generation": manifest.generation,
            "files_indexed": sum(s["files_indexed"] for s in sources.values()),
            "chunks": sum(s["chunks"] for s in sources.values()),
            "vectors_pending": len(pending),
            "symbols": None if symbols is None else sum(symbols.values()),
            "embedding_model": manifest.embedding_model,
            "encoder": manifest.encoder,
            "updated_at": manifest.updated_at, "sources": sources}
