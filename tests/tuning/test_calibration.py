"""Per-label calibrators against scikit-learn's, cross-fitting, and the calibration metrics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from labelcut.tuning.calibration import (
    LOGIT_CLIP,
    METHODS,
    PLATT_MIN_SLOPE,
    Calibrator,
    fit_calibrator,
    to_probabilities,
)
from labelcut.tuning.cross_fit import cross_fit_calibrate, label_stratified_folds
from labelcut.tuning.label_shift import adjust_probabilities
from labelcut.tuning.reliability import (
    brier_score,
    calibration_report,
    expected_calibration_error,
    reliability_diagrams,
)


class _FixedLogits(ClassifierMixin, BaseEstimator):
    """A 'classifier' whose decision function is its one input column (the logit)."""

    def fit(self, x, y):
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, x):
        return np.asarray(x)[:, 0]

    def predict(self, x):
        return (self.decision_function(x) > 0).astype(int)


def _sklearn_calibrated(z: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    frozen = FrozenEstimator(_FixedLogits().fit(z[:, None], y))
    model = CalibratedClassifierCV(frozen, method=method).fit(z[:, None], y)
    return model.predict_proba(z[:, None])[:, 1]


def _logits_data(n: int, prevalences, *, scale=1.0, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(n, L)`` of a model that sees each label through a Gaussian, times ``scale``
    (``scale > 1`` is over-confident), and 0/1 targets drawn with the true posteriors."""
    rng = np.random.default_rng(seed)
    prevalences = np.asarray(prevalences)
    y = (rng.random((n, len(prevalences))) < prevalences).astype(np.int64)
    x = rng.normal(size=y.shape) + (2 * y - 1) * 1.0
    # True log-odds of y given x for unit Gaussians at +-1: 2x + logit(prevalence).
    true_logit = 2 * x + np.log(prevalences / (1 - prevalences))
    return scale * true_logit, y


# -- agreement with scikit-learn ------------------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [("platt", "sigmoid"), ("temperature", "temperature")])
def test_logit_calibrators_match_calibrated_classifier_cv_per_label(ours, theirs):
    z, y = _logits_data(4000, [0.1, 0.3, 0.6], scale=2.5, seed=1)
    calibrator = fit_calibrator(z, y, ours, logits=True)
    ours_p = calibrator.apply_logits(z)
    for j in range(z.shape[1]):
        # Tolerance 1e-6 on probabilities: the same objective, different optimisers.
        np.testing.assert_allclose(
            ours_p[:, j], _sklearn_calibrated(z[:, j], y[:, j], theirs), atol=1e-6
        )
    assert calibrator.fitted.all()


def test_temperature_is_a_logistic_fit_without_intercept_on_the_logit():
    z, y = _logits_data(5000, [0.2, 0.5], scale=3.0, seed=2)
    calibrator = fit_calibrator(z, y, "temperature", logits=True)
    for j in range(2):
        fit = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-12, max_iter=10_000)
        fit.fit(z[:, j : j + 1], y[:, j])
        np.testing.assert_allclose(1 / calibrator.temperature[j], fit.coef_[0, 0], rtol=1e-5)
        # The model's logits are 3x the true ones, so T is near 3.
        assert calibrator.temperature[j] == pytest.approx(3.0, rel=0.1)


def test_platt_approaches_an_unpenalised_logistic_fit_on_many_rows():
    z, y = _logits_data(20_000, [0.3], scale=0.5, seed=3)
    calibrator = fit_calibrator(z, y, "platt", logits=True)
    fit = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(z, y[:, 0])
    # Platt's smoothed targets differ from 0/1 by ~1/N: slope and bias agree within 1e-2.
    assert calibrator.slope[0] == pytest.approx(fit.coef_[0, 0], abs=1e-2)
    assert calibrator.intercept[0] == pytest.approx(fit.intercept_[0], abs=1e-2)


def test_isotonic_matches_isotonic_regression_including_ties_and_out_of_range():
    rng = np.random.default_rng(4)
    z, y = _logits_data(3000, [0.15, 0.5], seed=4)
    p = np.round(to_probabilities(z), 2)  # many tied scores
    calibrator = fit_calibrator(p, y, "isotonic")
    query = np.concatenate([rng.random(500), [0.0, 1.0, p.min(), p.max()]])
    queries = np.repeat(query[:, None], 2, axis=1)
    got = calibrator.apply(queries)
    for j in range(2):
        reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p[:, j], y[:, j])
        np.testing.assert_allclose(got[:, j], reference.predict(query), atol=1e-12)
        # Our breakpoints start at PROBA_EPS where sklearn's start at 0.0.
        np.testing.assert_allclose(
            calibrator.breakpoints[j][0], reference.X_thresholds_, atol=1e-12
        )


