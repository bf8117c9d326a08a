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
from pathlib import Path
from typing import Iterator

from codetailor.atomic import atomic_write_json, read_json, remove_stale_partials, staging_dir
from codetailor.errors import NotFound
from codetailor.home import TenantPaths

_VERSION = re.compile(r"^v(\d{4,})$")
SYSTEMS = ("base", "rag", "ft", "ft+rag")


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
        if not (p / "meta.json").is_file():
            raise NotFound(f"tenant {self.paths.tenant!r} has no adapter version {version!r}")
        return p

    def meta(self, version: str) -> dict:
        return read_json(self.path(version) / "meta.json")

    @contextlib.contextmanager
    def new_version(self) -> Iterator[tuple[str, Path]]:
        """Yield (version, staging dir). Write the adapter files and the caller's
        metadata into it; on exit it becomes the next version atomically."""
        self.paths.adapters_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.paths.adapters_dir)
        latest = self.latest()
        n = int(latest[1:]) + 1 if latest else 1
        version = f"v{n:04d}"
        with staging_dir(self.paths.adapter_dir(version)) as tmp:
            yield version, tmp
            meta_path = tmp / "meta.json"
            meta = read_json(meta_path) if meta_path.exists() else {}
            meta.update({"version": version, "uid": uuid.uuid4().hex, "created_at": time.time(),
                         "tenant": str(self.paths.tenant)})
            atomic_write_json(meta_path, meta)

    # -- state ---------------------------------------------------------------
    def state(self) -> dict:
        try:
            s = read_json(self.paths.adapters_state)
        except FileNotFoundError:
            s = {}
        s.setdefault("active", None)
        s.setdefault("previous", [])
        s.setdefault("system", None)           # chosen by evaluation
        s.setdefault("system_override", None)  # set by an admin
        return s

    def active(self) -> str | None:
        return self.state()["active"]

    def serving_system(self) -> str:
        """The system serving should use: the admin override, else evaluation's choice,
        else ft+rag with an active adapter and rag without one."""
        s = self.state()
        choice = s["system_override"] or s["system"]
        if choice is None:
            choice = "ft+rag" if s["active"] else "rag"
        if choice in ("ft", "ft+rag") and not s["active"]:
            choice = "rag" if choice == "ft+rag" else "base"
        return choice

    def _write_state(self, s: dict) -> None:
        s["updated_at"] = time.time()
        atomic_write_json(self.paths.adapters_state, s)

    def set_active(self, version: str | None) -> dict:
        if version is not None:
            self.path(version)
        s = self.state()
        if s["active"] != version:
            if s["active"]:
                s["previous"] = [s["active"]] + [v for v in s["previous"] if v != s["active"]][:9]
            s["active"] = version
            self._write_state(s)
        return s

    def rollback(self) -> dict:
        s = self.state()
        if not s["previous"]:
            raise NotFound(f"tenant {self.paths.tenant!r} has no previous adapter version to roll back to")
        target, rest = s["previous"][0], s["previous"][1:]
        s["active"], s["previous"] = target, rest
        self._write_state(s)
        return s

    def set_system(self, system: str | None, *, override: bool = False) -> dict:
        if system is not None and system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
        s = self.state()
        s["system_override" if override else "system"] = system
        self._write_state(s)
        return s


def list_rows(store: AdapterStore) -> list[dict]:
    s = store.state()
    latest = store.latest()
    rows = []
    for v in store.versions():
        m = store.meta(v)
        rows.append({
            "version": v,
            "active": v == s["active"],
            "latest": v == latest,
            "previous": v in s["previous"][:1],
            "created_at": m.get("created_at"),
            "cqi": (m.get("evaluation") or {}).get("cqi"),
            "public_loss_change": m.get("public_loss_change"),
        })
    return rows



