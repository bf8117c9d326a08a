"""`codetailor eval ...` and `codetailor adapters list|activate|rollback|system`."""

from __future__ import annotations

from pathlib import Path

from codetailor.cli import add_command, add_group
from codetailor.config import get_settings
from codetailor.systems import NAMES
from codetailor.tenants import registry_from_settings


def _paths(tenant: str):
    return registry_from_settings(get_settings()).tenant(tenant)  # NotFound for an unknown tenant


def register(sub) -> None:
    e = add_command(sub, "eval", "measure rag / ft / ft+rag against the generic model and compute the CQI", _eval,
                    tenant=True)
    e.add_argument("--systems", default=",".join(NAMES),
                   help=f"comma-separated, from {','.join(NAMES)} (base always runs; default all)")
    e.add_argument("--n", type=int, default=None, help="number of tasks (default evaluation.n)")
    e.add_argument("--adapter", metavar="VERSION", help="adapter version to evaluate (default the latest)")
    e.add_argument("--report", type=Path, metavar="DIR", help="write report.md and PNG plots into DIR")
    e.add_argument("--resume", action="store_true",
                   help="continue the tenant's newest unfinished run made with the same settings, or start one "
                        "(saying why none fits); every run keeps its finished tasks as it goes")
    e.add_argument("--quiet", action="store_true", help="no progress bars")

    acts = add_group(sub, "adapters", "list, activate (guarded by the CQI), roll back adapter versions")
    add_command(acts, "list", "versions with latest / active / previous flags and their CQI", _list, tenant=True)
    add_command(acts, "activate", "activate a version if the guardrail allows it", _activate,
                tenant=True).add_argument("version")
    add_command(acts, "rollback", "return to the previously active version", _rollback, tenant=True)
    sy = add_command(acts, "system", "show or override which system serving uses for the tenant", _system,
                     tenant=True)
    g = sy.add_mutually_exclusive_group()
    g.add_argument("--override", choices=NAMES, help="use this system whatever evaluation chose")
    g.add_argument("--clear-override", action="store_true", help="go back to evaluation's choice")


def _eval(args):
    from evaluation import evaluate, public_summary

    settings = get_settings()
    result = public_summary(evaluate(settings, _paths(args.tenant), systems=args.systems, n=args.n,
                                     adapter=args.adapter, report_dir=args.report, progress=not args.quiet,
                                     resume=args.resume))
    return result if args.json else _table(result)


def _fmt(v) -> str:
    return "   —  " if v is None else f"{v:6.3f}"


def _table(r: dict) -> str:
    cols = ("exact_match", "edit_similarity", "codebleu", "identifier_match", "api_usage")
    lines = [f"tenant {r['tenant']}  adapter {r.get('adapter') or '-'}  n={r['n']}  {r['seconds']:.0f}s  "
             f"(held-out: {r['split']['source']})",
             f"{'system':8} " + " ".join(f"{c[:10]:>10}" for c in cols)]
    for s, m in r["systems"].items():
        lines.append(f"{s:8} " + " ".join(f"{_fmt(m.get(c)):>10}" for c in cols))
    for s, c in r["cqi"].items():
        lines.append(f"CQI {s:7} {c['value']:.2f}  (95% CI {c['low']:.2f}–{c['high']:.2f})")
    lines.append(f"serving system: {r.get('chosen_system')}")
    if r.get("report"):
        lines.append(f"report: {r['report']}")
    return "\n".join(lines)


def _list(args):
    from evaluation.guardrail import versions

    rows = versions(get_settings(), _paths(args.tenant))
    if args.json:
        return rows
    if not rows:
        return "(no adapters)"
    out = []
    for r in rows:
        flags = ",".join(f for f in ("latest", "active", "previous") if r[f]) or "-"
        cqi = "-" if r["cqi"] is None else f"{r['cqi']:.2f}"
        plc = "-" if r["public_loss_change"] is None else f"{r['public_loss_change']:+.3f}"
        out.append(f"{r['version']}\t{flags}\tcqi={cqi}\tpublic_loss_change={plc}\t"
                   f"{'allowed' if r['allowed'] else 'refused'}" + ("\tneeds retraining" if r["retrain"] else ""))
    return "\n".join(out)


def _activate(args):
    from evaluation.guardrail import activate

    return activate(get_settings(), _paths(args.tenant), args.version)


def _rollback(args):
    from evaluation.guardrail import rollback

    return rollback(get_settings(), _paths(args.tenant))


def _system(args):
    from codetailor.adapters import AdapterStore

    store = AdapterStore(_paths(args.tenant))
    if args.override:
        store.set_system(args.override, override=True)
    elif args.clear_override:
        store.set_system(None, override=True)
    s = store.state()
    return {"tenant": args.tenant, "serving_system": store.serving_system(), "evaluated": s.system,
            "override": s.system_override, "active": s.active}
