"""Ingest and search through the real bm25s, Qdrant edge engine and embedding model."""

import json
import random
import textwrap
import time
from pathlib import Path

import pytest

from codetailor.errors import CodetailorError, NotFound
from retrieval import Selection, drop_tenant_vectors, index_source, search
from retrieval.segments import read_manifest
from retrieval.vectors import EdgeStore, close_edge_shards
from tests.retrieval.children import kill_when_ready
from tests.retrieval.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[2]


def test_index_then_search_all_modes(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    s = index_source(settings, paths, sample_repo.root)
    assert s["files_indexed"] == 3 and s["chunks"] == s["chunks_embedded"] > 0
    assert set(s) >= {"files_seen", "files_indexed", "skipped", "chunks", "seconds"}
    for mode in ("bm25", "semantic", "hybrid"):
        hits = search(settings, paths, "invoice ledger total amount", mode=mode, top_k=2)
        assert hits[0].path == "app/main.py" and "total_amount" in hits[0].text, mode
    # the file, not which of its chunks: the static encoder (auto on CPU) ranks the one-line `package
    # shipping` chunk first, where the path's words weigh as much as the body's
    hits = search(settings, paths, "freight cost of a parcel by weight", mode="semantic", top_k=2)
    assert {h.path for h in hits} == {"ship/freight.go"} and (3, 6) in {(h.start_line, h.end_line) for h in hits}
    assert search(settings, paths, "chargeCard", top_k=3, exclude_paths=["src/PaymentGateway.java"])
    assert all(h.path != "src/PaymentGateway.java"
               for h in search(settings, paths, "chargeCard", top_k=5, exclude_paths=["src/PaymentGateway.java"]))
    assert registry.sources(paths.tenant)["main"]["location"] == str(sample_repo.root.resolve())


def test_incremental_reindex_embeds_only_changed_chunks(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    first = index_source(settings, paths, sample_repo.root)
    again = index_source(settings, paths, sample_repo.root)
    assert again["chunks_embedded"] == 0 and again["files_changed"] == 0
    main_py = (sample_repo.root / "app/main.py").read_text()
    sample_repo.commit({"app/main.py": main_py + "\n\ndef refund_invoice(invoice_id):\n    return invoice_id\n"}, "refund")
    (sample_repo.root / "ship/freight.go").unlink()
    third = index_source(settings, paths, sample_repo.root)
    assert third["files_changed"] == 1 and third["files_removed"] == 1
    assert third["chunks_embedded"] == 1       # only the new function; moved/unchanged chunks keep vectors
    assert search(settings, paths, "refund_invoice", mode="bm25", top_k=1)[0].text.startswith("def refund_invoice")
    assert all(h.path != "ship/freight.go" for h in search(settings, paths, "ComputeFreight weightKg", top_k=10))
    assert all(h.path != "ship/freight.go"
               for h in search(settings, paths, "ComputeFreight weightKg", mode="semantic", top_k=10))
    # dead vectors were garbage-collected: the store holds exactly the live chunks
    assert EdgeStore(paths, 384).count() == third["chunks"] == first["chunks"] - 1


def test_segments_merge_and_old_generations_are_collected(settings, registry, tmp_path):
    from codetailor.config import load_settings

    settings = load_settings(home=settings.home, retrieval={"exact_vectors": True, "max_segments": 2})
    paths, _ = registry.create_tenant("acme")
    repo = GitRepo(tmp_path / "r")
    for i in range(4):
        repo.commit({f"m{i}.py": f"def func_{i}(a):\n    return a + {i}\n"}, f"add {i}")
        index_source(settings, paths, repo.root)
    m = read_manifest(paths)
    assert len(m["segments"]) <= 2 and m["generation"] == 4
    on_disk = {d.name for d in (paths.index_dir / "segments").iterdir()}
    assert on_disk == {s["name"] for s in m["segments"]}
    assert [h.path for h in search(settings, paths, "func_2", mode="bm25", top_k=1)] == ["m2.py"]


def test_sources_are_independent(settings, registry, sample_repo, tmp_path):
    paths, _ = registry.create_tenant("acme")
    other = GitRepo(tmp_path / "other")
    other.commit({"lib/crypto_utils.py": "def rotate_signing_keys(vault):\n    return vault.rotate()\n"}, "init")
    index_source(settings, paths, sample_repo.root, source="main")
    index_source(settings, paths, other.root, source="tools")
    assert sorted(registry.sources(paths.tenant)) == ["main", "tools"]
    (other.root / "lib/crypto_utils.py").write_text("def renamed_helper():\n    return 1\n")
    index_source(settings, paths, other.root, source="tools")   # re-index one source...
    hits = search(settings, paths, "InvoiceLedger add_invoice", mode="bm25", top_k=1)
    assert hits[0].source == "main" and hits[0].path == "app/main.py"  # ...keeps the other's files
    assert search(settings, paths, "renamed_helper", mode="bm25", top_k=1)[0].source == "tools"
    assert not [h for h in search(settings, paths, "rotate_signing_keys vault", mode="bm25", top_k=10)
                if "rotate_signing_keys" in h.text]


def test_bad_inputs_are_clear_errors_and_write_nothing(settings, registry, tmp_path, sample_repo):
    paths, _ = registry.create_tenant("acme")
    with pytest.raises(NotFound, match="no index yet"):
        search(settings, paths, "anything")
    with pytest.raises(NotFound):
        index_source(settings, paths, tmp_path / "missing")
    empty = GitRepo(tmp_path / "empty")
    with pytest.raises(CodetailorError, match="nothing to index"):
        index_source(settings, paths, empty.root)
    binaries = tmp_path / "bin"
    binaries.mkdir()
    (binaries / "a.py").write_bytes(b"\0\1\2")
    with pytest.raises(CodetailorError, match="binary"):
        index_source(settings, paths, binaries)
    assert read_manifest(paths) is None
    from codetailor.home import Home
    with pytest.raises(NotFound, match="unknown tenant"):
        index_source(settings, Home(settings.home).tenant("ghost"), sample_repo.root)
    index_source(settings, paths, sample_repo.root)
    with pytest.raises(CodetailorError, match="mode"):
        search(settings, paths, "x", mode="fuzzy")
    with pytest.raises(CodetailorError, match="empty query"):
        search(settings, paths, "  ")


def test_isolation_many_tenants_randomized(settings, registry, tmp_path):
    rng = random.Random(7)
    tenants = {}
    for t in range(8):
        repo = GitRepo(tmp_path / f"r{t}")
        # every tenant shares file names and identifiers; the canary differs
        repo.commit({"shared/util.py": f"def shared_helper(x):\n    canary = 'CANARY_{t}'\n    return x\n",
                     "app.py": f"def handle_request(req):\n    return 'tenant {t} app'\n"}, "init")
        paths, _ = registry.create_tenant(f"tenant-{t}")
        index_source(settings, paths, repo.root)
        tenants[t] = paths
    words = ["shared_helper", "canary", "handle_request", "tenant app", "return x", "req"] + [f"CANARY_{i}" for i in range(8)]
    for _ in range(120):
        t = rng.randrange(8)
        mode = rng.choice(["bm25", "semantic", "hybrid"])
        for h in search(settings, tenants[t], rng.choice(words), mode=mode, top_k=rng.randint(1, 6)):
            assert "CANARY_" not in h.text or f"CANARY_{t}'" in h.text
            assert "tenant " not in h.text or f"tenant {t} app" in h.text


def test_drop_tenant_vectors(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root)
    drop_tenant_vectors(settings, paths)
    assert not (paths.index_dir / "vectors").exists()


_KILLED_INDEXER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from codetailor.config import load_settings
    from codetailor.tenants import registry_from_settings
    import retrieval.ingest as ingest
    def hang(*a, **k):            # reached after segments and vectors are written, before publish
        print("READY", flush=True)
        time.sleep(600)
    ingest.publish_manifest = hang
    settings = load_settings(home={home!r}, retrieval={{"exact_vectors": True}})
    paths = registry_from_settings(settings).tenant("acme")
    ingest.index_source(settings, paths, {repo!r})
""")


def test_kill_9_mid_index_keeps_previous_manifest(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root)
    before = read_manifest(paths)
    close_edge_shards()  # the child process needs the shard
    sample_repo.commit({"app/new_module.py": "def brand_new_feature(flag):\n    return not flag\n"}, "feature")
    script = _KILLED_INDEXER.format(root=str(ROOT), home=str(settings.home), repo=str(sample_repo.root))
    kill_when_ready(script)
    assert read_manifest(paths) == before
    for mode in ("bm25", "semantic"):
        hits = search(settings, paths, "brand_new_feature flag return", mode=mode, top_k=10)
        assert hits and all(h.path != "app/new_module.py" for h in hits)   # unpublished generation invisible
    close_edge_shards()
    s = index_source(settings, paths, sample_repo.root)   # next run cleans up and publishes
    assert s["generation"] == before["generation"] + 1
    assert search(settings, paths, "brand_new_feature", mode="bm25", top_k=1)[0].path == "app/new_module.py"
    assert EdgeStore(paths, 384).count() == s["chunks"]
    assert not [p for p in (paths.index_dir / "segments").iterdir() if p.name.endswith(".partial")]


def test_rebuild_reembeds_everything(settings, registry, sample_repo):
    paths, _ = registry.create_tenant("acme")
    first = index_source(settings, paths, sample_repo.root)
    again = index_source(settings, paths, sample_repo.root, rebuild=True)
    assert again["chunks_embedded"] == first["chunks"] == again["chunks"]
    assert EdgeStore(paths, 384).count() == again["chunks"]
    assert search(settings, paths, "ComputeFreight", mode="semantic", top_k=1)[0].path == "ship/freight.go"
