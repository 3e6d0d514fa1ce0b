"""decision_rule="abstain" (tuning.abstain): the two thresholds against a brute-force search,
scikit-learn's precision, and apply_abstain."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_score

from labelcut.tuning.abstain import apply_abstain, tune_abstain


def reference_band(column: np.ndarray, truth: np.ndarray, target: float, npv_target: float):
    """(lowest yes score or None, lower cut value or None meaning "no confident no", clipped)."""
    values = np.unique(column).tolist()
    upper = None
    for value in values:  # increasing: the first that meets the target is the lowest
        predicted = column >= value
        if truth[predicted].sum() / predicted.sum() >= target:
            upper = value
            break
    limit = np.inf if upper is None else upper
    lower, unconstrained = None, None
    for value in [*values[1:], np.inf]:  # no side: score < value (value np.inf: every row)
        below = column < value
        if (~truth[below]).sum() / below.sum() >= npv_target:
            unconstrained = value
            if value <= limit:
                lower = value
    clipped = unconstrained is not None and unconstrained > limit
    return upper, lower, clipped


def check_against_reference(scores, targets, target, npv_target):
    result = tune_abstain(scores, targets, target, npv_target)
    yes, uncertain = apply_abstain(scores, result.lower, result.upper)
    no = ~yes & ~uncertain
    for j in range(scores.shape[1]):
        column, truth = scores[:, j].astype(np.float64), targets[:, j]
        assert result.lower[j] <= result.upper[j]
        if truth.sum() in (0, len(truth)):
            assert result.status[j] in ("no_positives", "no_negatives")
            assert uncertain[:, j].all()  # an untunable label sends every row to review
            continue
        upper, lower, clipped = reference_band(column, truth, target, npv_target)
        expected_yes = np.zeros(len(column), bool) if upper is None else column >= upper
        expected_no = np.zeros(len(column), bool) if lower is None else column < lower
        np.testing.assert_array_equal(yes[:, j], expected_yes)
        np.testing.assert_array_equal(no[:, j], expected_no)
        expected_status = (
            "target_unreachable"
            if upper is None
            else "npv_target_unreachable"
            if lower is None
            else "ok"
        )
        assert result.status[j] == expected_status
        assert result.clipped[j] == clipped
        assert result.uncertain[j] == uncertain[:, j].sum()
        assert result.review_share[j] == uncertain[:, j].mean()
        if expected_yes.any():
            sk = precision_score(truth, expected_yes)
            assert result.precision[j] == sk
            assert sk >= target
        if expected_no.any():
            assert result.npv[j] == (~truth[expected_no]).mean() >= npv_target


@st.composite
def small_cases(draw):
    n = draw(st.integers(1, 14))
    n_labels = draw(st.integers(1, 3))
    levels = draw(st.integers(1, 6))
    grid = np.linspace(0.0, 1.0, levels + 1)[draw(st.integers(0, 1)) :].tolist()
    size = n * n_labels
    scores = np.array(draw(st.lists(st.sampled_from(grid), min_size=size, max_size=size)))
    targets = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)))
    target = draw(st.sampled_from([0.5, 0.6, 0.75, 0.9, 1.0]))
    npv_target = draw(st.sampled_from([0.3, 0.5, 0.8, 0.95, 1.0]))
    return scores.reshape(n, n_labels), targets.reshape(n, n_labels), target, npv_target


@settings(max_examples=300, deadline=None)
@given(small_cases())
def test_matches_brute_force_on_small_tied_cases(case):
    check_against_reference(*case)


@pytest.mark.parametrize(("target", "npv_target"), [(0.8, 0.95), (0.6, 0.6), (0.99, 0.999)])
def test_matches_brute_force_on_random_data(target, npv_target):
    rng = np.random.default_rng(2)
    targets = rng.random((500, 6)) < [0.01, 0.05, 0.2, 0.4, 0.6, 0.9]
    scores = np.clip(0.4 * targets + 0.6 * rng.random((500, 6)), 0, 1).astype(np.float32)
    check_against_reference(scores, targets, target, npv_target)


def test_hand_made_band():
    # Scores 0.1..0.9: negatives at the bottom, positives at the top, a mix in the middle.
    scores = np.array([[0.1], [0.2], [0.3], [0.4], [0.5], [0.6], [0.7], [0.8], [0.9]])
    targets = np.array([[0], [0], [0], [1], [0], [1], [0], [1], [1]])
    result = tune_abstain(scores, targets, target=1.0, npv_target=1.0)
    assert result.upper[0] == pytest.approx(0.75)  # 0.8 and 0.9: all positive
    assert result.lower[0] == pytest.approx(0.35)  # 0.1..0.3: all negative
    assert result.uncertain[0] == 4 and result.review_share[0] == pytest.approx(4 / 9)
    assert result.recall[0] == pytest.approx(0.5)
    assert result.status == ["ok"] and not result.clipped[0]


def test_overlapping_targets_are_clipped_below_upper():
    # Loose targets: alone, the no side would reach above the yes side's threshold.
    scores = np.array([[0.1], [0.2], [0.3], [0.4]])
    targets = np.array([[0], [1], [0], [1]])
    result = tune_abstain(scores, targets, target=0.5, npv_target=0.5)
    assert result.clipped[0]
    assert result.lower[0] <= result.upper[0]
    assert result.npv[0] >= 0.5 and result.precision[0] >= 0.5


def test_unreachable_sides_and_untunable_labels():
    scores = np.array([[0.9, 0.5, 0.3], [0.8, 0.4, 0.2], [0.1, 0.3, 1.0]])
    targets = np.array([[0, 1, 0], [1, 1, 0], [1, 1, 0]])
    result = tune_abstain(scores, targets, target=0.9, npv_target=0.9)
    # Label 0: the top score is a negative, and the bottom one a positive: neither side holds.
    assert result.status == ["target_unreachable", "no_negatives", "no_positives"]
    yes, uncertain = apply_abstain(scores, result.lower, result.upper)
    assert uncertain.all() and not yes.any()
    assert result.upper[2] > 1.0  # above a score of 1.0
    assert result.lower[0] == 0.0


def test_apply_abstain_refuses_crossed_thresholds():
    with pytest.raises(ValueError, match="lower exceeds upper for label 1"):
        apply_abstain(np.array([[0.2, 0.3]]), [0.1, 0.6], [0.5, 0.4])


@pytest.mark.parametrize("bad", [0.0, 1.5, float("nan"), "0.9"])
def test_bad_targets_are_refused(bad):
    with pytest.raises(ValueError, match="npv_target"):
        tune_abstain(np.array([[0.2], [0.7]]), np.array([[0], [1]]), 0.9, bad)


def wilson(hits: int, rows: int, confidence: float) -> float:
    """Textbook one-sided Wilson score lower bound, written out independently."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(confidence)
    p = hits / rows
    centre = p + z * z / (2 * rows)
    margin = z * ((p * (1 - p) + z * z / (4 * rows)) / rows) ** 0.5
    return (centre - margin) / (1 + z * z / rows)


