"""Evaluation's rag systems with prompt.symbols: each task's definitions resolved as serving
resolves an editor's, shown to retrieval systems only, and recorded per task with what the
budget dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import retrieval
from codetailor.languages import language_of
from codetailor.prompt_format import DEFINITIONS_MARK, Signature, parse
from evaluation.evaluate import _definition_rows, _retrieve
from evaluation.runner import run_systems
from evaluation.tasks import Task
from retrieval.selection import SourceFile
from retrieval.symbol_table import forget_tables, update_symbols
from tests.evaluation.fake_engine import OracleEngine
from tests.evaluation.helpers import fake_model_dir, tenant

UTIL = '''def compute_total(count, price):
    """Rounded to cents."""
    return round(count * price, 2)
'''
SHOP = '''from pkg.util import compute_total


def checkout(cart):
    total = compute_total(len(cart), 2.5)
    return total


def stale_helper(x):
    return x
'''


def _settings(home: Path, model: Path, symbols: bool, budget: int = 2048):
    from codetailor.config import load_settings

    return load_settings(home=home, model={"base": str(model)}, prompt={"symbols": symbols, "budget_tokens": budget})


@pytest.fixture
def table_env(tmp_path, monkeypatch):
    """(settings factory, tenant paths, files): a table holding util.py and an older shop.py."""
    model = fake_model_dir(tmp_path)
    paths = tenant(_settings(tmp_path / "home", model, False))
    indexed = {"pkg/util.py": UTIL, "pkg/shop.py": SHOP}
    update_symbols(paths, "main", [SourceFile(p, Path("/x") / p, language_of(p), t) for p, t in indexed.items()])
    monkeypatch.setattr(retrieval, "search", lambda *a, **k: [])   # no chunk index: snippets are another test's
    yield (lambda symbols, budget=2048: _settings(tmp_path / "home", model, symbols, budget)), paths
    forget_tables()


def _task(prefix: str, target: str, suffix: str = "") -> Task:
    line = prefix.count("\n") + 1
    return Task("t1", "rest_of_line", "pkg/shop.py", "python", line, len(prefix) - prefix.rfind("\n") - 1,
                prefix, suffix, target)


# The held-out copy the task is made from: stale_helper is gone, the cursor calls compute_total.
HELD_OUT_PREFIX = "from pkg.util import compute_total\n\n\ndef checkout(cart):\n    return compute_total("


def test_tasks_get_definitions_only_with_the_flag_and_never_from_the_indexed_own_file(table_env):
    settings_for, paths = table_env
    task = _task(HELD_OUT_PREFIX, "len(cart), 2.5)")
    assert _retrieve(settings_for(False), paths, [task], progress=False) == ({"t1": ()}, {})
    _, defs = _retrieve(settings_for(True), paths, [task], progress=False)
    names = [(d.path, d.name) for d in defs["t1"]]
    assert names[0] == ("pkg/util.py", "compute_total")
    assert all(name != "stale_helper" for _, name in names)   # only the index's copy of the task's file has it


def test_rag_prompts_show_the_definitions_and_records_count_what_the_budget_dropped(table_env):
    settings_for, paths = table_env
    prefix = HELD_OUT_PREFIX
    files = {"pkg/shop.py": prefix + "len(cart), 2.5)\n"}
    task = _task(prefix, "len(cart), 2.5)")
    defs = {"t1": (Signature("compute_total", "def compute_total(count, price):", "pkg/util.py",
                             "Rounded to cents.", language="python"),
                   Signature("round_cents", "def round_cents(x):", "pkg/money.py", language="python"))}

    def run(settings):
        engine = OracleEngine(files, right_when=lambda r: True)
        out = asyncio.run(run_systems(engine, [task], ["base", "rag"], settings, snippets={}, definitions=defs))
        return engine, out

    engine, out = run(settings_for(True))
    by_system = {("def compute_total" in r.prompt): r for r in engine.requests}
    assert set(by_system) == {True, False}   # one of the two prompts shows it: rag's
    shown = parse(by_system[True].prompt).definitions
    assert len(shown) == 2 and shown[0].signature.startswith("def compute_total(count, price):")
    assert DEFINITIONS_MARK not in by_system[False].prompt
    assert out["rag"][0].definitions == ("pkg/util.py:compute_total", "pkg/money.py:round_cents")
    assert out["base"][0].definitions == () and out["rag"][0].dropped_definitions == 0
    assert _definition_rows(out, 0) == {"definitions": {"rag": ["pkg/util.py:compute_total",
                                                                "pkg/money.py:round_cents"]}}
    # a budget with room for the cursor's code and one definition: the weaker one is dropped, and counted
    engine, small = run(settings_for(True, budget=64))
    rag = small["rag"][0]
    assert rag.definitions == ("pkg/util.py:compute_total",) and rag.dropped_definitions == 1
    assert _definition_rows(small, 0)["dropped_definitions"] == {"rag": 1}
