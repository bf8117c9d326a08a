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
from codetailor.errors import CodetailorError, Incompatible, Refused
from codetailor.home import TenantPaths
from codetailor.model import base_mismatch, model_checksum, prompt_template, resolve_base_model


class GuardrailRefused(Refused):
    pass


class BaseModelMismatch(Incompatible):
    pass


def _configured_base(settings: Settings) -> tuple[str, str]:
    """(checksum, prompt template name) of the configured base model."""
    path = resolve_base_model(settings)
    return model_checksum(path), prompt_template(settings, path).name


def check_base_model(settings: Settings, paths: TenantPaths, version: str, meta: AdapterMeta) -> None:
    why = base_mismatch(f"{paths.tenant}/{version}", meta, *_configured_base(settings))
    if why:
        raise BaseModelMismatch(why)


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
    """Every version with latest/active/previous flags, CQI, whether the guardrail allows it, and
    why it must be retrained for the configured base model and template (None when it need not)."""
    store = AdapterStore(paths)
    rows = list_rows(store)
    try:
        base = _configured_base(settings) if rows else None
    except CodetailorError:  # the base model is not fetched (or fits no template): listing still works
        base = None
    for row in rows:
        meta = store.meta(row["version"])
        row["retrain"] = base_mismatch(f"{paths.tenant}/{row['version']}", meta, *base) if base else None
        row["allowed"] = row["retrain"] is None and not refusal_reasons(settings, meta)
    return rows
