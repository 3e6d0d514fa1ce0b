"""Label shift without labels: EM priors, adjusted posteriors, and thresholds that move."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_curve

from labelcut.tuning.adapt import adapt_to_unlabelled
from labelcut.tuning.calibration import Calibrator
from labelcut.tuning.cross_fit import cross_fit_calibrate
from labelcut.tuning.label_shift import (
    adjust_probabilities,
    estimate_priors,
    map_thresholds,
    retune_for_priors,
)

SEPARATION = 0.8  # class means at +-0.8, unit variance: a weak-to-fair classifier


class Curve(NamedTuple):
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def _draw(n: int, prevalence: np.ndarray, rng: np.random.Generator):
    y = (rng.random((n, len(prevalence))) < prevalence).astype(np.int64)
    return rng.normal(size=y.shape) + (2 * y - 1) * SEPARATION, y


def _posterior(x: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The exact (calibrated) posterior of y = 1 given x under ``prior``."""
    return 1 / (1 + np.exp(-(2 * SEPARATION * x + np.log(prior / (1 - prior)))))


def _log_odds(x: np.ndarray, prior: np.ndarray) -> np.ndarray:
    return 2 * SEPARATION * x + np.log(prior / (1 - prior))


def _curves(scores: np.ndarray, targets: np.ndarray) -> list[Curve]:
    return [
        Curve(*precision_recall_curve(targets[:, j], scores[:, j])) for j in range(scores.shape[1])
    ]


def _best_f1_threshold(curve: Curve) -> float:
    """Brute-force reference: the score of the F1-best point, ties to the higher threshold."""
    p, r = curve.precision[:-1], curve.recall[:-1]
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
    return float(curve.thresholds[np.flatnonzero(f1 == f1.max())[-1]])


OLD = np.array([0.3, 0.1, 0.5, 0.02])
NEW = np.array([0.05, 0.25, 0.8, 0.02])


def test_em_recovers_known_priors_within_0_02_at_20k_rows():
    rng = np.random.default_rng(0)
    x, _ = _draw(20_000, NEW, rng)
    estimate = estimate_priors(_posterior(x, OLD), OLD)
    # Tolerance: 0.02 absolute on each label's prior (observed error ~0.005 at this n).
    np.testing.assert_array_less(np.abs(estimate.prior_new - NEW), 0.02)
    assert estimate.status == ["ok"] * 4 and estimate.converged.all()
    np.testing.assert_allclose(
        estimate.adjusted, adjust_probabilities(_posterior(x, OLD), OLD, estimate.prior_new)
    )
    # The adjusted posteriors are the exact posteriors under the estimated prior.
    np.testing.assert_allclose(estimate.adjusted, _posterior(x, estimate.prior_new), atol=1e-9)


def test_em_without_shift_stays_put_and_degenerate_priors_are_left_alone():
    rng = np.random.default_rng(1)
    x, _ = _draw(20_000, OLD, rng)
    p = _posterior(x, OLD)
    p_degenerate = np.concatenate([p, np.full((len(p), 1), 0.3)], axis=1)
    estimate = estimate_priors(p_degenerate, np.append(OLD, 0.0))
    np.testing.assert_array_less(np.abs(estimate.prior_new[:4] - OLD), 0.02)
    assert estimate.status[4] == "degenerate_prior"
    assert estimate.prior_new[4] == 0.0
    np.testing.assert_array_equal(estimate.adjusted[:, 4], 0.3)


def test_em_stops_at_max_iter_and_says_so():
    rng = np.random.default_rng(2)
    x, _ = _draw(2000, NEW, rng)
    estimate = estimate_priors(_posterior(x, OLD), OLD, tol=1e-15, max_iter=3)
    assert (estimate.n_iter == 3).all()
    assert "not_converged" in estimate.status


