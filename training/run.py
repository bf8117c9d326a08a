"""`codetailor train`: from a tenant's sources to a new (inactive) adapter version.

1. The tenant's files as indexing selected them (retrieval.files, each re-checked
   against its indexed hash), split by file into train and held-out (codetailor.split,
   seeded, recorded); the public corpus split the same way.
2. Examples from the train files (optionally with retrieved neighbours), plus
   public replay examples at `replay_ratio`.
3. The loop (resumable from the tenant's work dir), then the losses: held-out
   tenant code, and held-out public code with and without the adapter.
4. The adapter files and the AdapterMeta go into AdapterStore.new_version()'s staging
   version, which becomes vNNNN only when everything is in place. It is not activated.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from codetailor.adapters import AdapterStore
from codetailor.artifacts import AdapterMeta, ArtifactError, BaseLossCache, BaseModelRecord
from codetailor.hardware import choose_dtypes, detect, hardware_record, torch_dtype
from codetailor.home import TenantPaths
from codetailor.model import model_checksum, prompt_template, resolve_base_model
from codetailor.prompt_format import TEXT, Signature, Snippet, Template, snippets_from
from codetailor.split import Split, split_files

from training.budget import (cache_identity, check_budget, checkpoint_parameters, eval_sample_size, example_key,
                             spread)
from training.corpus import CorpusFile, TrainingError, public_files, tenant_files
from training.examples import WINDOW, Definitions, Example, ExampleBuilder, Neighbours
from training.loop import Checkpoint, LoopConfig, check_time_cap, example_losses, pooled, run_loop, torch_threads
from training.lora import attach_lora, load_base, load_lora_state, save_adapter

PUBLIC_HELDOUT_FRACTION = 0.1
PUBLIC_SEED = 20240601   # fixed: every tenant's public loss is measured on the same code


@dataclass(frozen=True)
class TrainOptions:
    rank: int
    alpha: int
    epochs: float
    time_budget: float | None = None     # seconds of training loop
    rag_augmented: bool = False
    replay_ratio: float = 0.2
    selection: object | None = None      # retrieval.Selection; None = each source's indexed selection
    progress: bool = True
    warm_start: str | None = None        # an adapter version whose weights the new LoRA starts from


def retrieval_neighbours(settings, paths: TenantPaths, exclude: Sequence[str]) -> Neighbours:
    """Neighbours from the tenant's index, never from the example's file nor a held-out file."""
    from retrieval import search

    excluded = tuple(exclude)
    k = max(1, settings.retrieval.top_k)

    def neighbours(query: str, path: str) -> Sequence[Snippet]:
        return snippets_from(search(settings, paths, query, mode="bm25", top_k=k, exclude_paths=(path, *excluded)))
    return neighbours


def retrieval_definitions(settings, paths: TenantPaths, exclude: Sequence[str]) -> Definitions:
    """The definitions a cursor uses, as serving resolves them (prompt.symbols), never from a held-out
    file; the example's own file only as far as its cursor shows it."""
    from retrieval.symbol_context import prompt_definitions

    excluded = tuple(exclude)

    def definitions(cursor) -> Sequence[Signature]:
        return prompt_definitions(paths, cursor.path, cursor.prefix, cursor.suffix,
                                  limit=settings.prompt.symbol_limit, exclude_paths=excluded)
    return definitions


def example_builder(tokenizer, settings, neighbours: Neighbours | None = None, *,
                    packing: bool | None = None, template: Template = TEXT,
                    definitions: Definitions | None = None) -> ExampleBuilder:
    """The builder the training config describes (`packing` overrides the config's), laying
    examples out in `template` (the base model's, codetailor.model.prompt_template)."""
    cfg = settings.training
    return ExampleBuilder(tokenizer, settings.prompt, cfg.seq_len, cfg.target_tokens, neighbours,
                          settings.retrieval.query_lines, packing=cfg.packing if packing is None else packing,
                          window_context=cfg.window_context, cursor_fraction=cfg.cursor_fraction,
                          template=template, definitions=definitions)


