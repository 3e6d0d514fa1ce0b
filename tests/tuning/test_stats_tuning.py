"""Tuning from merged statistics equals tune_thresholds on the rows (the oracle).

Every core objective and strategy, one-pass ("distinct") and refining ("exact")
statistics from random splits, ties, duplicates, float16/bfloat16/float32/float64,
labels with no positives, no negatives or one positive, many labels.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from labelcut.tuning import tune_thresholds
from labelcut.tuning.stats import ScoreStats, StatsPass, merge_stats
from labelcut.tuning.stats_tuning import plan_tuning, tune_from_stats, tune_statistics

OBJECTIVES = [
    ("f1", {}),
    ("fbeta", {"beta": 2.0}),
    ("recall_at_precision", {"target": 0.6}),
    ("precision_at_recall", {"target": 0.7}),
]
STRATEGIES = ["per_label", "global", "shrunk"]


def make_data(seed: int, n: int = 600, n_labels: int = 7, dtype=np.float32, continuous=True):
    rng = np.random.default_rng(seed)
    truth = rng.random((n, n_labels)) < rng.uniform(0.02, 0.5, n_labels)
    truth[:, 0] = False  # no positives
    truth[:, 1] = True  # no negatives
    truth[:, 2] = False
    truth[5, 2] = True  # one positive
    noise = rng.normal(size=(n, n_labels)) + 1.5 * truth
    scores = 1.0 / (1.0 + np.exp(-noise))
    if not continuous:
        scores = np.round(scores * 25) / 25  # heavy ties
    scores[: n // 10] = np.round(scores[: n // 10], 2)  # duplicates in any case
    return scores.astype(dtype), truth


def reduce_over_chunks(scores, targets, parts: int, seed: int):
    """A reducer like the engine's: statistics of random uneven chunks, merged."""
    rng = np.random.default_rng(seed)
    edges = np.concatenate(([0], np.sort(rng.integers(0, len(scores), parts - 1)), [len(scores)]))

    def reduce(pass_: StatsPass) -> ScoreStats:
        return merge_stats(
            [
                ScoreStats.from_arrays(scores[a:b], targets[a:b], pass_, chunk_id=i)
                for i, (a, b) in enumerate(itertools.pairwise(edges))
            ]
        )

    return reduce


