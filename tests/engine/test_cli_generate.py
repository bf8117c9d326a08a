"""`codetailor generate`: input errors (no engine), and one run against the session engine."""

from __future__ import annotations

import json

import pytest

from codetailor.cli import main
from codetailor.home import Home
from codetailor.tenants import Registry


@pytest.fixture
def acme(tmp_home):
    Registry(Home(tmp_home), pepper="t").create_tenant("acme")
    return tmp_home


@pytest.mark.parametrize("argv,code,message", [
    (["generate", "--tenant", "nobody", "--prefix", "x"], 3, "unknown tenant 'nobody'"),
    (["generate", "--tenant", "acme", "--prefix", "x"], 3, "no active adapter; use --system base"),
    (["generate", "--tenant", "acme", "--file", "nope.py", "--line", "1"], 3, "no such file"),
    (["generate", "--tenant", "acme", "--prefix", "x", "--line", "2"], 2, "--line/--column go with --file"),
    (["generate", "--tenant", "acme", "--prefix", "x", "--max-tokens", "0"], 2, "--max-tokens must be"),
    (["generate", "--tenant", "acme", "--prefix", "x", "--system", "base", "--rag"], 3, "has no index yet"),
    (["generate", "--tenant", "acme", "--prefix", "x = 1", "--cursor-kind", "line_start", "--system", "base"], 2,
     "line start needs a prefix that is empty or ends with a newline"),
    (["generate", "--tenant", "acme", "--file", "a.py", "--line", "1", "--suffix", "y"], 2,
     "--cursor-kind and --suffix go with --prefix"),
])
def test_input_errors_are_one_line(acme, capsys, argv, code, message):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cursor_outside_the_file(acme, tmp_path, capsys):
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    assert main(["generate", "--tenant", "acme", "--file", str(f), "--line", "9", "--system", "base"]) == 2
    assert "outside the file" in capsys.readouterr().err


def test_rag_finds_what_serving_finds(acme, monkeypatch):
    """`generate --rag`'s snippets and definitions: serving's query, and with prompt.symbols the
    definitions the cursor uses (the engine run itself: the engine-marked test below)."""
    from pathlib import Path
    from types import SimpleNamespace

    import retrieval
    from codetailor.cli.generate import _retrieved
    from codetailor.completion import Cursor
    from codetailor.config import load_settings
    from retrieval.selection import SourceFile
    from retrieval.symbol_table import forget_tables, update_symbols

    paths = Home(acme).tenant("acme")
    update_symbols(paths, "main", [SourceFile("pkg/util.py", Path("/x/pkg/util.py"), "python",
                                              "def compute_total(count, price):\n    return count * price\n")])
    queries = []
    monkeypatch.setattr(retrieval, "search", lambda s, p, q, top_k: queries.append(q) or
                        [SimpleNamespace(path="pkg/a.py", start_line=1, end_line=2, text="A = 1")])
    cursor = Cursor("from pkg.util import compute_total\n\nx = compute_", "", "pkg/main.py")
    try:
        for symbols in (False, True):
            settings = load_settings(home=acme, prompt={"symbols": symbols})
            snippets, definitions = _retrieved(settings, paths, cursor)
            assert [s.path for s in snippets] == ["pkg/a.py"] and queries[-1] == cursor.query(settings.retrieval.query_lines)
            assert [d.name for d in definitions] == (["compute_total"] if symbols else [])
    finally:
        forget_tables()


class _Borrowed:
    """The session engine, lent to the CLI without letting it shut it down."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def close(self):
        pass


@pytest.mark.engine
@pytest.mark.model
def test_generate_with_the_tenants_adapter(engine, lora_set, base_model_path, monkeypatch, tmp_path, capsys):
    from codetailor.adapters import AdapterStore
    from codetailor.config import get_settings
    from engine.vllm_engine import VllmEngine
    from tests.engine.conftest import ADAPTER_TENANTS, MAX_TOKENS
    from tests.engine.lora_helpers import PROMPTS

    tenant = ADAPTER_TENANTS[0]
    monkeypatch.setenv("CODETAILOR_HOME", str(lora_set.home))
    monkeypatch.setenv("CODETAILOR_MODEL__BASE", str(base_model_path))
    monkeypatch.setenv("CODETAILOR_KEY_PEPPER", "t")
    get_settings.cache_clear()
    registry = Registry(Home(lora_set.home), pepper="t")
    (Home(lora_set.home).tenant(tenant).record).unlink(missing_ok=True)
    registry.create_tenant(tenant)
    monkeypatch.setattr(VllmEngine, "start", classmethod(lambda cls, *a, **k: _Borrowed(engine)))
    try:
        src = tmp_path / "fib.py"
        src.write_text(PROMPTS[0] + "\n")
        args = ["generate", "--tenant", tenant, "--file", str(src), "--line", "2", "--column", "4",
                "--max-tokens", str(MAX_TOKENS), "--json"]
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["adapter"] == AdapterStore(Home(lora_set.home).tenant(tenant)).active()
        assert out["completion_tokens"] > 0 and out["completion"].strip()
        assert main(args[:-1] + ["--system", "base", "--json"]) == 0
        base = json.loads(capsys.readouterr().out)
        assert base["adapter"] is None and base["completion"] != out["completion"]
    finally:
        get_settings.cache_clear()
