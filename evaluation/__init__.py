"""Evaluation: measure each customisation against the generic model (CQI) and
guard which adapter a tenant's traffic uses.

Public surface: `evaluate` (one run), `guardrail.activate` / `guardrail.rollback`
/ `guardrail.versions`, `report.render`. See docs/cqi.md and docs/evaluation.md.
"""

from evaluation.evaluate import EvaluationError, evaluate, public_summary

__all__ = ["EvaluationError", "evaluate", "public_summary"]
