"""The artifact home: the one module that maps a tenant to its files.

Layout under CODETAILOR_HOME:

    models/<name>/                 base model checkpoints (made by `model fetch`)
    secrets/pepper                 server-side key for API-key hashes (0600)
    keys/<key id>.json             API keys: tenant, role, HMAC of the secret
    tenants/<tenant>/tenant.json   tenant record and its named sources
    tenants/<tenant>/index/        retrieval: manifest, BM25 segments, vectors
    tenants/<tenant>/adapters/     LoRA adapter versions and state.json (active/previous)
    tenants/<tenant>/evals/        evaluation reports
    tenants/<tenant>/evals/partial/  runs in progress, a task per line (`eval --resume` continues one)
    tenants/<tenant>/usage/        serving outcomes (acceptance)
    tenants/<tenant>/work/         resumable scratch (training checkpoints, refresh progress)
    tenants/<tenant>/sources/<s>/  clones of sources connected by URL, beside <s>.state.json
    credentials/<name>/            tokens and deploy keys for fetching sources (0700, files 0600)

Nothing else in the code base joins these paths: a store receives a
`TenantPaths`, which can only be made here from a validated `TenantId`.
Each path is a plain typed property, alike on purpose: one per line of the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codetailor.names import TenantId, validate_model_name, validate_name


@dataclass(frozen=True)
class TenantPaths:
    tenant: TenantId
    root: Path

    @property
    def record(self) -> Path:
        return self.root / "tenant.json"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    def adapter_dir(self, version: str) -> Path:
        return self.adapters_dir / validate_name("adapter version", version)

    @property
    def adapters_state(self) -> Path:
        return self.adapters_dir / "state.json"

    @property
    def evals_dir(self) -> Path:
        return self.root / "evals"

    @property
    def partial_evals_dir(self) -> Path:
        return self.evals_dir / "partial"

    def partial_eval(self, run_id: str) -> Path:
        return self.partial_evals_dir / f"{validate_name('evaluation run', run_id)}.jsonl"

    @property
    def usage_dir(self) -> Path:
        return self.root / "usage"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def sources_dir(self) -> Path:
        return self.root / "sources"

    def source_clone(self, source: str) -> Path:
        return self.sources_dir / validate_name("source", source)

    def source_state(self, source: str) -> Path:
        return self.sources_dir / f"{validate_name('source', source)}.state.json"

    @property
    def refresh_state(self) -> Path:
        return self.work_dir / "refresh.json"

    @property
    def base_losses(self) -> Path:
        return self.work_dir / "base_losses.json"


class Home:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / validate_model_name(name)

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    def credential_dir(self, name: str) -> Path:
        return self.credentials_dir / validate_name("credential", name)

    @property
    def tenants_dir(self) -> Path:
        return self.root / "tenants"

    def tenant(self, tenant: TenantId | str) -> TenantPaths:
        tid = tenant if isinstance(tenant, TenantId) else TenantId(tenant)
        return TenantPaths(tid, self.tenants_dir / tid)

    def tenant_ids(self) -> list[TenantId]:
        if not self.tenants_dir.is_dir():
            return []
        return sorted(
            TenantId(p.name)
            for p in self.tenants_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "tenant.json").is_file()
        )
