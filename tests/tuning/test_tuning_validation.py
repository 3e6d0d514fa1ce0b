"""Bad input raises ValueError with a sentence that names the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelcut.tuning import apply_thresholds, precision_recall_curves, tune_thresholds

SCORES = np.array([[0.1, 0.9], [0.8, 0.3], [0.6, 0.4]])
TARGETS = np.array([[0, 1], [1, 0], [1, 1]])


@pytest.mark.parametrize(
    ("scores", "targets", "kwargs", "match"),
    [
        (SCORES[:, 0], TARGETS[:, 0], {}, "scores must be a 2-D array"),
        (SCORES[:0], TARGETS[:0], {}, "scores must hold at least one sample"),
        (np.zeros((3, 0)), np.zeros((3, 0)), {}, "scores must hold at least one sample"),
        (SCORES, TARGETS[:2], {}, r"targets must have the same shape as scores \(3, 2\)"),
        (SCORES, TARGETS.T, {}, "targets must have the same shape"),
        (np.where(SCORES > 0.85, np.nan, SCORES), TARGETS, {}, "scores must not contain NaN"),
        (np.where(SCORES > 0.85, np.inf, SCORES), TARGETS, {}, "scores must be finite"),
        (SCORES * 2, TARGETS, {}, r"scores must lie in \[0, 1\]"),
        (SCORES - 0.2, TARGETS, {}, r"scores must lie in \[0, 1\]"),
        ((SCORES * 10).astype(int), TARGETS, {}, "scores must have a floating-point dtype"),
        (SCORES, TARGETS * 2, {}, "targets must hold only 0 and 1"),
        (SCORES, TARGETS - 1, {}, "targets must hold only 0 and 1"),
        (SCORES, TARGETS * 0.5, {}, "targets must hold only 0 and 1"),
        (SCORES, np.where(TARGETS == 1, np.nan, 0.0), {}, "targets must hold only 0 and 1"),
        (SCORES, np.array([["a", "b"]] * 3), {}, "targets must be an array of numbers"),
        (SCORES, TARGETS, {"objective": "accuracy"}, "objective must be one of f1, fbeta"),
        (SCORES, TARGETS, {"objective": "fbeta", "beta": 0}, "beta must be a finite number"),
        (SCORES, TARGETS, {"beta": -1.0}, "beta must be a finite number greater than 0"),
        (SCORES, TARGETS, {"beta": float("nan")}, "beta must be"),
        (SCORES, TARGETS, {"objective": "recall_at_precision"}, "target is required"),
        (SCORES, TARGETS, {"objective": "precision_at_recall"}, "target is required"),
        (
            SCORES,
            TARGETS,
            {"objective": "precision_at_recall", "target": 0.0},
            r"target must be a number in \(0, 1\]",
        ),
        (SCORES, TARGETS, {"objective": "recall_at_precision", "target": 1.5}, "target must be"),
        (SCORES, TARGETS, {"target": "0.5"}, "target must be"),
        (SCORES, TARGETS, {"min_positives": -1}, "min_positives must be 0 or more"),
        (SCORES, TARGETS, {"min_positives": 1.5}, "min_positives must be an integer"),
        (SCORES, TARGETS, {"fallback": 1.5}, r"fallback must be a threshold in \[0, 1\]"),
        (SCORES, TARGETS, {"device": "tpu"}, 'device must be "auto", "cpu", "cuda"'),
        (SCORES, TARGETS, {"device": "nonsense:x"}, "device must be"),
    ],
)
def test_tune_thresholds_rejects_bad_input(scores, targets, kwargs, match):
    objective = kwargs.pop("objective", "f1")
    with pytest.raises(ValueError, match=match) as info:
        tune_thresholds(scores, targets, objective, **kwargs)
    message = str(info.value)
    assert message[0].isalpha() and message.endswith(".")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="device is 'cuda', but CUDA is not available"):
        tune_thresholds(SCORES, TARGETS, device="cuda")


def test_precision_recall_curves_validates_too():
    with pytest.raises(ValueError, match="targets must hold only 0 and 1"):
        precision_recall_curves(SCORES, TARGETS + 1)
    with pytest.raises(ValueError, match="scores must be a 2-D array"):
        precision_recall_curves([0.1, 0.2], [0, 1])


def test_apply_thresholds_validates():
    with pytest.raises(ValueError, match=r"thresholds must have shape \(2,\)"):
        apply_thresholds(SCORES, [0.5])
    with pytest.raises(ValueError, match="thresholds must be finite"):
        apply_thresholds(SCORES, [0.5, np.nan])


def test_inputs_are_not_modified():
    scores, targets = SCORES.copy(), TARGETS.copy()
    scores.flags.writeable = False
    tune_thresholds(scores, targets, device="cpu")
    precision_recall_curves(scores, targets)
    assert np.array_equal(scores, SCORES) and np.array_equal(targets, TARGETS)
