"""`codetailor tenant ...` and `codetailor key ...`."""

from __future__ import annotations

import time

from codetailor.cli import add_command, add_group
from codetailor.config import get_settings
from codetailor.tenants import Registry, registry_from_settings


def _registry() -> Registry:
    return registry_from_settings(get_settings())


def register(sub) -> None:
    ts = add_group(sub, "tenant", "create, list and delete tenants")
    add_command(ts, "create", "create a tenant and print its first admin key (shown once)",
                _create).add_argument("name")
    add_command(ts, "list", "list tenants", _list)
    add_command(ts, "delete", "delete a tenant: its keys, artifacts and vectors", _delete).add_argument("name")

    ks = add_group(sub, "key", "create, list and revoke API keys")
    add_command(ks, "create", "create an API key (printed once)",
                lambda a: {"tenant": a.tenant, "role": a.role, "api_key": _registry().create_key(a.tenant, a.role)},
                tenant=True).add_argument("--role", choices=["developer", "admin"], default="developer")
    add_command(ks, "list", "list API keys (ids and roles, never secrets)", _key_list).add_argument("--tenant")
    add_command(ks, "revoke", "revoke an API key by id",
                lambda a: (_registry().revoke_key(a.id), {"revoked": a.id})[1]).add_argument("id")


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
