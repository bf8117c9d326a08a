"""The Customization Quality Index (CQI): one number from 1 to 10 per customised system.

Formula (docs/cqi.md has the reasoning and the calibration):

    u_i   = (exact_match_i + edit_similarity_i) / 2          per task, in [0, 1]
    d_i   = u_i(system) - u_i(base)                           paired, in [-1, 1]
    D     = mean_i d_i
    CQI   = 5 + 5 * (1 - exp(-D / s))     for D >= 0   (5 .. 10)
    CQI   = 5 - 4 * (1 - exp( D / s))     for D <  0   (1 .. 5)

`s` (evaluation.cqi_scale, default 0.125) is the calibration: a mean gain of
0.065 (about the project's goal, +8 points exact match with a matching edit-
similarity gain) gives CQI 7; 0.125 gives 8.2; 0.3 gives 9.5. The interval is
a paired percentile bootstrap over tasks: resample task indices, recompute D,
map through the same monotone function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CQI:
    value: float
    low: float
    high: float
    mean_gain: float   # D
    n: int

    def as_dict(self) -> dict:
        return {"value": round(self.value, 3), "low": round(self.low, 3), "high": round(self.high, 3),
                "mean_gain": round(self.mean_gain, 5), "n": self.n}


def usefulness(exact: np.ndarray, edit: np.ndarray) -> np.ndarray:
    return (np.asarray(exact, float) + np.asarray(edit, float)) / 2


def cqi_of_gain(d: float, scale: float) -> float:
    if d >= 0:
        return 5 + 5 * (1 - math.exp(-d / scale))
    return 5 - 4 * (1 - math.exp(d / scale))


def compute_cqi(system_u: np.ndarray, base_u: np.ndarray, *, scale: float = 0.125, samples: int = 2000,
                seed: int = 0, confidence: float = 0.95) -> CQI:
    """CQI of `system` against `base` from paired per-task usefulness values."""
    system_u, base_u = np.asarray(system_u, float), np.asarray(base_u, float)
    if system_u.shape != base_u.shape or system_u.ndim != 1 or not len(system_u):
        raise ValueError("CQI needs two non-empty per-task arrays of the same length (paired tasks)")
    diff = system_u - base_u
    d = float(diff.mean())
    lo, hi = interval(diff[resampled_tasks(len(diff), samples, seed)].mean(axis=1), confidence)
    return CQI(cqi_of_gain(d, scale), cqi_of_gain(lo, scale), cqi_of_gain(hi, scale), d, len(diff))


def resampled_tasks(n: int, samples: int, seed: int) -> np.ndarray:
    """`samples` bootstrap resamples of task indices 0..n-1 (rows). Paired comparisons index every
    system's per-task values with the same rows, so a task's systems stay together."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def interval(boot: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of a bootstrap distribution."""
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(np.asarray(boot, float), [alpha, 1 - alpha])
    return float(lo), float(hi)
