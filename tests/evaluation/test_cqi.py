"""CQI: 5 when the system equals base, moves the right way, interval brackets it."""

import numpy as np
import pytest

from evaluation.cqi import compute_cqi, cqi_of_gain, usefulness


def _u(rng, n, p_exact, sim):
    exact = (rng.random(n) < p_exact).astype(float)
    edit = np.clip(np.where(exact == 1, 1.0, rng.normal(sim, 0.15, n)), 0, 1)
    return usefulness(exact, edit)


def test_equal_to_base_is_five_with_a_degenerate_interval():
    base = _u(np.random.default_rng(0), 200, 0.2, 0.5)
    c = compute_cqi(base.copy(), base)
    assert c.value == 5 and c.low == 5 and c.high == 5 and c.mean_gain == 0


def test_better_system_scores_above_five_and_worse_below():
    rng = np.random.default_rng(1)
    base = _u(rng, 300, 0.12, 0.45)
    better = np.minimum(1, base + np.where(rng.random(300) < 0.3, 0.4, 0.0))
    worse = np.maximum(0, base - np.where(rng.random(300) < 0.3, 0.4, 0.0))
    hi, lo = compute_cqi(better, base), compute_cqi(worse, base)
    assert 5 < hi.low <= hi.value <= hi.high <= 10
    assert 1 <= lo.low <= lo.value <= lo.high < 5
    even_better = compute_cqi(np.minimum(1, better + 0.1), base)
    assert even_better.value > hi.value


def test_mapping_is_monotone_bounded_and_calibrated():
    gains = np.linspace(-1, 1, 201)
    values = [cqi_of_gain(g, 0.125) for g in gains]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert 1 <= min(values) and max(values) <= 10
    assert cqi_of_gain(0.0, 0.125) == 5
    assert cqi_of_gain(0.065, 0.125) == pytest.approx(7.0, abs=0.05)  # the documented anchor


def test_interval_narrows_with_more_tasks():
    rng = np.random.default_rng(2)
    widths = []
    for n in (50, 800):
        base = _u(rng, n, 0.15, 0.5)
        sys_ = np.clip(base + rng.normal(0.05, 0.2, n), 0, 1)
        c = compute_cqi(sys_, base)
        widths.append(c.high - c.low)
    assert widths[1] < widths[0]


def test_unpaired_input_is_refused():
    with pytest.raises(ValueError):
        compute_cqi(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        compute_cqi(np.zeros(0), np.zeros(0))
