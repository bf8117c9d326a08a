"""A new generation is searchable by BM25 once chunked; vectors fill in after, resumably."""

import json
import textwrap
from pathlib import Path

import pytest

from codetailor.errors import QuotaExceeded
from retrieval import embed_pending, index_source, search, vectors_pending
from retrieval.segments import read_manifest
from retrieval.vectors import EdgeStore, close_edge_shards
from tests.retrieval.children import kill_when_ready
from tests.retrieval.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[2]


def test_deferred_embedding_is_searchable_then_resumed(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    s = index_source(settings, paths, sample_repo.root, embed=False)
    assert s["vectors_pending"] == s["chunks"] > 0 and s["chunks_embedded"] == 0
    assert "searchable_seconds" in s
    assert search(settings, paths, "InvoiceLedger total_amount", mode="bm25", top_k=1)[0].path == "app/main.py"
    hybrid = search(settings, paths, "InvoiceLedger total_amount", mode="hybrid", top_k=1)
    assert hybrid[0].path == "app/main.py"          # BM25 alone ranks while vectors are pending
    assert search(settings, paths, "freight cost of a parcel", mode="semantic", top_k=3) == []
    assert vectors_pending(paths) == s["chunks"]
    done = embed_pending(settings, paths)
    assert done["chunks_embedded"] == s["chunks"] and done["vectors_pending"] == 0
    assert vectors_pending(paths) == 0 and EdgeStore(paths, 384).count() == s["chunks"]
    hit = search(settings, paths, "freight cost of a parcel by weight", mode="semantic", top_k=1)[0]
    assert hit.path == "ship/freight.go"
    assert embed_pending(settings, paths)["chunks_embedded"] == 0   # nothing left: a no-op


def test_embed_pending_within_a_time_budget(settings, registry, tmp_path):
    from codetailor.config import load_settings

    small = load_settings(home=settings.home, retrieval={"exact_vectors": True, "embed_batch_size": 1})
    repo = GitRepo(tmp_path / "r")
    repo.commit({f"m{i:02d}.py": f"def g_{i}(x):\n    return x - {i}\n" for i in range(20)}, "init")
    paths, _ = registry.create_tenant("acme")
    index_source(small, paths, repo.root, embed=False)
    part = embed_pending(small, paths, max_seconds=0.0)      # one batch (8 rows), then stop
    assert part["chunks_embedded"] == 8 and part["vectors_pending"] == 12 == vectors_pending(paths)
    assert embed_pending(small, paths)["vectors_pending"] == 0


_KILLED_EMBEDDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from codetailor.config import load_settings
    from codetailor.tenants import registry_from_settings
    import retrieval.embed as embed_module
    import retrieval.ingest as ingest
    ingest.REPUBLISH_SECONDS = 0.0          # publish the pending list after every batch
    real = embed_module.embed
    calls = []
    def slow(*a, **k):                      # the second batch never finishes
        calls.append(1)
        if len(calls) == 2:
            print("READY", flush=True)
            time.sleep(600)
        return real(*a, **k)
    embed_module.embed = slow
    settings = load_settings(home={home!r}, retrieval={{"exact_vectors": True, "embed_batch_size": 1}})
    paths = registry_from_settings(settings).tenant("acme")
    ingest.index_source(settings, paths, {repo!r})
""")


def test_kill_during_embedding_leaves_a_searchable_generation(settings, registry, tmp_path):
    repo = GitRepo(tmp_path / "r")
    repo.commit({f"pkg/mod_{i}.py": f"def handler_{i}(event):\n    return event + {i}\n" for i in range(20)}, "init")
    paths, _ = registry.create_tenant("acme")
    script = _KILLED_EMBEDDER.format(root=str(ROOT), home=str(settings.home), repo=str(repo.root))
    kill_when_ready(script)
    m = read_manifest(paths)
    assert m["generation"] == 1 and 0 < len(m["pending_ids"]) < 20   # one batch of 8 made it
    assert search(settings, paths, "handler_13 event", mode="bm25", top_k=1)[0].path == "pkg/mod_13.py"
    assert search(settings, paths, "handler_13 event", mode="hybrid", top_k=1)[0].path == "pkg/mod_13.py"
    done = embed_pending(settings, paths)
    assert done["vectors_pending"] == 0 and done["chunks_embedded"] == len(m["pending_ids"])
    assert EdgeStore(paths, 384).count() == 20


def test_cli_defer_then_embed_pending(tmp_home, sample_repo, capsys, monkeypatch):
    from codetailor.cli import main

    monkeypatch.setenv("CODETAILOR_RETRIEVAL__EXACT_VECTORS", "true")
    assert main(["tenant", "create", "acme"]) == 0
    capsys.readouterr()
    assert main(["index", "--tenant", "acme", str(sample_repo.root), "--defer-embedding", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["vectors_pending"] == first["chunks"] > 0
    assert main(["search", "--tenant", "acme", "--query", "InvoiceLedger", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vectors_pending"] == first["chunks"]
    close_edge_shards()
    assert main(["index", "--tenant", "acme", "--embed-pending", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["vectors_pending"] == 0 and done["chunks_embedded"] == first["chunks"]
    assert main(["search", "--tenant", "acme", "--query", "InvoiceLedger", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vectors_pending"] == 0
    assert main(["index", "--tenant", "acme", "--embed-pending", str(sample_repo.root)]) != 0


def test_reindex_keeps_pending_of_unchanged_files(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    first = index_source(settings, paths, sample_repo.root, embed=False)
    sample_repo.commit({"extra.py": "def extra_helper():\n    return 7\n"}, "extra")
    second = index_source(settings, paths, sample_repo.root, embed=False)
    assert second["vectors_pending"] == first["chunks"] + 1      # old pending chunks stay pending
    assert embed_pending(settings, paths)["chunks_embedded"] == second["chunks"]


def test_tenant_caps_on_files_and_bytes(settings, registry, sample_repo, tmp_path):
    from codetailor.config import load_settings

    paths, _ = registry.create_tenant("acme")
    capped = load_settings(home=settings.home, retrieval={"exact_vectors": True, "max_tenant_files": 2,
                                                          "max_segment_rows": 1})   # segments written first
    with pytest.raises(QuotaExceeded, match="max_tenant_files=2"):
        index_source(capped, paths, sample_repo.root, embed=False)
    assert read_manifest(paths) is None
    seg_root = paths.index_dir / "segments"
    assert not seg_root.exists() or not [d for d in seg_root.iterdir() if not d.name.startswith(".")]
    # bytes count over all the tenant's sources
    other = GitRepo(tmp_path / "other")
    other.commit({"big.py": "def big():\n    return '" + "x" * 400 + "'\n"}, "init")
    s = index_source(settings, paths, sample_repo.root, embed=False)
    used = sum(f["bytes"] for f in read_manifest(paths)["files"]["main"].values())
    capped = load_settings(home=settings.home, retrieval={"exact_vectors": True, "max_tenant_bytes": used + 100})
    with pytest.raises(QuotaExceeded, match="max_tenant_bytes"):
        index_source(capped, paths, other.root, source="tools", embed=False)
    assert read_manifest(paths)["generation"] == s["generation"]   # nothing published
    index_source(capped, paths, sample_repo.root, embed=False)    # re-indexing the same source fits


def test_segments_stay_under_the_row_cap(settings, registry, tmp_path):
    from codetailor.config import load_settings

    capped = load_settings(home=settings.home, retrieval={"exact_vectors": True, "max_segment_rows": 4,
                                                          "max_segments": 3})
    paths, _ = registry.create_tenant("acme")
    repo = GitRepo(tmp_path / "r")
    repo.commit({f"m{i:02d}.py": f"def func_{i}(a):\n    return a + {i}\n" for i in range(10)}, "init")
    index_source(capped, paths, repo.root, embed=False)
    m = read_manifest(paths)
    assert len(m["segments"]) == 3 and all(s["rows"] <= 4 for s in m["segments"])
    for round_ in range(3):   # changes pile up segments; merges keep the count and the cap
        repo.commit({f"m{i:02d}.py": f"def func_{i}(a):\n    return a * {round_}\n" for i in range(round_, 10, 3)},
                    f"change {round_}")
        index_source(capped, paths, repo.root, embed=False)
        m = read_manifest(paths)
        assert all(s["rows"] <= 4 for s in m["segments"]) and len(m["segments"]) <= 4
    on_disk = {d.name for d in (paths.index_dir / "segments").iterdir()}
    assert on_disk == {s["name"] for s in m["segments"]}
    for i in range(10):
        assert search(capped, paths, f"func_{i}", mode="bm25", top_k=1)[0].path == f"m{i:02d}.py"


def test_embedding_builds_the_vector_index_only_when_it_added_vectors(settings, registry, sample_repo,
                                                                      monkeypatch):
    """The embedded store indexes (HNSW) only when optimised; without that every query scans all vectors."""
    calls = []
    monkeypatch.setattr(EdgeStore, "optimize", lambda self: calls.append(self.dir))
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root, embed=False)
    assert calls == []
    done = embed_pending(settings, paths)
    assert done["chunks_embedded"] > 0 and len(calls) == 1 and "vector_index_seconds" in done
    embed_pending(settings, paths)                                    # nothing new: no optimiser pass
    assert len(calls) == 1


def test_the_embedded_store_builds_its_graph_on_optimize(tmp_path):
    import numpy as np

    from codetailor.home import Home
    from retrieval.vectors import VecPoint

    # 11,000 × 256 float32 = 11 MB: past the optimiser's indexing threshold (about 10 MB of vectors)
    store = EdgeStore(Home(tmp_path).tenant("acme"), 256)
    rows = np.random.default_rng(0).standard_normal((11_000, 256)).astype("float32")
    for i in range(0, len(rows), 5_500):
        store.upsert([VecPoint(j, rows[j].tolist(), "main", f"f{j % 7}.py", 1) for j in range(i, i + 5_500)])
    shard = store._shard(create=False)
    try:
        assert shard.info().indexed_vectors_count == 0
        store.optimize()
        assert shard.info().indexed_vectors_count == len(rows)
        assert store.search((rows[42] * 1.01).tolist(), 1, 1)[0][0] == 42
    finally:
        close_edge_shards()
