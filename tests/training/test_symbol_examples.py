"""Rag-augmented training examples with prompt.symbols: they show the definitions their cursor
uses, never those of a held-out file (tokenizer only, no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codetailor.languages import language_of
from codetailor.prompt_format import DEFINITIONS_MARK, TEXT
from codetailor.split import Split
from retrieval.selection import SourceFile
from retrieval.symbol_table import forget_tables, update_symbols
from training.corpus import CorpusFile
from training.run import SplitFiles, TrainOptions, build_training_set

from tests.training.conftest import _MODULE, tiny_settings

# Calls into mod0 (trained on) and mod5 (held out): only mod0's definitions may be shown.
CALLER = '''from pkg.mod0 import make_counter_0
from pkg.mod5 import make_counter_5


def run():
    a = make_counter_0(1)
    b = make_counter_5(2)
    return a() + b()
'''


@pytest.fixture
def setup(tiny_llama, tmp_path, tmp_home):
    """symbols flag -> the tenant's training set, every example rag-augmented."""
    from transformers import AutoTokenizer

    from codetailor.home import Home
    from codetailor.tenants import Registry

    if not (tiny_llama / "tokenizer.json").is_file():
        pytest.skip("SmolLM2 tokenizer not fetched")
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    paths, _ = Registry(Home(tmp_home), pepper="t").create_tenant("acme")
    files = {f"pkg/mod{i}.py": _MODULE.format(i=i) for i in (0, 5)} | {"pkg/caller.py": CALLER}
    update_symbols(paths, "main", [SourceFile(p, Path("/x") / p, language_of(p), t) for p, t in files.items()])
    train = [CorpusFile(p, t) for p, t in files.items() if p != "pkg/mod5.py"]
    phase = SplitFiles(Split(0, 0.2, ("pkg/mod0.py", "pkg/caller.py"), ("pkg/mod5.py",)), train,
                       [CorpusFile("pkg/mod5.py", files["pkg/mod5.py"])], {})

    def build(symbols: bool):
        s = tiny_settings(tmp_home, tiny_llama, seq_len=512, target_tokens=32, rag_fraction=1.0, packing=False)
        s = s.model_copy(update={"prompt": s.prompt.model_copy(update={"symbols": symbols})})
        opts = TrainOptions(rank=4, alpha=8, epochs=1, rag_augmented=True, replay_ratio=0.0, progress=False)
        ts = build_training_set(s, paths, tok, phase, opts, lambda heldout: (lambda query, path: ()), template=TEXT)
        return [tok.decode(e.ids[: e.n_prompt]) for e in ts.tenant if e.path == "pkg/caller.py"], ts
    yield build
    forget_tables()


def test_rag_examples_show_the_definitions_used_but_none_of_a_held_out_file(setup):
    prompts, ts = setup(True)
    shown = [p for p in prompts if DEFINITIONS_MARK in p]
    assert shown and any("def make_counter_0(start):" in p for p in shown)
    assert not any("make_counter_5(start)" in p for p in prompts)   # mod5 is held out
    assert any(e.rag for e in ts.tenant)   # no snippets here: what made them rag is the symbol context
    plain_prompts, plain = setup(False)   # the flag off: no symbol context
    assert not any(DEFINITIONS_MARK in p for p in plain_prompts) and not any(e.rag for e in plain.tenant)