def test_adjustment_matches_the_bayes_formula_and_thresholds_keep_decisions():
    rng = np.random.default_rng(3)
    p = rng.random((500, 4))
    old, new = OLD, np.array([0.6, 0.01, 0.5, 0.9])
    r1, r0 = new / old, (1 - new) / (1 - old)
    expected = r1 * p / (r1 * p + r0 * (1 - p))
    np.testing.assert_allclose(adjust_probabilities(p, old, new), expected, rtol=1e-12)
    t = rng.random(4)
    keep = np.abs(p - t) > 1e-9  # away from float ties at the threshold itself
    same = (adjust_probabilities(p, old, new) >= map_thresholds(t, old, new)) == (p >= t)
    assert same[keep].all()
    # Calibrator.with_priors serves the same adjusted numbers.
    served = Calibrator.identity(4).with_priors(old, new).apply(p)
    np.testing.assert_allclose(served, expected, rtol=1e-9)


def test_retune_with_integer_weights_equals_tuning_on_duplicated_positives():
    """Weighting positives 2 : negatives 1 is the prior pi' = 2 pi / (1 + pi); the oracle tunes
    on the validation data with every positive row duplicated."""
    rng = np.random.default_rng(4)
    x, y = _draw(3000, OLD[:3], rng)
    scores = _posterior(x, OLD[:3])
    prior = y.mean(axis=0)
    new = 2 * prior / (1 + prior)
    retuned = retune_for_priors(_curves(scores, y), y.sum(axis=0), np.full(3, 0.5), prior, new)
    for j in range(3):
        twice = np.concatenate([np.arange(len(y)), np.flatnonzero(y[:, j])])
        oracle = _best_f1_threshold(Curve(*precision_recall_curve(y[twice, j], scores[twice, j])))
        assert retuned.thresholds[j] == oracle
    assert retuned.status == ["ok"] * 3


def test_retuned_thresholds_recover_f1_on_shifted_labelled_data():
    rng = np.random.default_rng(5)
    x_val, y_val = _draw(20_000, OLD[:3], rng)
    x_new, y_new = _draw(20_000, NEW[:3], rng)
    val, new_scores = _posterior(x_val, OLD[:3]), _posterior(x_new, OLD[:3])
    curves = _curves(val, y_val)
    tuned = np.array([_best_f1_threshold(c) for c in curves])
    prior = y_val.mean(axis=0)
    estimate = estimate_priors(new_scores, prior)  # no labels of the new rows used
    retuned = retune_for_priors(curves, y_val.sum(axis=0), tuned, prior, estimate.prior_new)
    served_t = map_thresholds(retuned.thresholds, prior, estimate.prior_new)
    for j in range(3):
        f1_old = f1_score(y_new[:, j], new_scores[:, j] >= tuned[j])
        f1_new = f1_score(y_new[:, j], estimate.adjusted[:, j] >= served_t[j])
        f1_best = f1_score(
            y_new[:, j], new_scores[:, j] >= _best_f1_threshold(_curves(new_scores, y_new)[j])
        )
        # Each label's prevalence moved by 0.15 or more: the re-tuned cut gains over 0.01 F1
        # on the old one and is within 0.02 of the best cut chosen with the new labels.
        assert f1_new > f1_old + 0.01
        assert f1_new > f1_best - 0.02


