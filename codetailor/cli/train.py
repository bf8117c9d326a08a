"""`codetailor train`: fine-tune a tenant's LoRA adapter on its indexed sources.

The tenant's sources (where `codetailor index` recorded them) are what it trains
on, rather than a PATH argument: the held-out split, the retrieval neighbours of
--rag-augmented and evaluation's tasks must all describe the same files, and the
index already knows them and the selection each was indexed with.
"""

from __future__ import annotations

import re
import sys

from codetailor.cli import add_json_flag
from codetailor.config import get_settings
from codetailor.errors import CodetailorError

_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def parse_budget(text: str) -> float:
    """'90s', '10m', '1h30m', '1.5h' or plain seconds -> seconds."""
    t = (text or "").strip().lower()
    try:
        seconds = float(t)
    except ValueError:
        parts = _PART.findall(t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise CodetailorError(f"invalid --time-budget {text!r}: use e.g. 90s, 10m, 1h30m") from None
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise CodetailorError(f"--time-budget must be positive, got {text!r}")
    return seconds


def register(sub) -> None:
    from codetailor.cli.index import add_selection_flags

    p = sub.add_parser("train", help="fine-tune the tenant's LoRA adapter (a new, inactive version)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--rank", type=int, help="LoRA rank, a power of two 1..64 (default from config: 16)")
    p.add_argument("--alpha", type=int, help="LoRA alpha (default from config: 32)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=float, help="passes over the training examples (default from config: 1)")
    g.add_argument("--time-budget", metavar="DURATION",
                   help="train for at most DURATION (e.g. 5m), plus loading and loss passes sampled to fit "
                        "training.eval_share of it; too small a budget is refused before loading, with the minimum")
    p.add_argument("--rag-augmented", action="store_true",
                   help="give part of the examples retrieved neighbours from the tenant's index")
    p.add_argument("--replay-ratio", type=float, help="share of public (Python stdlib) examples, 0 <= x < 1")
    add_selection_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=_train)


def _selection(args):
    given = args.since or args.max_bug_fixes is not None or args.exclude_deprecated or args.include or args.exclude
    if not given:
        return None   # each source's selection from index time
    from codetailor.cli.index import selection_from_args

    return selection_from_args(args)


def _train(args) -> dict:
    from codetailor.config import TrainingConfig
    from codetailor.tenants import registry_from_settings
    from pydantic import ValidationError

    settings = get_settings()
    cfg = settings.training
    rank = cfg.rank if args.rank is None else args.rank
    try:
        TrainingConfig(rank=rank)
    except ValidationError:
        raise CodetailorError(f"--rank must be a power of two from 1 to 64, got {rank}") from None
    alpha = cfg.alpha if args.alpha is None else args.alpha
    if alpha < 1:
        raise CodetailorError("--alpha must be >= 1")
    ratio = cfg.replay_ratio if args.replay_ratio is None else args.replay_ratio
    if not 0 <= ratio < 1:
        raise CodetailorError(f"--replay-ratio must be in [0, 1), got {ratio}")
    epochs = cfg.epochs if args.epochs is None else args.epochs
    if epochs <= 0:
        raise CodetailorError("--epochs must be positive")
    budget = parse_budget(args.time_budget) if args.time_budget is not None else None
    paths = registry_from_settings(settings).tenant(args.tenant)   # NotFound for an unknown tenant
    selection = _selection(args)

    from training import TrainOptions, train_tenant

    opts = TrainOptions(rank=rank, alpha=alpha, epochs=epochs, time_budget=budget, rag_augmented=args.rag_augmented,
                        replay_ratio=ratio, selection=selection,
                        progress=not args.json or sys.stderr.isatty())  # bars on stderr, JSON on stdout
    return train_tenant(settings, paths, opts)
