"""What training reads: the tenant's selected files, the public replay corpus, the split.

Tenant files are the ones indexing selected (the selection knobs and safety skips:
.gitignore, binaries, vendored/generated code, files holding secrets), read through
retrieval.files, which uses a file only while its content is the one indexing
scanned, so no secret can reach a training example. Each file carries the line ranges its
selection prefers (chunks kept by --exclude-deprecated / --since), which the
example builder samples more often.

The public corpus is the Python standard library of the running interpreter:
code every machine has and nobody here wrote.
"""

from __future__ import annotations

import sysconfig
from collections import Counter
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


def tenant_files(settings, paths, selection=None, skipped: Counter | None = None) -> list[CorpusFile]:
    """The tenant's selected, secret-free files as indexing selected them (retrieval.files
    re-checks each one's hash): `selection` when given, else the one each source was
    indexed with. `skipped` counts files changed or gone since indexing."""
    from retrieval.files import SourceGone, tenant_files as selected, tenant_sources

    if not tenant_sources(settings, paths):
        raise TrainingError(f"tenant {paths.tenant!r} has no sources: run `codetailor index --tenant "
                            f"{paths.tenant} PATH` first")
    try:
        return [CorpusFile(f.path, f.text, f.source, f.preferred)
                for f in selected(settings, paths, selection, skipped)]
    except SourceGone as e:
        raise TrainingError(str(e)) from None


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
