"""objective="cost" (tuning.costs.tune_costs) against a brute-force reference.

The reference tries every threshold that makes a distinct cut (each distinct
score, and one above all of them), counts errors with plain masks, compares
costs as exact decimal fractions and keeps the last (highest) minimum: no code
shared with the package.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelcut.tuning.costs import cost_vector, tune_costs


def reference_cut(scores: np.ndarray, targets: np.ndarray, cost_fp: float, cost_fn: float):
    """(lowest score predicted, exact minimum cost); None for "predict nothing"."""
    cfp, cfn = Fraction(repr(float(cost_fp))), Fraction(repr(float(cost_fn)))
    best = None
    for cut in [*np.unique(scores).tolist(), None]:
        predicted = np.zeros(len(scores), bool) if cut is None else scores >= cut
        fp = int((predicted & ~targets).sum())
        fn = int((~predicted & targets).sum())
        cost = cfp * fp + cfn * fn
        if best is None or cost <= best[1]:  # increasing cuts: ties go to the higher one
            best = (cut, cost)
    return best


def reproduced_cut(scores: np.ndarray, threshold: float):
    predicted = scores.astype(np.float64) >= threshold
    return float(scores[predicted].min()) if predicted.any() else None


def exact_cost(scores, targets, threshold, cost_fp, cost_fn) -> Fraction:
    predicted = scores.astype(np.float64) >= threshold
    fp, fn = int((predicted & ~targets).sum()), int((~predicted & targets).sum())
    return Fraction(repr(float(cost_fp))) * fp + Fraction(repr(float(cost_fn))) * fn


def check_against_reference(scores, targets, cost_fp, cost_fn):
    result = tune_costs(scores, targets, cost_fp, cost_fn)
    fp_costs = np.broadcast_to(cost_fp, (scores.shape[1],))
    fn_costs = np.broadcast_to(cost_fn, (scores.shape[1],))
    for j in range(scores.shape[1]):
        column, truth = scores[:, j], targets[:, j]
        if truth.sum() in (0, len(truth)):
            assert result.status[j] in ("no_positives", "no_negatives")
            assert result.thresholds[j] == 0.5
            continue
        assert result.status[j] == "ok"
        cut, cost = reference_cut(column.astype(np.float64), truth, fp_costs[j], fn_costs[j])
        assert reproduced_cut(column, result.thresholds[j]) == cut
        assert exact_cost(column, truth, result.thresholds[j], fp_costs[j], fn_costs[j]) == cost
        assert result.predicts_nothing[j] == (cut is None)
        assert result.cost[j] == pytest.approx(float(cost), rel=1e-12, abs=1e-12)
        default = exact_cost(column, truth, 0.5, fp_costs[j], fn_costs[j])
        assert result.default_cost[j] == pytest.approx(float(default), rel=1e-12, abs=1e-12)
        assert 0.0 <= result.thresholds[j] <= 1.0 or column.max() == 1.0


@st.composite
def small_cases(draw):
    n = draw(st.integers(1, 14))
    n_labels = draw(st.integers(1, 3))
    levels = draw(st.integers(1, 5))  # few distinct scores: many ties
    grid = np.linspace(0.0, 1.0, levels + 1)[draw(st.integers(0, 1)) :]
    scores = np.array(
        draw(st.lists(st.sampled_from(grid.tolist()), min_size=n * n_labels, max_size=n * n_labels))
    ).reshape(n, n_labels)
    targets = np.array(
        draw(st.lists(st.booleans(), min_size=n * n_labels, max_size=n * n_labels))
    ).reshape(n, n_labels)
    cost = st.sampled_from([0.0, 0.1, 0.3, 1.0, 2.5, 3.0, 7.0])
    cost_fp = draw(cost)
    cost_fn = draw(cost.filter(lambda c: c > 0) if cost_fp == 0 else cost)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return scores.astype(dtype), targets, cost_fp, cost_fn


@settings(max_examples=300, deadline=None)
@given(small_cases())
def test_matches_brute_force_on_small_tied_cases(case):
    check_against_reference(*case)


def test_matches_brute_force_on_random_data_with_per_label_costs():
    rng = np.random.default_rng(7)
    targets = rng.random((400, 5)) < [0.02, 0.1, 0.3, 0.5, 0.8]
    scores = np.clip(0.35 * targets + rng.random((400, 5)) * 0.65, 0, 1).astype(np.float32)
    scores[:50] = np.round(scores[:50], 1)  # some ties
    check_against_reference(scores, targets, [1.0, 2.0, 0.5, 10.0, 0.0], [9.0, 1.0, 0.5, 1.0, 1.0])


def test_decimal_ties_go_to_the_higher_threshold():
    # One false positive at 0.3 ties three misses at 0.1 as decimals; float64 says 0.1 * 3 > 0.3.
    scores = np.array([[0.2], [0.3], [0.4], [0.5], [0.6]])
    targets = np.array([[1], [1], [1], [0], [1]])
    result = tune_costs(scores, targets, cost_fp=0.3, cost_fn=0.1)
    assert result.thresholds[0] == pytest.approx(0.55)  # cut at 0.6, not at 0.2
    assert (result.false_positives[0], result.false_negatives[0]) == (0, 3)


def test_plain_tie_goes_to_the_higher_threshold():
    scores = np.array([[0.2], [0.4], [0.6], [0.8]])
    targets = np.array([[0], [1], [0], [1]])
    result = tune_costs(scores, targets, 1.0, 1.0)
    assert result.thresholds[0] == pytest.approx(0.7)  # cut 0.4 and cut 0.8 both cost 1


def test_a_cost_of_zero_on_one_side():
    scores = np.array([[0.1, 0.1], [0.3, 0.3], [0.7, 0.7], [0.9, 0.9]])
    targets = np.array([[0, 0], [1, 1], [0, 0], [1, 1]])
    result = tune_costs(scores, targets, cost_fp=[0.0, 1.0], cost_fn=[1.0, 0.0])
    # False alarms free: the highest cut that misses nothing (just below the lowest positive).
    assert result.thresholds[0] == pytest.approx(0.2)
    assert result.cost[0] == 0 and result.false_negatives[0] == 0
    # Misses free: predict nothing.
    assert result.predicts_nothing[1] and result.cost[1] == 0
    assert result.thresholds[1] == pytest.approx(0.95)  # midpoint of the top score and 1


def test_one_positive():
    scores = np.array([[0.1], [0.2], [0.9], [0.4]])
    targets = np.array([[0], [0], [1], [0]])
    result = tune_costs(scores, targets, 1.0, 1.0)
    assert result.thresholds[0] == pytest.approx(0.65)
    assert (result.false_positives[0], result.false_negatives[0]) == (0, 0)
    result = tune_costs(scores, targets, 1.0, 1.0, min_positives=2)
    assert result.status == ["too_few_positives"] and result.thresholds[0] == 0.5


def test_predict_nothing_when_the_top_score_is_one():
    scores = np.array([[0.2], [1.0], [0.5]], dtype=np.float32)
    targets = np.array([[1], [0], [0]])
    result = tune_costs(scores, targets, cost_fp=5.0, cost_fn=1.0)
    assert result.predicts_nothing[0]
    assert result.thresholds[0] == float(np.nextafter(np.float32(1), np.float32(2)))
    assert not (scores.astype(np.float64) >= result.thresholds[0]).any()


def test_totals_and_report():
    rng = np.random.default_rng(1)
    targets = rng.random((100, 3)) < 0.3
    scores = rng.random((100, 3))
    result = tune_costs(scores, targets, 1.0, {"a": 2.0, "*": 4.0}, label_names=["a", "b", "c"])
    assert list(result.cost_fn) == [2.0, 4.0, 4.0]
    assert result.total_cost == pytest.approx(result.cost.sum())
    assert result.total_cost <= result.default_total_cost  # 0.5 is one of the cuts tried
    report = result.to_dict(["a", "b", "c"])
    assert report["summary"]["cost"] == {
        "tuned": result.total_cost,
        "default": result.default_total_cost,
    }
    assert report["per_label"][1]["label"] == "b"
    assert report["per_label"][1]["cost"] == result.cost[1]


@pytest.mark.parametrize(
    ("cost_fp", "cost_fn", "message"),
    [
        (0.0, 0.0, "both 0 for label 0"),
        (-1.0, 1.0, "cost_fp for label 0 must be finite and >= 0"),
        (1.0, float("nan"), "cost_fn for label 0 must be finite"),
        ([1.0, 2.0], 1.0, "2 values for 1 labels"),
        ({"x": 1.0}, 1.0, "unknown labels: x"),
        (1.0, "2", "must be a number"),
    ],
)
def test_bad_costs_are_refused(cost_fp, cost_fn, message):
    with pytest.raises(ValueError, match=message):
        tune_costs(np.array([[0.2], [0.7]]), np.array([[0], [1]]), cost_fp, cost_fn)


def test_cost_map_must_cover_every_label():
    with pytest.raises(ValueError, match="no cost for labels b"):
        cost_vector({"a": 1.0}, 2, "cost_fn", ["a", "b"])
