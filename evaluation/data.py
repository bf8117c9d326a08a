"""The code an evaluation draws on: the tenant's selected files and the held-out split.

Held-out files are the ones the adapter never saw: the split recorded in the
adapter's meta.json. A tenant without an adapter gets a seeded split of the
same shape (by file, `training.heldout_fraction`, `training.split_seed`), so
base and rag can be measured before any training and later runs stay
comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

from codetailor.config import Settings
from codetailor.errors import CodetailorError, NotFound
from codetailor.home import TenantPaths


class NoHeldOutFiles(CodetailorError):
    pass


@dataclass(frozen=True)
class EvalData:
    files: dict[str, str]     # every selected file of the tenant: path -> text (internal APIs)
    heldout: list[str]        # the paths tasks come from
    split: dict               # how the held-out set was chosen (recorded with the result)


def seeded_split(keys: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, heldout) by file key `source:path` — training's own split function, so a
    tenant evaluated before training is measured on the files training will hold out."""
    from training.corpus import split_files

    split = split_files(keys, seed, fraction)
    return list(split.train), list(split.heldout)


def split_of_meta(meta: dict) -> list[str] | None:
    """The held-out file list an adapter's meta.json records, whatever training named it."""
    split = meta.get("split")
    candidates = [meta.get("heldout_files"), meta.get("heldout")]
    if isinstance(split, dict):
        candidates = [split.get("heldout_files"), split.get("heldout"), split.get("held_out")] + candidates
    for c in candidates:
        if isinstance(c, list):
            return [str(p) for p in c]
    return None


def tenant_files(settings: Settings, paths: TenantPaths, meta: dict | None
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """(path -> text, "source:path" -> path) of every file the tenant's sources select (secrets, vendored and
    generated files already skipped by retrieval's selection). The selection is the
    adapter's (its split was drawn from those files), else the one each source was
    indexed with."""
    from retrieval.selection import Selection, select_files
    from training.corpus import TrainingError, tenant_sources

    try:  # the same sources training drew its split from
        sources = tenant_sources(settings, paths)
    except TrainingError:
        raise NoHeldOutFiles(f"tenant {paths.tenant!r} has no sources: run `codetailor index` first") from None
    files: dict[str, str] = {}
    keys: dict[str, str] = {}  # training's file key "source:path" -> path
    for name, (location, indexed_selection) in sorted(sources.items()):
        selection = Selection.from_dict((meta or {}).get("selection") or indexed_selection)
        try:
            result = select_files(location, selection, settings.retrieval)
        except NotFound:
            raise NoHeldOutFiles(f"source {name!r} of tenant {paths.tenant!r} is gone: {location}") from None
        for sf in result.files:
            if sf.path not in files:
                files[sf.path] = sf.text
                keys[f"{name}:{sf.path}"] = sf.path
    return files, keys


def load(settings: Settings, paths: TenantPaths, meta: dict | None, version: str | None) -> EvalData:
    files, keys = tenant_files(settings, paths, meta)
    recorded = split_of_meta(meta) if meta else None
    if recorded is not None:
        # training records "source:path" keys; accept plain paths too
        heldout = sorted({keys.get(k, k) for k in recorded} & set(files))
        split = {"source": f"adapter {version}", "heldout_files": len(heldout),
                 "missing": len(recorded) - len(heldout)}
    else:
        cfg = settings.training
        _, held_keys = seeded_split(sorted(keys), cfg.heldout_fraction, cfg.split_seed)
        heldout = sorted(keys[k] for k in held_keys)
        split = {"source": "seeded", "seed": cfg.split_seed, "fraction": cfg.heldout_fraction,
                 "heldout_files": len(heldout)}
    if not heldout:
        raise NoHeldOutFiles(f"tenant {paths.tenant!r} has no held-out files to evaluate on "
                             f"({len(files)} selected files)")
    return EvalData(files, heldout, split)