def test_isotonic_small_and_large_batches_agree():
    z, y = _logits_data(3000, [0.15, 0.5, 0.05], seed=20)
    p = to_probabilities(z)
    calibrator = fit_calibrator(p, y, "isotonic")
    query = np.concatenate([p[:600], np.zeros((2, 3)), np.ones((2, 3))])
    large = calibrator.apply(query)  # np.interp per label
    small = np.concatenate(
        [calibrator.apply(query[i : i + 100]) for i in range(0, len(query), 100)]
    )
    np.testing.assert_allclose(small, large, atol=1e-15)
    for j in range(3):
        np.testing.assert_allclose(
            large[:, j],
            np.interp(np.clip(query[:, j], 1e-12, 1 - 1e-12), *calibrator.breakpoints[j]),
            atol=1e-15,
        )


def test_labels_are_calibrated_independently():
    z, y = _logits_data(2000, [0.2, 0.4, 0.5], scale=2.0, seed=5)
    for method in ("temperature", "platt", "isotonic"):
        together = fit_calibrator(z, y, method, logits=True).apply_logits(z)
        alone = fit_calibrator(z[:, 1:2], y[:, 1:2], method, logits=True).apply_logits(z[:, 1:2])
        np.testing.assert_allclose(together[:, 1], alone[:, 0], atol=1e-9)


# -- the point of it: better probabilities ----------------------------------------------------


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_calibration_reduces_ece_of_an_over_confident_model_on_held_out_rows(method):
    z, y = _logits_data(12_000, [0.1, 0.3, 0.5], scale=3.0, seed=6)
    fit, test = slice(0, 6000), slice(6000, None)
    p_raw = to_probabilities(z)
    calibrated = fit_calibrator(p_raw[fit], y[fit], method).apply(p_raw[test])
    ece_before, overall_before = expected_calibration_error(p_raw[test], y[test])
    ece_after, overall_after = expected_calibration_error(calibrated, y[test])
    assert (ece_after < 0.5 * ece_before).all(), (ece_before, ece_after)
    assert overall_after < 0.5 * overall_before
    assert brier_score(calibrated, y[test])[1] < brier_score(p_raw[test], y[test])[1]


# -- serving safety ---------------------------------------------------------------------------


def _fitted(method: str) -> Calibrator:
    z, y = _logits_data(1500, [0.2, 0.5], scale=2.0, seed=7)
    return fit_calibrator(z, y, method, logits=True)


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_through_json_applies_identically(method):
    calibrator = _fitted(method).with_priors(np.array([0.2, 0.5]), np.array([0.3, 0.4]))
    back = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    p = np.random.default_rng(8).random((300, 2))
    np.testing.assert_array_equal(back.apply(p), calibrator.apply(p))
    np.testing.assert_array_equal(
        back.apply_logits(p * 20 - 10), calibrator.apply_logits(p * 20 - 10)
    )
    assert back.to_dict() == calibrator.to_dict()


@pytest.mark.parametrize("method", METHODS)
def test_extreme_inputs_are_safe_and_dtypes_are_kept(method):
    calibrator = _fitted(method)
    p = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 1e-30]], dtype=np.float32)
    z = np.array([[-np.inf, np.inf], [3e38, -3e38], [0.0, -LOGIT_CLIP * 2]])
    for values, apply in ((p, calibrator.apply), (z, calibrator.apply_logits)):
        for dtype in (np.float32, np.float64):
            out = apply(values.astype(dtype))
            assert out.dtype == dtype
            assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    # Scores a subnormal step apart (GaussianNB gives such) must not overflow np.interp.
    tiny = np.array([[0.0, 0.0], [6.4e-323, 1e-320], [8.1e-314, 1e-310], [1e-300, 1e-200]])
    assert np.isfinite(
        fit_calibrator(np.tile(tiny, (10, 1)), np.tile([[0, 1], [1, 0]], (20, 1)), method).apply(
            tiny
        )
    ).all()
    # Monotone in the score for every label.
    grid = np.repeat(np.linspace(0, 1, 201)[:, None], 2, axis=1)
    assert (np.diff(calibrator.apply(grid), axis=0) >= -1e-12).all()


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_probability_and_logit_entry_points_agree(method):
    calibrator = _fitted(method)
    z = np.random.default_rng(9).normal(scale=4, size=(400, 2))
    np.testing.assert_allclose(
        calibrator.apply(to_probabilities(z)), calibrator.apply_logits(z), atol=1e-9
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "softmax"}, "method"),
        ({"schema_version": 2}, "schema_version"),
        ({"temperature": [1.0, -2.0]}, "positive"),
        ({"temperature": [1.0]}, "temperature"),
        ({"temperature": [1.0, "x"]}, "numbers"),
        ({"logit_offset": [0.0, float("nan")]}, "finite"),
        ({"fitted": [1, 0]}, "booleans"),
        ({"n_labels": 3}, "fitted"),
    ],
)
def test_malformed_dicts_are_refused_with_the_field_named(change, message):
    data = _fitted("temperature").to_dict() | change
    with pytest.raises(ValueError, match=message):
        Calibrator.from_dict(data)


