"""`codetailor source ...` (repositories connected by URL) and `codetailor credential ...`."""

from __future__ import annotations

import time
from pathlib import Path

from codetailor.cli import add_command, add_group
from codetailor.config import get_settings


def _sources():
    from codetailor.sources import sources_from_settings

    return sources_from_settings(get_settings())


def _credentials():
    from codetailor.credentials import CredentialStore
    from codetailor.home import Home

    settings = get_settings()
    return CredentialStore(Home(settings.home), settings.sync.credentials_dir)


def register(sub) -> None:
    from codetailor.cli.index import add_selection_flags

    ss = add_group(sub, "source", "connect a tenant's repositories by URL (fetched by `codetailor refresh`)")
    a = add_command(ss, "add", "connect a repository: https or ssh URL, file:// URL or local path", _add, tenant=True)
    a.add_argument("name", help="source name within the tenant")
    a.add_argument("url", help="https://..., ssh://... or git@host:org/repo.git, file://... or a local path")
    a.add_argument("--branch", help="branch to follow (default: the remote's HEAD)")
    a.add_argument("--credential", metavar="NAME", help="a credential from `codetailor credential add`")
    add_selection_flags(a)
    add_command(ss, "list", "a tenant's sources with last commit, last refresh and last error", _list, tenant=True)
    add_command(ss, "remove", "disconnect a source and delete its clone",
                lambda a: _sources().remove(a.tenant, a.name), tenant=True).add_argument("name")

    cs = add_group(sub, "credential", "tokens and deploy keys for fetching sources (stored 0600, never shown)")
    ca = add_command(cs, "add", "store a credential from a file", _credential_add)
    ca.add_argument("name")
    g = ca.add_mutually_exclusive_group(required=True)
    g.add_argument("--token-file", type=Path, metavar="F", help="https access token (one line)")
    g.add_argument("--ssh-key", type=Path, metavar="F", help="ssh deploy key (private key file)")
    ca.add_argument("--username", default="x-access-token",
                    help="token: user name for HTTP Basic (default x-access-token; Bitbucket: x-token-auth)")
    ca.add_argument("--bearer", action="store_true", help="token: send 'Authorization: Bearer' instead of Basic")
    ca.add_argument("--known-hosts", type=Path, metavar="F", help="ssh: known_hosts file for the git host")
    ca.add_argument("--tenant", metavar="T", help="the tenant whose admins may name it through the admin API "
                                                  "(default: this CLI only)")
    add_command(cs, "list", "credential names and kinds (never secrets)", _credential_list)
    add_command(cs, "remove", "delete a credential",
                lambda a: (_credentials().remove(a.name), {"removed": a.name})[1]).add_argument("name")


def _selection(args) -> dict | None:
    given = args.since or args.max_bug_fixes is not None or args.exclude_deprecated or args.include or args.exclude
    if not given:
        return None
    from codetailor.cli.index import selection_from_args

    return selection_from_args(args).to_dict()


def _add(args) -> dict:
    return _sources().add(args.tenant, args.name, args.url, branch=args.branch, credential=args.credential,
                          selection=_selection(args))


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _list(args):
    rows = _sources().list(args.tenant)
    if args.json:
        return rows
    out = []
    for r in rows:
        where = r["url"] or f"{r['location']} (indexed from a folder)"
        out.append(f"{r['source']}\t{where}\tbranch={r['branch'] or 'HEAD'}\t"
                   f"commit={(r['last_commit'] or '-')[:12]}\trefreshed={_when(r['last_refresh'])}"
                   + (f"\terror={r['last_error']}" if r["last_error"] else ""))
    return "\n".join(out) or "(no sources)"


def _credential_add(args) -> dict:
    store = _credentials()
    tenant = None
    if args.tenant is not None:
        from codetailor.tenants import registry_from_settings

        tenant = str(registry_from_settings(get_settings()).tenant(args.tenant).tenant)   # unknown: NotFound
    if args.token_file is not None:
        rec = store.add_token(args.name, args.token_file, None if args.bearer else args.username, tenant=tenant)
    else:
        rec = store.add_ssh(args.name, args.ssh_key, args.known_hosts, tenant=tenant)
    return {"credential": rec.name, "kind": rec.kind, "tenant": rec.tenant}


def _credential_list(args):
    rows = [{"credential": r.name, "kind": r.kind, "username": r.username, "known_hosts": r.known_hosts,
             "tenant": r.tenant, "created_at": r.created_at} for r in _credentials().list()]
    if args.json:
        return rows
    return "\n".join(f"{r['credential']}\t{r['kind']}" + (f"\ttenant={r['tenant']}" if r["tenant"] else "")
                     for r in rows) or "(no credentials)"
