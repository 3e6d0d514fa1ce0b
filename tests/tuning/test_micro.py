"""objective="micro_f1"/"micro_fbeta" (tuning.micro.tune_micro_fbeta): the joint optimum.

Oracles: a brute-force search over every combination of per-label cuts (small
cases), scikit-learn's micro F-beta at the returned thresholds, and the
``global`` strategy, which the joint optimum can never score below.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import fbeta_score

from labelcut.tuning import tune_thresholds
from labelcut.tuning.micro import tune_micro_fbeta


def label_cut_options(column: np.ndarray) -> list[float | None]:
    """Each label's cuts: its distinct scores (predict score >= v) and None (nothing)."""
    return [*np.unique(column.astype(np.float64)).tolist(), None]


def brute_force(scores: np.ndarray, targets: np.ndarray, beta: float):
    """(optimal micro F-beta, per label the highest cut index among optimal combinations)."""
    beta2 = Fraction(repr(beta)) ** 2
    options = [label_cut_options(scores[:, j]) for j in range(scores.shape[1])]
    counts = []
    for j, cuts in enumerate(options):
        per_cut = []
        for cut in cuts:
            predicted = np.zeros(len(scores), bool) if cut is None else scores[:, j] >= cut
            per_cut.append((int((predicted & targets[:, j]).sum()), int(predicted.sum())))
        counts.append(per_cut)
    positives = int(targets.sum())
    best, winners = None, []
    for combo in itertools.product(*(range(len(c)) for c in counts)):
        tp = sum(counts[j][i][0] for j, i in enumerate(combo))
        pp = sum(counts[j][i][1] for j, i in enumerate(combo))
        value = Fraction(0) if tp == 0 else (1 + beta2) * tp / (pp + beta2 * positives)
        if best is None or value > best:
            best, winners = value, [combo]
        elif value == best:
            winners.append(combo)
    highest = tuple(max(combo[j] for combo in winners) for j in range(scores.shape[1]))
    assert highest in winners  # the optimal set is a product: its componentwise max is optimal
    return best, [options[j][i] for j, i in enumerate(highest)]


def reproduced_cut(column: np.ndarray, threshold: float) -> float | None:
    predicted = column.astype(np.float64) >= threshold
    return float(column[predicted].min()) if predicted.any() else None


@st.composite
def small_cases(draw):
    n = draw(st.integers(1, 7))
    n_labels = draw(st.integers(2, 3))
    levels = draw(st.integers(1, 4))
    grid = np.linspace(0.0, 1.0, levels + 1)[draw(st.integers(0, 1)) :].tolist()
    size = n * n_labels
    scores = np.array(draw(st.lists(st.sampled_from(grid), min_size=size, max_size=size)))
    targets = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)))
    targets = targets.reshape(n, n_labels)
    if not targets.any():
        targets[draw(st.integers(0, n - 1)), draw(st.integers(0, n_labels - 1))] = True
    beta = draw(st.sampled_from([1.0, 0.5, 2.0, 0.3]))
    return scores.reshape(n, n_labels), targets, beta


@settings(max_examples=300, deadline=None)
@given(small_cases())
def test_equals_brute_force_over_every_combination(case):
    scores, targets, beta = case
    best, cuts = brute_force(scores, targets, beta)
    for start in (None, 0.0, 2.0):  # global's threshold, everything predicted, nothing
        result = tune_micro_fbeta(scores, targets, beta, start_threshold=start)
        assert result.micro_fbeta == pytest.approx(float(best), rel=1e-12, abs=1e-15)
        got = [reproduced_cut(scores[:, j], t) for j, t in enumerate(result.thresholds)]
        assert got == cuts
        assert list(result.predicts_nothing) == [cut is None for cut in cuts]


def random_case(seed: int, n: int = 600, n_labels: int = 12):
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.005, 0.5, n_labels)
    targets = rng.random((n, n_labels)) < prevalence
    noise = rng.random((n, n_labels))
    scores = np.clip(0.25 * targets + 0.75 * noise**1.5, 0, 1).astype(np.float32)
    return scores, targets


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_never_below_global_and_agrees_with_sklearn(seed, beta):
    scores, targets = random_case(seed)
    shared = tune_thresholds(
        scores, targets, "f1" if beta == 1.0 else "fbeta", beta=beta,
        strategy="global", n_bootstrap=0,
    )  # fmt: skip
    result = tune_micro_fbeta(scores, targets, beta)
    assert result.start_threshold == pytest.approx(shared.global_threshold)
    predicted_global = scores >= shared.global_threshold
    global_value = fbeta_score(targets, predicted_global, beta=beta, average="micro")
    assert result.start_micro_fbeta == pytest.approx(global_value, rel=1e-12)
    predicted = scores.astype(np.float64) >= result.thresholds
    value = fbeta_score(targets, predicted, beta=beta, average="micro", zero_division=0)
    assert result.micro_fbeta == pytest.approx(value, rel=1e-12)
    assert result.micro_fbeta >= global_value
    assert result.iterations == len(result.trace) >= 1
    assert all(a <= b for a, b in itertools.pairwise(result.trace))
    assert (result.true_positives == (predicted & targets).sum(axis=0)).all()
    assert (result.predicted_positives == predicted.sum(axis=0)).all()


def test_start_does_not_change_the_answer():
    scores, targets = random_case(11)
    answers = [
        tune_micro_fbeta(scores, targets, start_threshold=start) for start in (None, 0.0, 0.9, 5.0)
    ]
    for other in answers[1:]:
        assert other.micro_fbeta == answers[0].micro_fbeta
        np.testing.assert_array_equal(other.thresholds, answers[0].thresholds)


def test_a_label_without_positives_predicts_nothing():
    rng = np.random.default_rng(3)
    targets = rng.random((200, 3)) < 0.3
    targets[:, 1] = False
    scores = np.clip(0.3 * targets + 0.7 * rng.random((200, 3)), 0, 1)
    scores[0, 1] = 1.0  # the empty label's top score is 1: the threshold must leave [0, 1]
    result = tune_micro_fbeta(scores, targets)
    assert result.predicts_nothing[1] and result.predicted_positives[1] == 0
    assert result.thresholds[1] > 1.0
    assert result.status == "ok"


def test_no_positives_anywhere_uses_the_fallback():
    scores = np.array([[0.2, 0.9], [0.6, 0.1]])
    result = tune_micro_fbeta(scores, np.zeros((2, 2), bool), fallback=0.5)
    assert result.status == "no_positives"
    assert list(result.thresholds) == [0.5, 0.5]


def test_report_names_labels_and_iterations():
    scores, targets = random_case(5, n=200, n_labels=4)
    report = tune_micro_fbeta(scores, targets).to_dict(["a", "b", "c", "d"])
    assert report["objective"] == "micro_f1"
    assert list(report["thresholds"]) == ["a", "b", "c", "d"]
    assert report["summary"]["iterations"] == len(report["summary"]["trace"])
    assert report["summary"]["micro_fbeta"]["tuned"] >= report["summary"]["micro_fbeta"]["start"]


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), True])
def test_bad_beta_is_refused(beta):
    with pytest.raises(ValueError, match="beta"):
        tune_micro_fbeta(np.array([[0.2], [0.7]]), np.array([[0], [1]]), beta)