def test_malformed_isotonic_breakpoints_are_refused():
    data = _fitted("isotonic").to_dict()
    data["breakpoints"][1] = {"x": [0.5, 0.2], "y": [0.1, 0.3]}
    with pytest.raises(ValueError, match="label 1: x must increase"):
        Calibrator.from_dict(data)
    data["breakpoints"][1] = {"x": [0.2, 0.5], "y": [0.1, 1.3]}
    with pytest.raises(ValueError, match=r"label 1: x and y must lie in \[0, 1\]"):
        Calibrator.from_dict(data)


def test_bad_inputs_are_refused():
    z, y = _logits_data(100, [0.5])
    with pytest.raises(ValueError, match="probabilities in"):
        fit_calibrator(z, y, "platt")
    with pytest.raises(ValueError, match="method"):
        fit_calibrator(z, y, "beta", logits=True)
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        fit_calibrator(z, y * 2, "platt", logits=True)
    with pytest.raises(ValueError, match=r"shape \(n, 1\)"):
        fit_calibrator(z, y, "platt", logits=True).apply(np.zeros((3, 2)))


def test_labels_with_too_few_positives_keep_the_identity_map():
    z, y = _logits_data(500, [0.5, 0.5], scale=3.0, seed=10)
    y[:, 1] = 0
    y[:2, 1] = 1  # two positives, below min_count=3
    for method in ("temperature", "platt", "isotonic"):
        calibrator = fit_calibrator(z, y, method, logits=True)
        assert calibrator.fitted.tolist() == [True, False]
        np.testing.assert_allclose(
            calibrator.apply_logits(z)[:, 1], to_probabilities(z[:, 1]), atol=1e-12
        )


def test_a_label_ranked_backwards_gets_the_least_slope_not_a_flip():
    z, y = _logits_data(2000, [0.3, 0.3], scale=2.0, seed=17)
    z[:, 1] = -z[:, 1]
    calibrator = fit_calibrator(z, y, "platt", logits=True)
    assert calibrator.fitted.all()
    assert calibrator.slope[0] == pytest.approx(0.5, rel=0.1)  # logits are twice the true ones
    assert calibrator.slope[1] == PLATT_MIN_SLOPE
    # Nearly constant at the label's (smoothed) prevalence: mean calibrated = mean target.
    p1 = calibrator.apply_logits(z)[:, 1]
    assert p1.mean() == pytest.approx(y[:, 1].mean(), abs=2e-3)
    assert np.ptp(p1) < 0.2 and (np.diff(p1[np.argsort(z[:, 1])]) >= 0).all()


@pytest.mark.parametrize("method", METHODS)
def test_raw_thresholds_mapped_through_the_calibrator_keep_the_decisions(method):
    z, y = _logits_data(3000, [0.1, 0.4], scale=3.0, seed=18)
    p = to_probabilities(z)
    calibrator = fit_calibrator(p, y, method)
    thresholds = np.array([0.3, 0.62])
    mapped = calibrator.map_thresholds(thresholds)
    same = (calibrator.apply(p) >= mapped) == (p >= thresholds)
    if method == "isotonic":  # flat steps: rows just below t on t's step turn positive
        assert ((p >= thresholds) <= (calibrator.apply(p) >= mapped)).all()
    else:
        assert same.all()
    with pytest.raises(ValueError, match="thresholds"):
        calibrator.map_thresholds(np.array([0.5, 1.5]))


def test_with_priors_is_the_saerens_adjustment():
    calibrator = _fitted("platt")
    p = np.random.default_rng(11).random((200, 2))
    old, new = np.array([0.2, 0.5]), np.array([0.05, 0.8])
    expected = adjust_probabilities(calibrator.apply(p), old, new)
    np.testing.assert_allclose(calibrator.with_priors(old, new).apply(p), expected, atol=1e-12)


# -- cross-fitting ----------------------------------------------------------------------------


