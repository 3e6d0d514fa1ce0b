"""Quantised statistics (one grid pass) against exact tuning, and the bootstrap on counts.

The documented tolerance of quantised mode: each threshold reproduces its own
counts on the rows exactly (it is a cut at a grid bin edge), and a label's
validation F1 is at most ``r / (pp* + P)`` below the exact optimum's, ``r``
the rows of the grid bin holding the exact cut (moving the cut to that bin's
lower edge adds at most ``r`` rows).
"""

from __future__ import annotations

import numpy as np
import pytest

from labelcut.tuning import tune_thresholds
from labelcut.tuning.stats import ScoreStats, StatsPass
from labelcut.tuning.stats_grid import bin_of, n_bins
from labelcut.tuning.stats_tuning import plan_tuning, tune_statistics

from .test_stats_tuning import make_data


def whole(scores, targets):
    return lambda pass_: ScoreStats.from_arrays(scores, targets, pass_)


@pytest.mark.parametrize("levels", [128, 1024, 1 << 16])
@pytest.mark.parametrize("strategy", ["per_label", "global"])
def test_quantised_f1_within_the_documented_bound(levels, strategy) -> None:
    scores, targets = make_data(21, n=20_000, n_labels=6)
    kwargs = dict(strategy=strategy, n_bootstrap=0, estimate=False)
    exact = tune_thresholds(scores, targets, **kwargs)
    got = tune_statistics(whole(scores, targets), mode="quantised", levels=levels, **kwargs)
    assert got.status == exact.status
    # Every threshold reproduces its counts on the rows (brute force, float64 comparison).
    predicted = scores.astype(np.float64) >= got.thresholds
    assert np.array_equal(predicted.sum(0), got.predicted_positives)
    assert np.array_equal(got.support, targets.sum(0))
    assert np.array_equal((predicted & targets).sum(0) / np.maximum(predicted.sum(0), 1),
                          np.where(predicted.sum(0) > 0, got.precision, 0.0))  # fmt: skip
    if strategy == "global":
        return
    bits = scores.view(np.int32).astype(np.int64)
    for j in np.flatnonzero(np.array(exact.status) == "ok"):
        bins = bin_of(bits[:, j], np.float32, levels)
        chosen = bin_of(np.array([bits[scores[:, j] >= exact.thresholds[j], j].min()]),
                        np.float32, levels)[0]  # fmt: skip
        rows = int((bins == chosen).sum())
        bound = rows / (exact.predicted_positives[j] + exact.support[j])
        assert exact.f1[j] - got.f1[j] <= bound + 1e-12
        assert got.f1[j] <= exact.f1[j] + 1e-15  # never above the exact optimum


def test_quantised_state_is_labels_times_levels() -> None:
    rng = np.random.default_rng(2)
    scores = rng.random((50_000, 3)).astype(np.float32)
    stats = ScoreStats.from_arrays(scores, rng.random(scores.shape) < 0.3, StatsPass("grid", 1024))
    assert stats.offsets[-1] <= 3 * n_bins(1024)
    assert stats.nbytes < 3 * n_bins(1024) * 48 + 1000


def test_fine_grid_on_few_rows_is_exact() -> None:
    """With fewer rows than bins most bins hold one score: quantised is then exact here."""
    scores, targets = make_data(22, n=300)
    exact = tune_thresholds(scores, targets, strategy="per_label", n_bootstrap=0, estimate=False)
    got = tune_statistics(
        whole(scores, targets), mode="quantised", levels=1 << 22, strategy="per_label",
        n_bootstrap=0, estimate=False,
    )  # fmt: skip
    assert np.array_equal(got.thresholds, exact.thresholds)


def test_two_pass_bootstrap_global_intervals_are_exact() -> None:
    """Under "global" every interval reads the pooled histogram and the counts around the
    threshold, both exact after the window passes: the same intervals as in memory."""
    scores, targets = make_data(23, n=5000)
    kwargs = dict(strategy="global", n_bootstrap=40, seed=3, estimate=False)
    expected = tune_thresholds(scores, targets, **kwargs)
    got = tune_statistics(whole(scores, targets), mode="exact", **kwargs)
    assert np.array_equal(got.thresholds, expected.thresholds)
    assert np.array_equal(got.threshold_interval, expected.threshold_interval)
    assert np.array_equal(got.f1_interval, expected.f1_interval)


@pytest.mark.parametrize("strategy", ["per_label", "shrunk"])
def test_two_pass_bootstrap_intervals_are_close(strategy) -> None:
    """Per label the replicates re-tune among groups at the grid's resolution outside the
    expanded bins: intervals close to the in-memory ones, not equal."""
    scores, targets = make_data(24, n=20_000)
    kwargs = dict(strategy=strategy, n_bootstrap=100, estimate=False)
    expected = tune_thresholds(scores, targets, **kwargs)
    got = tune_statistics(whole(scores, targets), mode="exact", **kwargs)
    assert np.array_equal(got.thresholds, expected.thresholds)
    assert np.abs(got.threshold_interval - expected.threshold_interval).max() < 0.05
    assert np.abs(got.f1_interval - expected.f1_interval).max() < 0.05
    low, high = got.threshold_interval[:, 0], got.threshold_interval[:, 1]
    assert (low <= high).all()


def test_quantised_plan_is_one_grid_pass() -> None:
    plan = plan_tuning("quantised", levels=4096)
    first = plan.next_pass()
    assert plan.passes_planned == 1 and first.kind == "grid" and first.levels == 4096
