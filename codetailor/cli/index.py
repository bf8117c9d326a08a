"""`codetailor index` (ingest a repository into a tenant's retrieval index) and `codetailor search`."""

from __future__ import annotations

import sys
from pathlib import Path

from codetailor.cli import add_json_flag
from codetailor.config import get_settings
from codetailor.errors import CodetailorError, NotFound


def add_selection_flags(p) -> None:
    """The selection knobs; fine-tuning's command adds the same flags."""
    p.add_argument("--since", metavar="DURATION", help="only files/lines committed within DURATION (e.g. 90d, 12w, 6mo, 1y)")
    p.add_argument("--max-bug-fixes", type=int, metavar="N", help="only files touched by at most N bug-fix commits")
    p.add_argument("--exclude-deprecated", action="store_true", help="skip symbols marked deprecated")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only paths matching GLOB (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip paths matching GLOB (repeatable)")


def selection_from_args(args):
    from retrieval import Selection

    return Selection(since=args.since, max_bug_fixes=args.max_bug_fixes, exclude_deprecated=args.exclude_deprecated,
                     include=tuple(args.include), exclude=tuple(args.exclude))


def register(sub) -> None:
    p = sub.add_parser("index", help="ingest a repository or folder into a tenant's retrieval index")
    p.add_argument("--tenant", required=True)
    p.add_argument("--source", default="main", help="name of this source within the tenant (default: main)")
    p.add_argument("path", nargs="?", help="a git repository or a plain folder (not with --embed-pending)")
    p.add_argument("--chunking", choices=["syntax", "lines"], help="default from config: syntax")
    p.add_argument("--rebuild", action="store_true", help="drop the tenant's whole index and rebuild this source")
    p.add_argument("--defer-embedding", action="store_true",
                   help="return once the source is searchable by BM25; embed later with --embed-pending")
    p.add_argument("--embed-pending", action="store_true",
                   help="embed the chunks still without a vector (resumes a killed or deferred index)")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="with --embed-pending: stop after about S seconds (the rest stays pending)")
    add_selection_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=_index)

    s = sub.add_parser("search", help="search a tenant's index")
    s.add_argument("--tenant", required=True)
    s.add_argument("--mode", choices=["bm25", "semantic", "hybrid"], default="hybrid")
    s.add_argument("--top-k", type=int, help="number of results (default from config)")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", help="query text")
    q.add_argument("--file", help="a file being edited: the query is the lines above --line")
    s.add_argument("--line", type=int, help="cursor line (1-based) in --file")
    s.add_argument("--symbols", action="store_true",
                   help="show the definitions resolved for the cursor at --file/--line instead of similar chunks")
    s.add_argument("--column", type=int, help="cursor column (1-based) on --line; default: the line's start")
    add_json_flag(s)
    s.set_defaults(handler=_search)


def _paths(settings, tenant: str):
    from codetailor.tenants import registry_from_settings

    return registry_from_settings(settings).tenant(tenant)


def _index(args) -> dict:
    from retrieval import embed_pending, index_source

    settings = get_settings()
    paths = _paths(settings, args.tenant)
    progress = not args.json or sys.stderr.isatty()  # bars on stderr, JSON on stdout
    if args.embed_pending:
        if args.path is not None or args.defer_embedding or args.rebuild:
            raise CodetailorError("--embed-pending takes no PATH, --defer-embedding or --rebuild")
        return embed_pending(settings, paths, progress=progress, max_seconds=args.max_seconds)
    if args.path is None:
        raise CodetailorError("index needs a PATH (or --embed-pending)")
    if args.max_seconds is not None:
        raise CodetailorError("--max-seconds goes with --embed-pending")
    return index_source(settings, paths, Path(args.path), source=args.source, selection=selection_from_args(args),
                        chunking=args.chunking, rebuild=args.rebuild, progress=progress,
                        embed=not args.defer_embedding)


def _search(args):
    from retrieval import query_from_file, search, vectors_pending

    settings = get_settings()
    if args.file is not None:
        if args.line is None:
            raise CodetailorError("--file needs --line")
        f = Path(args.file)
        if not f.is_file():
            raise NotFound(f"file {f} does not exist")
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CodetailorError(f"file {f} is not UTF-8 text") from None
        if args.symbols:
            return _search_symbols(args, settings, f, text)
        query = query_from_file(text, args.line, settings.retrieval.query_lines)
    elif args.symbols:
        raise CodetailorError("--symbols needs --file and --line")
    else:
        query = args.query
    paths = _paths(settings, args.tenant)
    hits = search(settings, paths, query, mode=args.mode, top_k=args.top_k)
    if args.json:
        # vectors_pending: chunks not embedded yet, which semantic/hybrid ranking cannot see
        return {"tenant": args.tenant, "mode": args.mode, "vectors_pending": vectors_pending(paths),
                "hits": [h.to_dict() for h in hits]}
    out = []
    for h in hits:
        out.append(f"== {h.path}:{h.start_line}-{h.end_line}  score={h.score:.4f}")
        out.append(h.text.rstrip("\n"))
    return "\n".join(out) or "(no results)"


def _search_symbols(args, settings, f: Path, text: str):
    from retrieval.symbol_context import resolve, split_at_cursor
    from retrieval.symbol_table import open_table

    paths = _paths(settings, args.tenant)
    table = open_table(paths)
    if table is None:
        raise NotFound(f"tenant {args.tenant!r} has no symbol table yet: run `codetailor index --tenant {args.tenant} PATH`")
    prefix, suffix = split_at_cursor(text, args.line, args.column)
    defs = resolve(table, _source_relative(settings, paths, f), prefix, suffix, limit=args.top_k or 12)
    if args.json:
        return [d.to_dict() for d in defs]
    return "\n".join(f"{d.path}:{d.line}  {d.kind:<8} {d.signature}" for d in defs) or "(no definitions)"


def _source_relative(settings, paths, f: Path) -> str:
    """The file's path as the index knows it: relative to the tenant source holding it."""
    from codetailor.tenants import registry_from_settings

    real = f.resolve()
    for info in registry_from_settings(settings).sources(paths.tenant).values():
        root = Path(info.get("location", ""))
        if root.is_absolute() and real.is_relative_to(root):
            return real.relative_to(root).as_posix()
    return f.as_posix()
