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
from codetailor.errors import Incompatible
from codetailor.systems import System

log = logging.getLogger(__name__)


class ArtifactError(Incompatible):
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

# -- adapters (owner: codetailor/adapters.py; training builds the meta, evaluation adds its summary) --------

class BaseModelRecord(BaseModel):
    """The base model an adapter was trained on; the guardrail compares `checksum` with the configured one."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    path: str | None = None
    name: str | None = None
    checksum: str | None = None


class SplitRecord(BaseModel):
    """Which of the tenant's files training held out (plain paths, as retrieval names them)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    seed: int | None = None
    heldout_fraction: float | None = None
    by: str = "file"
    train_files: int = 0
    heldout_files: tuple[str, ...] = ()


class EvaluationSummary(BaseModel):
    """An adapter's latest evaluation: what the guardrail decides on (best adapter system's CQI)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    cqi: float
    cqi_low: float | None = None
    cqi_high: float | None = None
    system: System | None = None
    eval_id: str = ""
    at: float | None = None
    n: int = 0
    cqi_by_system: dict[str, dict[str, float]] = {}


class AdapterMeta(Artifact):
    """`adapters/vNNNN/meta.json`: how a version was trained and how it evaluated.

    Training fills the training fields; AdapterStore stamps the identity (version, uid,
    created_at, tenant) when it publishes the version; evaluation replaces `evaluation`."""

    SCHEMA_VERSION: ClassVar[int] = 1

    version: str = ""
    uid: str = ""                 # unique per published version: tells a recreated tenant's v0001 apart
    created_at: float | None = None
    tenant: str = ""
    base_model: BaseModelRecord = BaseModelRecord()
    template: str | None = None   # the prompt template the adapter was trained with
    hardware: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    split: SplitRecord | None = None
    warm_start: dict[str, Any] | None = None   # {"parent": version, "heldout_seen_by_parent": [paths]}
    hyper_parameters: dict[str, Any] = {}
    data: dict[str, Any] = {}
    epochs_seen: float | None = None
    stopped_by_budget: bool | None = None
    steps: int | None = None
    train_tokens: int | None = None
    seconds: float | None = None
    tokens_per_second: float | None = None
    torch_threads: int | None = None
    resumed_from_sequence: int | None = None
    losses: dict[str, float | None] = {}
    public_loss_change: float | None = None  # relative change of the public-code loss: the forgetting guard
    adapter_bytes: int | None = None
    evaluation: EvaluationSummary | None = None

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        if version < 1:
            # Unversioned metas named the held-out list in several ways and the checksum flat.
            split = data.get("split") if isinstance(data.get("split"), dict) else {}
            split = dict(split)
            for holder, key in ((split, "heldout"), (split, "held_out"), (data, "heldout_files"), (data, "heldout")):
                if "heldout_files" not in split and isinstance(holder.get(key), list):
                    split["heldout_files"] = holder[key]
            for holder, key in ((split, "heldout"), (split, "held_out"), (data, "heldout_files"), (data, "heldout")):
                holder.pop(key, None)
            if split:
                data["split"] = split
            flat = data.pop("base_model_checksum", None)
            base = data.get("base_model") if isinstance(data.get("base_model"), dict) else {}
            if flat and not base.get("checksum"):
                data["base_model"] = {**base, "checksum": flat}
        return data

    @property
    def heldout(self) -> tuple[str, ...] | None:
        return self.split.heldout_files if self.split is not None else None

    @property
    def cqi(self) -> float | None:
        return self.evaluation.cqi if self.evaluation is not None else None


class EvaluationRecord(Artifact):
    """`evals/<eval id>.json`: one evaluation run, its summary and every task's completions, so a
    report can be rendered again later. Written once by evaluation/records.py."""

    SCHEMA_VERSION: ClassVar[int] = 1

    eval_id: str
    tenant: str
    adapter: str | None = None
    systems: dict[str, dict[str, Any]] = {}      # per system: the metrics' means
    cqi: dict[str, dict[str, Any]] = {}          # per customised system: value, low, high
    n: int = 0
    seconds: float = 0.0
    finished_at: float | None = None
    by_kind: dict[str, Any] = {}
    split: dict[str, Any] = {}
    internal_apis: int = 0
    chosen_system: System | None = None
    hardware: dict[str, Any] | None = None       # the machine and the number formats chosen (codetailor.hardware)
    tasks: list[dict[str, Any]] = []
    runs: int = 1                                # how many `eval` invocations built it (`--resume`)


class PartialEvaluationHeader(Artifact):
    """First line of `evals/partial/<run id>.jsonl`, a run in progress (evaluation/records.py writes
    it): what must be equal for `eval --resume` to reuse its completions in one record."""

    SCHEMA_VERSION: ClassVar[int] = 1

    run_id: str
    tenant: str
    started_at: float
    plan: dict[str, Any]           # flat "name": value of everything that changes a prompt or a completion
    task_ids: list[str] = []       # the tasks cut when the run began, in order
    tasks_sha256: str = ""         # of their text: equal ids over edited files are not the same tasks


class PartialEvaluationTask(BaseModel):
    """Each further line of a partial run: one task's completions, every system of the run."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    task: str
    seconds: float                 # the run's generation time when it was written, earlier runs included
    run: int = 1                   # which invocation of the run did it (1, then one more per resume)
    completions: dict[str, dict[str, Any]]   # system -> evaluation.runner.Completion's fields


