"""Issue 18's objectives from statistics equal tune_thresholds on the rows.

The whole ``to_dict()`` report is compared (thresholds, statuses, counts, the
objective's report, ``global_threshold``), and the compact curves.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from labelcut.tuning import tune_thresholds
from labelcut.tuning.stats import ScoreStats, StatsPass, merge_stats
from labelcut.tuning.stats_tuning import plan_tuning, tune_statistics

from .test_stats_tuning import make_data

CASES = [
    {"objective": "cost", "cost_fp": 1.0, "cost_fn": 3.0, "strategy": "per_label"},
    {"objective": "cost", "cost_fp": [0.3] * 7, "cost_fn": 0.1},
    {
        "objective": "cost",
        "cost_fp": {"*": 2.0, "b": 0.5},
        "cost_fn": 1.0,
        "label_names": list("abcdefg"),
    },
    {"objective": "micro_f1"},
    {"objective": "micro_fbeta", "beta": 2.0},
    {"objective": "f1", "decision_rule": "abstain", "target": 0.8, "npv_target": 0.9},
    {
        "objective": "f1",
        "decision_rule": "abstain",
        "target": 0.7,
        "npv_target": 0.95,
        "wilson_confidence": 0.9,
    },
]


def by_chunks(scores, targets, parts: int):
    edges = np.linspace(0, len(scores), parts + 1).astype(int)

    def reduce(pass_: StatsPass) -> ScoreStats:
        return merge_stats(
            [
                ScoreStats.from_arrays(scores[a:b], targets[a:b], pass_)
                for a, b in itertools.pairwise(edges)
            ]
        )

    return reduce


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v)[:12] for v in c.values()))
@pytest.mark.parametrize(
    ("dtype", "continuous"), [(np.float16, False), (np.float32, True), (np.float64, False)]
)
def test_objectives_from_statistics_equal_tune_thresholds(case, dtype, continuous) -> None:
    scores, targets = make_data(2, n=800, dtype=dtype, continuous=continuous)
    kwargs = dict(n_bootstrap=0, estimate=False, return_curves=True, **case)
    expected = tune_thresholds(scores, targets, **kwargs)
    got = tune_statistics(by_chunks(scores, targets, 3), mode="exact", **kwargs)
    assert got.to_dict() == expected.to_dict()
    assert np.array_equal(got.thresholds, expected.thresholds)
    if expected.lower_thresholds is not None:
        assert np.array_equal(got.lower_thresholds, expected.lower_thresholds)
    # Curves equal tune_thresholds' from distinct statistics (exact-mode cost: grid resolution).
    curved = tune_statistics(by_chunks(scores, targets, 2), mode="distinct", **kwargs)
    assert curved.to_dict() == expected.to_dict()
    for mine, theirs in zip(curved.curves, expected.curves, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert np.array_equal(a, b)


def test_cost_runs_two_passes_in_bounded_state() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random((60_000, 3)) < [0.02, 0.2, 0.5]
    scores = (1 / (1 + np.exp(-(rng.normal(size=truth.shape) + 2 * truth)))).astype(np.float32)
    kwargs = dict(objective="cost", cost_fp=1.0, cost_fn=[5.0, 2.0, 0.7], n_bootstrap=0)
    plan = plan_tuning("exact", estimate=False, **kwargs)
    kinds, groups = [], []
    while (pass_ := plan.next_pass()) is not None:
        stats = ScoreStats.from_arrays(scores, truth, pass_)
        kinds.append(pass_.kind)
        groups.append(int(stats.offsets[-1]))
        plan.feed(stats)
    assert kinds[:2] == ["grid", "window"]
    assert groups[1] < ScoreStats.from_arrays(scores, truth).offsets[-1] / 20
    expected = tune_thresholds(scores, truth, estimate=False, **kwargs)
    assert plan.result().to_dict() == expected.to_dict()


def test_joint_and_abstain_run_in_one_distinct_pass() -> None:
    for kwargs in ({"objective": "micro_f1"}, {"decision_rule": "abstain", "target": 0.9,
                   "npv_target": 0.9}):  # fmt: skip
        plan = plan_tuning("exact", **kwargs)
        assert plan.passes_planned == 1 and plan.next_pass().kind == "distinct"


def test_micro_without_any_positive_and_bfloat16_cost() -> None:
    scores, targets = make_data(4, n=300)
    none = np.zeros_like(targets)
    kwargs = dict(objective="micro_f1", n_bootstrap=0, estimate=False)
    expected = tune_thresholds(scores, none, **kwargs)
    assert tune_statistics(by_chunks(scores, none, 2), **kwargs).to_dict() == expected.to_dict()
    tensor = torch.from_numpy(scores).to(torch.bfloat16)
    kwargs = dict(objective="cost", cost_fp=2.0, n_bootstrap=0, estimate=False)
    expected = tune_thresholds(tensor, targets, **kwargs)
    got = tune_statistics(lambda p: ScoreStats.from_arrays(tensor, targets, p), **kwargs)
    assert got.to_dict() == expected.to_dict()


def test_objective_argument_errors_match() -> None:
    scores, targets = make_data(5, n=100)
    reduce = by_chunks(scores, targets, 2)
    with pytest.raises(ValueError, match="global"):
        tune_statistics(reduce, objective="cost", strategy="global")
    with pytest.raises(ValueError, match="both 0"):
        tune_statistics(reduce, objective="cost", cost_fp=0.0, cost_fn=0.0)
    with pytest.raises(ValueError, match="quantised"):
        plan_tuning("quantised", objective="cost")


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v)[:12] for v in c.values()))
def test_objective_intervals_from_distinct_statistics_equal(case) -> None:
    """The Poisson bootstrap on counts: the same replicates as on the rows."""
    scores, targets = make_data(9, n=600)
    kwargs = dict(n_bootstrap=30, seed=4, estimate=False, **case)
    expected = tune_thresholds(scores, targets, **kwargs)
    got = tune_statistics(by_chunks(scores, targets, 3), mode="distinct", **kwargs)
    assert got.to_dict() == expected.to_dict()
    assert np.array_equal(got.threshold_interval, expected.threshold_interval)
    assert np.array_equal(got.unstable, expected.unstable)
