"""`codetailor tenant ...` and `codetailor key ...`."""

from __future__ import annotations

import time

from codetailor.cli import add_json_flag
from codetailor.config import get_settings
from codetailor.tenants import Registry, registry_from_settings


def _registry() -> Registry:
    return registry_from_settings(get_settings())


def register(sub) -> None:
    t = sub.add_parser("tenant", help="create, list and delete tenants")
    ts = t.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)
    c = ts.add_parser("create", help="create a tenant and print its first admin key (shown once)")
    c.add_argument("name")
    add_json_flag(c)
    c.set_defaults(handler=_create)
    ls = ts.add_parser("list", help="list tenants")
    add_json_flag(ls)
    ls.set_defaults(handler=_list)
    d = ts.add_parser("delete", help="delete a tenant: its keys, artifacts and vectors")
    d.add_argument("name")
    add_json_flag(d)
    d.set_defaults(handler=_delete)

    k = sub.add_parser("key", help="create, list and revoke API keys")
    ks = k.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    kc = ks.add_parser("create", help="create an API key (printed once)")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--role", choices=["developer", "admin"], default="developer")
    add_json_flag(kc)
    kc.set_defaults(handler=lambda a: {"tenant": a.tenant, "role": a.role,
                                       "api_key": _registry().create_key(a.tenant, a.role)})
    kl = ks.add_parser("list", help="list API keys (ids and roles, never secrets)")
    kl.add_argument("--tenant")
    add_json_flag(kl)
    kl.set_defaults(handler=_key_list)
    kr = ks.add_parser("revoke", help="revoke an API key by id")
    kr.add_argument("id")
    add_json_flag(kr)
    kr.set_defaults(handler=lambda a: (_registry().revoke_key(a.id), {"revoked": a.id})[1])


def _create(args) -> dict:
    paths, key = _registry().create_tenant(args.name)
    return {"tenant": str(paths.tenant), "admin_api_key": key}


def _list(args):
    rows = [{"name": r["name"], "created_at": r["created_at"], "sources": sorted(r.get("sources", {}))}
            for r in _registry().tenants()]
    if args.json:
        return rows
    return "\n".join(f"{r['name']}\tsources={','.join(r['sources']) or '-'}" for r in rows) or "(no tenants)"


def _delete(args) -> dict:
    settings = get_settings()
    registry = registry_from_settings(settings)
    paths = registry.tenant(args.name)
    from retrieval import drop_tenant_vectors

    drop_tenant_vectors(settings, paths)  # the service vector store keeps points outside the home
    registry.delete_tenant(args.name)
    return {"deleted": args.name}


def _key_list(args):
    rows = [
        {"id": k.id, "tenant": k.tenant, "role": k.role,
         "created_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_at)), "revoked": k.revoked}
        for k in _registry().keys(args.tenant)
    ]
    if args.json:
        return rows
    return "\n".join(f"{r['id']}\t{r['tenant']}\t{r['role']}\t{r['created_at']}"
                     f"{'  revoked' if r['revoked'] else ''}" for r in rows) or "(no keys)"
