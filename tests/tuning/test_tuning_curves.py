"""precision_recall_curves equals sklearn's precision_recall_curve, value for value."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_curve

from labelcut.tuning import PRCurve, precision_recall_curves


def sklearn_curve(targets, scores):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No positive class found in y_true"
        return precision_recall_curve(targets, scores)


def assert_same_as_sklearn(scores, targets, curves):
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    assert len(curves) == scores.shape[1]
    for j, curve in enumerate(curves):
        assert isinstance(curve, PRCurve)
        precision, recall, thresholds = sklearn_curve(targets[:, j], scores[:, j])
        assert np.array_equal(curve.precision, precision)
        assert np.array_equal(curve.recall, recall)
        assert np.array_equal(curve.thresholds, thresholds)
        # Invariants of sklearn's layout.
        assert len(curve.precision) == len(curve.recall) == len(curve.thresholds) + 1
        assert curve.precision[-1] == 1.0 and curve.recall[-1] == 0.0
        assert np.all(np.diff(curve.thresholds) > 0)
        assert np.all(np.diff(curve.recall) <= 0)


@pytest.mark.parametrize("seed", range(25))
def test_random_curves_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, n_labels = int(rng.integers(1, 300)), int(rng.integers(1, 5))
    scores = rng.random((n, n_labels))
    if seed % 3 == 0:
        scores = np.round(scores, 1)  # ties
    targets = (rng.random((n, n_labels)) < scores).astype(np.int32)
    with np.errstate(all="raise"):
        curves = precision_recall_curves(scores, targets)
    assert_same_as_sklearn(scores, targets, curves)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_curves_for_each_dtype(dtype):
    rng = np.random.default_rng(3)
    scores = rng.random((500, 3)).astype(dtype)
    targets = rng.random((500, 3)) < 0.3
    assert_same_as_sklearn(scores, targets, precision_recall_curves(scores, targets))


def test_torch_input_and_edge_labels():
    # Columns: no positives, no negatives, all-equal scores, and 0.0 next to 1.0.
    scores = torch.tensor([[0.2, 0.2, 0.5, 0.0], [0.4, 0.9, 0.5, 1.0], [0.4, 0.1, 0.5, 1.0]])
    targets = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)
    curves = precision_recall_curves(scores, targets)
    assert_same_as_sklearn(scores.numpy(), targets.numpy(), curves)
    # With no positives sklearn sets recall to 1 at every threshold.
    assert curves[0].recall.tolist() == [1.0, 1.0, 0.0]


def test_hand_computed_curve():
    # 0.1 0.4 0.35 0.8 with targets 0 0 1 1 (sklearn's docstring example):
    #   >= 0.1: tp 2 pp 4 -> p 0.5, r 1;   >= 0.35: tp 2 pp 3 -> p 2/3, r 1;
    #   >= 0.4: tp 1 pp 2 -> p 0.5, r 0.5; >= 0.8:  tp 1 pp 1 -> p 1,   r 0.5; then (1, 0).
    [curve] = precision_recall_curves(np.array([[0.1], [0.4], [0.35], [0.8]]), [[0], [0], [1], [1]])
    assert curve.thresholds.tolist() == [0.1, 0.35, 0.4, 0.8]
    assert curve.precision.tolist() == [0.5, 2 / 3, 0.5, 1.0, 1.0]
    assert curve.recall.tolist() == [1.0, 1.0, 0.5, 0.5, 0.0]
