"""tuning.evaluate: fixed thresholds scored against scikit-learn's metrics as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from labelcut.tuning.evaluate import evaluate_thresholds


def _data(seed: int, n: int = 300, n_labels: int = 6):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, n_labels)) < rng.uniform(0.05, 0.5, n_labels)).astype(np.uint8)
    # Scores that carry some signal, with ties (rounded) so >= matters.
    scores = np.clip(0.35 * targets + rng.random((n, n_labels)) * 0.65, 0, 1).round(2)
    thresholds = rng.uniform(0.2, 0.8, n_labels)
    return scores.astype(np.float32), targets, thresholds


def _sklearn(scores, targets, thresholds, average):
    predicted = (scores >= thresholds[None, :]).astype(int)
    # The project's conventions: precision 1 with nothing predicted, recall and F1 0.
    precision = precision_recall_fscore_support(
        targets, predicted, average=average, zero_division=1.0
    )[0]
    _, recall, f1, _ = precision_recall_fscore_support(
        targets, predicted, average=average, zero_division=0.0
    )
    return precision, recall, f1


@pytest.mark.parametrize("seed", range(5))
def test_per_label_and_averages_match_sklearn(seed):
    scores, targets, thresholds = _data(seed)
    found = evaluate_thresholds(scores, targets, thresholds)
    for key, limits in (("at_threshold", thresholds), ("at_default", np.full(6, 0.5))):
        precision, recall, f1 = _sklearn(scores, targets, limits, None)
        rows = [row[key] for row in found["per_label"]]
        np.testing.assert_allclose([r["precision"] for r in rows], precision)
        np.testing.assert_allclose([r["recall"] for r in rows], recall)
        np.testing.assert_allclose([r["f1"] for r in rows], f1)
        for average in ("macro", "micro"):
            precision, recall, f1 = _sklearn(scores, targets, limits, average)
            got = found["summary"][key][average]
            np.testing.assert_allclose(
                [got["precision"], got["recall"], got["f1"]], [precision, recall, f1]
            )
    assert [row["support"] for row in found["per_label"]] == targets.sum(axis=0).tolist()
    assert found["n_samples"] == len(scores)


def test_a_score_equal_to_its_threshold_is_positive():
    scores = np.array([[0.3], [0.3], [0.29]], dtype=np.float32)
    targets = np.array([[1], [0], [1]])
    found = evaluate_thresholds(scores, targets, np.array([np.float32(0.3)]))
    point = found["per_label"][0]["at_threshold"]
    assert point["predicted_positives"] == 2 and point["true_positives"] == 1


def test_edge_labels_follow_the_tuning_conventions():
    # label 0 never positive and never predicted; label 1 positive but never predicted.
    scores = np.array([[0.1, 0.2], [0.2, 0.1]], dtype=np.float32)
    targets = np.array([[0, 1], [0, 0]])
    found = evaluate_thresholds(scores, targets, np.array([0.9, 0.9]), label_names=["a", "b"])
    a, b = (row["at_threshold"] for row in found["per_label"])
    assert (a["precision"], a["recall"], a["f1"]) == (1.0, 0.0, 0.0)
    assert (b["precision"], b["recall"], b["f1"]) == (1.0, 0.0, 0.0)
    assert found["per_label"][1]["label"] == "b"
    micro = found["summary"]["at_threshold"]["micro"]
    assert micro == {"precision": 1.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize(
    ("scores", "targets", "thresholds", "message"),
    [
        ([[0.5, 0.5]], [[1, 0]], [0.5], "threshold"),
        ([[0.5, 0.5]], [[1, 2]], [0.5, 0.5], "label 1 holds 2"),
        ([[0.5, 0.5]], [[1]], [0.5, 0.5], "shape"),
        ([[1.5, 0.5]], [[1, 0]], [0.5, 0.5], "[0, 1]"),
        ([[0.5, 0.5]], [[1, 0]], [0.5, 1.5], "1.5"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_problem(scores, targets, thresholds, message):
    with pytest.raises(ValueError) as info:
        evaluate_thresholds(np.array(scores), np.array(targets), np.array(thresholds))
    assert message in str(info.value)