def build_examples(builder: ExampleBuilder, files: Sequence[CorpusFile], origin: str, seed: int, *,
                   rag_fraction: float = 0.0, other_weight: float = 1.0, limit: int | None = None,
                   per_file: int | None = None, target_limit: int | None = None,
                   progress: bool = False) -> list[Example]:
    """Examples of `files` in a seeded order; with `limit` (examples) or `target_limit`
    (target tokens), files are visited in a seeded shuffle and at most `per_file` examples
    are taken from each until the limit is reached."""
    rng = random.Random(seed)
    files = list(files)
    limited = limit is not None or target_limit is not None
    if limited:
        rng.shuffle(files)
    out: list[Example] = []
    targets = 0
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc=f"{origin} examples", unit="file", leave=False)
    for f in it:
        if (limit is not None and len(out) >= limit) or (target_limit is not None and targets >= target_limit):
            break
        for ex in builder.file_examples(f, origin, random.Random(f"{seed}:{f.path}"), rag_fraction=rag_fraction,
                                        other_weight=other_weight, max_examples=per_file):
            if target_limit is not None and targets >= target_limit:
                break
            out.append(ex)
            targets += ex.n_target
    return out[:limit] if limit is not None else out


def replay_count(n_tenant: int, ratio: float) -> int:
    """Public examples (or target tokens) to add so they are `ratio` of the mixed set."""
    return 0 if ratio <= 0 else round(n_tenant * ratio / (1 - ratio))


def replay_examples(builder: ExampleBuilder, tenant: Sequence[Example], public: Sequence[CorpusFile],
                    ratio: float, seed: int) -> list[Example]:
    """Public examples, built like the tenant's, making up `ratio` of the mix.

    Unpacked, the ratio counts examples (all of about one size). Packed, windows
    (~440 target tokens at seq_len 512) and cursor examples (~240) differ, so it counts
    target tokens, the tokens the loss learns from; the example shares stay close
    because both sides mix windows and cursor examples alike."""
    if builder.packing:
        want = replay_count(sum(e.n_target for e in tenant), ratio)
        return build_examples(builder, public, "public", seed, target_limit=want, per_file=8)
    return build_examples(builder, public, "public", seed, limit=replay_count(len(tenant), ratio), per_file=8)


