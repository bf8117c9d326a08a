"""Admin operations on one tenant's serving state (the AdminService's logic).

Activation and rollback go through the evaluation guardrail (`evaluation.guardrail`),
which refuses an adapter that did not beat the generic model or was trained on another base.
"""

from __future__ import annotations

import logging

from codetailor.adapters import AdapterStore, list_rows
from codetailor.config import Settings
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
