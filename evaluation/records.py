"""Where evaluation results live.

Each run is one JSON file `evals/<UTC time>-<id>.json` (written atomically:
a reader sees a whole result or none) holding the summary and every task's
completions, so a report can be re-rendered later. The adapter that was
evaluated gets the summary the guardrail needs in its meta.json under
`evaluation` (also atomic; the rest of meta.json is unchanged), and the tenant's
adapters/state.json records which system serving should use.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from codetailor.adapters import AdapterStore
from codetailor.atomic import atomic_write_json, read_json
from codetailor.home import TenantPaths

ADAPTER_SYSTEMS = ("ft", "ft+rag")
CUSTOM_SYSTEMS = ("rag", "ft", "ft+rag")


def new_eval_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def save(paths: TenantPaths, result: dict) -> Path:
    path = paths.evals_dir / f"{result['eval_id']}.json"
    atomic_write_json(path, result)
    return path


def eval_files(paths: TenantPaths) -> list[Path]:
    d = paths.evals_dir
    return sorted(p for p in d.glob("*.json") if not p.name.startswith(".")) if d.is_dir() else []


def latest(paths: TenantPaths) -> dict | None:
    files = eval_files(paths)
    return read_json(files[-1]) if files else None


def record_in_adapter(store: AdapterStore, version: str, result: dict) -> dict | None:
    """Put the adapter systems' best CQI into the version's meta.json; None if none ran."""
    cqi = {s: v for s, v in result["cqi"].items() if s in ADAPTER_SYSTEMS}
    if not cqi:
        return None
    best = max(cqi, key=lambda s: cqi[s]["value"])
    summary = {"eval_id": result["eval_id"], "at": result["finished_at"], "n": result["n"],
               "cqi": cqi[best]["value"], "cqi_low": cqi[best]["low"], "cqi_high": cqi[best]["high"],
               "system": best, "cqi_by_system": cqi}
    meta_path = store.path(version) / "meta.json"
    meta = read_json(meta_path)
    meta["evaluation"] = summary
    atomic_write_json(meta_path, meta)
    return summary


def choose_system(cqi: dict[str, dict]) -> str:
    """The customised system with the highest CQI if it beats base (CQI > 5), else base."""
    custom = {s: v["value"] for s, v in cqi.items() if s in CUSTOM_SYSTEMS}
    if not custom:
        return "base"
    best = max(custom, key=lambda s: (custom[s], s))
    return best if custom[best] > 5 else "base"
