"""The tenant's selected files, for training and evaluation: read through the index.

Indexing already ran the selection (ignore rules, vendored and generated files, the
secret scan, git history for --since) and recorded each kept file's content sha256 in
the manifest. Training and evaluation read those files from their sources again and
use one only if its content still has that hash, so what they see is exactly what the
secret scan passed, without scanning again. A file changed or removed since indexing
is skipped and counted (re-index to pick it up).

Only when the manifest cannot answer — a source registered but never indexed, or a
selection other than the one the source was indexed with — is the selection run here.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from codetailor.errors import NotFound
from codetailor.home import Home, TenantPaths

from retrieval.selection import Selection, file_chunks, select_files


class SourceGone(NotFound):
    """A source's directory no longer exists."""


@dataclass(frozen=True)
class TenantFile:
    source: str
    path: str                 # relative to the source root, as retrieval names it
    text: str
    # 1-based inclusive line ranges of the chunks the selection kept, when it dropped some
    # (--exclude-deprecated, --since); None: the whole file.
    preferred: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class IndexedSource:
    name: str
    location: str
    selection: Selection
    files: dict[str, dict] | None   # path -> its manifest entry; None: registered, not indexed


def has_index(paths: TenantPaths) -> bool:
    from retrieval.segments import read_manifest

    return read_manifest(paths) is not None


def index_version(paths: TenantPaths) -> dict | None:
    """What retrieval answers from: the published generation and how many chunks still lack their
    vector (hybrid search changes as they are filled in). None before the first index."""
    from retrieval.segments import read_manifest

    m = read_manifest(paths)
    return None if m is None else {"generation": m["generation"], "pending_vectors": len(m["pending_ids"])}


def tenant_sources(settings, paths: TenantPaths) -> list[IndexedSource]:
    """The tenant's sources by name: the index manifest's, else the registry's (not indexed yet)."""
    from codetailor.tenants import Registry
    from retrieval.segments import read_manifest

    manifest = read_manifest(paths) or {}
    indexed = manifest.get("sources") or {}
    if indexed:
        return [IndexedSource(name, info["location"], Selection.from_dict(info.get("selection")),
                              (manifest.get("files") or {}).get(name, {}))
                for name, info in sorted(indexed.items())]
    registered = Registry(Home(settings.home)).sources(paths.tenant)
    return [IndexedSource(name, src["location"], Selection(), None) for name, src in sorted(registered.items())]


def tenant_files(settings, paths: TenantPaths, selection: Selection | None = None,
                 skipped: Counter | None = None) -> Iterator[TenantFile]:
    """Every selected file of the tenant's sources, once per path (the first source by name
    keeps a path both hold). `selection` None: each source's indexed selection.
    `skipped` counts files left out because they changed or went missing since indexing."""
    skipped = Counter() if skipped is None else skipped
    seen: set[str] = set()
    for src in tenant_sources(settings, paths):
        if not Path(src.location).is_dir():
            raise SourceGone(f"source {src.name!r} at {src.location} is no longer a directory; "
                             f"re-run `codetailor index`")
        sel = src.selection if selection is None else selection
        if src.files is not None and sel.to_dict() == src.selection.to_dict():
            files = _from_manifest(paths, src, settings.retrieval.max_file_bytes, skipped)
        else:
            files = _selected_now(src, sel, settings.retrieval)
        for f in files:
            if f.path not in seen:
                seen.add(f.path)
                yield f


def _from_manifest(paths: TenantPaths, src: IndexedSource, max_bytes: int, skipped: Counter) -> Iterator[TenantFile]:
    root = Path(src.location).resolve()
    filtered = bool(src.selection.exclude_deprecated or src.selection.since)
    for rel in sorted(src.files):
        entry = src.files[rel]
        text, why_not = _read_if_unchanged(root, rel, entry.get("content_sha"), max_bytes)
        if text is None:
            skipped[why_not] += 1
        else:
            yield TenantFile(src.name, rel, text, _kept_lines(paths, entry) if filtered else None)


def _read_if_unchanged(root: Path, rel: str, content_sha: str | None, max_bytes: int) -> tuple[str | None, str]:
    """(the file's text, "") when it still has the indexed hash, else (None, "missing" or "changed")."""
    path = root / rel
    try:
        # never through a link, never outside the source, never a device or pipe
        if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(root):
            return None, "missing"
        if path.stat().st_size > max_bytes:
            return None, "changed"
        data = path.read_bytes()
    except OSError:
        return None, "missing"
    if content_sha is None or hashlib.sha256(data).hexdigest() != content_sha:
        return None, "changed"
    return data.decode("utf-8"), ""  # it hashes to what indexing decoded


def _kept_lines(paths: TenantPaths, entry: dict) -> tuple[tuple[int, int], ...]:
    """Line ranges of the file's chunks in its segment: the ones the index kept."""
    from retrieval.segments import segments_dir

    wanted = set(entry.get("rows") or ())
    if not wanted or not entry.get("segment"):
        return ()
    out = []
    with open(segments_dir(paths) / entry["segment"] / "chunks.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i in wanted:
                row = json.loads(line)
                out.append((row["start_line"], row["end_line"]))
    return tuple(out)


def _selected_now(src: IndexedSource, sel: Selection, config) -> Iterator[TenantFile]:
    filtered = bool(sel.exclude_deprecated or sel.since)
    for sf in select_files(src.location, sel, config).files:
        preferred = tuple((c.start_line, c.end_line) for c in file_chunks(sf, sel, config)) if filtered else None
        yield TenantFile(src.name, sf.path, sf.text, preferred)
