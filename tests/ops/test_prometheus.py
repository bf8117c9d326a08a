"""Prometheus: the scrape configs and rules pass promtool; every alert has a unit test that fires it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops import promql

PROM_DIR = promql.DEPLOY / "prometheus"
needs_promtool = pytest.mark.skipif(promql.promtool() is None, reason="promtool not installed (Debian package `prometheus`)")


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promql.promtool(), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@needs_promtool
def test_rules_pass_promtool_check():
    r = _promtool("check", "rules", str(promql.RULES_FILE))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_rule_unit_tests_pass():
    r = _promtool("test", "rules", str(promql.RULE_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_local_scrape_config_passes_promtool_check():
    r = _promtool("check", "config", str(PROM_DIR / "prometheus-local.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_kubernetes_scrape_config_passes_promtool_check(tmp_path):
    """Debian's promtool is built without Kubernetes discovery, so the discovery block is swapped for a
    static target; everything else (relabelling, rule files, globals) is checked as written."""
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    job = cfg["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    (tmp_path / "rules").mkdir()
    shutil.copy(promql.RULES_FILE, tmp_path / "rules" / promql.RULES_FILE.name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    r = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_kubernetes_scrape_keeps_only_the_charts_metrics_port():
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    keeps = {tuple(r["source_labels"]): r["regex"] for r in cfg["scrape_configs"][0]["relabel_configs"]
             if r.get("action") == "keep"}
    assert keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == "codetailor"
    assert keeps[("__meta_kubernetes_pod_container_port_name",)] == "metrics"


def test_every_alert_has_a_firing_unit_test():
    alerts = {r["alert"] for r in promql.rules() if "alert" in r}
    assert {"CodetailorHighErrorRatio", "CodetailorHighLatencyP95", "CodetailorQueueSaturated",
            "CodetailorAdapterLoadFailures", "CodetailorNoHealthyModelReplica",
            "CodetailorRetrievalBackendDown", "CodetailorTenantAcceptanceCollapse"} <= alerts
    tests = yaml.safe_load(promql.RULE_TESTS.read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert alerts <= fired, f"alerts never shown firing: {alerts - fired}"
    assert alerts <= quiet, f"alerts never shown quiet: {alerts - quiet}"


@needs_promtool
@pytest.mark.parametrize("alert", sorted(r["alert"] for r in promql.rules() if "alert" in r))
def test_unit_tests_fail_when_an_alert_is_broken(alert, tmp_path):
    """The unit tests can fail: with this alert's expression replaced by one that never fires,
    `promtool test rules` must report a failure."""
    data = yaml.safe_load(promql.RULES_FILE.read_text())
    for g in data["groups"]:
        for r in g["rules"]:
            if r.get("alert") == alert:
                r["expr"] = "vector(1) == 0"
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / promql.RULES_FILE.name).write_text(yaml.safe_dump(data))
    # Only the unit tests about this alert (keeps the run short).
    suite = yaml.safe_load(promql.RULE_TESTS.read_text())
    suite["tests"] = [t for t in suite["tests"]
                      if any(c["alertname"] == alert for c in t.get("alert_rule_test", []))]
    (tmp_path / "tests" / promql.RULE_TESTS.name).write_text(yaml.safe_dump(suite))
    r = _promtool("test", "rules", str(tmp_path / "tests" / promql.RULE_TESTS.name))
    assert r.returncode != 0
    assert re.search(rf"alertname: {alert}\b", r.stdout + r.stderr)


def test_local_scrape_target_is_the_apps_default_metrics_port():
    from codetailor.config import ServingConfig

    cfg = yaml.safe_load((PROM_DIR / "prometheus-local.yml").read_text())
    target = cfg["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == f"127.0.0.1:{ServingConfig().metrics_port}"
