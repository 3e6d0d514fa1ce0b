"""tuning.cutpoints: every label's cuts against scikit-learn's precision_recall_curve, and the
midpoint thresholds that reproduce each cut in every float dtype."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from labelcut.tuning.cutpoints import (
    all_cut_thresholds,
    as_float_array,
    cut_threshold,
    iter_label_cuts,
)


@pytest.mark.parametrize("seed", range(3))
def test_cuts_are_sklearns_curve_plus_predict_nothing(seed):
    rng = np.random.default_rng(seed)
    targets = rng.random((300, 4)) < [0.0, 0.05, 0.3, 0.7]
    scores = np.round(rng.random((300, 4)), 2)  # ties
    for j, cuts in enumerate(iter_label_cuts(scores, targets)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no positives in label 0
            precision, recall, thresholds = precision_recall_curve(targets[:, j], scores[:, j])
        np.testing.assert_array_equal(cuts.values, thresholds)
        tp, pp = cuts.true_positives, cuts.predicted_positives
        assert (tp[-1], pp[-1]) == (0, 0)  # cut m: predict nothing
        np.testing.assert_array_equal(tp[:-1] / pp[:-1], precision[:-1])
        if cuts.positives:
            np.testing.assert_array_equal(tp / cuts.positives, recall)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_thresholds_reproduce_every_cut(dtype):
    rng = np.random.default_rng(4)
    scores = rng.random((200, 2)).astype(dtype)
    scores[:3, 0] = [0.0, 1.0, np.nextafter(dtype(1), dtype(0))]  # both ends of [0, 1]
    targets = rng.random((200, 2)) < 0.4
    for j, cuts in enumerate(iter_label_cuts(as_float_array(scores), targets)):
        column = scores[:, j].astype(np.float64)
        for index in range(cuts.nothing + 1):
            threshold = cut_threshold(cuts, index, scores.dtype)
            assert float(dtype(threshold)) == threshold  # representable in the scores' dtype
            assert (column >= threshold).sum() == cuts.predicted_positives[index]
            if index < cuts.nothing:
                assert threshold <= 1.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_cut_thresholds_equal_one_at_a_time(dtype):
    rng = np.random.default_rng(5)
    scores = rng.random((300, 2)).astype(dtype)
    scores[:2, 1] = [0.0, 1.0]
    for cuts in iter_label_cuts(as_float_array(scores), rng.random((300, 2)) < 0.3):
        expected = [cut_threshold(cuts, i, scores.dtype) for i in range(cuts.nothing + 1)]
        np.testing.assert_array_equal(all_cut_thresholds(cuts, scores.dtype), expected)


def test_torch_tensors_are_accepted_like_numpy():
    import torch

    from labelcut.tuning.costs import tune_costs
    from labelcut.tuning.micro import tune_micro_fbeta

    rng = np.random.default_rng(9)
    targets = rng.random((100, 3)) < 0.3
    scores = rng.random((100, 3)).astype(np.float32)
    for tensor in (torch.from_numpy(scores), torch.from_numpy(scores).to(torch.bfloat16)):
        widened = tensor.float().numpy()
        np.testing.assert_array_equal(
            tune_costs(tensor, torch.from_numpy(targets), 1.0, 2.0).thresholds,
            tune_costs(widened, targets, 1.0, 2.0).thresholds,
        )
        np.testing.assert_array_equal(
            tune_micro_fbeta(tensor, targets, start_threshold=0.5).thresholds,
            tune_micro_fbeta(widened, targets, start_threshold=0.5).thresholds,
        )


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.array([0.1, 0.2]), "2-D"),
        (np.array([[0.1, np.nan]]), "finite"),
        (np.array([[0.1, 1.5]]), r"\[0, 1\]"),
        (np.array([["a"]]), "float array"),
    ],
)
def test_bad_scores_are_refused(scores, message):
    with pytest.raises(ValueError, match=message):
        as_float_array(scores)
