"""Artifacts on disk: each a frozen, typed model with a schema version and one writer.

Every JSON file codetailor keeps between commands (adapter meta and state, the
index manifest, evaluation summaries, ...) is a subclass of `Artifact` declared in
this module, so the shape of everything on disk can be read in one place. The
owning package is the only one that calls `write` for its artifact; readers call
`read`, which

- refuses a file from a newer codetailor (its `schema_version` is above ours) with
  a clear message instead of guessing;
- migrates an older file through the model's `migrate` (a file written before
  versioning has no `schema_version` and counts as version 0);
- warns about keys it does not know and drops them, as PEFT's config does, so a
  typo or a stale field is visible instead of silently kept.

Writes are atomic (temporary file, then rename) with owner-only permissions by
default: artifacts describe a tenant's private code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from codetailor.atomic import atomic_write_text
from codetailor.errors import CodetailorError

log = logging.getLogger(__name__)


class ArtifactError(CodetailorError):
    """An artifact file is unreadable, of an unknown schema, or from a newer codetailor."""


class Artifact(BaseModel):
    """Base of every on-disk record. Subclasses set `SCHEMA_VERSION` and may override `migrate`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = 0  # set to SCHEMA_VERSION by `write`

    # -- upgrades ---------------------------------------------------------------------
    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Bring `data` written at schema `version` (< SCHEMA_VERSION) to the current shape.
        The default accepts files written before versioning whose keys already match."""
        return data

    # -- reading ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "") -> Self:
        where = source or cls.__name__
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or version < 0:
            raise ArtifactError(f"{where}: schema_version must be a non-negative integer, got {version!r}")
        if version > cls.SCHEMA_VERSION:
            raise ArtifactError(f"{where} was written by a newer codetailor (schema {version}; this one reads "
                                f"up to {cls.SCHEMA_VERSION}): upgrade codetailor to read it")
        if version < cls.SCHEMA_VERSION:
            data = cls.migrate(dict(data), version)
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            log.warning("%s: ignoring unknown keys %s", where, ", ".join(unknown))
        try:
            return cls.model_validate({**data, "schema_version": cls.SCHEMA_VERSION})
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "record"
            raise ArtifactError(f"{where}: {loc}: {first['msg']}") from None

    @classmethod
    def read(cls, path: Path) -> Self:
        """The artifact at `path`; FileNotFoundError passes through (callers decide what absence means)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ArtifactError(f"{path} is not UTF-8 text: {e}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def read_or_none(cls, path: Path) -> Self | None:
        try:
            return cls.read(path)
        except FileNotFoundError:
            return None

    # -- writing ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "schema_version": self.SCHEMA_VERSION}

    def write(self, path: Path, mode: int = 0o600) -> None:
        """Atomically replace `path`. Only the artifact's owning package calls this."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", mode)


# The artifacts themselves follow, one section per owner.


# -- sync (codetailor/credentials.py, codetailor/sources.py, codetailor/refresh.py) ------------

class CredentialRecord(Artifact):
    """credentials/<name>/credential.json: what a credential is; its secret sits beside it."""

    name: str
    kind: str                      # "token" (https) or "ssh" (deploy key)
    username: str | None = None    # token: the user of HTTP Basic; None sends a Bearer header
    known_hosts: bool = False      # ssh: a known_hosts file was stored with the key
    created_at: float


class SourceState(Artifact):
    """sources/<name>.state.json: where a connected source stands (written by fetch and refresh)."""

    source: str
    url: str
    branch: str | None = None
    commit: str | None = None          # checked out in the clone
    indexed_commit: str | None = None  # the index describes this commit
    history: str | None = None         # "tip", "since <date>" or "full": what the clone holds
    fetched_at: float | None = None
    refreshed_at: float | None = None
    last_error: str | None = None


class RefreshState(Artifact):
    """work/refresh.json: a tenant's retraining progress, so a killed refresh resumes where it stopped."""

    phase: str = "idle"                   # idle | train | eval | activate
    adapter: str | None = None            # the version being evaluated / activated
    trained_commits: dict[str, str] = {}  # source -> commit the last finished retraining saw
    pending_commits: dict[str, str] = {}  # source -> commit the retraining in progress sees
    measured_commits: dict[str, str] = {}  # the commits `measured_tokens` was counted at (a cache:
    measured_tokens: int = 0               # a refresh with no new commit does not diff again)
    last_decision: str | None = None
    updated_at: float = 0.0
