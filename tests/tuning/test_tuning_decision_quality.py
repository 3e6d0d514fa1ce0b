"""Issue 9: strategies, bootstrap intervals, diagnosis and decision rules."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import norm

from labelcut import tuning
from labelcut.tuning import (
    DECISION_RULES,
    DEFAULT_STRATEGY,
    STRATEGIES,
    apply_decision_rule,
    apply_thresholds,
    diagnose,
    tune_thresholds,
)
from labelcut.tuning._shared import SHRINKAGE_POSITIVES, logit, sigmoid

# ---------------------------------------------------------------------------
# global: one threshold, exact optimum of the pooled objective


def brute_force_pooled(scores, targets, objective, target=None):
    """(lowest pooled score predicted positive, tp, pp) of the best pooled cut, or None."""
    flat, truth = np.asarray(scores, np.float64).ravel(), np.asarray(targets).ravel().astype(int)
    positives, best = int(truth.sum()), None
    for value in np.unique(flat):  # increasing: ">=" gives ties to the higher threshold
        chosen = flat >= value
        tp, pp = int(truth[chosen].sum()), int(chosen.sum())
        if objective == "f1":
            score = Fraction(2 * tp, pp + positives)
        elif objective == "recall_at_precision":
            if not tp / pp >= target:
                continue
            score = Fraction(tp, positives)
        else:
            if not tp / positives >= target:
                continue
            score = Fraction(tp, pp)
        if best is None or score >= best[0]:
            best = (score, value, tp, pp)
    return None if best is None else best[1:]


@pytest.mark.parametrize("mantissa_bits", [10, 0])  # 0: many scores share a bucket
@pytest.mark.parametrize(
    ("objective", "target"),
    [("f1", None), ("recall_at_precision", 0.7), ("precision_at_recall", 0.6)],
)
def test_global_matches_brute_force(monkeypatch, mantissa_bits, objective, target):
    monkeypatch.setattr(tuning._shared, "_MANTISSA_BITS", mantissa_bits)
    rng = np.random.default_rng(21 + mantissa_bits)
    for _ in range(40):
        n, n_labels = int(rng.integers(2, 30)), int(rng.integers(1, 4))
        pool = [0.0, 1e-9, 0.1, 0.5, 0.50001, 1.0]
        scores = (
            rng.choice(pool, (n, n_labels)) if rng.random() < 0.3 else rng.random((n, n_labels))
        )
        scores = scores.astype(rng.choice([np.float32, np.float64]))
        targets = (rng.random((n, n_labels)) < scores * 0.7 + 0.1).astype(np.uint8)
        if targets.sum() in (0, targets.size):
            continue
        result = tune_thresholds(
            scores, targets, objective, target=target, strategy="global", n_bootstrap=0
        )
        expected = brute_force_pooled(scores, targets, objective, target)
        if expected is None:
            assert result.global_threshold is None
            continue
        lowest, tp, pp = expected
        threshold = result.global_threshold
        assert np.all(result.thresholds == threshold)
        chosen = np.asarray(scores, np.float64) >= threshold
        assert np.asarray(scores, np.float64)[chosen].min() == lowest
        assert int(chosen.sum()) == pp == result.predicted_positives.sum()
        assert int((chosen & (targets == 1)).sum()) == tp
        assert result.to_dict()["per_label"][0]["strategy"] == "global"


def test_global_hand_computed():
    # Pooled scores 0.9 0.8 0.7 0.6 (targets 1 0 1 0) over two labels of two rows:
    # the pooled cut is the four-score case of the reference tests: ">= 0.7", F1 0.8.
    scores = np.array([[0.9, 0.8], [0.7, 0.6]])
    targets = np.array([[1, 0], [1, 0]])
    result = tune_thresholds(scores, targets, strategy="global", n_bootstrap=0)
    assert result.global_threshold == (0.7 + 0.6) / 2
    assert result.thresholds.tolist() == [(0.7 + 0.6) / 2] * 2
    assert result.micro_f1 == 0.8


# ---------------------------------------------------------------------------
# shrunk: the default


def test_adaptive_is_the_default_and_shrunk_follows_its_rule():
    assert DEFAULT_STRATEGY == "adaptive"
    assert STRATEGIES == ("adaptive", "shrunk", "per_label", "global")
    rng = np.random.default_rng(3)
    scores = rng.random((400, 4))
    targets = rng.random((400, 4)) < scores * np.array([1.0, 0.1, 0.02, 0.0])
    own = tune_thresholds(scores, targets, strategy="per_label", n_bootstrap=0)
    shared = tune_thresholds(scores, targets, strategy="global", n_bootstrap=0).global_threshold
    result = tune_thresholds(scores, targets, strategy="shrunk", n_bootstrap=0)
    assert result.strategy == "shrunk" and result.global_threshold == shared
    support = targets.sum(axis=0)
    for j in range(4):
        if own.status[j] != "ok":  # label 3 has no positives: the shared threshold
            assert result.thresholds[j] == shared
            assert result.label_strategy[j] == "global"
            continue
        w = support[j] / (support[j] + SHRINKAGE_POSITIVES)
        expected = sigmoid(w * logit(own.thresholds[j]) + (1 - w) * logit(np.float64(shared)))
        assert result.thresholds[j] == pytest.approx(expected, rel=1e-12)
        assert result.label_strategy[j] == "shrunk"
    # Metrics are those of the blended thresholds.
    predicted = apply_thresholds(scores, result.thresholds)
    assert np.array_equal(predicted.sum(axis=0), result.predicted_positives)
    # Rare labels move further toward the shared threshold than common ones.
    distance = np.abs(logit(result.thresholds[:3]) - logit(own.thresholds[:3]))
    gap = np.abs(logit(np.float64(shared)) - logit(own.thresholds[:3]))
    assert np.all(np.diff(distance / gap) > 0)


def test_shrinkage_zero_is_per_label_and_huge_is_global():
    rng = np.random.default_rng(4)
    scores = rng.random((300, 3))
    targets = rng.random((300, 3)) < scores * 0.3
    own = tune_thresholds(scores, targets, strategy="per_label", n_bootstrap=0)
    zero = tune_thresholds(scores, targets, strategy="shrunk", shrinkage=0, n_bootstrap=0)
    assert np.array_equal(zero.thresholds, own.thresholds)
    huge = tune_thresholds(scores, targets, strategy="shrunk", shrinkage=1e12, n_bootstrap=0)
    np.testing.assert_allclose(huge.thresholds, huge.global_threshold, rtol=1e-6)


def test_every_objective_works_with_every_strategy():
    rng = np.random.default_rng(5)
    scores = rng.random((200, 3))
    targets = rng.random((200, 3)) < scores
    for strategy in STRATEGIES:
        for objective, target in [
            ("f1", None),
            ("fbeta", None),
            ("recall_at_precision", 0.6),
            ("precision_at_recall", 0.6),
        ]:
            result = tune_thresholds(
                scores, targets, objective, target=target, strategy=strategy, n_bootstrap=20
            )
            data = result.to_dict()
            assert data["strategy"] == strategy
            assert json.loads(json.dumps(data, allow_nan=False)) == data


# ---------------------------------------------------------------------------
# bootstrap


def test_bootstrap_is_seeded_and_can_be_turned_off():
    rng = np.random.default_rng(6)
    scores = rng.random((300, 3))
    targets = rng.random((300, 3)) < scores
    first = tune_thresholds(scores, targets, n_bootstrap=50, seed=3)
    again = tune_thresholds(scores, targets, n_bootstrap=50, seed=3)
    assert np.array_equal(first.threshold_interval, again.threshold_interval)
    assert np.array_equal(first.f1_interval, again.f1_interval)
    assert first.threshold_interval.shape == (3, 2) and first.unstable.dtype == bool
    assert np.all(first.threshold_interval[:, 0] <= first.threshold_interval[:, 1])
    entry = first.to_dict()["per_label"][0]
    assert len(entry["threshold_interval"]) == 2 and isinstance(entry["unstable"], bool)
    # The same seed: under the default ("adaptive") it also picks the folds chosen on.
    off = tune_thresholds(scores, targets, n_bootstrap=0, seed=3)
    assert off.threshold_interval is None and off.to_dict()["per_label"][0]["f1_interval"] is None
    assert np.array_equal(off.thresholds, first.thresholds)  # the bootstrap never moves them


def test_rare_labels_are_unstable_and_common_ones_are_not():
    rng = np.random.default_rng(7)
    n = 3000
    truth = np.stack([rng.random(n) < 0.4, rng.random(n) < 0.002], axis=1)
    scores = 1 / (1 + np.exp(-(rng.standard_normal((n, 2)) + 2.5 * truth - 1.5)))
    result = tune_thresholds(scores, truth, strategy="per_label", n_bootstrap=200)
    assert result.unstable.tolist() == [False, True]


def population_optimum(separation: float, prevalence: float) -> float:
    """F1-optimal threshold (as a probability of the sigmoid) for logits N(0,1) vs N(sep,1)."""
    grid = np.linspace(-4, 6, 200_001)
    tpr, fpr = norm.sf(grid - separation), norm.sf(grid)
    f1 = 2 * prevalence * tpr / (prevalence * tpr + (1 - prevalence) * fpr + prevalence)
    return float(1 / (1 + np.exp(-grid[np.argmax(f1)])))


def test_bootstrap_interval_covers_the_true_optimum_at_about_the_stated_rate():
    separation, prevalence, n = 2.0, 0.3, 2000
    optimum = population_optimum(separation, prevalence)
    rng = np.random.default_rng(8)
    covered, trials = 0, 80
    for _ in range(trials):
        truth = rng.random((n, 1)) < prevalence
        scores = 1 / (1 + np.exp(-(rng.standard_normal((n, 1)) + separation * truth)))
        result = tune_thresholds(
            scores, truth, strategy="per_label", n_bootstrap=200, seed=int(rng.integers(1 << 30))
        )
        low, high = result.threshold_interval[0]
        covered += bool(low <= optimum <= high)
    # Stated rate 90%; 80 trials give a standard error of about 3.4 points.
    assert 0.78 <= covered / trials <= 0.99, covered


def test_bootstrap_cost_is_bounded_by_groups(monkeypatch):

    rng = np.random.default_rng(9)
    scores = rng.random((5000, 2))
    targets = rng.random((5000, 2)) < scores
    seen = []
    original = tuning.bootstrap._groups

    def spy(candidates, threshold):
        starts, cut = original(candidates, threshold)
        seen.append(len(starts))
        return starts, cut

    monkeypatch.setattr(tuning.bootstrap, "_groups", spy)
    tune_thresholds(scores, targets, n_bootstrap=10)
    assert seen and max(seen) <= tuning.bootstrap.MAX_GROUPS + 1


# ---------------------------------------------------------------------------
# diagnosis


def test_diagnosis_of_multiclass_data():
    labels = np.random.default_rng(10).integers(0, 3, 200)
    targets = np.eye(3, dtype=np.uint8)[labels]
    report = diagnose(targets, label_names=["cat", "dog", "bird"])
    assert report["looks_multiclass"] and report["rows_with_1_label"] == 1.0
    assert report["label_cardinality"] == 1.0
    assert report["never_cooccur"] == [["cat", "dog"], ["cat", "bird"], ["dog", "bird"]]
    assert "multi-class" in report["messages"][0]
    assert "CrossEntropyLoss" in report["messages"][0] and "exactly_one" in report["messages"][0]
    assert sum(report["prevalence"]) == pytest.approx(1.0)


def test_diagnosis_of_multilabel_data_hand_computed():
    # rows: {0,1}, {0}, {}, {0,1,2}: cardinality 6/4; shares 1/4 zero, 1/4 one, 2/4 two+.
    # Label 3 never occurs; every pair of 0, 1, 2 co-occurs (row 4).
    targets = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    report = diagnose(targets)
    assert report["label_cardinality"] == 1.5
    assert (
        report["rows_with_0_labels"],
        report["rows_with_1_label"],
        report["rows_with_2_or_more_labels"],
    ) == (0.25, 0.25, 0.5)
    assert report["prevalence"] == [0.75, 0.5, 0.25, 0.0]
    assert report["labels_without_positives"] == ["3"] and report["never_cooccur"] == []
    assert not report["looks_multiclass"]


def test_diagnosis_caps_the_pair_list_and_is_in_every_result(monkeypatch):
    targets = np.eye(60, dtype=bool)[np.arange(600) % 60]  # 60 labels, none together
    report = diagnose(targets)
    assert report["never_cooccur_count"] == 60 * 59 // 2
    assert len(report["never_cooccur"]) == 50 and report["never_cooccur_truncated"]
    scores = np.random.default_rng(11).random((600, 60))
    data = tune_thresholds(scores, targets, n_bootstrap=0).to_dict(
        label_names=[f"L{j}" for j in range(60)]
    )
    assert data["diagnosis"]["looks_multiclass"]
    assert data["diagnosis"]["never_cooccur"][0] == ["L0", "L1"]


def test_diagnosis_memory_does_not_grow_with_the_square_of_the_labels(monkeypatch):
    # 3,000 labels: a dense (L, L) pair matrix would be 9M cells; the blocks hold at most
    # _CHUNK_ELEMENTS at a time. Every array the pair search makes is checked.
    made = []
    original = tuning.diagnosis.np.nonzero

    def nonzero(values):
        made.append(np.asarray(values).size)
        return original(values)

    monkeypatch.setattr(tuning.diagnosis.np, "nonzero", nonzero)
    targets = np.eye(3000, dtype=bool)[np.arange(6000) % 3000]
    report = diagnose(targets)
    monkeypatch.undo()
    assert report["never_cooccur_count"] == 3000 * 2999 // 2
    assert max(made) <= tuning.diagnosis._CHUNK_ELEMENTS


def test_diagnose_rejects_bad_targets():
    with pytest.raises(ValueError, match="targets must hold only 0 and 1"):
        diagnose(np.array([[2, 0]]))
    with pytest.raises(ValueError, match="targets must be a non-empty 2-D array"):
        diagnose(np.array([1, 0]))


# ---------------------------------------------------------------------------
# decision rules. Scores of three rows, three labels, thresholds 0.5 0.6 0.7:
#   row 0: 0.9 0.8 0.75 -> all pass
#   row 1: 0.4 0.3 0.1  -> none pass; top-scoring label 0
#   row 2: 0.2 0.65 0.65 -> label 1 passes (0.65 < 0.7 for label 2); argmax: tie 1/2 -> 1
SCORES = np.array([[0.9, 0.8, 0.75], [0.4, 0.3, 0.1], [0.2, 0.65, 0.65]])
THRESHOLDS = np.array([0.5, 0.6, 0.7])


@pytest.mark.parametrize(
    ("rule", "k", "expected"),
    [
        ("threshold", None, [[1, 1, 1], [0, 0, 0], [0, 1, 0]]),
        ("at_least_one", None, [[1, 1, 1], [1, 0, 0], [0, 1, 0]]),
        ("exactly_one", None, [[1, 0, 0], [1, 0, 0], [0, 1, 0]]),
        ("top_k", 1, [[1, 0, 0], [0, 0, 0], [0, 1, 0]]),
        ("top_k", 2, [[1, 1, 0], [0, 0, 0], [0, 1, 0]]),
        ("top_k", 5, [[1, 1, 1], [0, 0, 0], [0, 1, 0]]),
    ],
)
def test_decision_rules_hand_computed(rule, k, expected):
    predicted = apply_decision_rule(SCORES, THRESHOLDS, rule, k=k)
    assert predicted.dtype == bool and predicted.tolist() == np.array(expected, bool).tolist()


def test_top_k_ties_go_to_the_lower_label_index():
    # Both labels pass with 0.7; k=1 keeps label 0.
    predicted = apply_decision_rule(np.array([[0.7, 0.7]]), np.array([0.5, 0.5]), "top_k", k=1)
    assert predicted.tolist() == [[True, False]]


def test_decision_rules_reject_bad_arguments():
    assert DECISION_RULES == ("threshold", "at_least_one", "exactly_one", "top_k", "abstain")
    with pytest.raises(ValueError, match="rule must be one of threshold"):
        apply_decision_rule(SCORES, THRESHOLDS, "argmax")
    for bad in (None, 0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be an integer of at least 1"):
            apply_decision_rule(SCORES, THRESHOLDS, "top_k", k=bad)
    with pytest.raises(ValueError, match="k is only used with rule 'top_k'"):
        apply_decision_rule(SCORES, THRESHOLDS, "threshold", k=2)
    with pytest.raises(ValueError, match="thresholds must have shape"):
        apply_decision_rule(SCORES, THRESHOLDS[:2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "local"}, "strategy must be one of adaptive, shrunk, per_label, global"),
        ({"shrinkage": -1}, "shrinkage must be"),
        ({"n_bootstrap": -1}, "n_bootstrap must be an integer"),
        ({"n_bootstrap": 2.5}, "n_bootstrap must be an integer"),
        ({"seed": -2}, "seed must be an integer"),
        ({"confidence": 1.0}, r"confidence must be a number in \(0, 1\)"),
    ],
)
def test_new_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tune_thresholds(SCORES, SCORES > 0.5, **kwargs)
