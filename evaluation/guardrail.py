"""The activation guardrail: which adapter version a tenant's traffic may use.

An adapter becomes active only if
  1. it was trained on the base model that is configured now (checksum in meta),
  2. its latest evaluation gave a CQI above `evaluation.cqi_threshold` (the best
     of the systems that use it, ft and ft+rag), and
  3. its recorded `public_loss_change` (relative change of the loss on public
     code, the forgetting guard) is at most `evaluation.max_public_loss_increase`.
Rollback returns to the previous active version without re-checking: it is the
way back from a bad activation. Both write adapters/state.json atomically;
serving reads it per request batch, so no restart is needed.

Serving's admin service and the CLI both call `activate` / `rollback` here.
"""

from __future__ import annotations

from codetailor.adapters import AdapterStore, list_rows
from codetailor.artifacts import AdapterMeta
from codetailor.config import Settings
from codetailor.errors import Incompatible, Refused
from codetailor.home import TenantPaths
from codetailor.model import model_checksum, prompt_template, resolve_base_model


class GuardrailRefused(Refused):
    pass


class BaseModelMismatch(Incompatible):
    pass


def check_base_model(settings: Settings, paths: TenantPaths, version: str, meta: AdapterMeta) -> None:
    recorded = meta.base_model.checksum
    base_path = resolve_base_model(settings)
    current = model_checksum(base_path)
    if recorded is None:
        raise BaseModelMismatch(f"adapter {paths.tenant}/{version} records no base-model checksum; retrain it")
    if recorded != current:
        raise BaseModelMismatch(
            f"adapter {paths.tenant}/{version} was trained on another base model "
            f"(checksum {recorded[:12]}…, configured base {current[:12]}…); retrain it for this base")
    # Adapters from before templates existed were all trained in the text layout.
    trained = meta.template
    if trained is not None:
        configured = prompt_template(settings, base_path).name
        if trained != configured:
            raise BaseModelMismatch(
                f"adapter {paths.tenant}/{version} was trained with the prompt template {trained}, but "
                f"{configured} is configured (prompt.template); retrain it or configure its template")


def refusal_reasons(settings: Settings, meta: AdapterMeta) -> list[str]:
    """Why the guardrail would refuse this adapter (empty: it may be activated)."""
    cfg = settings.evaluation
    reasons = []
    cqi = meta.cqi
    if cqi is None:
        reasons.append("it has not been evaluated with an adapter system (run `codetailor eval`)")
    elif not cqi > cfg.cqi_threshold:
        reasons.append(f"its latest CQI {cqi:.2f} is not above the threshold {cfg.cqi_threshold:.2f}")
    change = meta.public_loss_change
    if change is None:
        reasons.append("it records no public_loss_change (the forgetting check did not run)")
    elif change > cfg.max_public_loss_increase:
        reasons.append(f"its public-code loss rose by {change:+.1%}, above the bound "
                       f"{cfg.max_public_loss_increase:.1%}")
    return reasons


def activate(settings: Settings, paths: TenantPaths, version: str) -> dict:
    """Make `version` the tenant's active adapter if the guardrail allows; returns the state."""
    store = AdapterStore(paths)
    meta = store.meta(version)  # NotFound for an unknown version
    check_base_model(settings, paths, version, meta)
    reasons = refusal_reasons(settings, meta)
    if reasons:
        raise GuardrailRefused(f"not activating {paths.tenant}/{version}: " + "; ".join(reasons))
    state = store.set_active(version)
    return {"tenant": str(paths.tenant), "active": state.active, "previous": list(state.previous[:1]),
            "cqi": meta.cqi, "serving_system": store.serving_system()}


def rollback(settings: Settings, paths: TenantPaths) -> dict:
    """Return to the previously active version (NotFound when there is none)."""
    store = AdapterStore(paths)
    state = store.rollback()
    return {"tenant": str(paths.tenant), "active": state.active, "previous": list(state.previous[:1]),
            "serving_system": store.serving_system()}


def versions(settings: Settings, paths: TenantPaths) -> list[dict]:
    """Every version with latest/active/previous flags, CQI and whether the guardrail allows it."""
    store = AdapterStore(paths)
    rows = list_rows(store)
    for row in rows:
        row["allowed"] = not refusal_reasons(settings, store.meta(row["version"]))
    return rows