def test_retune_constrained_objectives_and_kept_labels():
    rng = np.random.default_rng(6)
    x, y = _draw(5000, OLD[:3], rng)
    scores = _posterior(x, OLD[:3])
    prior = y.mean(axis=0)
    curves = _curves(scores, y)
    old_t = np.full(3, 0.5)
    # recall does not depend on the prior, so precision_at_recall keeps its recall floor.
    at_recall = retune_for_priors(
        curves, y.sum(axis=0), old_t, prior, NEW[:3], objective="precision_at_recall", target=0.6
    )
    for j in range(3):
        assert (scores[y[:, j] == 1, j] >= at_recall.thresholds[j]).mean() >= 0.6
    # With a negative row scored above all others every cut has a false positive, and once
    # positives are rare (1 %) a precision of 0.99 is out of reach.
    for j in range(3):
        scores[np.flatnonzero(y[:, j] == 0)[0], j] = 1.0
    curves = _curves(scores, y)
    unreachable = retune_for_priors(
        curves,
        y.sum(axis=0),
        old_t,
        prior,
        np.full(3, 0.01),
        objective="recall_at_precision",
        target=0.99,
    )
    assert "target_unreachable" in unreachable.status
    degenerate = retune_for_priors(curves, y.sum(axis=0), old_t, prior, np.array([0.0, 0.2, 0.5]))
    assert degenerate.status[0] == "kept" and degenerate.thresholds[0] == 0.5
    with pytest.raises(ValueError, match="target"):
        retune_for_priors(
            curves, y.sum(axis=0), old_t, prior, NEW[:3], objective="recall_at_precision"
        )
    with pytest.raises(ValueError, match="prior_new"):
        retune_for_priors(curves, y.sum(axis=0), old_t, prior, np.array([0.5, 1.5, 0.1]))


def test_adapt_flow_from_raw_over_confident_scores():
    """The service's flow: calibrate (cross-fitted), tune on OOF scores, then adapt the set
    to unlabelled shifted rows; served probabilities follow the new prior and the served
    thresholds gain F1 there, or keep every decision when only mapped."""
    rng = np.random.default_rng(7)
    old, new = OLD[:3], NEW[:3]
    x_val, y_val = _draw(10_000, old, rng)
    x_new, y_new = _draw(20_000, new, rng)
    # An over-confident model: three times the true log-odds.
    raw_val, raw_new = (1 / (1 + np.exp(-3 * _log_odds(x, old))) for x in (x_val, x_new))
    fit = cross_fit_calibrate(raw_val, y_val, "temperature")
    curves = _curves(fit.calibrated, y_val)
    thresholds = np.array([_best_f1_threshold(c) for c in curves])
    prior = y_val.mean(axis=0)
    adapted = adapt_to_unlabelled(
        fit.calibrator, raw_new, prior, thresholds, curves=curves, positives=y_val.sum(axis=0)
    )
    served = adapted.calibrator.apply(raw_new)
    # 0.03 here (0.02 with exact posteriors above): the temperature is fit on 10k rows.
    np.testing.assert_array_less(np.abs(served.mean(axis=0) - y_new.mean(axis=0)), 0.03)
    before = fit.calibrator.apply(raw_new) >= thresholds
    after = served >= adapted.thresholds
    for j in range(3):
        assert f1_score(y_new[:, j], after[:, j]) > f1_score(y_new[:, j], before[:, j]) + 0.01
    mapped = adapt_to_unlabelled(fit.calibrator, raw_new, prior, thresholds)
    same = mapped.calibrator.apply(raw_new) >= mapped.thresholds
    assert (same == before).mean() > 0.9999  # equal but for float ties at a threshold
    report = adapted.report(["a", "b", "c"])
    assert [r["threshold_status"] for r in report] == ["ok"] * 3
    assert report[0]["prevalence_old"] == pytest.approx(prior[0])


def test_em_needs_calibrated_probabilities():
    """On an over-confident model (3x the true log-odds) EM is far off; calibrated first on
    the validation rows (temperature), it recovers the priors."""
    rng = np.random.default_rng(8)
    x_val, y_val = _draw(10_000, OLD[:3], rng)
    x_new, y_new = _draw(20_000, NEW[:3], rng)
    raw_val, raw_new = (1 / (1 + np.exp(-3 * _log_odds(x, OLD[:3]))) for x in (x_val, x_new))
    prior = y_val.mean(axis=0)
    raw_error = np.abs(estimate_priors(raw_new, prior).prior_new - y_new.mean(axis=0))
    calibrator = cross_fit_calibrate(raw_val, y_val, "temperature").calibrator
    fixed = estimate_priors(calibrator.apply(raw_new), prior).prior_new
    assert raw_error.max() > 0.1
    np.testing.assert_array_less(np.abs(fixed - y_new.mean(axis=0)), 0.02)
