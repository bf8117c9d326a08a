"""Definitions and imports extracted per language from the chunker's tree-sitter parse."""

from __future__ import annotations

import pytest

from retrieval.symbols import extract, module_key, module_of

PY = '''import os.path as p, sys
from .util import (parse_duration as pd, Clock)
from ..base import *

MAX_SIZE: int = 10
log = make_logger()


def charge(card, *, cents: int = 0) -> bool:
    """Charge a card.

    Details that are not the first line."""
    return True


class Ledger(Base):
    """Keeps invoices."""
    currency = "EUR"

    def __init__(self, owner):
        self.owner = owner
        self.items = []

    @property
    def size(self):
        return len(self.items)

    @size.setter
    def size(self, v):
        pass

    def _flush(self):  # written on close
        # not part of the signature
        pass

    async def add(self,
                  invoice: "Invoice",
                  note: str = "") -> None:
        self.items.append(invoice)
'''


def _defs(fs):
    return {d.qualname: d for d in fs.definitions}


def test_python_definitions_and_imports():
    fs = extract("billing/core/ledger.py", PY)
    assert fs.language == "python" and fs.module == "billing.core.ledger"
    d = _defs(fs)
    assert set(d) == {"MAX_SIZE", "log", "charge", "Ledger", "Ledger.currency", "Ledger.__init__",
                      "Ledger.owner", "Ledger.items", "Ledger.size", "Ledger._flush", "Ledger.add"}
    assert d["Ledger._flush"].signature == "def _flush(self):"
    assert (d["MAX_SIZE"].kind, d["log"].kind, d["charge"].kind) == ("constant", "variable", "function")
    assert d["charge"].signature == "def charge(card, *, cents: int = 0) -> bool:"
    assert d["charge"].doc == "Charge a card." and d["charge"].line == 9
    assert (d["Ledger"].kind, d["Ledger"].signature, d["Ledger"].doc) == ("class", "class Ledger(Base):", "Keeps invoices.")
    assert d["Ledger.size"].kind == "property" and d["Ledger.size"].line == 24   # the getter, not the setter
    assert d["Ledger.add"].signature == 'async def add(self, invoice: "Invoice", note: str = "") -> None:'
    assert d["Ledger.add"].container == "Ledger" and d["Ledger.add"].kind == "method"
    assert d["Ledger.owner"].kind == "field" and d["Ledger.owner"].signature == "self.owner = owner"
    imports = {(i.module, i.name, i.alias) for i in fs.imports}
    assert imports == {("os.path", None, "p"), ("sys", None, "sys"), ("billing.core.util", "parse_duration", "pd"),
                       ("billing.core.util", "Clock", "Clock"), ("billing.base", "*", "*")}


def test_long_literals_give_their_first_line():
    fs = extract("t.py", "TABLE = {\n    'a': 1,\n    'b': 2,\n}\n" + "BIG = '" + "x" * 5000 + "'\n")
    d = _defs(fs)
    assert d["TABLE"].signature == "TABLE = {" and len(d["BIG"].signature) <= 240


def test_python_package_init_relative_import():
    fs = extract("billing/__init__.py", "from .core import Ledger\n")
    assert fs.module == "billing"
    assert [(i.module, i.name) for i in fs.imports] == [("billing.core", "Ledger")]


JAVA = '''package com.acme.pay;

import com.acme.util.Strings;
import com.acme.model.*;

/**
 * Charges cards through the acquirer.
 */
public class PaymentGateway extends Base {
    public static final int MAX_RETRIES = 3;
    @Inject
    private final Client client;

    public PaymentGateway(Client client) { this.client = client; }

    // Charges a card; cents must be positive.
    public boolean chargeCard(String card,
                              int cents) throws PaymentException {
        return cents > 0;
    }

    enum Status { OK, DECLINED }
}
'''


def test_java_definitions_and_imports():
    fs = extract("src/main/java/com/acme/pay/PaymentGateway.java", JAVA)
    assert fs.module == "com.acme.pay"
    d = _defs(fs)
    assert d["PaymentGateway"].kind == "class" and d["PaymentGateway"].doc == "Charges cards through the acquirer."
    assert d["PaymentGateway"].signature == "public class PaymentGateway extends Base"
    assert d["PaymentGateway.MAX_RETRIES"].kind == "constant"
    assert d["PaymentGateway.client"].kind == "field"
    assert d["PaymentGateway.client"].signature == "@Inject private final Client client"
    m = d["PaymentGateway.chargeCard"]
    assert m.signature == "public boolean chargeCard(String card, int cents) throws PaymentException"
    assert (m.kind, m.container, m.line, m.doc) == ("method", "PaymentGateway", 17, "Charges a card; cents must be positive.")
    assert d["PaymentGateway.PaymentGateway"].signature == "public PaymentGateway(Client client)"
    assert {"Status.OK", "Status.DECLINED"} <= set(d)
    assert {(i.module, i.name) for i in fs.imports} == {("com.acme.util", "Strings"), ("com.acme.model", "*")}


