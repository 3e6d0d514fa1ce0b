"""Issue 18 through tune_thresholds: cost, joint micro F-beta and the abstain band.

Checked against helper F's functions (same thresholds) and brute force.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from labelcut.tuning import (
    apply_abstain,
    apply_decision_rule,
    tune_abstain,
    tune_costs,
    tune_micro_fbeta,
    tune_thresholds,
)
from labelcut.tuning.objective_bootstrap import cost_intervals


def data(seed: int, n: int = 300, n_labels: int = 4, levels: int | None = None):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, n_labels)) < np.linspace(0.1, 0.5, n_labels)).astype(np.uint8)
    scores = np.clip(0.35 * targets + rng.random((n, n_labels)) * 0.65, 0.0, 1.0)
    if levels:
        scores = np.round(scores * levels) / levels
    return scores, targets


def cuts(column: np.ndarray) -> list[float]:
    """Every distinct operating point's threshold: each distinct score, and above them all."""
    return [*np.unique(column).tolist(), 2.0]


def test_cost_matches_tune_costs_and_brute_force():
    scores, targets = data(0)
    cost_fp, cost_fn = [1.0, 2.0, 0.5, 1.0], {"*": 3.0, "L1": 1.0}
    names = ["L0", "L1", "L2", "L3"]
    result = tune_thresholds(
        scores,
        targets,
        "cost",
        cost_fp=cost_fp,
        cost_fn=cost_fn,
        label_names=names,
        n_bootstrap=0,
    )
    reference = tune_costs(scores, targets, cost_fp, cost_fn, label_names=names)
    np.testing.assert_array_equal(result.thresholds, reference.thresholds)
    fn_costs = [3.0, 1.0, 3.0, 3.0]
    for j in range(4):
        y, s = targets[:, j].astype(bool), scores[:, j]

        def cost(t, y=y, s=s, j=j):
            predicted = s >= t
            return cost_fp[j] * np.sum(predicted & ~y) + fn_costs[j] * np.sum(~predicted & y)

        best = min(cost(t) for t in cuts(s))
        assert cost(result.thresholds[j]) == pytest.approx(best)
    report = result.to_dict(names)
    assert report["strategy"] == "per_label"
    assert report["summary"]["cost"]["tuned"] == pytest.approx(reference.total_cost)
    assert report["summary"]["cost"]["default"] == pytest.approx(reference.default_total_cost)
    assert report["summary"]["cost"]["tuned"] <= report["summary"]["cost"]["default"]
    for j, entry in enumerate(report["per_label"]):
        assert entry["cost"] == pytest.approx(reference.cost[j])
        assert entry["default_cost"] == pytest.approx(reference.default_cost[j])
        # The ordinary figures come from the counts at the threshold.
        predicted = scores[:, j] >= entry["threshold"]
        assert entry["predicted_positives"] == int(predicted.sum())
    assert report["params"]["cost_fn"] == fn_costs
    json.dumps(report)


def test_cost_refuses_global_and_bad_costs():
    scores, targets = data(1)
    with pytest.raises(ValueError, match="strategy='global' does not apply to objective='cost'"):
        tune_thresholds(scores, targets, "cost", strategy="global", n_bootstrap=0)
    with pytest.raises(ValueError, match="unknown labels: nope"):
        tune_thresholds(scores, targets, "cost", cost_fp={"nope": 1.0, "*": 1.0}, n_bootstrap=0)
    with pytest.raises(ValueError, match="cost_fn must be"):
        tune_thresholds(scores, targets, "cost", cost_fn=-1.0, n_bootstrap=0)
    with pytest.raises(ValueError, match="both 0 for label 0"):
        tune_thresholds(scores, targets, "cost", cost_fp=[0, 1, 1, 1], cost_fn=0.0, n_bootstrap=0)


def test_cost_bootstrap_is_f_s_cost_intervals():
    scores, targets = data(2)
    result = tune_thresholds(scores, targets, "cost", cost_fn=4.0, n_bootstrap=40, seed=3)
    reference = cost_intervals(
        scores, targets, np.ones(4), np.full(4, 4.0), result.thresholds, n_bootstrap=40, seed=3
    )
    np.testing.assert_array_equal(result.threshold_interval, reference.thresholds)
    entry = result.to_dict()["per_label"][0]
    assert entry["cost_interval"] == reference.merit[0].tolist()
    assert entry["unstable"] is not None


