"""Admin operations on one tenant's serving state (the AdminService's logic).

Activation and rollback go through the evaluation guardrail (`evaluation.guardrail`),
which refuses an adapter that did not beat the generic model or was trained on another base.

Sources a tenant connects here are tenant-facing (codetailor.sources): https and ssh URLs only,
fetched with file transports refused and without submodules, with credentials the operator
granted to the tenant, named and never shown. A re-index runs in the background
(codetailor.refresh.RefreshQueue) and never holds up a request.
"""

from __future__ import annotations

import logging

from codetailor.adapters import AdapterStore, list_rows
from codetailor.config import Settings
from codetailor.errors import NotFound
from codetailor.home import Home, TenantPaths
from codetailor.systems import System
from evaluation import guardrail

log = logging.getLogger("codetailor.serving.admin")


def status(paths: TenantPaths) -> dict:
    store = AdapterStore(paths)
    s = store.state()
    return {"tenant": str(paths.tenant), "system": str(store.serving_system()), "active_version": s.active or "",
            "previous_versions": list(s.previous)}


def adapters(paths: TenantPaths) -> list[dict]:
    return [{"version": r["version"], "active": r["active"], "created_at": r["created_at"] or 0.0,
             "cqi": r["cqi"] or 0.0} for r in list_rows(AdapterStore(paths))]


def activate(settings: Settings, paths: TenantPaths, version: str) -> dict:
    guardrail.activate(settings, paths, version)  # refusals map through codetailor.errors
    return status(paths)


def rollback(settings: Settings, paths: TenantPaths) -> dict:
    guardrail.rollback(settings, paths)
    return status(paths)


def _for_tenant(settings: Settings, text: str | None) -> str:
    """Text for a tenant's client: no path of the server's home (git errors may name the clone)."""
    if not text:
        return ""
    for home in {str(settings.home), str(settings.home.resolve())}:
        text = text.replace(home, "<home>")
    return text


def sources(settings: Settings, paths: TenantPaths) -> list[dict]:
    """The tenant's sources as the admin API shows them: a URL only where the tenant gave it (an
    operator's source may be a path on the server), a credential by name, never a location."""
    from codetailor.sources import sources_from_settings

    rows = sources_from_settings(settings).list(str(paths.tenant))
    records = _registered(settings, paths)
    out = []
    for r in rows:
        mine = bool(records.get(r["source"], {}).get("tenant_facing"))
        out.append({"name": r["source"], "url": (r["url"] or "") if mine else "", "branch": r["branch"] or "",
                    "credential": (r["credential"] or "") if mine else "", "last_commit": r["last_commit"] or "",
                    "last_refresh": r["last_refresh"] or 0.0, "last_error": _for_tenant(settings, r["last_error"]),
                    "tenant_added": mine})
    return out


def _registered(settings: Settings, paths: TenantPaths) -> dict:
    from codetailor.tenants import registry_from_settings

    return registry_from_settings(settings).sources(paths.tenant)


def add_source(settings: Settings, paths: TenantPaths, args: dict) -> dict:
    from codetailor.sources import sources_from_settings

    sources_from_settings(settings).add(str(paths.tenant), args["name"], args["url"], branch=args.get("branch"),
                                        credential=args.get("credential"), tenant_facing=True)
    return next(r for r in sources(settings, paths) if r["name"] == args["name"])


def remove_source(settings: Settings, paths: TenantPaths, name: str) -> dict:
    """Only sources the tenant connected here: those the operator connected or indexed stay the operator's."""
    from codetailor.sources import sources_from_settings

    if not _registered(settings, paths).get(name, {}).get("tenant_facing"):
        raise NotFound(f"tenant {str(paths.tenant)!r} has no source it connected named {name!r}")
    out = sources_from_settings(settings).remove(str(paths.tenant), name)
    return {"tenant": str(paths.tenant), "name": name, "index_rows_dropped": bool(out["index"]["dropped"])}


_queue = None


def refresh_queue(settings: Settings):
    """The process's one RefreshQueue (the process that may write the home)."""
    global _queue
    if _queue is None:
        from codetailor.refresh import RefreshQueue

        _queue = RefreshQueue(settings, log=lambda msg: log.info("%s", msg))
    return _queue


def refresh_sources(settings: Settings, paths: TenantPaths) -> dict:
    if not any(r.get("url") for r in _registered(settings, paths).values()):
        raise NotFound(f"tenant {str(paths.tenant)!r} has no sources connected by URL (AddSource first)")
    queued, message = refresh_queue(settings).submit(str(paths.tenant))
    return {"tenant": str(paths.tenant), "queued": queued, "message": message}


def refresh_tenant_gauges(home: Home, m) -> None:
    """Per-tenant gauges: active version number, system in use (one-hot), CQI."""
    for t in home.tenant_ids():
        paths = home.tenant(t)
        store = AdapterStore(paths)
        try:
            active, system = store.active(), store.serving_system()
            cqi = (store.meta(active).cqi or 0.0) if active else 0.0
        except Exception as e:  # one broken tenant must not stop the others' gauges
            log.warning("tenant %s: cannot read adapter state: %s", t, e)
            continue
        m.active_version.set(int(active[1:]) if active else 0, tags={"tenant": str(t)})
        for s in System:
            m.system.set(1 if s == system else 0, tags={"tenant": str(t), "system": s.value})
        m.cqi.set(float(cqi), tags={"tenant": str(t)})


def tenant_write(settings: Settings, op: str, tenant: str, args: dict) -> dict:
    """Every change a front server makes to a tenant's files, in the process that may write the
    home: {"result": ...} or an error dict (serving.status). A gateway that mounts the home
    read-only asks the Ingress deployment to run this (serving/front.py `IngressCalls`)."""
    from serving.outcomes import OutcomeStore
    from serving.status import ServingError, classify

    paths = Home(settings.home).tenant(tenant)
    try:
        if op == "activate":
            return {"result": activate(settings, paths, args["version"])}
        if op == "rollback":
            return {"result": rollback(settings, paths)}
        if op == "add_source":
            return {"result": add_source(settings, paths, args)}
        if op == "remove_source":
            return {"result": remove_source(settings, paths, args["name"])}
        if op == "refresh_sources":
            return {"result": refresh_sources(settings, paths)}
        if op == "record_outcome":
            OutcomeStore(paths).record(args["completion_id"], args["outcome"], args["kept"],
                                       system=args["system"], adapter_version=args["adapter_version"])
            return {"result": None}
        raise ServingError("INVALID_ARGUMENT", f"unknown tenant operation {op!r}")
    except Exception as e:
        code, message = classify(e)
        if message is None:
            log.error("tenant %s: %s failed", tenant, op, exc_info=e)
            message = f"internal error during {op}"
        return ServingError(code, message).as_dict()