def _fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (list, tuple)) and p and isinstance(p[0], Example):
            for ex in p:
                h.update(repr((ex.ids, ex.n_prompt)).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _content_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _warm_start_parent(paths: TenantPaths, opts: TrainOptions) -> AdapterMeta:
    """The parent adapter's meta, checked to be a start this run can continue from."""
    meta = AdapterStore(paths).meta(opts.warm_start)   # NotFound for an unknown version
    hyper = meta.hyper_parameters
    if (hyper.get("rank"), hyper.get("alpha")) != (opts.rank, opts.alpha):
        raise TrainingError(f"cannot warm-start from {opts.warm_start}: it has rank {hyper.get('rank')} and alpha "
                            f"{hyper.get('alpha')}, this run {opts.rank} and {opts.alpha}")
    return meta


def _without_seen_heldout(split: Split, files: Sequence[CorpusFile], parent: AdapterMeta) -> tuple[Split, list[str]]:
    """The split by path can hand a renamed file to the held-out side although the parent adapter
    trained on its content: such files move to the train side, so evaluation never scores the
    child on code its parent learned. Returns (split, moved paths)."""
    seen = set(parent.data.get("train_content_sha256") or ())
    text = {f.path: f.text for f in files}
    moved = sorted(p for p in split.heldout if _content_sha(text[p]) in seen)
    if not moved:
        return split, []
    if len(moved) == len(split.heldout):
        raise TrainingError("every held-out file was trained on by the parent adapter (renamed files): "
                            "train without warm start to draw a fresh evaluation set")
    return Split(split.seed, split.fraction, tuple(sorted((*split.train, *moved))),
                 tuple(p for p in split.heldout if p not in moved)), moved


@dataclass(frozen=True)
class SplitFiles:
    """Phase 1 of training: the tenant's selected files and which of them are held out."""

    split: Split
    train: list[CorpusFile]
    heldout: list[CorpusFile]
    skipped: dict[str, int]   # indexed files left out: changed or gone since indexing (re-index to use them)
    moved: tuple[str, ...] = ()   # held-out by path, but trained on by the warm-start parent


def split_tenant_files(settings, paths: TenantPaths, selection=None,
                       files: Sequence[CorpusFile] | None = None,
                       parent: AdapterMeta | None = None) -> SplitFiles:
    """The tenant's files (`selection`, else each source's indexed one), split by path; with a
    warm-start `parent`, held-out files whose content it trained on move to the train side."""
    skipped: Counter = Counter()
    if files is None:
        files = tenant_files(settings, paths, selection, skipped)
    if not files:
        raise TrainingError(f"tenant {paths.tenant!r} has no indexable code in its sources "
                            f"(after the selection and safety skips)")
    if len(files) < 2:
        raise TrainingError(f"tenant {paths.tenant!r} has only one selected file; training needs at least two "
                            f"(one is held out for evaluation)")
    cfg = settings.training
    split = split_files([f.path for f in files], cfg.split_seed, cfg.heldout_fraction)
    moved: list[str] = []
    if parent is not None:
        split, moved = _without_seen_heldout(split, files, parent)
    heldout = set(split.heldout)
    return SplitFiles(split, [f for f in files if f.path not in heldout], [f for f in files if f.path in heldout],
                      dict(sorted(skipped.items())), tuple(moved))


@dataclass(frozen=True)
class TrainingSet:
    """Phase 2 of training: the examples the loop trains on and those the losses are measured on."""

    tenant: list[Example]       # from the train files
    public: list[Example]       # public replay, `replay_ratio` of the mix
    heldout: list[Example]      # cursor examples of the held-out files
    public_eval: list[Example]  # cursor examples of the held-out public files

    @property
    def examples(self) -> list[Example]:
        """What the loop trains on, in this order (the checkpoint's fingerprint covers it)."""
        return self.tenant + self.public


def build_training_set(settings, paths: TenantPaths, tokenizer, phase: SplitFiles, opts: TrainOptions,
                       neighbours_factory: Callable[[Sequence[str]], Neighbours] | None = None, *,
                       template: Template) -> TrainingSet:
    cfg = settings.training
    neighbours, definitions = None, None
    if opts.rag_augmented:
        neighbours = (neighbours_factory or (lambda ex: retrieval_neighbours(settings, paths, ex)))(phase.split.heldout)
        if settings.prompt.symbols:
            definitions = retrieval_definitions(settings, paths, phase.split.heldout)
    builder = example_builder(tokenizer, settings, neighbours, template=template, definitions=definitions)
    tenant_ex = build_examples(builder, phase.train, "tenant", cfg.seed, rag_fraction=cfg.rag_fraction,
                               other_weight=cfg.other_code_weight, progress=opts.progress)
    if not tenant_ex:
        raise TrainingError(f"tenant {paths.tenant!r}: the selected train files yield no training examples")
    # Held-out and public-eval examples are cursor examples without neighbours, never packed: their
    # losses measure the serving layout at a cursor and compare like with like across runs.
    plain = example_builder(tokenizer, settings, packing=False, template=template)
    heldout_ex = build_examples(plain, phase.heldout, "tenant", cfg.seed + 1, limit=cfg.eval_examples,
                                per_file=max(1, -(-cfg.eval_examples // max(1, len(phase.heldout)))))
    public_ex, public_eval = [], []
    if opts.replay_ratio > 0:
        pub = public_files()
        psplit = split_files([f.path for f in pub], PUBLIC_SEED, PUBLIC_HELDOUT_FRACTION)
        pheld = set(psplit.heldout)
        public_ex = replay_examples(example_builder(tokenizer, settings, template=template), tenant_ex,
                                    [f for f in pub if f.path not in pheld], opts.replay_ratio, cfg.seed + 2)
        public_eval = build_examples(plain, [f for f in pub if f.path in pheld], "public", PUBLIC_SEED,
                                     limit=cfg.eval_examples, per_file=2)
    return TrainingSet(tenant_ex, public_ex, heldout_ex, public_eval)


@dataclass(frozen=True)
class Losses:
    """Phase 4 of training: mean completion-token losses after the loop (None: no examples)."""

    heldout: float | None          # held-out tenant code, with the adapter
    heldout_base: float | None     # the same, base model alone
    public_base: float | None      # held-out public code, base model alone
    public_adapter: float | None   # the same, with the adapter

    @property
    def public_change(self) -> float | None:
        """Relative change of the public loss: the forgetting guard the activation guardrail reads."""
        if not self.public_base:
            return None
        return (self.public_adapter - self.public_base) / self.public_base


def measure_losses(pm, heldout: Sequence[Example], public: Sequence[Example], dtype,
                   cache: dict[str, tuple[float, int]]) -> Losses:
    """The four losses; base-model losses come from `cache` (example key -> (sum, tokens)) where
    known, and the ones measured here are added to it."""
    def base(examples: Sequence[Example]) -> float | None:
        missing = [e for e in examples if example_key(e) not in cache]
        cache.update(zip((example_key(e) for e in missing), example_losses(pm, missing, adapter=False, dtype=dtype)))
        return pooled([cache[example_key(e)] for e in examples])

    return Losses(heldout=pooled(example_losses(pm, heldout, adapter=True, dtype=dtype)),
                  heldout_base=base(heldout),
                  public_base=base(public),
                  public_adapter=pooled(example_losses(pm, public, adapter=True, dtype=dtype)))


def eval_sample(ts: TrainingSet, cache: dict, seconds_per_token: float, seconds: float | None) -> tuple[list, list]:
    """The held-out and public examples the loss passes measure: all of them, or with a time budget
    (`seconds` for the passes) an evenly spread sample that fits at the loop's measured rate."""
    if seconds is None:
        return list(ts.heldout), list(ts.public_eval)
    cost = [[(len(e.ids), example_key(e) in cache) for e in side] for side in (ts.heldout, ts.public_eval)]
    n = eval_sample_size(cost[0], cost[1], seconds_per_token, seconds)
    return spread(ts.heldout, n), spread(ts.public_eval, n)


def _read_cache(paths: TenantPaths, identity: str) -> dict[str, tuple[float, int]]:
    try:
        cached = BaseLossCache.read_or_none(paths.base_losses)
    except ArtifactError:   # an unreadable cache is only a cache: measure again
        cached = None
    return dict(cached.losses) if cached is not None and cached.identity == identity else {}


def _write_cache(paths: TenantPaths, identity: str, cache: dict, used: Sequence[Example]) -> None:
    """Keep the entries of the examples this run's examples could sample from (the file stays small)."""
    keep = {k: cache[k] for k in (example_key(e) for e in used) if k in cache}
    paths.work_dir.mkdir(parents=True, exist_ok=True)
    BaseLossCache(identity=identity, losses=keep).write(paths.base_losses)


def _hyper_parameters(cfg, opts: TrainOptions, dtypes) -> dict:
    """What the adapter was trained with (AdapterMeta.hyper_parameters; part of the checkpoint key)."""
    return {"rank": opts.rank, "alpha": opts.alpha, "lr": cfg.lr, "seq_len": cfg.seq_len,
            "target_tokens": cfg.target_tokens, "grad_accum": cfg.grad_accum,
            "epochs": opts.epochs, "warmup_fraction": cfg.warmup_fraction, "schedule": "cosine",
            "replay_ratio": opts.replay_ratio, "rag_augmented": opts.rag_augmented,
            "rag_fraction": cfg.rag_fraction if opts.rag_augmented else 0.0, "seed": cfg.seed,
            "base_weights": dtypes.base_weights.value, "autocast": dtypes.autocast.value,
            "target_modules": "q,k,v,o,gate,up,down",
            "time_budget_s": opts.time_budget, "packing": cfg.packing,
            "window_context": cfg.window_context if cfg.packing else None,
            "cursor_fraction": cfg.cursor_fraction if cfg.packing else None,
            "warm_start": opts.warm_start}


def _data_record(phase: SplitFiles, ts: TrainingSet) -> dict:
    """What the adapter learned from and was measured on (AdapterMeta.data)."""
    examples = ts.examples
    return {"train_files": len(phase.train), "heldout_files": len(phase.heldout),
            "skipped_since_index": phase.skipped,
            "train_bytes": sum(len(f.text.encode()) for f in phase.train),
            # what this adapter learned from, so a warm-started child never holds it out
            "train_content_sha256": sorted({_content_sha(f.text) for f in phase.train}),
            "tenant_examples": len(ts.tenant), "public_examples": len(ts.public),
            "rag_examples": sum(e.rag for e in ts.tenant),
            "kinds": {k: sum(e.kind == k for e in ts.tenant) for k in ("line", "midline", "fim", WINDOW)},
            "tokens_per_epoch": sum(len(e.ids) for e in examples),
            "target_tokens_per_epoch": sum(e.n_target for e in examples),
            "tenant_target_tokens": sum(e.n_target for e in ts.tenant),
            "public_target_tokens": sum(e.n_target for e in ts.public),
            "heldout_examples": len(ts.heldout), "public_eval_examples": len(ts.public_eval),
            "public_corpus": "python stdlib"}


def train_tenant(settings, paths: TenantPaths, opts: TrainOptions,
                 neighbours_factory: Callable[[Sequence[str]], Neighbours] | None = None,
                 files: Sequence[CorpusFile] | None = None) -> dict:
    t0 = time.monotonic()
    cfg = settings.training
    threads = torch_threads(cfg.threads)
    dtypes = choose_dtypes(detect(), base_weights=cfg.base_weights, autocast=cfg.autocast)
    autocast_dtype = torch_dtype(dtypes.autocast.value)   # float32: no autocast (training.loop.autocast)
    base_path = resolve_base_model(settings)
    # Examples are laid out in the template serving will use (prompt.template); recorded so a base
    # or template change is refused instead of serving an adapter in a layout it never saw.
    template = prompt_template(settings, base_path)
    template_name = template.name
    if opts.rank > settings.engine.max_lora_rank:
        # The engine sizes its LoRA buffers by max_lora_rank; a larger adapter could not be served.
        raise TrainingError(f"rank {opts.rank} is above engine.max_lora_rank={settings.engine.max_lora_rank}; "
                            f"raise CODETAILOR_ENGINE__MAX_LORA_RANK or train a smaller rank")
    check_time_cap(opts.time_budget, cfg.max_seconds)  # before any of the work below
    check_budget(opts.time_budget, checkpoint_parameters(base_path), cfg.seq_len)
    cap = detect()
    device = "cuda" if cap.cuda_device else "cpu"

    # 1. files and the split
    selection_dict = opts.selection.to_dict() if opts.selection is not None else None
    parent = _warm_start_parent(paths, opts) if opts.warm_start else None
    phase = split_tenant_files(settings, paths, opts.selection, files, parent)
    split = phase.split

    # 2. examples
    model, tokenizer = load_base(base_path, dtypes.base_weights.value)
    model.to(device)
    ts = build_training_set(settings, paths, tokenizer, phase, opts, neighbours_factory, template=template)
    examples = ts.examples

    # 3. train (resumable)
    pm = attach_lora(model, opts.rank, opts.alpha, cfg.seed)
    if parent is not None:
        from safetensors.torch import load_file

        load_lora_state(pm, load_file(AdapterStore(paths).path(opts.warm_start) / "adapter_model.safetensors"))
        for p in pm.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    loop_cfg = LoopConfig(lr=cfg.lr, grad_accum=cfg.grad_accum, epochs=opts.epochs,
                          warmup_fraction=cfg.warmup_fraction, seed=cfg.seed, time_budget=opts.time_budget,
                          checkpoint_seconds=cfg.checkpoint_seconds, autocast=autocast_dtype,
                          max_seconds=cfg.max_seconds, ramp=opts.time_budget is not None,
                          # a GPU takes a whole step's sequences per forward pass, packed in rows
                          batch_tokens=(cfg.batch_tokens or cfg.grad_accum * cfg.seq_len) if device == "cuda" else 0)
    checksum = model_checksum(base_path)
    hyper = {**_hyper_parameters(cfg, opts, dtypes), "batch_tokens": loop_cfg.batch_tokens}
    if opts.rag_augmented and settings.prompt.symbols:   # absent otherwise: earlier checkpoints keep their key
        hyper["symbol_context"] = settings.prompt.symbol_limit
    key = _fingerprint(checksum, hyper, split.to_dict(), examples)
    work = paths.work_dir / "train"
    for stale in work.glob("*.pt") if work.is_dir() else []:
        if stale.stem != key[:16]:
            stale.unlink(missing_ok=True)   # another run's state can never be resumed by this one
    ckpt = Checkpoint(work / f"{key[:16]}.pt", key)
    t_loop = time.monotonic()
    state = run_loop(pm, examples, loop_cfg, ckpt, progress=opts.progress)
    t_eval = time.monotonic()
    epochs_seen = state.micro / len(examples)
    train_loss = state.loss_sum / max(state.target_tokens, 1)
    recent_loss = sum(state.recent[-5:]) / max(1, len(state.recent[-5:])) if state.recent else None

    # 4. losses after training: with a budget, sampled to fit eval_share of it at the loop's rate
    identity = cache_identity(checksum, dtypes.autocast.value)
    cache = _read_cache(paths, identity)
    eval_seconds = cfg.eval_share * opts.time_budget if opts.time_budget is not None else None
    heldout_eval, public_eval = eval_sample(ts, cache, state.seconds / max(state.tokens, 1), eval_seconds)
    losses = measure_losses(pm, heldout_eval, public_eval, autocast_dtype, cache)
    _write_cache(paths, identity, cache, ts.heldout + ts.public_eval)
    heldout_loss, public_change = losses.heldout, losses.public_change
    t_saved = time.monotonic()

    store = AdapterStore(paths)
    meta = AdapterMeta(
        base_model=BaseModelRecord(path=str(base_path), checksum=checksum, name=settings.model.base),
        template=template_name,
        selection=selection_dict,
        split=split.record(),
        warm_start={"parent": opts.warm_start, "heldout_seen_by_parent": list(phase.moved)} if parent is not None else None,
        hyper_parameters=hyper,
        data={**_data_record(phase, ts), "heldout_examples": len(heldout_eval),
              "public_eval_examples": len(public_eval)},
        epochs_seen=round(epochs_seen, 4),
        stopped_by_budget=state.micro < round(len(examples) * opts.epochs),
        steps=state.step,
        train_tokens=state.tokens,
        seconds=round(state.seconds, 2),
        tokens_per_second=round(state.tokens / max(state.seconds, 1e-9), 1),
        torch_threads=threads,
        hardware=hardware_record(dtypes, threads=threads),
        resumed_from_sequence=state.resumed_from,
        losses={"train": train_loss, "train_recent": recent_loss, "heldout": losses.heldout,
                "heldout_base": losses.heldout_base, "public_base": losses.public_base,
                "public_adapter": losses.public_adapter},
        public_loss_change=public_change,
    )
    with store.new_version() as staged:
        size = save_adapter(pm, staged.dir, base_path)
        staged.meta = meta.model_copy(update={"adapter_bytes": size})
    version = staged.version
    ckpt.remove()
    return {
        "adapter_version": version,
        "path": str(store.path(version)),
        "train_tokens": state.tokens,
        "epochs": round(epochs_seen, 4),
        "seconds": round(state.seconds, 2),
        "tokens_per_second": meta.tokens_per_second,
        "train_loss": round(train_loss, 4),
        "heldout_loss": round(heldout_loss, 4) if heldout_loss is not None else None,
        "public_loss_change": round(public_change, 4) if public_change is not None else None,
        "adapter_bytes": size,
        "time_budget": opts.time_budget,
        "load_seconds": round(t_loop - t0, 1),      # files, model, examples
        "eval_seconds": round(t_saved - t_eval, 1),  # the loss passes
        "eval_examples": {"heldout": len(heldout_eval), "public": len(public_eval)},
        "wall_seconds": round(time.monotonic() - t0, 1),
    }
