"""Risk-coverage tuning for softmax models, against a brute-force reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelcut.tuning.risk_coverage import (
    NotMultiClassError,
    apply_confidence_threshold,
    class_indices,
    confidence_operating_index,
    downsample_risk_coverage,
    risk_coverage_curve,
    tune_confidence_threshold,
)


def brute_points(proba: np.ndarray, y: np.ndarray) -> list[tuple[float, int, int]]:
    """(threshold, answered, correct) for every distinct top probability, from scratch."""
    top = proba.max(axis=1)
    right = proba.argmax(axis=1) == y
    points = []
    for t in sorted(set(top.tolist())):
        answered = top >= t
        points.append((t, int(answered.sum()), int((answered & right).sum())))
    return points


def brute_best(proba, y, objective, target):
    """The reference's chosen (answered, correct), or None when unreachable."""
    n = len(y)
    points = brute_points(proba, y)
    if objective == "coverage_at_accuracy":
        ok = [(a, c) for _, a, c in points if c / a >= target]
        return max(ok) if ok else None  # most rows answered
    ok = [(c / a, t, a, c) for t, a, c in points if a / n >= target]
    best = max(ok)  # best accuracy; ties -> higher threshold
    return best[2], best[3]


probabilities = st.integers(2, 5).flatmap(
    lambda c: st.tuples(
        st.just(c),
        st.lists(st.lists(st.integers(0, 8), min_size=c, max_size=c), min_size=1, max_size=40),
    )
)


@settings(max_examples=300, deadline=None)
@given(
    probabilities,
    st.data(),
    st.sampled_from(["coverage_at_accuracy", "accuracy_at_coverage"]),
    st.sampled_from([0.05, 0.3, 0.5, 2 / 3, 0.8, 0.9, 1.0]),
)
def test_matches_the_brute_force_reference(case, data, objective, target):
    n_classes, rows = case
    proba = np.array(rows, dtype=np.float32) / 8.0  # coarse values: many ties
    y = np.array(
        data.draw(st.lists(st.integers(0, n_classes - 1), min_size=len(rows), max_size=len(rows)))
    )
    result = tune_confidence_threshold(proba, y, objective, target=target)
    best = brute_best(proba.astype(np.float64), y, objective, target)
    top = proba.max(axis=1).astype(np.float64)
    answered = top >= result.threshold
    if best is None:
        assert result.status == "target_unreachable"
        assert result.threshold == 0.0 and answered.all()
    else:
        assert result.status == "ok"
        assert (int(answered.sum()), int((answered & (proba.argmax(1) == y)).sum())) == best
        # The threshold sits strictly inside the gap below the lowest answered value.
        lowest = top[answered].min()
        below = top[~answered]
        assert result.threshold <= lowest
        assert result.threshold > (below.max() if below.size else 0.0) or result.threshold == lowest
    assert result.answered == int(answered.sum())
    assert result.coverage == pytest.approx(answered.mean())
    assert result.overall_accuracy == pytest.approx(float((proba.argmax(1) == y).mean()))


def test_curve_points_match_the_reference_and_the_end_point():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)) * 2
    proba = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    curve = risk_coverage_curve(proba, y)
    reference = brute_points(proba.astype(np.float64), y)
    assert curve.thresholds.tolist() == [t for t, _, _ in reference]
    assert curve.answered[:-1].tolist() == [a for _, a, _ in reference]
    assert curve.correct[:-1].tolist() == [c for _, _, c in reference]
    assert np.allclose(curve.accuracy[:-1], [c / a for _, a, c in reference])
    assert (curve.coverage[-1], curve.accuracy[-1], curve.answered[-1]) == (0.0, 1.0, 0)
    assert confidence_operating_index(curve, 0.0) == 0
    assert confidence_operating_index(curve, 1.01) == len(curve.thresholds)


def test_all_correct_answers_every_row_and_none_correct_is_unreachable():
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], dtype=np.float32)
    right = np.array([0, 1, 0])
    full = tune_confidence_threshold(proba, right, "coverage_at_accuracy", target=1.0)
    assert (full.status, full.coverage, full.accuracy) == ("ok", 1.0, 1.0)
    assert full.threshold == pytest.approx(0.3)  # half the lowest top probability (0.6)
    wrong = tune_confidence_threshold(proba, 1 - right, "coverage_at_accuracy", target=0.1)
    assert wrong.status == "target_unreachable"
    assert (wrong.threshold, wrong.coverage, wrong.accuracy) == (0.0, 1.0, 0.0)
    held = tune_confidence_threshold(proba, 1 - right, target=0.1, fallback=1.0)
    assert held.threshold == 1.0 and held.answered == 0 and held.accuracy == 1.0
    everything = tune_confidence_threshold(proba, 1 - right, "accuracy_at_coverage", target=1.0)
    assert everything.status == "ok" and everything.coverage == 1.0


def test_accuracy_at_coverage_prefers_the_higher_threshold_on_ties():
    # Answering the top row alone or the top two both give accuracy 1: keep the higher one.
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    y = np.array([0, 0, 1, 0])
    result = tune_confidence_threshold(proba, y, "accuracy_at_coverage", target=0.25)
    assert result.answered == 1 and result.threshold == pytest.approx(0.85)


