"""`--report DIR`: a Markdown report with PNG plots, rendered from a saved result.

report.md holds the metrics table per system (and per task kind), the CQI with
its interval, and examples of completions that improved and that got worse
against base; metrics.png and cqi.png are the plots. Everything comes from the
result dict that evaluation saves, so an old run can be re-rendered.
"""

from __future__ import annotations

from pathlib import Path

from codetailor.atomic import atomic_write_bytes, atomic_write_text

METRIC_LABELS = {"exact_match": "exact match", "edit_similarity": "edit similarity", "codebleu": "CodeBLEU",
                 "identifier_match": "identifier match", "api_usage": "internal-API usage"}


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def _metrics_table(systems: dict[str, dict]) -> list[str]:
    cols = list(METRIC_LABELS)
    rows = ["| system | " + " | ".join(METRIC_LABELS[c] for c in cols) + " | n |",
            "|---" * (len(cols) + 2) + "|"]
    for name, m in systems.items():
        rows.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + f" | {m.get('n', '')} |")
    return rows


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = []
    systems = result["systems"]
    metrics = [m for m in METRIC_LABELS if any(s.get(m) is not None for s in systems.values())]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(metrics))
    for i, (name, m) in enumerate(systems.items()):
        ax.bar(x + i * width, [m.get(k) or 0 for k in metrics], width, label=name)
    ax.set_xticks(x + width * (len(systems) - 1) / 2, [METRIC_LABELS[m].replace(" ", "\n", 1) for m in metrics])
    ax.set_ylim(0, 1)
    ax.set_title(f"Metrics per system (n={result['n']})")
    ax.legend()
    atomic_write_bytes(out / "metrics.png", _png(fig))
    plt.close(fig)
    names.append("metrics.png")

    if result["cqi"]:
        fig, ax = plt.subplots(figsize=(6, 3))
        labels = list(result["cqi"])
        vals = [result["cqi"][s]["value"] for s in labels]
        err = [[v - result["cqi"][s]["low"] for s, v in zip(labels, vals)],
               [result["cqi"][s]["high"] - v for s, v in zip(labels, vals)]]
        ax.errorbar(labels, vals, yerr=err, fmt="o", capsize=6)
        ax.axhline(5, color="grey", linestyle="--", linewidth=1, label="no better than base")
        ax.set_ylim(0.8, 10.2)
        ax.set_ylabel("CQI")
        ax.set_title("CQI with 95% paired-bootstrap interval")
        ax.legend(loc="lower right")
        atomic_write_bytes(out / "cqi.png", _png(fig))
        plt.close(fig)
        names.append("cqi.png")
    return names


def _code(text: str) -> str:
    return "`" + text.replace("`", "ʼ").replace("|", "\\|") + "`" if text.strip() else "*(empty)*"


def _examples(result: dict, system: str, k: int) -> list[str]:
    tasks = [t for t in result.get("tasks", []) if system in t["usefulness"] and "base" in t["usefulness"]]
    delta = sorted(tasks, key=lambda t: t["usefulness"][system] - t["usefulness"]["base"])
    worse = [t for t in delta if t["usefulness"][system] < t["usefulness"]["base"]][:k]
    better = [t for t in reversed(delta) if t["usefulness"][system] > t["usefulness"]["base"]][:k]
    out = []
    for title, chosen in (("improved", better), ("got worse", worse)):
        out.append(f"\n#### {system}: {title} ({len(chosen)} shown)\n")
        if not chosen:
            out.append("none\n")
            continue
        out.append("| task | target | base | " + system + " |")
        out.append("|---|---|---|---|")
        for t in chosen:
            out.append(f"| {t['kind']} {t['path']}:{t['line']} | {_code(t['target'])} | "
                       f"{_code(t['predictions']['base'])} | {_code(t['predictions'][system])} |")
    return out


def render(result: dict, out_dir: Path, examples: int = 5) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    lines = [f"# Evaluation of tenant `{result['tenant']}`", "",
             f"Run `{result['eval_id']}`: {result['n']} tasks from {result['split']['heldout_files']} held-out "
             f"files ({result['split']['source']}), adapter {result.get('adapter') or '—'}, "
             f"{result['seconds']:.0f} s. Targets are code lines (no blank, comment, docstring, licence or "
             "trivially short lines); CQI is defined in docs/cqi.md.", "", "## Metrics", ""]
    lines += _metrics_table(result["systems"])
    for kind, systems in result.get("by_kind", {}).items():
        lines += ["", f"### {kind}", ""] + _metrics_table(systems)
    if "metrics.png" in plots:
        lines += ["", "![metrics per system](metrics.png)"]
    lines += ["", "## CQI (1–10, 5 = no better than base)", ""]
    if result["cqi"]:
        lines += ["| system | CQI | 95% interval | mean paired gain |", "|---|---|---|---|"]
        for s, c in result["cqi"].items():
            lines.append(f"| {s} | {c['value']:.2f} | {c['low']:.2f} – {c['high']:.2f} | {c['mean_gain']:+.4f} |")
        lines += ["", "![CQI with intervals](cqi.png)", "",
                  f"Serving system chosen from this run: **{result.get('chosen_system', '—')}**."]
    else:
        lines.append("No customised system was evaluated together with base.")
    lines += ["", "## Examples"]
    for system in result["cqi"]:
        lines += _examples(result, system, examples)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
