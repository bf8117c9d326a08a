"""The per-tenant symbol table: incremental, atomic, reconciled with what a run selected."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from retrieval.selection import SourceFile
from retrieval.symbol_table import (SCHEMA_VERSION, forget_tables, open_table, table_path, update_symbols)

ROOT = Path(__file__).resolve().parents[2]


def sf(path: str, text: str) -> SourceFile:
    from codetailor.languages import language_of

    return SourceFile(path, Path("/nonexistent") / path, language_of(path), text)


@pytest.fixture
def paths(tmp_path):
    from codetailor.home import Home

    yield Home(tmp_path / "home").tenant("acme")
    forget_tables()


UTIL = "def parse_duration(text: str) -> float:\n    return 1.0\n\nclass Clock:\n    def now(self):\n        return 0\n"
APP = "from acme.util import parse_duration, Clock\n\ndef main():\n    return parse_duration('1d')\n"


def names(table, **where):
    return sorted(d.qualname for d in table._defs("1=1", ()))


def test_incremental_update_replaces_changed_and_drops_removed(paths):
    u = update_symbols(paths, "main", [sf("src/acme/util.py", UTIL), sf("src/acme/app.py", APP)])
    assert (u.files_extracted, u.files_removed, u.definitions) == (2, 0, 4)
    t = open_table(paths)
    assert names(t) == ["Clock", "Clock.now", "main", "parse_duration"]
    # unchanged files are not extracted again; a changed one is replaced, a missing one dropped
    u = update_symbols(paths, "main", [sf("src/acme/util.py", UTIL.replace("parse_duration", "parse_span"))])
    assert (u.files_extracted, u.files_removed) == (1, 1)
    assert names(t) == ["Clock", "Clock.now", "parse_span"]
    u = update_symbols(paths, "main", [sf("src/acme/util.py", UTIL.replace("parse_duration", "parse_span"))])
    assert (u.files_extracted, u.files_removed) == (0, 0)
    # another source is untouched by this source's update; rebuild empties everything
    update_symbols(paths, "docs", [sf("docs/conf.py", "PROJECT = 'x'\n")])
    update_symbols(paths, "main", [])
    assert names(t) == ["PROJECT"]
    update_symbols(paths, "main", [sf("a.py", "def a(): pass\n")], rebuild=True)
    assert names(t) == ["a"]


def test_lookups(paths):
    update_symbols(paths, "main", [sf("src/acme/util.py", UTIL), sf("src/acme/app.py", APP),
                                   sf("web/lib/index.ts", "export function parseDate(s: string): Date { return new Date(s) }\n")])
    t = open_table(paths)
    assert [d.signature for d in t.named("parse_duration")] == ["def parse_duration(text: str) -> float:"]
    assert [d.name for d in t.with_prefix("pars")] == ["parseDate", "parse_duration"]
    assert t.with_prefix("Pars") == [] and t.with_prefix("") == []
    assert [d.name for d in t.members("Clock")] == ["now"] and t.members("Clock", "x") == []
    assert [d.name for d in t.in_module("acme.util", "Clock")] == ["Clock"]          # suffix of src.acme.util
    assert t.in_module("other.util") == [] and t.in_module("cme.util") == []   # whole components only
    assert [d.name for d in t.in_module("../lib", None)] == []
    assert [d.name for d in t.in_module("web/lib")] == ["parseDate"]
    imps = t.imports_of("src/acme/app.py")
    assert [(i.module, i.name) for i in imps] == [("acme.util", "parse_duration"), ("acme.util", "Clock")]
    assert [d.path for d in t.resolve_import(imps[0])] == ["src/acme/util.py"]
    assert t.count() == 5


def test_a_failed_update_leaves_the_previous_table(paths):
    update_symbols(paths, "main", [sf("a.py", "def old(): pass\n")])

    def files():
        yield sf("a.py", "def new(): pass\n")
        yield sf("b.py", "def other(): pass\n")
        raise OSError("disk went away")

    with pytest.raises(OSError):
        update_symbols(paths, "main", files())
    assert names(open_table(paths)) == ["old"]


def test_kill_9_mid_update_leaves_the_previous_table_readable(paths, tmp_path):
    update_symbols(paths, "main", [sf("a.py", "def old(): pass\n")])
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from codetailor.home import Home
        from retrieval.selection import SourceFile
        from retrieval.symbol_table import update_symbols
        def files():
            for i in range(100000):
                if i == 500:
                    print("inserted", flush=True)
                    time.sleep(60)
                yield SourceFile(f"f{{i}}.py", Path("/x"), "python", f"def f{{i}}(): pass\\n")
        update_symbols(Home(Path({str(tmp_path / "home")!r})).tenant("acme"), "main", files())
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "inserted"
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(10)
    assert names(open_table(paths)) == ["old"]
    u = update_symbols(paths, "main", [sf("a.py", "def old(): pass\n"), sf("b.py", "def b(): pass\n")])
    assert u.files_extracted == 1 and names(open_table(paths)) == ["b", "old"]


def test_other_schema_is_rebuilt_and_unreadable_until_then(paths):
    update_symbols(paths, "main", [sf("a.py", "def a(): pass\n")])
    forget_tables()
    con = sqlite3.connect(table_path(paths))
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    assert open_table(paths) is None
    u = update_symbols(paths, "main", [sf("a.py", "def a(): pass\n")])
    assert u.files_extracted == 1 and names(open_table(paths)) == ["a"]


def test_no_table_yet_or_any_more(paths):
    import shutil

    assert open_table(paths) is None
    update_symbols(paths, "main", [sf("a.py", "def a(): pass\n")])
    t = open_table(paths)
    shutil.rmtree(paths.root)   # the tenant is deleted
    assert open_table(paths) is None
    with pytest.raises(sqlite3.ProgrammingError):   # its connection was closed, not leaked
        t.count()


def test_index_source_keeps_the_table_in_step(settings, registry, sample_repo):
    from retrieval import index_source
    from retrieval.vectors import close_edge_shards

    tpaths, _ = registry.create_tenant("symbols")
    try:
        index_source(settings, tpaths, sample_repo.root)
        t = open_table(tpaths)
        assert {"parse_config", "InvoiceLedger.add_invoice", "PaymentGateway.chargeCard", "ComputeFreight"} \
            <= set(names(t))
        # an index that predates the table gets one on its next run, even with nothing to re-index
        forget_tables()
        table_path(tpaths).unlink()
        index_source(settings, tpaths, sample_repo.root)
        assert "ComputeFreight" in names(open_table(tpaths))
        (sample_repo.root / "ship/freight.go").unlink()
        index_source(settings, tpaths, sample_repo.root)
        assert "ComputeFreight" not in names(open_table(tpaths))
    finally:
        close_edge_shards()


def test_exclude_deprecated_follows_the_selection_knob(paths):
    text = ('import warnings\n\n\ndef fresh(): pass\n\n\n@deprecated("use fresh")\ndef stale(): pass\n\n\n'
            'class Old:\n    """Deprecated: use New."""\n\n    def run(self): pass\n')
    update_symbols(paths, "main", [sf("a.py", text)])
    assert names(open_table(paths)) == ["Old", "Old.run", "fresh", "stale"]
    u = update_symbols(paths, "main", [sf("a.py", text)], exclude_deprecated=True)
    assert u.files_extracted == 1 and names(open_table(paths)) == ["fresh"]