def assert_same_thresholds(expected, got) -> None:
    assert np.array_equal(got.thresholds, expected.thresholds)
    assert got.status == expected.status
    assert got.global_threshold == expected.global_threshold
    assert got.label_strategy == expected.label_strategy
    for name in ("support", "predicted_positives", "default_predicted_positives"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    for name in ("precision", "recall", "f1", "default_f1"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert (got.macro_f1, got.micro_f1) == (expected.macro_f1, expected.micro_f1)
    assert got.diagnosis == expected.diagnosis
    assert got.n_samples == expected.n_samples


@pytest.mark.parametrize(("objective", "extra"), OBJECTIVES)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_distinct_statistics_equal_tune_thresholds(objective, extra, strategy, dtype) -> None:
    scores, targets = make_data(3, dtype=dtype, continuous=dtype != np.float16)
    kwargs = dict(objective=objective, strategy=strategy, n_bootstrap=25, **extra)
    expected = tune_thresholds(scores, targets, estimate=False, return_curves=True, **kwargs)
    stats = reduce_over_chunks(scores, targets, 4, 1)(StatsPass("distinct"))
    got = tune_from_stats(stats, estimate=False, return_curves=True, **kwargs)
    assert_same_thresholds(expected, got)
    # One group per distinct score: the bootstrap and the curves are the same too.
    assert np.array_equal(got.threshold_interval, expected.threshold_interval)
    assert np.array_equal(got.f1_interval, expected.f1_interval)
    for mine, theirs in zip(got.curves, expected.curves, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert np.array_equal(a, b)


@pytest.mark.parametrize(("objective", "extra"), OBJECTIVES)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("dtype", "continuous"), [(np.float32, True), (np.float64, False)])
@pytest.mark.parametrize("parts", [1, 5])
def test_two_pass_exact_equals_tune_thresholds(
    objective, extra, strategy, dtype, continuous, parts
) -> None:
    scores, targets = make_data(parts, n=3000, dtype=dtype, continuous=continuous)
    kwargs = dict(objective=objective, strategy=strategy, n_bootstrap=0, **extra)
    expected = tune_thresholds(scores, targets, estimate=False, **kwargs)
    reduce = reduce_over_chunks(scores, targets, parts, parts)
    got = tune_statistics(reduce, mode="exact", estimate=False, **kwargs)
    assert_same_thresholds(expected, got)
    one_pass = tune_statistics(reduce, mode="distinct", estimate=False, **kwargs)
    assert_same_thresholds(one_pass, got)


@pytest.mark.parametrize("budget", [0, None])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_pass_on_tight_grid_and_fallbacks(strategy, budget) -> None:
    """A coarse grid (many scores per bin: sub-bins before distinct scores) and an odd
    fallback inside a bin (a last pass refines the bins holding reported thresholds).
    Budget 0 forces sub-bins; the default budget goes straight to distinct scores."""
    scores, targets = make_data(11, n=4000)
    kwargs = dict(strategy=strategy, n_bootstrap=0, fallback=0.3141, estimate=False)
    expected = tune_thresholds(scores, targets, **kwargs)
    plan = plan_tuning("exact", levels=128, budget_rows=budget, **kwargs)
    reduce = reduce_over_chunks(scores, targets, 3, 2)
    passes = []
    while (pass_ := plan.next_pass()) is not None:
        passes.append(pass_.kind)
        plan.feed(reduce(pass_))
    assert passes[0] == "grid" and len(passes) <= plan.passes_planned
    assert set(passes[1:]) == {"window"} and len(passes) >= (3 if budget == 0 else 2)
    assert_same_thresholds(expected, plan.result())


def test_window_pass_over_other_rows_is_refused() -> None:
    scores, targets = make_data(12, n=2000)
    plan = plan_tuning("exact", n_bootstrap=0, estimate=False)
    plan.feed(ScoreStats.from_arrays(scores, targets, plan.next_pass()))
    window = plan.next_pass()
    assert window is not None and window.kind == "window"
    with pytest.raises(ValueError, match="same rows"):
        plan.feed(ScoreStats.from_arrays(scores[:1500], targets[:1500], window))


def test_bfloat16_and_torch_inputs() -> None:
    scores, targets = make_data(5)
    tensor = torch.from_numpy(scores).to(torch.bfloat16)
    truth = torch.from_numpy(targets)
    for strategy in STRATEGIES:
        expected = tune_thresholds(tensor, truth, strategy=strategy, n_bootstrap=0, estimate=False)
        got = tune_statistics(
            lambda p: ScoreStats.from_arrays(tensor, truth, p),
            strategy=strategy,
            n_bootstrap=0,
            estimate=False,
        )
        assert_same_thresholds(expected, got)


def test_many_labels() -> None:
    scores, targets = make_data(6, n=300, n_labels=120)
    kwargs = dict(strategy="shrunk", n_bootstrap=0, estimate=False)
    expected = tune_thresholds(scores, targets, **kwargs)
    got = tune_statistics(reduce_over_chunks(scores, targets, 3, 0), **kwargs)
    assert_same_thresholds(expected, got)


def test_the_default_adaptive_runs_as_shrunk_from_statistics_and_says_so() -> None:
    """ "adaptive" chooses on the rows' folds, which statistics do not keep."""
    scores, targets = make_data(7, n=400, n_labels=5)
    shrunk = tune_thresholds(scores, targets, strategy="shrunk", n_bootstrap=0, estimate=False)
    got = tune_statistics(reduce_over_chunks(scores, targets, 3, 0), n_bootstrap=0)
    assert got.strategy == "shrunk" and got.params["strategy"] == "shrunk"
    assert_same_thresholds(shrunk, got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_passes_hold_state_bounded_by_the_grid(dtype) -> None:
    """Continuous scores: every refining pass holds at most 256 groups per refined group
    (sub-bins or distinct scores) beyond its budget, a small share of the distinct scores."""
    rng = np.random.default_rng(0)
    truth = rng.random((200_000, 2)) < 0.2
    scores = (1 / (1 + np.exp(-(rng.normal(size=truth.shape) + 2 * truth)))).astype(dtype)
    kwargs = dict(strategy="shrunk", n_bootstrap=0, estimate=False)
    plan = plan_tuning("exact", levels=1024, budget_rows=1000, **kwargs)  # bins of ~300 rows
    sizes = []
    while (pass_ := plan.next_pass()) is not None:
        stats = ScoreStats.from_arrays(scores, truth, pass_)
        if pass_.kind == "window":
            assert stats.offsets[-1] <= max(1000, 256 * len(pass_.window_keys))
        sizes.append(int(stats.offsets[-1]))
        plan.feed(stats)
    assert len(sizes) <= plan.passes_planned
    distinct = ScoreStats.from_arrays(scores, truth).offsets[-1]
    assert max(sizes) < distinct / 20
    expected = tune_thresholds(scores, truth, **kwargs)
    assert_same_thresholds(expected, plan.result())


def test_estimate_is_null_with_a_reason() -> None:
    scores, targets = make_data(7)
    got = tune_from_stats(ScoreStats.from_arrays(scores, targets), n_bootstrap=0)
    assert got.estimate["macro_f1"]["expected"] is None
    assert "statistics" in got.estimate["expected_f1_reason"][0]
    assert got.to_dict()["summary"]["macro_f1"]["expected"] is None


def test_bad_arguments_raise_like_tune_thresholds() -> None:
    scores, targets = make_data(8)
    stats = ScoreStats.from_arrays(scores, targets)
    with pytest.raises(ValueError, match="target"):
        tune_from_stats(stats, objective="recall_at_precision")
    with pytest.raises(ValueError, match="unknown tuning argument"):
        tune_from_stats(stats, n_boot=3)
    with pytest.raises(ValueError, match="mode"):
        plan_tuning("approximate")
    with pytest.raises(ValueError, match="budget_rows"):
        plan_tuning("exact", budget_rows=-1)
    with pytest.raises(ValueError, match="label_names"):
        tune_from_stats(stats, label_names=["a"])
    with pytest.raises(ValueError, match="distinct"):
        tune_from_stats(ScoreStats.from_arrays(scores, targets, StatsPass("grid")))
    empty = ScoreStats.from_arrays(scores[:0], targets[:0])
    with pytest.raises(ValueError, match="0 rows"):
        tune_from_stats(empty)
    plan = plan_tuning("exact")
    with pytest.raises(ValueError, match="expected the statistics"):
        plan.feed(stats)  # a distinct pass fed where the grid pass was asked for
    with pytest.raises(ValueError, match="not done"):
        plan.result()


@pytest.mark.parametrize("seed", range(12))
def test_exact_mode_on_random_grids_and_budgets(seed) -> None:
    """Random sizes, grids, budgets (sub-bins, then distinct scores in a later pass),
    objectives, strategies, fallbacks and splits: always tune_thresholds' answer."""
    rng = np.random.default_rng(100 + seed)
    n, n_labels = int(rng.integers(50, 6000)), int(rng.integers(1, 5))
    dtype = (np.float16, np.float32, np.float64)[seed % 3]
    truth = rng.random((n, n_labels)) < rng.uniform(0.001, 0.7, n_labels)
    noise = rng.normal(size=truth.shape) * rng.uniform(0.2, 3) + 2 * truth
    scores = 1 / (1 + np.exp(-noise))
    if seed % 4 == 0:
        scores = np.round(scores * rng.integers(3, 100)) / 100
    scores = np.clip(scores, 0, 1).astype(dtype)
    objective, extra = OBJECTIVES[seed % 4]
    kwargs = dict(
        objective=objective, strategy=("shrunk", "global", "per_label")[seed % 3],
        n_bootstrap=0, estimate=False, fallback=float(rng.uniform(0, 1)), **extra,
    )  # fmt: skip
    expected = tune_thresholds(scores, truth, **kwargs)
    got = tune_statistics(
        reduce_over_chunks(scores, truth, int(rng.integers(1, 5)), seed),
        levels=int(2 ** rng.integers(7, 17)),
        budget_rows=(0, 300, 5000, None)[seed % 4],
        **kwargs,
    )
    assert_same_thresholds(expected, got)