GO = '''package shipping

import (
	geo "github.com/acme/core/internal/geometry"
	"github.com/acme/core/money"
)

// Parcel is one box.
type Parcel struct {
	WeightKg float64
	Dest     geo.Point
}

type Quoter interface {
	Quote(p Parcel) (money.Amount, error)
}

const FreightRate = 4.5

// ComputeFreight returns the freight cost for a parcel.
func ComputeFreight(p Parcel) money.Amount {
	return money.Amount(p.WeightKg * FreightRate)
}

// Volume of the parcel.
func (p *Parcel) Volume() float64 { return 0 }
'''


def test_go_definitions_and_imports():
    fs = extract("shipping/freight.go", GO)
    assert fs.module == "shipping"
    d = _defs(fs)
    assert (d["Parcel"].kind, d["Parcel"].signature, d["Parcel"].doc) == ("class", "type Parcel struct", "Parcel is one box.")
    assert d["Parcel.WeightKg"].kind == "field" and d["Parcel.Dest"].signature == "Dest geo.Point"
    assert d["Quoter"].kind == "type" and d["Quoter.Quote"].kind == "method"
    assert d["FreightRate"].kind == "constant"
    assert d["ComputeFreight"].signature == "func ComputeFreight(p Parcel) money.Amount"
    assert d["ComputeFreight"].doc == "ComputeFreight returns the freight cost for a parcel."
    v = d["Parcel.Volume"]
    assert (v.kind, v.container, v.signature, v.line) == ("method", "Parcel", "func (p *Parcel) Volume() float64", 26)
    assert {(i.module, i.alias) for i in fs.imports} == {("github.com/acme/core/internal/geometry", "geo"),
                                                        ("github.com/acme/core/money", "money")}


TS = '''import Default, { formatCents as fmt, Currency } from "./money";
import * as api from "../api/index";

/** A cart line. */
export interface LineItem {
  sku: string;
  total(qty: number): number;
}

export type Sku = string;
export enum Status { Open, Paid = 2 }

export const TAX_RATE = 0.2;
export const addTax = (cents: number): number => cents * (1 + TAX_RATE);

// A shopping cart.
export class Cart extends Base {
  private items: LineItem[] = [];
  constructor(owner: string) {
    super();
    this.owner = owner;
  }
  get size(): number { return this.items.length; }
  add(item: LineItem, qty = 1): void { this.items.push(item); }
}

export function checkout<T>(cart: Cart, opts?: T): Promise<string> {
  return api.post(cart);
}
'''


@pytest.mark.parametrize("path,language", [("web/src/cart.ts", "typescript"), ("web/src/cart.tsx", "typescript")])
def test_typescript_definitions_and_imports(path, language):
    fs = extract(path, TS)
    assert fs.language == language and fs.module == path.rsplit(".", 1)[0]
    d = _defs(fs)
    assert d["LineItem"].kind == "type" and d["LineItem"].doc == "A cart line."
    assert d["LineItem.total"].signature == "total(qty: number): number" and d["LineItem.sku"].kind == "field"
    assert d["Sku"].signature == "type Sku = string" and d["Status"].kind == "type"
    assert "Status.Open" in d
    assert d["TAX_RATE"].kind == "constant"
    assert (d["addTax"].kind, d["addTax"].signature) == ("function", "const addTax = (cents: number): number")
    assert d["Cart"].signature == "class Cart extends Base" and d["Cart"].doc == "A shopping cart."
    assert d["Cart.items"].signature == "private items: LineItem[]"
    assert d["Cart.owner"].kind == "field" and d["Cart.size"].kind == "property"
    assert d["Cart.add"].signature == "add(item: LineItem, qty = 1): void"
    assert d["checkout"].signature == "function checkout<T>(cart: Cart, opts?: T): Promise<string>"
    assert {(i.module, i.name, i.alias) for i in fs.imports} == {
        ("web/src/money", "default", "Default"), ("web/src/money", "formatCents", "fmt"),
        ("web/src/money", "Currency", "Currency"), ("web/api", None, "api")}


JS = '''const { readFile } = require("fs");
import { slugify } from "./text.js";

/** Renders a page. */
function renderPage(title, body) {
  return `<h1>${slugify(title)}</h1>${body}`;
}

class Router {
  constructor() { this.routes = []; }
  route(path, handler) { this.routes.push([path, handler]); }
}

export const DEFAULT_ROUTE = "/";
'''


def test_javascript_definitions_and_imports():
    fs = extract("site/render.js", JS)
    d = _defs(fs)
    assert d["renderPage"].signature == "function renderPage(title, body)" and d["renderPage"].doc == "Renders a page."
    assert d["Router.route"].signature == "route(path, handler)" and d["Router.routes"].kind == "field"
    assert d["DEFAULT_ROUTE"].kind == "constant"
    assert [(i.module, i.name) for i in fs.imports] == [("site/text", "slugify")]


def test_unsupported_language_and_broken_source():
    assert extract("notes.md", "# def f(): pass").definitions == []
    fs = extract("half.py", "def ok(a):\n    return a\n\ndef broken(x, y\n")
    assert "ok" in _defs(fs)


def test_module_names():
    assert module_of("a/b/__init__.py", "python") == "a.b"
    assert module_of("web/lib/index.ts", "typescript") == "web/lib"
    assert module_of("cmd/x/main.go", "go") == "cmd/x"
    assert module_key("a.b.c") == "c" and module_key("web/lib") == "lib" and module_key("") == ""
