"""`codetailor refresh`: fetch a tenant's connected sources, re-index, retrain when worth it."""

from __future__ import annotations

import sys

from codetailor.cli import add_json_flag, emit
from codetailor.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("refresh", help="fetch the tenant's sources, re-index what changed, retrain when worth it")
    p.add_argument("--tenant", required=True)
    p.add_argument("--index-only", action="store_true", help="fetch and re-index; never retrain")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(p)
    p.set_defaults(handler=_refresh)


def _refresh(args):
    from codetailor.refresh import RefreshFailed, refresh_tenant
    from codetailor.tenants import registry_from_settings

    settings = get_settings()
    paths = registry_from_settings(settings).tenant(args.tenant)   # NotFound for an unknown tenant
    try:
        return refresh_tenant(settings, paths, index_only=args.index_only, progress=not args.quiet,
                              bars=not args.quiet and (not args.json or sys.stderr.isatty()))
    except RefreshFailed as e:   # the summary still says what did refresh; then the one-line error
        emit(e.summary, args.json)
        raise
