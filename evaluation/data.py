"""The code an evaluation draws on: the tenant's selected files and the held-out split.

Held-out files are the ones the adapter never saw: the split recorded in the
adapter's meta.json. A tenant without an adapter gets a seeded split of the
same shape (by file, `training.heldout_fraction`, `training.split_seed`), so
base and rag can be measured before any training and later runs stay
comparable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from codetailor.config import Settings
from codetailor.errors import CodetailorError, NotFound
from codetailor.home import Home, TenantPaths
from codetailor.tenants import Registry


class NoHeldOutFiles(CodetailorError):
    pass


@dataclass(frozen=True)
class EvalData:
    files: dict[str, str]     # every selected file of the tenant: path -> text (internal APIs)
    heldout: list[str]        # the paths tasks come from
    split: dict               # how the held-out set was chosen (recorded with the result)


def seeded_split(paths: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, heldout) by file, stable under adding or removing other files: a file's
    side depends only on a hash of (seed, path)."""
    def draw(p: str) -> float:
        h = hashlib.sha256(f"{seed}:{p}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    heldout = sorted(p for p in paths if draw(p) < fraction)
    if not heldout and len(paths) > 1:  # tiny repos: still hold one file out
        heldout = [min(paths, key=draw)]
    train = sorted(p for p in paths if p not in set(heldout))
    return train, heldout


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


def _selection(sel: dict | None):
    from retrieval.selection import Selection

    if not isinstance(sel, dict):
        return Selection()
    known = {k: v for k, v in sel.items() if k in Selection.__dataclass_fields__}
    for k in ("include", "exclude"):
        if k in known:
            known[k] = tuple(known[k] or ())
    return Selection(**known)


def tenant_files(settings: Settings, paths: TenantPaths, meta: dict | None) -> dict[str, str]:
    """path -> text of every file the tenant's sources select (secrets, vendored and
    generated files already skipped by retrieval's selection). The selection is the
    adapter's (its split was drawn from those files), else the one each source was
    indexed with."""
    from retrieval.segments import read_manifest
    from retrieval.selection import select_files

    indexed = (read_manifest(paths) or {}).get("sources", {})
    sources = {name: (info["location"], info.get("selection")) for name, info in indexed.items()}
    if not sources:
        sources = {name: (src["location"], None)
                   for name, src in Registry(Home(settings.home)).sources(paths.tenant).items()}
    if not sources:
        raise NoHeldOutFiles(f"tenant {paths.tenant!r} has no sources: run `codetailor index` first")
    files: dict[str, str] = {}
    for name, (location, indexed_selection) in sorted(sources.items()):
        selection = _selection((meta or {}).get("selection") or indexed_selection)
        try:
            result = select_files(location, selection, settings.retrieval)
        except NotFound:
            raise NoHeldOutFiles(f"source {name!r} of tenant {paths.tenant!r} is gone: {location}") from None
        for sf in result.files:
            files.setdefault(sf.path, sf.text)
    return files


def load(settings: Settings, paths: TenantPaths, meta: dict | None, version: str | None) -> EvalData:
    files = tenant_files(settings, paths, meta)
    recorded = split_of_meta(meta) if meta else None
    if recorded is not None:
        heldout = [p for p in recorded if p in files]
        split = {"source": f"adapter {version}", "heldout_files": len(heldout), "missing": len(recorded) - len(heldout)}
    else:
        _, heldout = seeded_split(sorted(files), settings.training.heldout_fraction, settings.training.split_seed)
        split = {"source": "seeded", "seed": settings.training.split_seed,
                 "fraction": settings.training.heldout_fraction, "heldout_files": len(heldout)}
    if not heldout:
        raise NoHeldOutFiles(f"tenant {paths.tenant!r} has no held-out files to evaluate on "
                             f"({len(files)} selected files)")
    return EvalData(files, heldout, split)
