"""Training lays a cursor out as serving does, in the base model's chosen template, with the
same retrieved snippets and the same symbol context (prompt.symbols).

The Qwen-like tokenizer is SmolLM2's with Qwen2.5-Coder's special tokens added: the family is
recognised from them (codetailor.model), and the native layout's tokens are single tokens."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codetailor.completion import infer_kind
from codetailor.prompt_format import Snippet
from training.corpus import CorpusFile
from training.examples import WINDOW, ExampleBuilder
from training.run import build_examples, retrieval_definitions

from tests.training.conftest import _MODULE

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
SEQ_LEN = 256   # = engine.max_model_len below (its floor): the same budget on both sides
SNIPPETS = (Snippet("lib/best.py", 3, 5, "def best(x):\n    return x + 1"), Snippet("lib/other.py", 1, 2, "OTHER = 2"),
            Snippet("lib/big.py", 1, 40, "\n".join(f"ROW_{i} = {i}" for i in range(40))))


@pytest.fixture(scope="module")
def qwen_like(tiny_llama, tmp_path_factory):
    """(checkpoint dir, tokenizer): a tiny random Qwen2 with a tokenizer that has Qwen's special tokens."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    if not (tiny_llama / "tokenizer.json").is_file():
        pytest.skip("SmolLM2 tokenizer not fetched")
    out = tmp_path_factory.mktemp("tiny-qwen")
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=False)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out, AutoTokenizer.from_pretrained(out)


def _settings(home, base, layout, symbols=False, **over):
    from codetailor.config import load_settings

    return load_settings(home=home, model={"base": str(base)}, prompt={"template": layout, "symbols": symbols},
                         engine={"max_model_len": SEQ_LEN}, **over)


def _symbol_table(paths):
    """The tenant's symbol table: the other modules of the repo, and an indexed copy of the cursor's
    own file that differs from what the editor sends (it must never be shown)."""
    from codetailor.languages import language_of
    from retrieval.selection import SourceFile
    from retrieval.symbol_table import update_symbols

    files = {f"pkg/mod{i}.py": _MODULE.format(i=i) for i in range(10)}
    files["pkg/mod.py"] = "def stale_only_in_the_index(x):\n    return x\n"
    update_symbols(paths, "main", [SourceFile(p, Path("/x") / p, language_of(p), t) for p, t in files.items()])


def _ingress(s, tok, template):
    """The serving side of one request, in process (no Ray, no engine)."""
    from codetailor.home import Home
    from codetailor.tenants import Registry
    from serving.ingress import Ingress

    ing = Ingress.__new__(Ingress)
    ing.settings, ing.home, ing.template = s, Home(s.home), template
    ing.count_tokens = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
    ing.metrics = None
    paths, _ = Registry(ing.home, "p").create_tenant("acme")
    _symbol_table(paths)
    return ing


@pytest.fixture(scope="module", params=["smollm2/text", "qwen2.5-coder/native"])
def both_sides(request, qwen_like, tiny_llama, tmp_path_factory):
    """(example builder, in-process ingress, tokenizer) sharing one base model, template and budget;
    the ingress's settings with prompt.symbols off and on are at `ingress.plain`, `ingress.with_symbols`."""
    from transformers import AutoTokenizer

    from codetailor.model import prompt_template

    family, layout = request.param.split("/")
    base = qwen_like[0] if family == "qwen2.5-coder" else tiny_llama
    tok = qwen_like[1] if family == "qwen2.5-coder" else AutoTokenizer.from_pretrained(tiny_llama)
    s = _settings(tmp_path_factory.mktemp("home"), base, layout)
    template = prompt_template(s)
    assert template.name == request.param
    builder = ExampleBuilder(tok, s.prompt, SEQ_LEN, 64, neighbours=None, template=template)
    ingress = _ingress(s, tok, template)
    ingress.plain = s
    ingress.with_symbols = s.model_copy(update={"prompt": s.prompt.model_copy(update={"symbols": True})})
    return builder, ingress, tok


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(module=st.integers(0, 9), seed=st.integers(0, 10_000), kind=st.sampled_from(["line", "midline", "fim"]),
       snippets=st.lists(st.sampled_from(SNIPPETS), unique=True, max_size=3), infer=st.booleans(),
       symbols=st.booleans())
