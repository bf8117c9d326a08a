"""`codetailor model list|fetch|path`."""

from __future__ import annotations

import sys
import time

from codetailor import catalog
from codetailor.cli import add_command, add_group
from codetailor.config import DEFAULT_MODEL, get_settings
from codetailor.errors import CodetailorError
from codetailor.home import Home
from codetailor.model import fetch_model, is_fetched, resolve_base_model


def register(sub) -> None:
    s = add_group(sub, "model", "list, fetch and locate base models")
    add_command(s, "list", "the catalog of base models, and which are fetched", _list)
    f = add_command(s, "fetch", "download, verify and convert a catalog model (default: the configured model.base); "
                                "idempotent", _fetch)
    f.add_argument("name", nargs="?", metavar="NAME", help=f"a catalog name ({', '.join(catalog.names())})")
    add_command(s, "path", "print the configured base model's checkpoint directory",
                lambda a: {"path": str(resolve_base_model(get_settings()))})


def _list(args) -> dict:
    settings = get_settings()
    home = Home(settings.home)
    rows = [{"name": e.name, "family": e.family, "parameters": e.parameters, "bytes": e.bytes,
             "licence": e.licence, "fim": e.fim, "fetched": is_fetched(home, e.name),
             "default": e.name == DEFAULT_MODEL, "configured": e.name == settings.model.base}
            for e in catalog.entries()]
    if args.json:
        return {"models": rows}
    for r in rows:
        marks = ", ".join(m for m, on in (("default", r["default"]), ("configured", r["configured"]),
                                          ("fetched", r["fetched"])) if on)
        print(f"{r['name']:<24} {r['family']:<14} {r['parameters'] / 1e6:>7.0f}M params "
              f"{r['bytes'] / 1e6:>6.0f} MB  {r['licence']}  fim={'yes' if r['fim'] else 'no'}"
              + (f"  ({marks})" if marks else ""))
    return None


def _fetch(args) -> dict:
    settings = get_settings()
    name = args.name or settings.model.base
    if catalog.find(name) is None:
        if args.name is None:
            raise CodetailorError(f"model.base is {name!r}, not a catalog model: name one to fetch "
                                  f"({', '.join(catalog.names())})")
        catalog.get(name)  # NotFound with the known names
    t0 = time.perf_counter()
    say = (lambda m: None) if args.json else (lambda m: print(f"model: {m}", file=sys.stderr))
    info = fetch_model(Home(settings.home), name, progress=say)
    out = info.as_dict()
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
