"""Generate codetailor's Grafana dashboards as JSON (deploy/grafana/dashboards/*.json).

    python deploy/grafana/generate.py          # rewrite the JSON files
    python deploy/grafana/generate.py --check  # exit 1 if the committed JSON is stale (CI does this)

Dashboards are kept as code so every PromQL expression lives in one readable list; the JSON is what a
Grafana instance loads through file provisioning (deploy/grafana/provisioning/). Every metric used here
must be listed in deploy/metrics.txt; tests/ops checks that, and the integration test checks each
expression parses on a real Prometheus and names only series the running app exports.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x dashboard JSON
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    kind: str = "timeseries"         # timeseries | stat | table
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    options: dict = field(default_factory=dict)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict:
    targets = [
        {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
         **({"instant": True, "format": "table"} if p.kind == "table" else {})}
        for i, (expr, legend) in enumerate(p.targets)
    ]
    panel = {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": p.width, "h": p.height},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": p.options,
        "targets": targets,
    }
    if p.kind == "timeseries":
        panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}, **p.options}
    return panel


def dashboard(uid: str, title: str, description: str, rows: list[Row], variables: list[dict]) -> dict:
    panels: list[dict] = []
    pid, y = 1, 0
    for row in rows:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid, y, x, row_h = pid + 1, y + 1, 0, 0
        for p in row.panels:
            if x + p.width > 24:
                x, y, row_h = 0, y + row_h, 0
            panels.append(_panel_json(p, pid, x, y))
            pid, x, row_h = pid + 1, x + p.width, max(row_h, p.height)
        y += row_h
    datasource_var = {"name": "datasource", "label": "Prometheus", "type": "datasource",
                      "query": "prometheus", "current": {}, "hide": 0}
    return {
        "uid": uid, "title": title, "description": description, "tags": ["codetailor"],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "timezone": "browser",
        "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [datasource_var, *variables]},
        "annotations": {"list": []},
        "panels": panels,
    }


RATE = "[5m]"


def operations() -> dict:
    """For operators: traffic, latency by stage, errors, batch and queue, adapters, retrieval, tenants."""
    req = "ray_codetailor_requests_total"
    lat = "ray_codetailor_request_latency_ms_bucket"
    rows = [
        Row("Traffic", [
            Panel("Requests per second by method", [(f"sum by (method) (rate({req}{RATE}))", "{{method}}")],
                  unit="reqps", width=8),
            Panel("Tokens per second", [(f"sum by (direction) (rate(ray_codetailor_tokens_total{RATE}))",
                                         "{{direction}}")], width=8),
            Panel("Healthy replicas by deployment",
                  [("sum by (application, deployment) (ray_serve_deployment_replica_healthy)",
                    "{{application}}/{{deployment}}"),
                   ("max(ray_codetailor_model_replicas_healthy)", "model replicas (app)")], width=8),
        ]),
        Row("Latency", [
            Panel("p95 latency by stage",
                  [(f"histogram_quantile(0.95, sum by (le, stage) (rate({lat}{RATE})))", "{{stage}}")],
                  unit="ms", description="auth, retrieval, queue, generation and end-to-end total"),
            Panel("p50 latency by stage",
                  [(f"histogram_quantile(0.5, sum by (le, stage) (rate({lat}{RATE})))", "{{stage}}")],
                  unit="ms"),
        ]),
        Row("Errors", [
            Panel("Responses by status code (non-OK)",
                  [(f'sum by (code) (rate({req}{{code!="OK"}}{RATE}))', "{{code}}")], unit="reqps"),
            Panel("Server error ratio",
                  [(f'sum(rate({req}{{code=~"INTERNAL|UNAVAILABLE|UNKNOWN|DATA_LOSS|DEADLINE_EXCEEDED"}}{RATE}))'
                    f" / sum(rate({req}{RATE}))", "errors"),
                   (f'sum(rate({req}{{code="RESOURCE_EXHAUSTED"}}{RATE})) / sum(rate({req}{RATE}))', "shed")],
                  unit="percentunit"),
        ]),
        Row("Batch and queue", [
            Panel("Engine batch size (running requests)", [("sum(ray_codetailor_engine_running_requests)",
                                                            "running")], width=8),
            Panel("Engine queue depth", [("sum(ray_codetailor_queue_depth)", "queued")], width=8),
            Panel("Serve queued queries by deployment",
                  [("sum by (deployment) (ray_serve_deployment_queued_queries)", "{{deployment}}")], width=8),
        ]),
        Row("Adapters", [
            Panel("Adapters loaded", [("sum(ray_codetailor_adapters_loaded)", "loaded")], width=8),
            Panel("Adapter loads and evictions per minute",
                  [(f"sum(rate(ray_codetailor_adapter_loads_total{RATE})) * 60", "loads"),
                   (f"sum(rate(ray_codetailor_adapter_evictions_total{RATE})) * 60", "evictions")], width=8),
            Panel("Adapter load failures by tenant (1h)",
                  [("sum by (tenant) (increase(ray_codetailor_adapter_load_failures_total[1h]))", "{{tenant}}")],
                  width=8),
        ]),
        Row("Retrieval", [
            Panel("Retrieval hits by mode", [(f"sum by (mode) (rate(ray_codetailor_retrieval_hits_total{RATE}))",
                                              "{{mode}}")], width=8),
            Panel("Retrieval degraded by reason",
                  [(f"sum by (reason) (rate(ray_codetailor_retrieval_degraded_total{RATE}))", "{{reason}}")],
                  width=8),
            Panel("Vector store reachable", [("min(ray_codetailor_retrieval_backend_up)", "up")], kind="stat",
                  width=8),
        ]),
        Row("Per-tenant usage", [
            Panel("Top tenants by requests per second",
                  [(f"topk(10, sum by (tenant) (rate({req}{RATE})))", "{{tenant}}")], unit="reqps"),
            Panel("Acceptance rate by tenant (1h)",
                  [('sum by (tenant) (rate(ray_codetailor_outcomes_total{outcome="accepted"}[1h]))'
                    " / sum by (tenant) (rate(ray_codetailor_outcomes_total[1h]))", "{{tenant}}")],
                  unit="percentunit"),
        ]),
    ]
    return dashboard("codetailor-operations", "codetailor / Operations",
                     "Serving health for operators: traffic, latency, errors, batching, adapters, retrieval.",
                     rows, [])


def tenant() -> dict:
    """For a tenant's admins: their requests, acceptance, the active adapter's CQI and the system in use."""
    t = 'tenant="$tenant"'
    rows = [
        Row("Usage", [
            Panel("Requests per second by status", [(f"sum by (code) (rate(ray_codetailor_requests_total{{{t}}}{RATE}))",
                                                     "{{code}}")], unit="reqps"),
            Panel("Outcomes per minute", [(f"sum by (outcome) (rate(ray_codetailor_outcomes_total{{{t}}}{RATE})) * 60",
                                           "{{outcome}}")]),
        ]),
        Row("Usefulness", [
            Panel("Acceptance rate (1h)",
                  [(f'sum(rate(ray_codetailor_outcomes_total{{{t},outcome="accepted"}}[1h]))'
                    f" / sum(rate(ray_codetailor_outcomes_total{{{t}}}[1h]))", "accepted")],
                  unit="percentunit", width=8),
            Panel("Accepted characters per minute",
                  [(f"sum(rate(ray_codetailor_accepted_chars_total{{{t}}}{RATE})) * 60", "chars")], width=8),
            Panel("CQI of the active adapter", [(f"max(ray_codetailor_tenant_cqi{{{t}}})", "CQI")], kind="stat",
                  width=8, description="Offline Customization Quality Index (CQI, 1-10) of the adapter now serving this tenant"),
        ]),
        Row("What serves this tenant", [
            Panel("System in use", [(f"max by (system) (ray_codetailor_tenant_system{{{t}}}) == 1", "{{system}}")],
                  kind="stat", width=8, options={"textMode": "name"},
                  description="base, rag, ft or ft+rag"),
            Panel("Active adapter version", [(f"max(ray_codetailor_tenant_active_adapter_version{{{t}}})",
                                              "version")], kind="stat", width=8),
            Panel("Adapter load failures (1h)",
                  [(f"sum(increase(ray_codetailor_adapter_load_failures_total{{{t}}}[1h]))", "failures")],
                  kind="stat", width=8),
        ]),
    ]
    tenant_var = {"name": "tenant", "label": "Tenant", "type": "query", "datasource": DATASOURCE,
                  "query": {"query": "label_values(ray_codetailor_requests_total, tenant)", "refId": "tenant"},
                  "definition": "label_values(ray_codetailor_requests_total, tenant)",
                  "refresh": 2, "includeAll": False, "multi": False, "current": {}, "hide": 0}
    return dashboard("codetailor-tenant", "codetailor / Tenant",
                     "One tenant's requests, acceptance, adapter quality and the system serving it.",
                     rows, [tenant_var])


DASHBOARDS = {"codetailor-operations.json": operations, "codetailor-tenant.json": tenant}


def render_all() -> dict[str, str]:
    return {name: json.dumps(make(), indent=2, sort_keys=True) + "\n" for name, make in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render_all().items():
        path = OUT_DIR / name
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards (run python deploy/grafana/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
