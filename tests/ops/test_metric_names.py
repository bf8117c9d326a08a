"""Every metric a rule or a dashboard panel queries is listed in deploy/metrics.txt (the one list the
integration test checks against the running app), and the list matches serving's metric definitions."""

from __future__ import annotations

import pytest

from tests.ops import promql


def test_name_extraction_finds_metrics_and_skips_functions_labels_and_keywords():
    expr = ('histogram_quantile(0.95, sum by (le, stage) (rate(ray_a_bucket{stage="total",x=~"a|b"}[5m])))'
            ' / on () group_left max without (pod) (ray_b offset 1h) and bool up')
    assert promql.metric_names(expr) == {"ray_a_bucket", "ray_b", "up"}


def test_rules_use_only_listed_metrics():
    known = promql.exported_names(promql.listed_metrics()) | promql.recorded_names()
    for rule in promql.rules():
        unknown = promql.metric_names(rule["expr"]) - known
        assert not unknown, f"rule {rule.get('alert') or rule.get('record')} uses unlisted metrics {unknown}"


def test_dashboards_use_only_listed_metrics():
    known = promql.exported_names(promql.listed_metrics())
    exprs = promql.dashboard_exprs()
    assert len(exprs) >= 20
    for name, title, expr in exprs:
        unknown = promql.metric_names(promql.substitute_variables(expr)) - known
        assert not unknown, f"{name} / {title} uses unlisted metrics {unknown}"


def test_every_listed_metric_is_used():
    used = set()
    for rule in promql.rules():
        used |= promql.metric_names(rule["expr"])
    for _, _, expr in promql.dashboard_exprs():
        used |= promql.metric_names(promql.substitute_variables(expr))
    listed = promql.listed_metrics()
    wire = {n: {n + s for s in ("_bucket", "_sum", "_count")} if k == "histogram" else {n} for n, k in listed.items()}
    unused = [n for n, names in wire.items() if not names & used]
    assert not unused, f"listed but not used by any rule or panel: {unused}"


def test_listed_app_metrics_match_serving_definitions():
    """The app's own names in the list are exactly `ray_` + the names serving/metrics.py defines."""
    import inspect
    import re

    import serving.metrics as sm

    defined = set(re.findall(r'"(codetailor_[a-z_]+)"', inspect.getsource(sm)))
    assert defined, "no metric names found in serving/metrics.py"
    listed_app = {n.removeprefix("ray_") for n in promql.listed_metrics() if n.startswith("ray_codetailor_")}
    # Ray appends _total to counters that lack it; every agreed counter already ends in _total.
    assert listed_app == defined, (f"only in deploy/metrics.txt: {sorted(listed_app - defined)}; "
                                   f"only in serving/metrics.py: {sorted(defined - listed_app)}")