def test_folds_spread_rare_labels_and_balance_sizes():
    rng = np.random.default_rng(12)
    y = (rng.random((1003, 4)) < [0.4, 0.2, 0.05, 0.0]).astype(int)
    y[:, 3] = 0
    y[rng.choice(1003, 5, replace=False), 3] = 1  # exactly one positive per fold
    folds = label_stratified_folds(y, 5, seed=3)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    assert np.bincount(folds[y[:, 3] == 1], minlength=5).tolist() == [1] * 5
    for j in range(3):  # every label's positives are spread, not only the rarest's
        per_fold = np.bincount(folds[y[:, j] == 1], minlength=5)
        assert per_fold.max() - per_fold.min() <= max(3, 0.25 * per_fold.mean())
    assert not np.array_equal(folds, label_stratified_folds(y, 5, seed=4))


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_cross_fit_scores_come_from_calibrators_that_did_not_see_the_row(method):
    z, y = _logits_data(2000, [0.1, 0.4], scale=3.0, seed=13)
    p = to_probabilities(z)
    result = cross_fit_calibrate(p, y, method, n_folds=4, seed=0)
    np.testing.assert_array_equal(result.calibrator.apply(p), fit_calibrator(p, y, method).apply(p))
    for k in range(4):
        held = result.folds == k
        fold_fit = fit_calibrator(p[~held], y[~held], method)
        np.testing.assert_array_equal(result.calibrated[held], fold_fit.apply(p[held]))
    # Out-of-fold isotonic is not the in-sample fit (which has memorised its rows).
    assert not np.allclose(result.calibrated, result.calibrator.apply(p))
    assert expected_calibration_error(result.calibrated, y)[1] < expected_calibration_error(p, y)[1]


def test_cross_fit_leaves_a_label_raw_everywhere_when_a_fold_cannot_fit_it():
    z, y = _logits_data(1000, [0.4, 0.4], scale=3.0, seed=14)
    y[:, 1] = 0
    y[:4, 1] = 1  # 4 positives, 2 per fold: enough to fit on all rows, not on one fold's rest
    result = cross_fit_calibrate(z, y, "platt", n_folds=2, logits=True, min_count=3)
    assert fit_calibrator(z, y, "platt", logits=True).fitted.tolist() == [True, True]
    assert result.calibrator.fitted.tolist() == [True, False]
    np.testing.assert_allclose(result.calibrated[:, 1], to_probabilities(z[:, 1]), atol=1e-12)
    none = cross_fit_calibrate(z, y, "none", logits=True)
    np.testing.assert_allclose(none.calibrated, to_probabilities(z))


# -- metrics ----------------------------------------------------------------------------------


def test_ece_and_reliability_match_sklearn_calibration_curve():
    z, y = _logits_data(3000, [0.2, 0.5], scale=2.0, seed=15)
    p = to_probabilities(z)
    p[:10, 0] = [0.0, 1.0, 1 / 15, 2 / 15, 0.2, 14 / 15, 0.5, 0.4, 1e-9, 1 - 1e-9]  # bin edges
    ece, pooled = expected_calibration_error(p, y)
    diagrams = reliability_diagrams(p, y)
    for j in range(2):
        prob_true, prob_pred = calibration_curve(y[:, j], p[:, j], n_bins=15, strategy="uniform")
        counts = np.array(diagrams[j]["counts"])
        filled = counts > 0
        np.testing.assert_allclose(np.array(diagrams[j]["observed"])[filled], prob_true)
        np.testing.assert_allclose(np.array(diagrams[j]["mean_predicted"])[filled], prob_pred)
        assert counts.sum() == len(p)
        assert ece[j] == pytest.approx(
            np.sum(counts[filled] / len(p) * np.abs(prob_true - prob_pred))
        )
    # Pooled: all n * L predictions in one calibration curve.
    prob_true, prob_pred = calibration_curve(y.ravel(), p.ravel(), n_bins=15)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 16)[1:-1], p.ravel()), minlength=15)
    assert pooled == pytest.approx(
        np.sum(counts[counts > 0] / p.size * np.abs(prob_true - prob_pred))
    )


def test_brier_matches_sklearn_and_report_is_json_ready():
    z, y = _logits_data(1000, [0.3, 0.6], seed=16)
    p = to_probabilities(z)
    per_label, overall = brier_score(p, y)
    for j in range(2):
        assert per_label[j] == pytest.approx(brier_score_loss(y[:, j], p[:, j]))
    assert overall == pytest.approx(per_label.mean())
    report = calibration_report(p, y, label_names=["a", "b"])
    text = json.dumps(report)  # no numpy types, no NaN
    assert "NaN" not in text
    assert [row["label"] for row in report["per_label"]] == ["a", "b"]
    assert report["ece"] <= report["ece_mean"] + 1e-12


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([[1.5]]), np.array([[1]]))
    with pytest.raises(ValueError, match="one shape"):
        brier_score(np.zeros((3, 2)), np.zeros((3, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        brier_score(np.zeros((3, 2)), np.zeros((3, 2)))
