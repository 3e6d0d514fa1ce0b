"""tune_thresholds against a slow, obvious reference built on sklearn's precision_recall_curve.

The reference recomputes the counts by brute force at every threshold of
sklearn's curve and compares objectives as exact fractions, so it shares no
code or shortcuts with the package under test.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from labelcut.tuning import apply_thresholds
from labelcut.tuning import tune_thresholds as _tune_thresholds

# These tests pin the per-label search itself: the default strategy pulls rare labels
# toward a shared threshold, and the bootstrap is tested in test_tuning_decision_quality.
tune_thresholds = functools.partial(_tune_thresholds, strategy="per_label", n_bootstrap=0)


@dataclass
class Reference:
    status: str
    lowest_positive: float | None  # lowest score predicted positive at the chosen cut
    true_positives: int | None
    predicted_positives: int | None


def sklearn_curve(column_targets: np.ndarray, column_scores: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No positive class found in y_true"
        return precision_recall_curve(column_targets, column_scores)


def reference_label(
    column_scores: np.ndarray,
    column_targets: np.ndarray,
    objective: str,
    beta: float = 1.0,
    target: float | None = None,
    min_positives: int = 1,
) -> Reference:
    scores = np.asarray(column_scores, dtype=np.float64)
    targets = np.asarray(column_targets).astype(int)
    n, positives = len(scores), int(targets.sum())
    if positives == 0:
        return Reference("no_positives", None, None, None)
    if positives == n:
        return Reference("no_negatives", None, None, None)
    if positives < min_positives:
        return Reference("too_few_positives", None, None, None)
    precision, recall, thresholds = sklearn_curve(targets, scores)
    beta2 = Fraction(beta) ** 2
    best = None  # (value, index); thresholds increase, so ">=" gives ties to the higher one
    for i, threshold in enumerate(thresholds):
        predicted = scores >= threshold
        tp, pp = int(targets[predicted].sum()), int(predicted.sum())
        assert precision[i] == tp / pp and recall[i] == tp / positives
        if objective == "f1":
            value = Fraction(2 * tp, pp + positives)
        elif objective == "fbeta":
            value = (1 + beta2) * tp / (beta2 * positives + pp)
        elif objective == "recall_at_precision":
            if not precision[i] >= target:
                continue
            value = Fraction(tp, positives)
        else:
            if not recall[i] >= target:
                continue
            value = Fraction(tp, pp)
        if best is None or value >= best[0]:
            best = (value, i, tp, pp)
    if best is None:
        return Reference("target_unreachable", None, None, None)
    _, index, tp, pp = best
    return Reference("ok", float(thresholds[index]), tp, pp)


# ---------------------------------------------------------------------------
# Comparison helpers


def check_against_reference(scores, targets, result, objective, **params) -> None:
    """Every label of ``result`` matches the reference: status and operating point."""
    scores64 = np.asarray(scores, dtype=np.float64)
    predicted = apply_thresholds(scores, result.thresholds)
    for j in range(scores64.shape[1]):
        expected = reference_label(scores64[:, j], targets[:, j], objective, **params)
        assert result.status[j] == expected.status, (j, result.status[j], expected)
        threshold = result.thresholds[j]
        assert 0.0 <= threshold <= 1.0
        column, chosen = scores64[:, j], predicted[:, j]
        if expected.status != "ok":
            assert threshold == params.get("fallback", 0.5)
            continue
        assert column[chosen].min() == expected.lowest_positive
        assert int(chosen.sum()) == expected.predicted_positives == result.predicted_positives[j]
        tp = int(np.asarray(targets)[chosen, j].astype(int).sum())
        assert tp == expected.true_positives
        # The midpoint rule: the threshold sits in the gap below the chosen cut.
        below = column[column < expected.lowest_positive]
        assert threshold <= expected.lowest_positive
        if below.size:
            assert threshold > below.max()


def random_case(rng: np.random.Generator, n_max: int = 40, labels_max: int = 4):
    """Small (n, L) problems with plenty of ties, saturated scores and rare labels."""
    n = int(rng.integers(1, n_max + 1))
    n_labels = int(rng.integers(1, labels_max + 1))
    kind = rng.integers(4)
    if kind == 0:  # few distinct values: many ties
        scores = rng.choice([0.0, 0.1, 0.25, 0.5, 0.75, 1.0], size=(n, n_labels))
    elif kind == 1:
        scores = np.round(rng.random((n, n_labels)), int(rng.integers(1, 3)))
    else:
        scores = rng.random((n, n_labels))
    prevalence = rng.choice([0.02, 0.2, 0.5, 0.9])
    targets = (rng.random((n, n_labels)) < prevalence * 0.5 + scores * 0.5).astype(np.int64)
    return scores, targets


OBJECTIVE_CASES = [
    ("f1", {}),
    ("fbeta", {"beta": 0.5}),
    ("fbeta", {"beta": 2.0}),
    ("recall_at_precision", {"target": 0.5}),
    ("recall_at_precision", {"target": 0.8}),
    ("recall_at_precision", {"target": 1.0}),
    ("precision_at_recall", {"target": 0.3}),
    ("precision_at_recall", {"target": 0.9}),
    ("precision_at_recall", {"target": 1.0}),
]


# ---------------------------------------------------------------------------
# Random cases


@pytest.mark.parametrize(
    ("case", "objective", "params"), [(i, *c) for i, c in enumerate(OBJECTIVE_CASES)]
)
def test_matches_reference_on_random_cases(case, objective, params):
    rng = np.random.default_rng(1000 + case)  # a fixed seed per case
    for _ in range(60):
        scores, targets = random_case(rng)
        min_positives = int(rng.integers(0, 4))
        result = tune_thresholds(
            scores, targets, objective, min_positives=min_positives, device="cpu", **params
        )
        check_against_reference(
            scores, targets, result, objective, min_positives=min_positives, **params
        )


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_matches_reference_for_each_float_dtype(dtype):
    rng = np.random.default_rng(7)
    for _ in range(30):
        scores, targets = random_case(rng, n_max=80)
        scores = scores.astype(dtype)
        result = tune_thresholds(scores, targets, device="cpu")
        check_against_reference(scores, targets, result, "f1")
        # Thresholds are values of the scores' dtype, so comparing in it agrees too.
        assert np.array_equal(result.thresholds.astype(dtype).astype(np.float64), result.thresholds)


def test_larger_random_case_with_many_distinct_scores():
    rng = np.random.default_rng(11)
    scores = rng.random((3000, 3)).astype(np.float32)
    targets = rng.random((3000, 3)) < scores
    for objective, params in OBJECTIVE_CASES:
        result = tune_thresholds(scores, targets, objective, device="cpu", **params)
        check_against_reference(scores, targets, result, objective, **params)


# ---------------------------------------------------------------------------
# Hand-computed cases. Counts are for "score >= threshold"; P = positives.

# scores 0.9 0.8 0.7 0.6 with targets 1 0 1 0 (P = 2); candidates from the top:
#   >= 0.9: tp 1, pp 1   precision 1    recall 0.5  F1 2*1/(1+2) = 0.667  F2 5*1/(4*2+1) = 0.556
#   >= 0.8: tp 1, pp 2   precision 0.5  recall 0.5  F1 2/(2+2)   = 0.5    F2 5/(8+2)     = 0.5
#   >= 0.7: tp 2, pp 3   precision 0.67 recall 1    F1 4/(3+2)   = 0.8    F2 10/(8+3)    = 0.909
#   >= 0.6: tp 2, pp 4   precision 0.5  recall 1    F1 4/(4+2)   = 0.667  F2 10/(8+4)    = 0.833
FOUR_SCORES = np.array([[0.9], [0.8], [0.7], [0.6]])
FOUR_TARGETS = np.array([[1], [0], [1], [0]])


@pytest.mark.parametrize(
    ("objective", "params", "cut", "below"),
    [
        ("f1", {}, 0.7, 0.6),  # F1 0.8 is the best
        ("fbeta", {"beta": 2.0}, 0.7, 0.6),  # F2 0.909 is the best
        ("fbeta", {"beta": 0.25}, 0.9, 0.8),  # F_1/4 = (17/16)/(2/16+1) = 0.944 at 0.9 wins
        ("recall_at_precision", {"target": 0.6}, 0.7, 0.6),  # precision >= 0.6: 0.9 and 0.7
        ("recall_at_precision", {"target": 0.9}, 0.9, 0.8),  # only 0.9 keeps precision 1
        ("precision_at_recall", {"target": 1.0}, 0.7, 0.6),  # recall 1: 0.7 (0.67), 0.6 (0.5)
        ("precision_at_recall", {"target": 0.5}, 0.9, 0.8),  # all qualify; 0.9 has precision 1
    ],
)
def test_hand_computed_four_scores(objective, params, cut, below):
    with np.errstate(all="raise"):
        result = tune_thresholds(FOUR_SCORES, FOUR_TARGETS, objective, device="cpu", **params)
    assert result.status == ["ok"]
    assert result.thresholds[0] == (cut + below) / 2


def test_hand_computed_metrics_for_f1():
    result = tune_thresholds(FOUR_SCORES, FOUR_TARGETS, device="cpu")
    # Cut 0.7: tp 2, pp 3, P 2 -> precision 2/3, recall 1, F1 0.8.
    assert result.precision[0] == 2 / 3 and result.recall[0] == 1.0 and result.f1[0] == 0.8
    assert result.support[0] == 2 and result.predicted_positives[0] == 3
    # At 0.5 everything is predicted: tp 2, pp 4 -> precision 0.5, recall 1, F1 4/6.
    assert result.default_precision[0] == 0.5 and result.default_recall[0] == 1.0
    assert result.default_f1[0] == 4 / 6 and result.default_predicted_positives[0] == 4


def test_tie_goes_to_the_higher_threshold():
    # targets 1 0 0 1 at 0.9 0.8 0.7 0.6 (P = 2):
    #   >= 0.9: F1 2/(1+2) = 2/3;  >= 0.8: 2/4;  >= 0.7: 2/5;  >= 0.6: 4/(4+2) = 2/3.
    # 0.9 and 0.6 tie at 2/3: the higher threshold wins, midpoint (0.9 + 0.8) / 2.
    result = tune_thresholds(FOUR_SCORES, np.array([[1], [0], [0], [1]]), device="cpu")
    assert result.thresholds[0] == (0.9 + 0.8) / 2
    assert result.f1[0] == 2 / 3


def test_tied_scores_are_one_candidate():
    # 0.5 0.5 0.5 0.2 with targets 1 0 1 0 (P = 2): ">= 0.5" takes all three 0.5s:
    #   >= 0.5: tp 2, pp 3 -> F1 4/5;  >= 0.2: tp 2, pp 4 -> F1 4/6.  Threshold (0.5 + 0.2) / 2.
    scores = np.array([[0.5], [0.5], [0.5], [0.2]])
    result = tune_thresholds(scores, np.array([[1], [0], [1], [0]]), device="cpu")
    assert result.thresholds[0] == 0.35 and result.f1[0] == 0.8


def test_all_equal_scores_predict_everything():
    # One candidate, ">= 0.3": tp 2, pp 4. Nothing lies below, so the threshold is
    # the midpoint between the lowest score and 0: 0.15.
    scores = np.full((4, 1), 0.3)
    result = tune_thresholds(scores, np.array([[1], [0], [0], [1]]), device="cpu")
    assert result.status == ["ok"] and result.thresholds[0] == 0.15
    assert result.predicted_positives[0] == 4


def test_one_positive():
    # targets 0 0 1 0 at 0.1 0.4 0.35 0.8 (P = 1), from the top:
    #   >= 0.8: tp 0 pp 1 F1 0;  >= 0.4: tp 0 pp 2 F1 0;  >= 0.35: tp 1 pp 3 F1 2/4;
    #   >= 0.1: tp 1 pp 4 F1 2/5.  Best 0.35, threshold (0.35 + 0.1) / 2 = 0.225.
    scores = np.array([[0.1], [0.4], [0.35], [0.8]])
    result = tune_thresholds(scores, np.array([[0], [0], [1], [0]]), device="cpu")
    assert result.thresholds[0] == (0.35 + 0.1) / 2 and result.f1[0] == 0.5


def test_perfectly_separable():
    # 0.9 0.8 | 0.3 0.2 with targets 1 1 0 0: ">= 0.8" gives F1 1; threshold (0.8 + 0.3) / 2.
    scores = np.array([[0.9], [0.8], [0.3], [0.2]])
    result = tune_thresholds(scores, np.array([[1], [1], [0], [0]]), device="cpu")
    assert result.thresholds[0] == (0.8 + 0.3) / 2 and result.f1[0] == 1.0
    assert result.precision[0] == 1.0 and result.recall[0] == 1.0


def test_status_order_and_fallback():
    # Four samples, five labels (columns), recall_at_precision with target 0.9,
    # min_positives 2, fallback 0.25:
    #   0: no positives;  1: no negatives;  2: one positive < min_positives 2;
    #   3: targets 0 1 0 1 at 0.9 0.8 0.7 0.6 -> precision 0/1, 1/2, 1/3, 2/4, never
    #      >= 0.9: target_unreachable;
    #   4: targets 1 1 0 0 -> ">= 0.8" has precision 2/2 and recall 1: ok, (0.8 + 0.7) / 2.
    scores = np.array(
        [
            [0.2, 0.9, 0.9, 0.9, 0.9],
            [0.4, 0.8, 0.8, 0.8, 0.8],
            [0.3, 0.7, 0.7, 0.7, 0.7],
            [0.1, 0.6, 0.6, 0.6, 0.6],
        ]
    )
    targets = np.array([[0, 1, 1, 0, 1], [0, 1, 0, 1, 1], [0, 1, 0, 0, 0], [0, 1, 0, 1, 0]])
    with np.errstate(all="raise"):
        result = tune_thresholds(
            scores,
            targets,
            "recall_at_precision",
            target=0.9,
            min_positives=2,
            fallback=0.25,
            device="cpu",
        )
    assert result.status == [
        "no_positives",
        "no_negatives",
        "too_few_positives",
        "target_unreachable",
        "ok",
    ]
    assert result.thresholds.tolist() == [0.25, 0.25, 0.25, 0.25, (0.8 + 0.7) / 2]
    # Metrics are those of the fallback threshold. Label 0 at 0.25: predicts 0.4 and 0.3,
    # tp 0 -> precision 0/2 = 0, recall 0 (no positives), F1 0.
    assert result.predicted_positives[0] == 2 and result.precision[0] == 0.0
    assert result.recall[0] == 0.0 and result.f1[0] == 0.0
    # Label 3 at 0.25 predicts all four: tp 2 -> precision 0.5, recall 1.
    assert result.precision[3] == 0.5 and result.recall[3] == 1.0


def test_nothing_predicted_has_precision_one():
    # Label without positives and all scores below 0.5: nothing is predicted at 0.5.
    result = tune_thresholds(np.array([[0.1], [0.2]]), np.array([[0], [0]]), device="cpu")
    assert result.status == ["no_positives"]
    assert result.default_predicted_positives[0] == 0 and result.default_precision[0] == 1.0
    assert result.default_recall[0] == 0.0 and result.default_f1[0] == 0.0


@pytest.mark.parametrize(("target", "status"), [([[1]], "no_negatives"), ([[0]], "no_positives")])
def test_single_sample(target, status):
    result = tune_thresholds(np.array([[0.7]]), np.array(target), device="cpu")
    assert result.status == [status] and result.thresholds[0] == 0.5
    assert result.n_samples == 1


def test_adjacent_float32_scores_still_split():
    # The float64 midpoint of two adjacent float32 values is not a float32; rounded to
    # float32 it may land on the lower value, so the upper value itself is used.
    low = np.float32(0.3)
    high = np.nextafter(low, np.float32(1))
    scores = np.array([[low], [high]], dtype=np.float32)
    result = tune_thresholds(scores, np.array([[0], [1]]), device="cpu")
    assert result.thresholds[0] == float(high)
    assert apply_thresholds(scores, result.thresholds)[:, 0].tolist() == [False, True]


def test_negative_zero_is_zero():
    scores = np.array([[-0.0], [0.0], [0.5], [0.0]])
    targets = np.array([[1], [0], [1], [0]])
    # 0.0 and -0.0 are one value: ">= 0.5": tp 1, pp 1 -> F1 2/3; ">= 0": tp 2, pp 4 -> 4/6.
    # Tie: the higher threshold wins, (0.5 + 0) / 2.
    result = tune_thresholds(scores, targets, device="cpu")
    assert result.thresholds[0] == 0.25
