"""Encoders: the int8 export is made once and checked; an index never mixes two encoders' vectors."""

import json
import shutil
import sys

import numpy as np
import pytest

import retrieval.embed as embed_module
from codetailor.config import load_settings
from retrieval import embed_pending, index_source, search
from retrieval.embed import EncoderUnavailable, configured_backend, encoder_cache_dir, prepare
from retrieval.onnx_encoder import MODEL_FILE, read_record, sha256_file
from retrieval.search import forget
from retrieval.segments import manifest_path, publish_manifest, read_manifest
from retrieval.vectors import EdgeStore, close_edge_shards


def _settings(home, encoder, **more):
    return load_settings(home=home, retrieval={"exact_vectors": True, "encoder": encoder, **more})


@pytest.fixture
def spy(monkeypatch):
    """The encoder identity of every embed call (the real embed runs)."""
    calls = []
    real = embed_module.embed

    def recording(settings, encoder, texts, *a, **k):
        calls.append((encoder, len(texts)))
        return real(settings, encoder, texts, *a, **k)

    monkeypatch.setattr(embed_module, "embed", recording)
    return calls


def test_auto_is_static_on_cpu_and_the_int8_export_is_made_once_with_its_checksum(tmp_home, monkeypatch):
    assert configured_backend(_settings(tmp_home, "auto").retrieval) == "static"      # this machine has no CUDA
    monkeypatch.setattr(embed_module, "_cuda", lambda: True)
    assert configured_backend(_settings(tmp_home, "auto").retrieval) == "torch"
    monkeypatch.undo()
    settings = _settings(tmp_home, "onnx-int8")
    identity = prepare(settings)
    directory = encoder_cache_dir(settings.retrieval)
    record = read_record(directory)
    assert record.sha256 == sha256_file(directory / MODEL_FILE)
    assert identity == f"all-MiniLM-L6-v2+onnx-int8:{record.sha256[:16]}"
    monkeypatch.setattr("retrieval.embed.export", lambda *a: pytest.fail("exported twice"))
    assert prepare(settings) == identity
    assert configured_backend(_settings(tmp_home, "torch").retrieval) == "torch"


def test_int8_vectors_are_close_to_torch_but_not_the_same_space(tmp_home):
    settings = _settings(tmp_home, "onnx-int8")
    texts = ["def total_amount(self):\n    return sum(i.amount for i in self.items)",
             "func ComputeFreight(weightKg float64) float64 {\n\treturn weightKg * 4.5\n}"]
    a = embed_module.embed(settings, prepare(settings), texts)
    b = embed_module.embed(settings, "all-MiniLM-L6-v2+torch", texts)
    assert a.shape == b.shape == (2, 384) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    cos = np.sum(a * b, axis=1)
    assert (cos > 0.85).all() and (cos < 0.999).all()


def test_a_damaged_or_missing_export_is_refused_at_load(tmp_home, tmp_path):
    settings = _settings(tmp_home, "onnx-int8")
    identity = prepare(settings)
    cache = tmp_path / "cache"
    moved = _settings(tmp_home, "onnx-int8", encoder_cache=str(cache))
    with pytest.raises(EncoderUnavailable, match="not exported on this machine"):
        embed_module.embed(moved, identity, ["x"])
    target = encoder_cache_dir(moved.retrieval)
    shutil.copytree(encoder_cache_dir(settings.retrieval), target)
    data = bytearray((target / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (target / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(EncoderUnavailable, match="does not match its recorded checksum"):
        embed_module.embed(moved, identity, ["x"])


def test_a_changed_encoder_re_embeds_and_queries_use_the_index_encoder(tmp_home, registry, sample_repo, spy):
    as_torch, as_int8 = _settings(tmp_home, "torch"), _settings(tmp_home, "onnx-int8")
    paths, _ = registry.create_tenant("acme")
    first = index_source(as_torch, paths, sample_repo.root)
    assert read_manifest(paths)["encoder"] == "all-MiniLM-L6-v2+torch"
    int8 = prepare(as_int8)

    spy.clear()   # the configuration now says int8; the index's vectors are torch's: the query follows the index
    assert search(as_int8, paths, "freight cost of a parcel by weight", mode="semantic", top_k=1)[0].path \
        == "ship/freight.go"
    assert spy == [("all-MiniLM-L6-v2+torch", 1)]

    spy.clear()   # an index run with the new encoder re-embeds every chunk, nothing changed in the files
    again = index_source(as_int8, paths, sample_repo.root)
    assert again["generation"] == first["generation"] and again["chunks_embedded"] == first["chunks"]
    assert first["encoder"] == "all-MiniLM-L6-v2+torch" and again["encoder"] == int8
    assert {e for e, _ in spy} == {int8} and sum(n for _, n in spy) == first["chunks"]
    m = read_manifest(paths)
    assert m["encoder"] == int8 and m["pending_ids"] == [] and EdgeStore(paths, 384).count() == first["chunks"]

    spy.clear()
    assert search(as_torch, paths, "freight cost of a parcel by weight", mode="semantic", top_k=1)[0].path \
        == "ship/freight.go"
    assert spy == [(int8, 1)]


def test_an_encoder_this_machine_cannot_reproduce_is_refused_then_re_embedded(tmp_home, registry, sample_repo,
                                                                              caplog):
    search_module = sys.modules["retrieval.search"]   # the package's `search` attribute is the function

    settings = _settings(tmp_home, "onnx-int8")
    paths, _ = registry.create_tenant("acme")
    s = index_source(settings, paths, sample_repo.root)
    m = read_manifest(paths)
    foreign = "all-MiniLM-L6-v2+onnx-int8:" + "0" * 16     # built elsewhere, by another export
    publish_manifest(paths, m | {"encoder": foreign})
    forget(paths)
    with pytest.raises(EncoderUnavailable, match="re-embed"):
        search(settings, paths, "freight cost", mode="semantic")
    before = search_module.degraded_searches
    hybrid = search(settings, paths, "InvoiceLedger total_amount", mode="hybrid", top_k=2)
    bm25 = search(settings, paths, "InvoiceLedger total_amount", mode="bm25", top_k=2)
    assert [h.path for h in hybrid] == [h.path for h in bm25] and search_module.degraded_searches == before + 1
    assert "BM25 only" in caplog.text
    done = embed_pending(settings, paths)                 # the foreign vectors go, this machine's replace them
    assert done["chunks_embedded"] == s["chunks"] and read_manifest(paths)["encoder"] == m["encoder"]
    assert search(settings, paths, "freight cost of a parcel by weight", mode="semantic", top_k=1)[0].path \
        == "ship/freight.go"


def test_a_manifest_from_before_encoders_names_torch(tmp_home, registry, sample_repo):
    settings = _settings(tmp_home, "torch")
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root, embed=False)
    m = json.loads(manifest_path(paths).read_text())
    m.pop("encoder")
    manifest_path(paths).write_text(json.dumps(m | {"schema_version": 1}))
    assert read_manifest(paths)["encoder"] == "all-MiniLM-L6-v2+torch"
    close_edge_shards()
