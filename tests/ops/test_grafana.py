"""Grafana: the committed dashboards are what generate.py makes, and they are well formed."""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.ops import promql

GRAFANA = promql.DEPLOY / "grafana"


def test_committed_dashboards_are_up_to_date():
    r = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_dashboards_are_well_formed():
    boards = promql.dashboards()
    assert set(boards) == {"codetailor-operations.json", "codetailor-tenant.json"}
    for name, d in boards.items():
        assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for p in d["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{name}/{p['title']}: off the grid"
            if p["type"] != "row":
                assert p["targets"], f"{name}/{p['title']}: no query"
                assert p["datasource"]["uid"] == "${datasource}"


def test_operator_dashboard_covers_the_issue():
    titles = " | ".join(p["title"].lower() for p in promql.dashboards()["codetailor-operations.json"]["panels"])
    for words in ("requests per second", "latency by stage", "status code", "batch size", "queue",
                  "adapters loaded", "evictions", "top tenants"):
        assert words in titles, words


def test_tenant_dashboard_is_per_tenant():
    d = promql.dashboards()["codetailor-tenant.json"]
    assert [v["name"] for v in d["templating"]["list"]] == ["datasource", "tenant"]
    titles = " | ".join(p["title"].lower() for p in d["panels"])
    for words in ("requests", "acceptance", "cqi", "system in use", "adapter version"):
        assert words in titles, words
    for p in d["panels"]:
        for t in p.get("targets", []):
            assert 'tenant="$tenant"' in t["expr"], f"{p['title']}: not filtered to the tenant"


def test_provisioning_points_at_the_dashboards():
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "codetailor.yml").read_text())
    assert prov["apiVersion"] == 1 and prov["providers"][0]["type"] == "file"
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