def test_a_cursors_training_prompt_is_its_serving_prompt(both_sides, module, seed, kind, snippets, infer, symbols):
    from codetailor.adapters import AdapterStore
    from codetailor.systems import System

    builder, ingress, tok = both_sides
    f = CorpusFile("pkg/mod.py", _MODULE.format(i=module))
    rng = random.Random(seed)
    start, end = rng.choice(builder.spans(f, rng))
    c = builder.cursor(f, start, end, kind, rng)
    builder.neighbours = lambda query, path: list(snippets)
    # With prompt.symbols a rag example shows the cursor's definitions, resolved by the resolver
    # training builds (training.run), against the table serving reads.
    paths = ingress.home.tenant("acme")
    ingress.settings = ingress.with_symbols if symbols else ingress.plain
    builder.definitions = retrieval_definitions(ingress.with_symbols, paths, ()) if symbols else None
    rag = bool(snippets) or symbols
    AdapterStore(paths).set_system(System.RAG if rag else System.BASE)
    ex = builder.example(c, "tenant", rag=rag)
    if ex is None:   # the target alone fills the sequence
        return
    hits = [SimpleNamespace(path=s.path, start_line=s.start_line, end_line=s.end_line, text=s.text, score=1.0)
            for s in snippets]
    # Retrieval stands in here, finding the snippets for any query (none for an empty one, as training).
    ingress._retrieve = lambda paths, cursor: (hits if cursor.query(builder.query_window).strip() else [], True)
    # An editor that does not say its cursor's kind gets the inferred one: where it agrees, send none.
    kind_sent = None if infer and infer_kind(c.at.prefix) == c.at.kind else c.at.kind
    req = {"request_id": "r", "prefix": c.at.prefix, "suffix": c.at.suffix, "path": c.path, "cursor_kind": kind_sent,
           "max_tokens": ex.n_target, "temperature": 0.0, "stop": [], "tenant": "acme", "deadline": None}
    prep = ingress._prepare(req)
    served = prep.model_req
    assert tok(served["prompt"], add_special_tokens=False)["input_ids"] == list(ex.ids[: ex.n_prompt])
    assert bool(prep.prompt.definitions) <= symbols and "stale_only_in_the_index" not in served["prompt"]
    # ... and the model is trained to write there what serving turns into the insertion
    target = tok.decode(ex.ids[ex.n_prompt:])
    lead = "\n" if prep.prompt.opens_line else served["heal"]
    assert target.startswith(lead)
    raw = target[len(served["heal"]):]
    assert prep.prompt.finish(raw).text == c.insertion[: len(prep.prompt.finish(raw).text)]


def test_native_examples_use_the_familys_fim_and_repository_tokens(qwen_like, tmp_path):
    from codetailor.model import prompt_template

    base, tok = qwen_like
    template = prompt_template(_settings(tmp_path, base, "native"))
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    files = [CorpusFile(f"pkg/mod{i}.py", _MODULE.format(i=i)) for i in range(3)]
    cursor_examples = build_examples(ExampleBuilder(tok, _settings(tmp_path, base, "native").prompt, 160, 48,
                                                    template=template), files, "tenant", seed=3)
    assert {e.kind for e in cursor_examples} == {"line", "midline", "fim"}
    for e in cursor_examples:
        prompt = list(e.ids[: e.n_prompt])
        assert prompt[0] == ids["<|repo_name|>"] and prompt[-1] == ids["<|fim_middle|>"]
        assert [prompt.count(ids[t]) for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")] == [1, 1, 1]
        text = tok.decode(prompt)
        assert "<repo_name>" not in text and "(after cursor)" not in text
        if e.kind == "fim":   # the code after the cursor stands between the FIM suffix and middle tokens
            assert prompt.index(ids["<|fim_suffix|>"]) < len(prompt) - 2
    windows = build_examples(ExampleBuilder(tok, _settings(tmp_path, base, "native").prompt, 160, 48, packing=True,
                                            window_context=32, template=template), files, "tenant", seed=3)
    plain = [e for e in windows if e.kind == WINDOW]
    assert plain
    for e in plain:   # a window is plain code under the family's repository header, no FIM tokens
        assert e.ids[0] == ids["<|repo_name|>"] and ids["<|file_sep|>"] in e.ids
        assert ids["<|fim_prefix|>"] not in e.ids and ids["<|fim_middle|>"] not in e.ids


def test_the_adapter_records_the_template_it_was_trained_in(qwen_like, tenant_repo):
    import torch

    from codetailor.adapters import AdapterStore
    from training import TrainOptions, train_tenant

    _, paths, _ = tenant_repo
    base, _tok = qwen_like
    s = _settings(paths.root.parents[1], base, "native",
                  training=dict(seq_len=96, target_tokens=48, grad_accum=2, eval_examples=2, checkpoint_seconds=0.01,
                                threads=1, packing=False))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_tenant(s, paths, TrainOptions(rank=4, alpha=8, epochs=0.2, replay_ratio=0.0, progress=False))
    finally:
        torch.set_num_threads(before)
    meta = AdapterStore(paths).meta("v0001")
    assert meta.template == "qwen2.5-coder/native"
