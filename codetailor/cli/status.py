"""`codetailor status --tenant T`: the tenant's index, adapter and refresh at a glance.

Reads only what the writers published (index manifest, symbol table, adapter state,
refresh and source states): no model, embedder or vector store is loaded, so it can be
polled while an index or `--embed-pending` runs.
"""

from __future__ import annotations

import time

from codetailor.cli import add_json_flag
from codetailor.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("status", help="a tenant's index progress, symbol table, active adapter and last refresh")
    p.add_argument("--tenant", required=True)
    add_json_flag(p)
    p.set_defaults(handler=_status)


def tenant_status(settings, tenant: str) -> dict:
    from codetailor.adapters import AdapterStore
    from codetailor.artifacts import RefreshState, SourceState
    from codetailor.tenants import registry_from_settings
    from retrieval import index_status

    registry = registry_from_settings(settings)
    paths = registry.tenant(tenant)   # unknown tenant -> NotFound
    index = index_status(paths)
    registered = registry.sources(paths.tenant)
    for name in sorted(set(registered) | set(index["sources"])):
        row = index["sources"].setdefault(name, {"location": registered[name].get("location"), "chunking": None,
                                                 "files_indexed": 0, "chunks": 0, "vectors_pending": 0,
                                                 "symbols": None})
        url = registered.get(name, {}).get("url")
        state = SourceState.read_or_none(paths.source_state(name)) if url else None
        row.update(url=url, indexed_commit=state.indexed_commit if state else None,
                   last_refresh=state.refreshed_at if state else None,
                   last_error=state.last_error if state else None)
    adapters = AdapterStore(paths)
    refresh = RefreshState.read_or_none(paths.refresh_state)
    refreshed = [s["last_refresh"] for s in index["sources"].values() if s["last_refresh"]]
    return {"tenant": str(paths.tenant), "index": index,
            "adapter": {"active": adapters.active(), "system": adapters.serving_system().value},
            "refresh": {"last_refresh": max(refreshed, default=None),
                        "phase": refresh.phase if refresh else "idle",
                        "last_decision": refresh.last_decision if refresh else None}}


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _status(args):
    out = tenant_status(get_settings(), args.tenant)
    if args.json:
        return out
    ix = out["index"]
    lines = [f"tenant {out['tenant']}"]
    if not ix["indexed"]:
        lines.append("index: none yet")
    else:
        lines.append(f"index: generation {ix['generation']}, {_count(ix['files_indexed'])} files, "
                     f"{_count(ix['chunks'])} chunks, {_count(ix['vectors_pending'])} vectors pending, "
                     f"{_count(ix['symbols'])} symbols; encoder {ix['encoder'] or ix['embedding_model'] or '-'}; "
                     f"published {_when(ix['updated_at'])}")
    for name, s in ix["sources"].items():
        lines.append(f"  {name}: {_count(s['files_indexed'])} files, {_count(s['chunks'])} chunks, "
                     f"{_count(s['vectors_pending'])} pending, {_count(s['symbols'])} symbols; "
                     f"refreshed {_when(s['last_refresh'])}" + (f"; error: {s['last_error']}" if s["last_error"] else ""))
    lines.append(f"adapter: {out['adapter']['active'] or 'none active'} (serving system {out['adapter']['system']})")
    r = out["refresh"]
    lines.append(f"refresh: last {_when(r['last_refresh'])}, phase {r['phase']}"
                 + (f"; {r['last_decision']}" if r["last_decision"] else ""))
    return "\n".join(lines)