@pytest.mark.parametrize("seed", range(4))
def test_micro_f1_is_never_below_global_and_matches_f(seed):
    scores, targets = data(seed, n=400, n_labels=6)
    joint = tune_thresholds(scores, targets, "micro_f1", n_bootstrap=0)
    shared = tune_thresholds(scores, targets, strategy="global", n_bootstrap=0)
    assert joint.micro_f1 >= shared.micro_f1
    reference = tune_micro_fbeta(scores, targets, start_threshold=shared.global_threshold)
    np.testing.assert_array_equal(joint.thresholds, reference.thresholds)
    assert joint.micro_f1 == pytest.approx(reference.micro_f1)
    report = joint.to_dict()
    assert report["strategy"] == "joint" and report["global_threshold"] == shared.global_threshold
    assert {entry["strategy"] for entry in report["per_label"]} == {"joint"}
    assert report["summary"]["iterations"] == reference.iterations >= 1
    assert report["summary"]["micro_fbeta"]["tuned"] == pytest.approx(joint.micro_f1)


def test_micro_f1_equals_brute_force_over_every_combination():
    scores, targets = data(5, n=40, n_labels=3, levels=5)
    joint = tune_thresholds(scores, targets, "micro_f1", n_bootstrap=0)
    truth = targets.astype(bool)
    best = 0.0
    for combo in itertools.product(*(cuts(scores[:, j]) for j in range(3))):
        predicted = scores >= np.array(combo)
        tp = np.sum(predicted & truth)
        best = max(best, 2 * tp / (predicted.sum() + truth.sum()))
    assert joint.micro_f1 == pytest.approx(best)


def test_micro_fbeta_uses_beta():
    scores, targets = data(6)
    result = tune_thresholds(scores, targets, "micro_fbeta", beta=2.0, n_bootstrap=0)
    reference = tune_micro_fbeta(scores, targets, 2.0)
    np.testing.assert_array_equal(result.thresholds, reference.thresholds)
    assert result.to_dict()["summary"]["micro_fbeta"]["tuned"] == pytest.approx(
        reference.micro_fbeta
    )


def test_abstain_matches_tune_abstain_and_reports_the_band():
    scores, targets = data(7, n=500)
    result = tune_thresholds(
        scores, targets, decision_rule="abstain", target=0.8, npv_target=0.9, n_bootstrap=0
    )
    reference = tune_abstain(scores, targets, 0.8, 0.9)
    np.testing.assert_array_equal(result.thresholds, reference.upper)
    np.testing.assert_array_equal(result.lower_thresholds, reference.lower)
    assert np.all(result.lower_thresholds <= result.thresholds)
    report = result.to_dict()
    assert report["decision_rule"] == "abstain"
    assert report["lower_thresholds"] == {str(j): float(t) for j, t in enumerate(reference.lower)}
    yes, uncertain = apply_abstain(scores, reference.lower, reference.upper)
    for j, entry in enumerate(report["per_label"]):
        assert entry["lower_threshold"] == float(reference.lower[j])
        assert entry["review_share"] == pytest.approx(uncertain[:, j].mean())
        no = ~yes[:, j] & ~uncertain[:, j]
        negatives = np.sum(no & (targets[:, j] == 0))
        assert entry["npv"] == pytest.approx(negatives / no.sum() if no.any() else 1.0)
    # The confident yeses are the ordinary rule at the upper thresholds.
    np.testing.assert_array_equal(apply_decision_rule(scores, result.thresholds, "abstain"), yes)


def test_abstain_needs_both_targets():
    scores, targets = data(8)
    with pytest.raises(ValueError, match="npv_target is required"):
        tune_thresholds(scores, targets, decision_rule="abstain", target=0.8)
    with pytest.raises(ValueError, match="target is required"):
        tune_thresholds(scores, targets, decision_rule="abstain", npv_target=0.8)
    with pytest.raises(ValueError, match="leave objective at 'f1'"):
        tune_thresholds(
            scores, targets, "cost", decision_rule="abstain", target=0.8, npv_target=0.8
        )
