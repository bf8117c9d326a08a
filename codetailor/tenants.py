"""Tenants, their named sources, and API keys.

A key looks like `ct_<id>_<secret>`. Only HMAC-SHA256(pepper, secret) is
stored, in `keys/<id>.json`, so verifying a key is one file read by id and a
constant-time compare, never a scan over all hashes. The pepper lives outside
the key files (env `CODETAILOR_KEY_PEPPER` or `secrets/pepper`), so a leaked
key directory alone does not allow offline guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from enum import Enum


from codetailor.atomic import DIR_MODE, atomic_write_json, private_dir, read_json
from codetailor.errors import AlreadyExists, AuthError, ConfigError, NotFound
from codetailor.home import Home, TenantPaths
from codetailor.names import SourceName, TenantId

KEY_PREFIX = "ct"
_KEY_RE = re.compile(r"^ct_([0-9a-f]{12})_([A-Za-z0-9_-]{32,64})$")


class Role(str, Enum):
    developer = "developer"
    admin = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the result of authenticating a key."""

    tenant: TenantId
    role: Role
    key_id: str


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant: str
    role: str
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class Registry:
    def __init__(self, home: Home, pepper: str | None = None):
        self.home = home
        self._pepper = pepper.encode() if pepper else None

    # -- tenants -------------------------------------------------------------
    def create_tenant(self, name: str) -> tuple[TenantPaths, str]:
        """Create a tenant and its first admin key; returns (paths, the key in clear)."""
        paths = self.home.tenant(TenantId(name))
        self._pepper_bytes()  # a missing/unusable pepper fails here, before anything is written
        private_dir(paths.root.parent)
        try:
            paths.root.mkdir(mode=DIR_MODE)
            os.chmod(paths.root, DIR_MODE)  # other local users must not read a tenant's code
        except FileExistsError:
            if paths.record.exists():
                raise AlreadyExists(f"tenant {name!r} already exists") from None
        atomic_write_json(paths.record, {"name": str(paths.tenant), "created_at": time.time(), "sources": {}})
        key = self.create_key(paths.tenant, Role.admin)
        return paths, key

    def tenant(self, name: str) -> TenantPaths:
        paths = self.home.tenant(TenantId(name))
        if not paths.record.is_file():
            raise NotFound(f"unknown tenant {name!r}")
        return paths

    def tenants(self) -> list[dict]:
        return [read_json(self.home.tenant(t).record) for t in self.home.tenant_ids()]

    def delete_tenant(self, name: str) -> None:
        """Remove a tenant's keys and artifacts. Keys go first, so a half-finished
        delete never leaves a working key to a tenant without artifacts."""
        paths = self.tenant(name)
        for info in self.keys(paths.tenant):
            (self.home.keys_dir / f"{info.id}.json").unlink(missing_ok=True)
        graveyard = paths.root.parent / f".{paths.tenant}.{os.getpid()}.deleted.partial"
        os.replace(paths.root, graveyard)
        shutil.rmtree(graveyard, ignore_errors=True)

    def add_source(self, tenant: TenantId, source: str, location: str, **fields) -> None:
        """Record (or update) a named source; keys not given (a connected source's url, branch,
        credential and selection) are kept, so re-indexing a clone does not disconnect it. A name
        whose index rows were waiting to be dropped takes them over: its next index run
        reconciles them with what it selects."""
        paths = self.tenant(tenant)
        source = SourceName(source)
        record = read_json(paths.record)
        entry = record.setdefault("sources", {}).setdefault(source, {})
        entry.update(fields, location=location, updated_at=time.time())
        _discard(record, source)
        atomic_write_json(paths.record, record)

    def remove_source(self, tenant: TenantId, source: str) -> None:
        """Forget a source; its name stays listed in `sources_to_drop` until its index rows are
        gone (`source_dropped`), so a removal interrupted before that is finished by the next refresh."""
        paths = self.tenant(tenant)
        source = SourceName(source)
        record = read_json(paths.record)
        if record.get("sources", {}).pop(source, None) is None:
            raise NotFound(f"tenant {tenant!r} has no source {source!r}")
        record["sources_to_drop"] = sorted(set(record.get("sources_to_drop", [])) | {source})
        atomic_write_json(paths.record, record)

    def sources_to_drop(self, tenant: TenantId) -> list[str]:
        return list(read_json(self.tenant(tenant).record).get("sources_to_drop", []))

    def source_dropped(self, tenant: TenantId, source: str) -> None:
        paths = self.tenant(tenant)
        record = read_json(paths.record)
        if _discard(record, SourceName(source)):
            atomic_write_json(paths.record, record)

    def sources(self, tenant: TenantId) -> dict[str, dict]:
        return read_json(self.tenant(tenant).record).get("sources", {})

    # -- keys ----------------------------------------------------------------
    def _pepper_bytes(self) -> bytes:
        if self._pepper is None:
            path = self.home.secrets_dir / "pepper"
            if not path.exists():
                private_dir(path.parent)
                try:  # O_EXCL: two first-time processes agree on one pepper
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(secrets.token_hex(32))
                except FileExistsError:
                    pass
            for _ in range(50):  # the creator may not have written it yet
                value = path.read_text().strip()
                if value:
                    break
                time.sleep(0.01)
            if not value:  # an empty key would make every stored hash a plain SHA-256 of the secret
                raise ConfigError(f"{path} is empty: remove it to have a new pepper made (every API key must "
                                  f"then be issued again), or restore the pepper from your backup")
            self._pepper = value.encode()
        return self._pepper

    def _hash(self, secret: str) -> str:
        return hmac.new(self._pepper_bytes(), secret.encode(), hashlib.sha256).hexdigest()

    def create_key(self, tenant: TenantId | str, role: Role | str) -> str:
        paths = self.tenant(tenant)
        role = Role(role)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        atomic_write_json(
            self.home.keys_dir / f"{key_id}.json",
            {"id": key_id, "tenant": str(paths.tenant), "role": role.value, "hash": self._hash(secret),
             "created_at": time.time(), "revoked_at": None},
            mode=0o600,
        )
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def _key_record(self, key_id: str) -> dict | None:
        if not re.fullmatch(r"[0-9a-f]{12}", key_id or ""):
            return None
        try:
            return read_json(self.home.keys_dir / f"{key_id}.json")
        except (FileNotFoundError, ValueError):
            return None

    def keys(self, tenant: TenantId | str | None = None) -> list[KeyInfo]:
        if not self.home.keys_dir.is_dir():
            return []
        out = []
        for p in sorted(self.home.keys_dir.glob("*.json")):
            r = self._key_record(p.stem)
            if r and (tenant is None or r["tenant"] == tenant):
                out.append(KeyInfo(r["id"], r["tenant"], r["role"], r["created_at"], r["revoked_at"]))
        return out

    def revoke_key(self, key_id: str) -> None:
        r = self._key_record(key_id)
        if r is None:
            raise NotFound(f"unknown key id {key_id!r}")
        if r["revoked_at"] is None:
            r["revoked_at"] = time.time()
            atomic_write_json(self.home.keys_dir / f"{key_id}.json", r, mode=0o600)

    def authenticate(self, api_key: str | None) -> Principal:
        """Map an API key to its tenant and role, or raise AuthError (one message for all
        failures, so a caller cannot probe which key ids exist)."""
        m = _KEY_RE.fullmatch(api_key or "")
        if not m:
            raise AuthError("missing or malformed API key")
        r = self._key_record(m.group(1))
        if r is None or not hmac.compare_digest(r["hash"], self._hash(m.group(2))):
            raise AuthError("invalid API key")
        if r["revoked_at"] is not None:
            raise AuthError("API key revoked")
        if not self.home.tenant(r["tenant"]).record.is_file():
            raise AuthError("invalid API key")
        return Principal(TenantId(r["tenant"]), Role(r["role"]), r["id"])


def _discard(record: dict, source: str) -> bool:
    waiting = record.get("sources_to_drop", [])
    if source not in waiting:
        return False
    record["sources_to_drop"] = [s for s in waiting if s != source]
    if not record["sources_to_drop"]:
        del record["sources_to_drop"]
    return True


def registry_from_settings(settings) -> Registry:
    return Registry(Home(settings.home), settings.key_pepper)
