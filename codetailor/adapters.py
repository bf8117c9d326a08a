"""Adapter versions of one tenant: where they live and which one is active.

A version is an immutable directory `adapters/vNNNN/` holding the PEFT files
(adapter_config.json, adapter_model.safetensors) and `meta.json`. It is built
in a staging directory and renamed into place, so a killed trainer leaves no
half-written version. `state.json` (written atomically, last) names the active
and previous versions and the system serving should use; activation rules
(the evaluation guardrail) live in evaluation, not here.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from codetailor.artifacts import AdapterMeta, AdapterState, EvaluationSummary
from codetailor.atomic import remove_stale_partials, staging_dir
from codetailor.errors import NotFound
from codetailor.home import TenantPaths
from codetailor.systems import System

_VERSION = re.compile(r"^v(\d{4,})$")
META = "meta.json"


@dataclass
class StagedVersion:
    """A version being built: write the adapter files into `dir` and set `meta` (training's
    record; without one the meta only names the version); AdapterStore publishes both when
    the `with` block ends without an error."""

    version: str
    dir: Path
    meta: AdapterMeta | None = None


class AdapterStore:
    def __init__(self, paths: TenantPaths):
        self.paths = paths

    def versions(self) -> list[str]:
        d = self.paths.adapters_dir
        if not d.is_dir():
            return []
        found = [p.name for p in d.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def latest(self) -> str | None:
        v = self.versions()
        return v[-1] if v else None

    def path(self, version: str) -> Path:
        p = self.paths.adapter_dir(version)
        if not (p / META).is_file():
            raise NotFound(f"tenant {self.paths.tenant!r} has no adapter version {version!r}")
        return p

    def meta(self, version: str) -> AdapterMeta:
        return AdapterMeta.read(self.path(version) / META)

    @contextlib.contextmanager
    def new_version(self) -> Iterator[StagedVersion]:
        """Yield a StagedVersion; on a clean exit it becomes the next version atomically,
        its meta stamped with the version's identity (version, uid, created_at, tenant)."""
        self.paths.adapters_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.paths.adapters_dir)
        latest = self.latest()
        n = int(latest[1:]) + 1 if latest else 1
        version = f"v{n:04d}"
        with staging_dir(self.paths.adapter_dir(version)) as tmp:
            staged = StagedVersion(version, tmp)
            yield staged
            (staged.meta or AdapterMeta()).model_copy(update={"version": version, "uid": uuid.uuid4().hex, "created_at": time.time(),
                                           "tenant": str(self.paths.tenant)}).write(tmp / META)

    def record_evaluation(self, version: str, summary: EvaluationSummary) -> AdapterMeta:
        """Replace the version's evaluation summary (the rest of its meta is unchanged)."""
        meta = self.meta(version).model_copy(update={"evaluation": summary})
        meta.write(self.path(version) / META)
        return meta

    # -- state ---------------------------------------------------------------
    def state(self) -> AdapterState:
        return AdapterState.read_or_none(self.paths.adapters_state) or AdapterState()

    def active(self) -> str | None:
        return self.state().active

    def serving_system(self) -> System:
        """The system serving should use: the admin override, else evaluation's choice,
        else ft+rag with an active adapter and rag without one."""
        s = self.state()
        choice = s.system_override or s.system
        if choice is None:
            choice = System.FT_RAG if s.active else System.RAG
        if choice.uses_adapter and not s.active:
            choice = choice.without_adapter()
        return choice

    def _write_state(self, s: AdapterState, **changes) -> AdapterState:
        s = s.model_copy(update={**changes, "updated_at": time.time()})
        s.write(self.paths.adapters_state)
        return s

    def set_active(self, version: str | None) -> AdapterState:
        if version is not None:
            self.path(version)
        s = self.state()
        if s.active == version:
            return s
        previous = s.previous
        if s.active:
            previous = (s.active, *[v for v in s.previous if v != s.active][:9])
        return self._write_state(s, active=version, previous=previous)

    def rollback(self) -> AdapterState:
        s = self.state()
        if not s.previous:
            raise NotFound(f"tenant {self.paths.tenant!r} has no previous adapter version to roll back to")
        return self._write_state(s, active=s.previous[0], previous=s.previous[1:])

    def set_system(self, system: System | str | None, *, override: bool = False) -> AdapterState:
        chosen = None if system is None else System.parse(system)
        return self._write_state(self.state(), **{"system_override" if override else "system": chosen})


def list_rows(store: AdapterStore) -> list[dict]:
    s = store.state()
    latest = store.latest()
    rows = []
    for v in store.versions():
        m = store.meta(v)
        rows.append({
            "version": v,
            "active": v == s.active,
            "latest": v == latest,
            "previous": v in s.previous[:1],
            "created_at": m.created_at,
            "cqi": m.cqi,
            "public_loss_change": m.public_loss_change,
        })
    return rows
