"""`codetailor model fetch|path`."""

from __future__ import annotations

import sys
import time

from codetailor.cli import add_json_flag
from codetailor.config import get_settings
from codetailor.home import Home
from codetailor.model import fetch_default_model, resolve_base_model


def register(sub) -> None:
    p = sub.add_parser("model", help="fetch and locate the base model")
    s = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    f = s.add_parser("fetch", help="make the embedded default base model (SmolLM2-135M-Instruct); idempotent")
    add_json_flag(f)
    f.set_defaults(handler=_fetch)
    w = s.add_parser("path", help="print the configured base model's checkpoint directory")
    add_json_flag(w)
    w.set_defaults(handler=lambda a: {"path": str(resolve_base_model(get_settings()))})


def _fetch(args) -> dict:
    t0 = time.perf_counter()
    say = (lambda m: None) if args.json else (lambda m: print(f"model: {m}", file=sys.stderr))
    info = fetch_default_model(Home(get_settings().home), progress=say)
    out = info.as_dict()
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
