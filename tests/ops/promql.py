"""Helpers shared by the ops tests: the metric list, PromQL metric-name extraction, the rule and
dashboard expressions, the promtool binary."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRICS_FILE = DEPLOY / "metrics.txt"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "codetailor.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "codetailor.test.yml"
DASHBOARD_DIR = DEPLOY / "grafana" / "dashboards"

# PromQL words that look like identifiers but are not metric names.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "le", "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile",
    "stddev", "stdvar", "count_values", "group",
}
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def listed_metrics() -> dict[str, str]:
    """deploy/metrics.txt as {name: kind}."""
    out = {}
    for line in METRICS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, kind = line.split()[:2]
            out[name] = kind
    return out


def exported_names(listed: dict[str, str]) -> set[str]:
    """Names as they appear on the wire: histograms as their three series."""
    names = set()
    for name, kind in listed.items():
        if kind == "histogram":
            names.update(name + s for s in _HISTOGRAM_SUFFIXES)
        else:
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (recording-rule names excluded by the caller)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    s = re.sub(r"\{[^}]*\}", "", s)                          # label matchers
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)  # label lists
    s = re.sub(r"\[[^\]]*\]", "", s)                         # range / subquery durations
    s = re.sub(r"\boffset\s+\S+", "", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        after = s[m.end():].lstrip()
        if after.startswith("("):                             # a function call
            continue
        if word.lower() in _KEYWORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def rules() -> list[dict]:
    data = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [r for g in data["groups"] for r in g["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) for every query target, template variables included."""
    out = []
    for name, d in dashboards().items():
        for p in d["panels"]:
            for t in p.get("targets", []):
                out.append((name, p["title"], t["expr"]))
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            if v.get("type") == "query":
                text = q["query"] if isinstance(q, dict) else q
                m = re.fullmatch(r"label_values\((.+),\s*\w+\)", text.strip())
                out.append((name, f"variable {v['name']}", m.group(1) if m else text))
    return out


def substitute_variables(expr: str) -> str:
    """Grafana variables replaced by values Prometheus can parse."""
    return (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            .replace("${tenant}", "acme").replace("$tenant", "acme"))


def promtool() -> str | None:
    return shutil.which("promtool")