def test_per_class_figures_at_the_chosen_point():
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    y = np.array([0, 1, 1, 0])
    result = tune_confidence_threshold(proba, y, "coverage_at_accuracy", target=0.6)
    assert result.answered == 4 or result.accuracy >= 0.6
    answered = proba.max(1) >= result.threshold
    predicted = proba.argmax(1)
    for c in range(3):
        given = answered & (predicted == c)
        right = given & (y == c)
        expected_precision = right.sum() / given.sum() if given.sum() else 1.0
        assert result.precision[c] == pytest.approx(expected_precision)
        support = (y == c).sum()
        assert result.recall[c] == pytest.approx(right.sum() / support if support else 0.0)
    report = result.to_dict(["cat", "dog", "eel"])
    json.dumps(report)
    assert report["decision_rule"] == "exactly_one"
    assert [row["label"] for row in report["per_class"]] == ["cat", "dog", "eel"]
    assert report["per_class"][2]["support"] == 0


def test_the_report_curve_is_downsampled_with_the_chosen_point_kept():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5000, 5)) * 3
    proba = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    # Right about as often as the model is confident: a calibrated-ish model.
    y = np.where(rng.random(5000) < proba.max(1), proba.argmax(1), rng.integers(0, 5, 5000))
    result = tune_confidence_threshold(proba, y, "coverage_at_accuracy", target=0.9)
    assert result.accuracy >= 0.9
    curve = result.to_dict()["curve"]
    assert (
        len(curve["thresholds"]) <= 1001 and len(curve["coverage"]) == len(curve["thresholds"]) + 1
    )
    chosen = curve["chosen_index"]
    assert curve["coverage"][chosen] == result.coverage
    assert curve["accuracy"][chosen] == result.accuracy
    assert curve["coverage"][0] == 1.0 and curve["coverage"][-1] == 0.0
    small = downsample_risk_coverage(result.curve, 50, keep=(result.threshold,))
    assert len(small.thresholds) <= 52


def test_apply_confidence_threshold_abstains_below_the_threshold():
    proba = np.array([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])
    assert apply_confidence_threshold(proba, 0.6).tolist() == [-1, 1, 0]  # >= answers 0.6
    assert apply_confidence_threshold(proba, 0.0).tolist() == [0, 1, 0]  # ties: lower index


def test_class_indices_reads_one_hot_integers_and_names():
    names = ["cat", "dog", "eel"]
    one_hot = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert class_indices(one_hot, n_classes=3).tolist() == [1, 0, 2]
    assert class_indices(np.array([2, 0, 1]), n_classes=3).tolist() == [2, 0, 1]
    assert class_indices(np.array([2.0, 0.0]), n_classes=3).tolist() == [2, 0]
    assert class_indices(np.array(["eel", "cat"]), class_names=names).tolist() == [2, 0]
    assert class_indices(["dog"], class_names=names).tolist() == [1]


def test_class_indices_names_the_problem():
    names = ["cat", "dog", "eel"]
    with pytest.raises(
        NotMultiClassError,
        match=r"1 row\(s\) have two or more labels \(first: "
        r"row 2: cat, eel\).*BCEWithLogitsLoss",
    ) as caught:
        class_indices(np.array([[0, 1, 0], [1, 0, 1], [0, 0, 0]]), class_names=names)
    assert (caught.value.rows_with_several, caught.value.rows_with_none) == (1, 1)
    assert "row 3" in str(caught.value)
    with pytest.raises(ValueError, match=r"row 2 is 3"):
        class_indices(np.array([0, 3]), n_classes=3)
    with pytest.raises(ValueError, match=r"row 2: class 'fox' is not one of the model's classes"):
        class_indices(np.array(["cat", "fox"]), class_names=names)
    with pytest.raises(ValueError, match=r"row 1, column 2 is"):
        class_indices(np.array([[0, 2, 0]]))
    with pytest.raises(ValueError, match="whole numbers; row 1"):
        class_indices(np.array([0.5]))
    with pytest.raises(ValueError, match="4 columns; expected 3"):
        class_indices(np.eye(4), n_classes=3)


def test_bad_arguments():
    proba = np.array([[0.9, 0.1]])
    with pytest.raises(ValueError, match="objective must be one of"):
        tune_confidence_threshold(proba, [0], "f1", target=0.5)
    with pytest.raises(ValueError, match=r"target must be in \(0, 1\]"):
        tune_confidence_threshold(proba, [0], target=0.0)
    with pytest.raises(ValueError, match="proba must be"):
        tune_confidence_threshold(np.array([[1.0]]), [0], target=0.5)
    with pytest.raises(ValueError, match=r"finite probabilities in \[0, 1\]"):
        tune_confidence_threshold(np.array([[1.5, 0.0]]), [0], target=0.5)
    with pytest.raises(ValueError, match="classes has 2 rows but proba has 1"):
        tune_confidence_threshold(proba, [0, 1], target=0.5)
