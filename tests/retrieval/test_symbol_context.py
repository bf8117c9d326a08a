"""Resolution at a cursor from the request's prefix and suffix, against a real symbol table."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.selection import SourceFile
from retrieval.symbol_context import render_compact, render_within, resolve
from retrieval.symbol_table import forget_tables, open_table, update_symbols

UTIL = '''"""Helpers."""


def parse_duration(text: str) -> float:
    """Parse '90d' into seconds."""
    return 1.0


def parse_size(text: str) -> int:
    return 1


class Clock:
    def now(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        pass
'''
LEDGER = '''from acme.util import Clock


class BaseLedger:
    def audit(self, since: float) -> list:
        return []


class Ledger(BaseLedger):
    """Keeps invoices."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.items = []

    def add_invoice(self, invoice, *, note: str = "") -> None:
        self.items.append(invoice)
        self.total = self.compute_total(self.items)

    def compute_total(self, items) -> int:
        return sum(items)
'''
GO_FREIGHT = '''package shipping

// Parcel is one box.
type Parcel struct {
	WeightKg float64
}

// Volume of the parcel in litres.
func (p *Parcel) Volume() float64 { return 0 }

func ComputeFreight(p Parcel) float64 { return p.WeightKg * 4.5 }
'''
JAVA_GW = '''package com.acme.pay;

