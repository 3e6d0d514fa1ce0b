"""Downsampled curves keep their ends and the asked-for operating points exactly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from labelcut import tuning


def test_small_curves_are_kept_whole():
    scores = np.array([[0.1], [0.4], [0.35], [0.8]])
    targets = np.array([[0], [0], [1], [1]])
    [curve] = tuning.compact_curves(scores, targets, max_points=10)
    precision, recall, thresholds = precision_recall_curve(targets[:, 0], scores[:, 0])
    np.testing.assert_array_equal(curve.precision, precision)
    np.testing.assert_array_equal(curve.recall, recall)
    np.testing.assert_array_equal(curve.thresholds, thresholds)


@pytest.mark.parametrize("seed", range(5))
def test_large_curves_shrink_and_keep_the_chosen_points(seed):
    rng = np.random.default_rng(seed)
    n, labels = 5000, 3
    targets = (rng.random((n, labels)) < 0.3).astype(np.uint8)
    scores = np.clip(rng.normal(0.3 + 0.3 * targets, 0.2), 0, 1).astype(np.float32)
    result = tuning.tune_thresholds(scores, targets)
    keep = np.stack([result.thresholds, np.full(labels, 0.5)], axis=1)
    curves = tuning.compact_curves(scores, targets, keep=keep, max_points=200)
    for j, curve in enumerate(curves):
        assert len(curve.precision) <= 203 and len(curve.precision) == len(curve.thresholds) + 1
        assert np.all(np.diff(curve.thresholds) > 0)
        full_p, full_r, full_t = precision_recall_curve(targets[:, j], scores[:, j])
        # every kept point is a point of the full curve, with the same meaning
        where = np.searchsorted(full_t, curve.thresholds)
        np.testing.assert_array_equal(full_t[where], curve.thresholds)
        np.testing.assert_array_equal(full_p[where], curve.precision[:-1])
        np.testing.assert_array_equal(full_r[where], curve.recall[:-1])
        assert (curve.precision[-1], curve.recall[-1]) == (1.0, 0.0)
        assert curve.thresholds[0] == full_t[0]
        # the tuned operating point is on the compact curve exactly
        i = tuning.operating_index(curve, result.thresholds[j])
        assert curve.precision[i] == pytest.approx(result.precision[j], abs=0)
        assert curve.recall[i] == pytest.approx(result.recall[j], abs=0)
        k = tuning.operating_index(curve, 0.5)
        assert curve.recall[k] == pytest.approx(result.default_recall[j], abs=0)


def test_bad_arguments():
    scores = np.random.default_rng(0).random((10, 2))
    targets = np.zeros((10, 2))
    with pytest.raises(ValueError, match="keep"):
        tuning.compact_curves(scores, targets, keep=np.zeros((3, 1)))
    [curve, _] = tuning.compact_curves(scores, targets)
    with pytest.raises(ValueError, match="max_points"):
        tuning.downsample_curve(curve, max_points=1)