class AdapterState(Artifact):
    """`adapters/state.json`: the active version, the ones before it, and the system serving uses."""

    SCHEMA_VERSION: ClassVar[int] = 1

    active: str | None = None
    previous: tuple[str, ...] = ()
    system: System | None = None            # chosen by evaluation
    system_override: System | None = None   # set by an admin
    updated_at: float | None = None

# -- training's cache of base-model losses (written only by training/run.py) ---------------------------

class BaseLossCache(Artifact):
    """work/base_losses.json: the base model's loss on each evaluation example a training run measured,
    so the next run measures only the adapter's. Valid for one base checkpoint and compute dtype."""

    identity: str = ""                               # training.budget.cache_identity(checksum, dtype)
    losses: dict[str, tuple[float, int]] = {}        # example key -> (summed loss, completion tokens)


# -- retrieval: the index manifest (written only by retrieval/segments.py) -----------------------

class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class IndexedFile(_Part):
    sha: str                    # content + chunking parameters: equal means its rows are kept
    content_sha: str            # sha256 of the file's text: known free of secrets; readers re-check it
    segment: str | None = None  # the BM25 segment holding its rows
    rows: list[int] = []        # its rows in that segment
    ids: list[int] = []         # its chunk ids (vector point ids)
    bytes: int = 0              # UTF-8 size, for the per-tenant cap (0: indexed before caps existed)


class SegmentRef(_Part):
    name: str
    rows: int


class IndexedSource(_Part):
    location: str               # the directory indexed
    selection: dict[str, Any] = {}   # retrieval.Selection.to_dict() at index time
    chunking: str = "syntax"


class IndexManifest(Artifact):
    """A tenant's published index: BM25 segments, tombstoned rows, files per source and the vector
    generation. Publishing it is the commit point of an index run: readers see the old or the new."""

    SCHEMA_VERSION: ClassVar[int] = 2

    generation: int = 0
    segments: list[SegmentRef] = []
    tombstones: dict[str, list[int]] = {}      # segment name -> dead rows
    files: dict[str, dict[str, IndexedFile]] = {}   # source -> path -> file
    sources: dict[str, IndexedSource] = {}
    garbage_ids: list[int] = []                # dead vector points still to delete
    pending_ids: list[int] = []                # live chunks whose vectors are not written yet
    embedding_model: str | None = None
    # the identity of the encoder that built the vectors in the store (retrieval/embed.py); queries
    # embed with it. None: no vector was written yet.
    encoder: str | None = None
    dim: int | None = None
    updated_at: float | None = None

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        if version == 0:
            # before versioning: a "format": 1 marker, and every live chunk had its vector
            data.pop("format", None)
            data.setdefault("pending_ids", [])
        if version < 2 and data.get("embedding_model") and "encoder" not in data:
            # before the encoder was recorded, vectors were always sentence-transformers on torch
            data["encoder"] = f"{data['embedding_model']}+torch"
        return data

# -- retrieval: an exported encoder (written only by retrieval/onnx_encoder.py) -------------------

class EncoderRecord(Artifact):
    """`<home>/encoders/<model>/onnx-int8/encoder.json`: what an int8 ONNX export of an embedding
    model is. `sha256` is the graph file's: it names the export in an index's encoder identity, so
    vectors from two different exports are never compared."""

    model: str                       # retrieval.embedding_model it was exported from
    backend: str = "onnx-int8"
    sha256: str
    dim: int
    max_seq_length: int              # tokens; longer texts are truncated, as sentence-transformers does
    normalize: bool = True           # the model ends in a Normalize module
    pad_token_id: int = 0
    versions: dict[str, str] = {}    # torch, onnx and onnxruntime that made it
    created_at: float | None = None


class StaticEncoderRecord(Artifact):
    """`<encoder_cache>/<model>/static/static.json`: a static encoder distilled from an embedding
    model (retrieval/static_encoder.py). `sha256` is the vectors file's: it names the distillation
    in an index's encoder identity, so vectors of two distillations are never compared."""

    model: str                       # retrieval.embedding_model it was distilled from
    sha256: str
    dim: int                         # after PCA
    vocab_size: int                  # rows of the vectors file, one per token id
    max_tokens: int                  # tokens of a text that count; the rest are cut
    prior: str                       # the token weighting and the corpus it was counted on
    versions: dict[str, str] = {}
    created_at: float | None = None

# -- sync (codetailor/credentials.py, codetailor/sources.py, codetailor/refresh.py) ------------

class CredentialRecord(Artifact):
    """credentials/<name>/credential.json: what a credential is; its secret sits beside it."""

    name: str
    kind: str                      # "token" (https) or "ssh" (deploy key)
    username: str | None = None    # token: the user of HTTP Basic; None sends a Bearer header
    known_hosts: bool = False      # ssh: a known_hosts file was stored with the key
    created_at: float
    # The one tenant whose admin keys may name it (the admin API); None: the operator's CLI only,
    # so no tenant can fetch with another's token.
    tenant: str | None = None


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