def test_confidence_asks_for_a_wilson_bound():
    # Two positives on top: observed precision 1, but a 90 % lower bound far below 0.9.
    scores = np.array([[0.1], [0.2], [0.3], [0.4], [0.5], [0.9], [0.95]])
    targets = np.array([[0], [0], [1], [0], [0], [1], [1]])
    plain = tune_abstain(scores, targets, target=0.9, npv_target=0.6)
    assert plain.status == ["ok"] and plain.yes[0] == 2
    bounded = tune_abstain(scores, targets, target=0.9, npv_target=0.6, wilson_confidence=0.9)
    assert bounded.status == ["target_unreachable"] and bounded.yes[0] == 0


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_wilson_band_against_brute_force(confidence):
    rng = np.random.default_rng(6)
    targets = rng.random((800, 3)) < [0.1, 0.3, 0.6]
    scores = np.round(np.clip(0.5 * targets + 0.5 * rng.random((800, 3)), 0, 1), 3)
    result = tune_abstain(scores, targets, 0.85, 0.9, wilson_confidence=confidence)
    for j in range(3):
        column, truth = scores[:, j], targets[:, j]
        qualifying = [
            v for v in np.unique(column)
            if wilson(int(truth[column >= v].sum()), int((column >= v).sum()), confidence) >= 0.85
        ]  # fmt: skip
        assert result.status[j] in ("ok", "npv_target_unreachable")
        yes = column >= result.upper[j]
        assert yes.any() and float(column[yes].min()) == min(qualifying)
        no = column < result.lower[j]
        if no.any():
            assert wilson(int((~truth[no]).sum()), int(no.sum()), confidence) >= 0.9 - 1e-12
