"""Bootstrap intervals of the cost, micro and abstain objectives (tuning.objective_bootstrap).

Two oracles: an "identity" replicate (the observed counts themselves) must
re-tune to exactly the reported thresholds; and a drawn replicate, written out
as rows (each distinct score repeated as often as drawn), must re-tune as the
exact tuner does on those rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from labelcut.tuning import objective_bootstrap
from labelcut.tuning.abstain import tune_abstain
from labelcut.tuning.costs import tune_costs
from labelcut.tuning.cutpoints import label_cuts
from labelcut.tuning.micro import tune_micro_fbeta
from labelcut.tuning.objective_bootstrap import abstain_intervals, cost_intervals, micro_intervals


def case(seed=0, n=400, n_labels=6):
    rng = np.random.default_rng(seed)
    targets = rng.random((n, n_labels)) < np.linspace(0.05, 0.5, n_labels)
    scores = np.clip(0.3 * targets + 0.7 * rng.random((n, n_labels)), 0, 1).astype(np.float32)
    return np.round(scores, 3), targets


@pytest.fixture
def identity_replicates(monkeypatch):
    """Every replicate is the observed data itself."""

    def blocks(groups, label, n_bootstrap, seed):
        tp = np.append(np.cumsum(groups.group_pos[::-1])[::-1], 0.0)
        pp = tp + np.append(np.cumsum(groups.group_neg[::-1])[::-1], 0.0)
        for start in range(0, n_bootstrap, objective_bootstrap.REPLICATES_PER_BLOCK):
            size = min(objective_bootstrap.REPLICATES_PER_BLOCK, n_bootstrap - start)
            yield np.tile(tp, (size, 1)), np.tile(pp, (size, 1)), np.full(size, tp[0])

    monkeypatch.setattr(objective_bootstrap, "draw_blocks", blocks)


def test_identity_replicates_retune_to_the_reported_thresholds(identity_replicates):
    scores, targets = case()
    costs = tune_costs(scores, targets, 1.0, [1.0, 2.0, 4.0, 8.0, 0.5, 3.0])
    got = cost_intervals(scores, targets, costs.cost_fp, costs.cost_fn, costs.thresholds)
    np.testing.assert_array_equal(got.thresholds[:, 0], costs.thresholds)
    np.testing.assert_array_equal(got.thresholds[:, 1], costs.thresholds)
    np.testing.assert_allclose(got.merit[:, 0], costs.cost)

    for beta in (1.0, 2.0):
        micro = tune_micro_fbeta(scores, targets, beta, start_threshold=0.5)
        got = micro_intervals(scores, targets, micro.thresholds, beta, n_bootstrap=60)
        np.testing.assert_array_equal(got.thresholds[:, 0], micro.thresholds)
        np.testing.assert_array_equal(got.thresholds[:, 1], micro.thresholds)
        assert got.merit[0] == pytest.approx(micro.micro_fbeta, rel=1e-12)

    for bound in (None, 0.9):
        band = tune_abstain(scores, targets, 0.8, 0.9, wilson_confidence=bound)
        got = abstain_intervals(
            scores, targets, band.lower, band.upper, 0.8, 0.9, wilson_confidence=bound
        )
        np.testing.assert_array_equal(got.thresholds[:, 0], band.upper)
        np.testing.assert_array_equal(got.lower_thresholds[:, 0], band.lower)
        np.testing.assert_allclose(got.merit[:, 0], band.review_share)


def test_a_drawn_cost_replicate_retunes_like_the_exact_tuner_on_its_rows():
    scores, targets = case(3, n=120, n_labels=1)
    cuts = label_cuts(scores[:, 0], targets[:, 0])
    groups = objective_bootstrap.label_groups(cuts, scores.dtype, [])
    assert len(groups.edges) == cuts.nothing + 1  # fewer distinct scores than MAX_GROUPS
    tp, pp, _ = next(objective_bootstrap.draw_blocks(groups, 0, 5, seed=9))
    thresholds = groups.thresholds
    for b in range(5):
        group_tp = (tp[b, :-1] - tp[b, 1:]).astype(int)
        group_fp = (pp[b, :-1] - pp[b, 1:]).astype(int) - group_tp
        repeats = np.r_[group_tp, group_fp]  # drawn positives, then negatives, per score
        rows = np.repeat(np.r_[cuts.values, cuts.values], repeats)
        is_positive = np.r_[np.ones(len(group_tp), bool), np.zeros(len(group_fp), bool)]
        truth = np.repeat(is_positive, repeats)
        exact = tune_costs(rows[:, None].astype(np.float32), truth[:, None], 1.0, 3.0)
        cost = (pp[b] - tp[b]) + 3.0 * (tp[b, 0] - tp[b])
        best = len(cost) - 1 - int(np.argmin(cost[::-1]))
        predicted = rows >= thresholds[best]
        np.testing.assert_array_equal(predicted, rows >= exact.thresholds[0])


def test_seeded_ordered_and_off_at_zero():
    scores, targets = case(1)
    costs = tune_costs(scores, targets, 1.0, 2.0)
    args = (scores, targets, costs.cost_fp, costs.cost_fn, costs.thresholds)
    first = cost_intervals(*args, seed=4)
    np.testing.assert_array_equal(first.merit, cost_intervals(*args, seed=4).merit)
    assert not np.array_equal(first.merit, cost_intervals(*args, seed=5).merit)
    assert (first.thresholds[:, 0] <= first.thresholds[:, 1]).all()
    assert cost_intervals(*args, n_bootstrap=0) is None
    micro = tune_micro_fbeta(scores, targets, start_threshold=0.5)
    got = micro_intervals(scores, targets, micro.thresholds, n_bootstrap=100)
    assert got.merit[0] <= micro.micro_fbeta <= got.merit[1]


def test_many_distinct_scores_are_grouped_but_exact_at_the_reported_threshold(
    identity_replicates,
):
    rng = np.random.default_rng(8)
    targets = rng.random((3000, 2)) < 0.3
    scores = np.clip(0.3 * targets + 0.7 * rng.random((3000, 2)), 0, 1)  # 3000 distinct
    costs = tune_costs(scores, targets, 1.0, 2.0)
    got = cost_intervals(scores, targets, costs.cost_fp, costs.cost_fn, costs.thresholds)
    np.testing.assert_allclose(got.merit[:, 0], costs.cost)  # the reported cut is an edge
    cuts = label_cuts(scores[:, 0], targets[:, 0])
    groups = objective_bootstrap.label_groups(cuts, scores.dtype, [17])
    assert len(groups.edges) <= objective_bootstrap.MAX_GROUPS + 2 and 17 in groups.edges


def test_intervals_narrow_with_more_rows():
    widths = []
    for n in (200, 5000):
        scores, targets = case(2, n=n, n_labels=3)
        micro = tune_micro_fbeta(scores, targets, start_threshold=0.5)
        got = micro_intervals(scores, targets, micro.thresholds, n_bootstrap=100)
        widths.append(got.merit[1] - got.merit[0])
    assert widths[1] < widths[0] / 2
