"""The code an evaluation draws on: the tenant's selected files and the held-out split.

Held-out files are the ones the adapter never saw: the split recorded in the
adapter's meta. A tenant without an adapter gets the split a first training
run would draw (codetailor.split, same key, seed and fraction), so base and rag
measured before any training are on the files training will hold out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from codetailor.artifacts import AdapterMeta
from codetailor.config import Settings
from codetailor.errors import CodetailorError
from codetailor.home import TenantPaths
from codetailor.split import split_files


class NoHeldOutFiles(CodetailorError):
    pass


@dataclass(frozen=True)
class EvalData:
    files: dict[str, str]     # every selected file of the tenant: path -> text (internal APIs)
    heldout: list[str]        # the paths tasks come from
    split: dict               # how the held-out set was chosen (recorded with the result)


def tenant_files(settings: Settings, paths: TenantPaths, meta: AdapterMeta | None,
                 skipped: Counter | None = None) -> dict[str, str]:
    """path -> text of every file the tenant's index selected (secrets, vendored and generated
    files already skipped), read through retrieval. The selection is the adapter's when it
    recorded one (its split was drawn from those files), else the one each source was
    indexed with."""
    from retrieval.files import SourceGone, tenant_files as selected, tenant_sources
    from retrieval.selection import Selection

    if not tenant_sources(settings, paths):
        raise NoHeldOutFiles(f"tenant {paths.tenant!r} has no sources: run `codetailor index` first")
    selection = Selection.from_dict(meta.selection) if meta is not None and meta.selection else None
    try:
        return {f.path: f.text for f in selected(settings, paths, selection, skipped)}
    except SourceGone as e:
        raise NoHeldOutFiles(str(e)) from None


def load(settings: Settings, paths: TenantPaths, meta: AdapterMeta | None, version: str | None) -> EvalData:
    skipped: Counter = Counter()
    files = tenant_files(settings, paths, meta, skipped)
    recorded = meta.heldout if meta else None
    if recorded is not None:
        heldout = sorted(set(recorded) & set(files))
        split = {"source": f"adapter {version}", "heldout_files": len(heldout),
                 "missing": len(recorded) - len(heldout)}
    else:
        cfg = settings.training
        heldout = list(split_files(files, cfg.split_seed, cfg.heldout_fraction).heldout)
        split = {"source": "seeded", "seed": cfg.split_seed, "fraction": cfg.heldout_fraction,
                 "heldout_files": len(heldout)}
    if skipped:  # changed or gone since indexing: re-index to measure on them
        split["skipped_since_index"] = dict(sorted(skipped.items()))
    if not heldout:
        raise NoHeldOutFiles(f"tenant {paths.tenant!r} has no held-out files to evaluate on "
                             f"({len(files)} selected files)")
    return EvalData(files, heldout, split)