public class PaymentGateway {
    /** Charges a card. */
    public boolean chargeCard(String card, int cents) { return true; }
    public void refund(String card) {}
}
'''
TS_MONEY = '''export function formatCents(cents: number, currency = "EUR"): string { return "" }
export class Cart {
  add(sku: string, qty = 1): void {}
  total(): number { return 0 }
}
'''


def sf(path, text):
    from codetailor.languages import language_of

    return SourceFile(path, Path("/x") / path, language_of(path), text)


@pytest.fixture
def table(tmp_path):
    from codetailor.home import Home

    paths = Home(tmp_path / "home").tenant("acme")
    update_symbols(paths, "main", [sf("src/acme/util.py", UTIL), sf("src/acme/ledger.py", LEDGER),
                                   sf("shipping/freight.go", GO_FREIGHT),
                                   sf("src/main/java/com/acme/pay/PaymentGateway.java", JAVA_GW),
                                   sf("web/src/money.ts", TS_MONEY)])
    yield open_table(paths)
    forget_tables()


def names(defs):
    return [d.qualname for d in defs]


def test_imported_function_called_in_the_last_lines(table):
    prefix = "from acme.util import parse_duration\n\n\ndef ttl(cfg):\n    span = parse_duration(cfg['ttl'])\n    "
    got = resolve(table, "src/acme/cache.py", prefix, "\n")
    assert names(got)[0] == "parse_duration"
    assert got[0].signature == "def parse_duration(text: str) -> float:" and got[0].path == "src/acme/util.py"


def test_module_import_member_being_typed(table):
    prefix = "import acme.util as u\n\nx = u.parse_"
    assert names(resolve(table, "app.py", prefix))[:2] == ["parse_duration", "parse_size"]
    prefix = "from acme import util\n\nx = util.par"
    assert set(names(resolve(table, "app.py", prefix))[:2]) == {"parse_duration", "parse_size"}


def test_receiver_class_from_a_constructor_call_above(table):
    prefix = "from acme.util import Clock\n\nc = Clock()\nstart = c.now()\nc."
    got = names(resolve(table, "app.py", prefix))
    assert got[:2] == ["Clock.now", "Clock.sleep"] or got[:2] == ["Clock.sleep", "Clock.now"]
    prefix = "from acme.util import Clock\n\nc = Clock()\nc.sl"
    assert names(resolve(table, "app.py", prefix))[0] == "Clock.sleep"


def test_self_reads_the_enclosing_class_and_its_bases(table):
    prefix = ("from acme.ledger import BaseLedger\n\n\nclass Report(BaseLedger):\n"
              "    def run(self):\n        self.au")
    got = resolve(table, "src/acme/report.py", prefix)
    assert names(got)[0] == "BaseLedger.audit" and got[0].path == "src/acme/ledger.py"


def test_annotated_field_of_self(table):
    prefix = ("from acme.util import Clock\n\n\nclass Job:\n    def __init__(self, clock: Clock):\n"
              "        self.clock = clock\n\n    def run(self):\n        self.clock.")
    assert set(names(resolve(table, "job.py", prefix))[:2]) == {"Clock.now", "Clock.sleep"}


def test_partial_identifier_alone(table):
    got = names(resolve(table, "app.py", "x = parse_d"))
    assert got[0] == "parse_duration"


def test_own_file_comes_from_the_request_never_the_index(table):
    # the cursor is on ledger.py's `def compute_total` line, which the index holds and the
    # line above calls: its signature must not be shown, neither from the index nor from
    # the request's parse
    lines = LEDGER.split("\n")
    target = next(i for i, ln in enumerate(lines) if "def compute_total" in ln)
    prefix = "\n".join(lines[:target]) + "\n"
    suffix = "\n" + "\n".join(lines[target + 1:])
    for p in (prefix, prefix + "    def compute_t", prefix + "    def compute_total(self, items) -> int:"):
        got = resolve(table, "src/acme/ledger.py", p, suffix)
        assert "compute_total" not in {d.name for d in got}, p[-40:]
        assert all("compute_total" not in d.signature for d in got)
    # a method of the same class defined in the request is resolved from the request
    got = resolve(table, "src/acme/ledger.py", prefix + "    def t(self):\n        self.add_", suffix)
    assert got[0].qualname == "Ledger.add_invoice" and got[0].path == "src/acme/ledger.py"
    assert got[0].line == 16


def test_prompt_definitions_are_the_resolved_ones_less_excluded_files(table, tmp_path):
    """What every stage's prompt shows: `resolve` as signatures; held-out files never (training)."""
    from codetailor.home import Home
    from retrieval.symbol_context import prompt_definitions

    paths = Home(tmp_path / "home").tenant("acme")
    prefix = "from acme.util import Clock, parse_duration\nfrom acme.ledger import Ledger\n\n" \
             "led = Ledger(Clock())\nspan = parse_duration('1d')\nled."
    shown = prompt_definitions(paths, "src/acme/app.py", prefix)
    resolved = resolve(table, "src/acme/app.py", prefix)
    assert [(d.path, d.name, d.signature) for d in shown] == [(d.path, d.name, d.signature) for d in resolved]
    assert {d.path for d in shown} == {"src/acme/util.py", "src/acme/ledger.py"}
    rest = prompt_definitions(paths, "src/acme/app.py", prefix, limit=4, exclude_paths=["src/acme/util.py"])
    assert rest and {d.path for d in rest} == {"src/acme/ledger.py"} and len(rest) <= 4


def test_go_receiver_and_package_function(table):
    prefix = "package shipping\n\nfunc (p *Parcel) Heavy() bool {\n\tv := p.Volume()\n\treturn ComputeFreight(*p) > v && p."
    got = names(resolve(table, "shipping/rules.go", prefix))
    assert {"Parcel.Volume", "ComputeFreight", "Parcel.WeightKg"} <= set(got[:4])


def test_java_typed_variable(table):
    prefix = ("package com.acme.shop;\nimport com.acme.pay.PaymentGateway;\n\nclass Checkout {\n"
              "  void pay(PaymentGateway gw) {\n    gw.ch")
    got = resolve(table, "src/main/java/com/acme/shop/Checkout.java", prefix)
    assert got[0].qualname == "PaymentGateway.chargeCard" and got[0].doc == "Charges a card."


def test_typescript_new_and_named_import(table):
    prefix = 'import { formatCents, Cart } from "./money";\n\nconst cart = new Cart();\ncart.add("x");\nconst s = '
    got = names(resolve(table, "web/src/view.ts", prefix))
    assert got[0] == "Cart.add" and "formatCents" in got and "Cart" in got


def test_no_table_still_uses_the_request(table):
    prefix = "def helper_one(a):\n    return a\n\n\ndef main():\n    return helper_"
    got = resolve(None, "app.py", prefix, "\n\ndef helper_two(b):\n    return b\n")
    assert set(names(got)) == {"helper_one", "helper_two"}
    assert resolve(table, "README.md", "parse_") == []


def test_render_compact_groups_by_file_and_class(table):
    defs = resolve(table, "app.py", "from acme.util import Clock, parse_duration\n\nc = Clock()\nc.")
    text = render_compact(defs)
    assert text.startswith("# src/acme/util.py\n")
    assert "class Clock:\n    def now(self) -> float:\n" in text or "class Clock:\n    def sleep(" in text
    assert "def parse_duration(text: str) -> float:  # Parse '90d' into seconds." in text
    assert render_compact([]) == ""
    members_only = [d for d in defs if d.container == "Clock"]
    assert render_compact(members_only).splitlines()[1] == "class Clock:"
    d = resolve(table, "x.go", "package x\n\nfunc f(p *Parcel) {\n\tp.Vol")
    assert render_compact(d).splitlines()[:3] == ["// shipping/freight.go", "type Parcel struct  // Parcel is one box.",
                                                   "    func (p *Parcel) Volume() float64  // Volume of the parcel in litres."]


@pytest.mark.parametrize("edits", [
    [(120, 0, "x"), (121, 0, "y"), (120, 2, "")],             # typing, then deleting what was typed
    [(0, 0, "import os\n"), (-1, 0, "\n\ndef tail():\n    pass\n")],   # at both ends
    [(40, 30, "def replaced(a, b):\n    return a\n"), (5, 200, "")],   # replacing and cutting whole lines
    [(60, 0, "é→\n")],                                        # multi-byte characters
])
def test_incremental_reparse_matches_a_cold_parse(edits):
    from retrieval.chunking import parse
    from retrieval.symbol_context import _TreeCache

    cache = _TreeCache()
    text = LEDGER
    cache.parse("t", "a.py", "python", text)
    for at, cut, insert in edits:
        at = len(text) if at < 0 else at
        text = text[:at] + insert + text[at + cut:]
        got = cache.parse("t", "a.py", "python", text)
        assert str(got.root_node) == str(parse("a.py", "python", text).root_node)
        assert got.root_node.end_byte == len(text.encode())


def test_render_within_drops_the_weakest_first(table):
    defs = resolve(table, "app.py", "from acme.util import Clock, parse_duration\n\nc = Clock()\nc.")
    assert len(defs) >= 3
    full = render_compact(defs)
    assert render_within(defs, lambda t: True) == (full, 0)
    text, dropped = render_within(defs, lambda t: len(t) < len(full))
    assert 0 < dropped < len(defs) and text == render_compact(defs[:len(defs) - dropped])
    assert render_within(defs, lambda t: False) == ("", len(defs))


def test_hostile_requests_stay_bounded(table, monkeypatch):
    import retrieval.symbol_context as sc

    # a parse past the time limit is given up: the request's own definitions are unknown
    sc._request_parser.cache_clear()
    monkeypatch.setattr(sc, "PARSE_TIMEOUT_MS", 0.001)
    try:
        assert sc._request_parse("m.py", "python", b"Foo x = " * 20000, None) is None
        got = resolve(table, "m.py", "from acme.util import Clock\n" + "Foo x = " * 20000 + "\nc = Clock()\nc.")
        assert {"Clock.now", "Clock.sleep"} <= set(names(got))   # the table still answers
    finally:
        sc._request_parser.cache_clear()
    # minified code: one enormous line of uses is read from its end, a bounded number of names
    uses = sc._recent_uses(["f(" * 50000 + "Clock.now(x)"])
    assert 0 < len(uses) <= sc.MAX_USES and uses[0] == (["Clock", "now"], True, 1.0)


def _long_file(tail: str) -> str:
    """A 2,000-line module: imports, a module-level data table, a hundred helpers, then `tail`."""
    rows = "".join(f"    ({i:#x}, 'V'),\n" for i in range(1600))
    helpers = "".join(f"\n\ndef helper_{i}(x):\n    return x + {i}\n" for i in range(100))
    return ("from acme.util import Clock, parse_duration\nfrom acme.ledger import Ledger\n\n"
            f"CODEPOINTS = (\n{rows})\n{helpers}\n\nclass Job(Ledger):\n    def __init__(self):\n"
            "        self.clock = Clock()\n\n" + tail)


def test_a_long_file_with_a_data_table_resolves_from_the_cursors_neighbourhood(table, monkeypatch):
    import retrieval.symbol_context as sc

    prefix = _long_file("    def run(self, cfg):\n        span = parse_duration(cfg)\n        first = CODEPOINTS[0]\n"
                        "        helper_7(span)\n        c = Clock()\n        c.")
    assert prefix.count("\n") >= 2000
    parsed = []
    real = sc._trees.parse
    monkeypatch.setattr(sc._trees, "parse", lambda *a, **k: parsed.append(a[3]) or real(*a, **k))
    sc._trees.clear()
    got = resolve(table, "src/acme/job.py", prefix, "\n")
    assert set(names(got)[:2]) == {"Clock.now", "Clock.sleep"}
    assert {"parse_duration", "helper_7", "CODEPOINTS"} <= set(names(got))
    whole = {d.name: d for d in sc.extract("src/acme/job.py", prefix + "\n", "python").definitions}
    assert [d for d in got if d.name in ("helper_7", "CODEPOINTS")] == \
        [whole[d.name] for d in got if d.name in ("helper_7", "CODEPOINTS")]   # as the whole text reads them
    # one parse, of the cursor's neighbourhood: not the table, not the helpers it does not use
    assert len(parsed) == 1 and len(parsed[0].replace("\n", "")) < len(prefix) / 20
    # the receiver's class through the enclosing class's bases, from the table
    got = resolve(table, "src/acme/job.py", _long_file("    def run(self):\n        self.au"), "\n")
    assert names(got)[0] == "BaseLedger.audit"


def test_a_cursor_after_an_unterminated_string(table):
    for broken in ('        note = "no end\n', '        note = """no end\n'):
        prefix = _long_file("    def run(self):\n" + broken + "        c = Clock()\n        c.")
        got = names(resolve(table, "src/acme/job.py", prefix, "\n\n    def stop(self):\n        pass\n"))
        assert set(got[:2]) == {"Clock.now", "Clock.sleep"}, broken
        got = names(resolve(table, "src/acme/job.py", prefix + "\n        self.cl", "\n"))
        assert "Job.clock" in got[:2], broken   # the field the constructor above sets


def test_a_focus_that_makes_an_error_is_read_again_whole():
    from retrieval.symbol_context import _request_symbols, _trees
    from retrieval.symbols import extract

    # `alpha=1,` at column 0 looks like a statement of its own: blanked, it leaves `dict(` open
    text = ("import os\n\nVALUES = dict(\nalpha=1,\n)\n\n\ndef unused():\n    return 1\n\n\n"
            "def f():\n    return VALUES\n")
    _trees.clear()
    got = _request_symbols("", "m.py", "python", text, (len(text) - 1, {"VALUES"}, ""))
    assert got.definitions == extract("m.py", text, "python").definitions
