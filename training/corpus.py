"""What training reads: the tenant's selected files, the public replay corpus, the split.

Tenant files come from retrieval's selection (the same knobs and safety skips as
indexing: .gitignore, binaries, vendored/generated code, files holding secrets),
so no secret can reach a training example. Each file carries the line ranges its
selection prefers (chunks kept by --exclude-deprecated / --since), which the
example builder samples more often.

The public corpus is the Python standard library of the running interpreter:
code every machine has and nobody here wrote.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

from codetailor.errors import CodetailorError


class TrainingError(CodetailorError):
    pass


@dataclass(frozen=True)
class CorpusFile:
    path: str                       # as retrieval names it (relative to its source root)
    text: str
    source: str = "main"
    preferred: tuple[tuple[int, int], ...] | None = None  # 1-based inclusive line ranges; None = all

    def prefers(self, start: int, end: int) -> bool:
        if self.preferred is None:
            return True
        return any(a <= end and start <= b for a, b in self.preferred)


def tenant_sources(settings, paths) -> dict[str, tuple[str, dict | None]]:
    """{source: (location, selection recorded at index time)}: the index manifest, else the registry."""
    from retrieval.segments import read_manifest

    from codetailor.home import Home
    from codetailor.tenants import Registry

    indexed = (read_manifest(paths) or {}).get("sources", {})
    sources = {name: (info["location"], info.get("selection")) for name, info in indexed.items()}
    if not sources:
        sources = {name: (src["location"], None)
                   for name, src in Registry(Home(settings.home)).sources(paths.tenant).items()}
    if not sources:
        raise TrainingError(f"tenant {paths.tenant!r} has no sources: run `codetailor index --tenant "
                            f"{paths.tenant} PATH` first")
    return sources


def tenant_files(settings, sources: dict[str, tuple[str, dict | None]], selection=None) -> list[CorpusFile]:
    """The selected, secret-free files of the tenant's sources (retrieval's selection):
    `selection` when given, else the one each source was indexed with."""
    from retrieval import Selection, iter_selected_files

    out: list[CorpusFile] = []
    seen: set[str] = set()
    for name in sorted(sources):
        location, indexed_selection = sources[name]
        if not Path(location).is_dir():
            raise TrainingError(f"source {name!r} at {location} is no longer a directory; re-run `codetailor index`")
        sel = selection if selection is not None else Selection.from_dict(indexed_selection)
        filtered = bool(sel.exclude_deprecated or sel.since)
        for sf, chunks in iter_selected_files(location, sel, settings.retrieval):
            if sf.path in seen:   # retrieval and evaluation key files by path
                continue
            seen.add(sf.path)
            preferred = tuple((c.start_line, c.end_line) for c in chunks) if filtered else None
            out.append(CorpusFile(sf.path, sf.text, name, preferred))
    return out


# Standard-library parts that are tests, data or vendored third-party code.
_PUBLIC_SKIP = ("test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "ensurepip",
                "turtledemo", "__pycache__", "pydoc_data", "encodings")


def public_files(limit_bytes: int = 200_000) -> list[CorpusFile]:
    """Python standard-library modules, sorted by path; files over `limit_bytes` skipped."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if any(part in _PUBLIC_SKIP for part in rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        try:
            if p.stat().st_size > limit_bytes:
                continue
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text.strip():
            out.append(CorpusFile(rel.as_posix(), text, "python-stdlib"))
    if not out:
        raise TrainingError(f"no Python standard-library sources under {root} for replay; use --replay-ratio 0")
    return out
