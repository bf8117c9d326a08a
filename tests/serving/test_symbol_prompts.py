"""The ingress with prompt.symbols: a retrieval system's prompt shows the definitions the cursor
uses, resolved from the request against the tenant's symbol table (no Ray, no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codetailor.adapters import AdapterStore
from codetailor.languages import language_of
from codetailor.prompt_format import DEFINITIONS_MARK, TEXT
from codetailor.systems import System
from retrieval.selection import SourceFile
from retrieval.symbol_table import forget_tables, update_symbols
from serving.ingress import Ingress

UTIL = '''def compute_total(count, price):
    """Rounded to cents."""
    return round(count * price, 2)
'''
REQUEST = {"request_id": "r", "prefix": "from pkg.util import compute_total\n\n\ndef checkout(cart):\n    return compute_",
           "suffix": "", "path": "pkg/shop.py", "max_tokens": 8, "temperature": 0.0, "stop": [], "tenant": "acme",
           "deadline": None}


@pytest.fixture
def ingress_for(tmp_path):
    """symbols flag -> an in-process ingress for tenant acme, whose table holds pkg/util.py."""
    from codetailor.config import load_settings
    from codetailor.home import Home
    from codetailor.tenants import Registry

    home = Home(tmp_path)
    paths, _ = Registry(home, "p").create_tenant("acme")
    update_symbols(paths, "main", [SourceFile("pkg/util.py", Path("/x/pkg/util.py"), language_of("pkg/util.py"), UTIL)])

    def make(symbols: bool) -> Ingress:
        ing = Ingress.__new__(Ingress)
        # top_k 0: no chunk retrieval, so what the prompt holds beyond the file is the symbol context
        ing.settings = load_settings(home=tmp_path, key_pepper="p", retrieval={"top_k": 0},
                                     prompt={"symbols": symbols})
        ing.home, ing.template, ing.metrics = home, TEXT, None
        ing.count_tokens = lambda text: len(text.split())
        return ing
    yield make, paths
    forget_tables()


def test_definitions_only_with_the_flag_and_a_retrieval_system(ingress_for):
    make, paths = ingress_for
    off = make(False)._prepare(REQUEST)
    assert DEFINITIONS_MARK not in off.model_req["prompt"] and off.definitions == (0, 0) and off.system == "base"
    on = make(True)._prepare(REQUEST)
    assert f"pkg/shop.py{DEFINITIONS_MARK}" in on.model_req["prompt"]
    assert "def compute_total(count, price):" in on.model_req["prompt"] and on.definitions == (1, 0)
    assert on.system == "rag"   # what the prompt held beyond the file was retrieved
    AdapterStore(paths).set_system(System.BASE, override=True)
    base = make(True)._prepare(REQUEST)
    assert DEFINITIONS_MARK not in base.model_req["prompt"] and base.definitions == (0, 0)


def test_a_broken_symbol_table_completes_without_definitions(ingress_for, monkeypatch, caplog):
    import retrieval.symbol_context as sc

    make, _ = ingress_for

    def broken(*a, **k):
        raise OSError("database disk image is malformed")
    monkeypatch.setattr(sc, "prompt_definitions", broken)
    prep = make(True)._prepare(REQUEST)
    assert DEFINITIONS_MARK not in prep.model_req["prompt"] and prep.definitions == (0, 0)
    assert "symbol context failed" in caplog.text
