"""Torch and numpy inputs, dtypes, and the torch/CUDA backend agreeing with the CPU one."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from labelcut.tuning import apply_thresholds
from labelcut.tuning import tune_thresholds as _tune_thresholds
from labelcut.tuning._checks import TuningSpec
from labelcut.tuning._search import tune_labels_cpu, tune_labels_torch

# These tests pin the per-label search itself: the default strategy pulls rare labels
# toward a shared threshold, and the bootstrap is tested in test_tuning_decision_quality.
tune_thresholds = functools.partial(_tune_thresholds, strategy="per_label", n_bootstrap=0)

SPECS = [
    TuningSpec("f1", 1.0, None, 1, 0.5),
    TuningSpec("fbeta", 2.0, None, 3, 0.3),
    TuningSpec("recall_at_precision", 1.0, 0.7, 1, 0.5),
    TuningSpec("precision_at_recall", 1.0, 0.6, 1, 0.5),
]


def make_problem(seed: int, n: int = 300, n_labels: int = 6):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, n_labels))
    scores[:, 0] = np.round(scores[:, 0], 1)  # ties
    scores[: n // 3, 1] = 1.0  # saturated
    targets = rng.random((n, n_labels)) < scores
    targets[:, 2] = False  # no positives
    targets[:, 3] = True  # no negatives
    return scores, targets


def assert_same_outcomes(left, right):
    assert left.statuses == right.statuses
    assert np.array_equal(left.thresholds, right.thresholds)
    for name in (
        "positives",
        "true_positives",
        "predicted_positives",
        "default_true_positives",
        "default_predicted_positives",
    ):
        assert np.array_equal(getattr(left, name), getattr(right, name)), name


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.objective)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_backend_matches_cpu_backend(spec, dtype):
    scores, targets = make_problem(1)
    score_tensor = torch.from_numpy(scores).to(dtype)
    target_tensor = torch.from_numpy(targets)
    cpu = tune_labels_cpu(score_tensor, target_tensor, spec)
    on_torch = tune_labels_torch(score_tensor, target_tensor, spec, torch.device("cpu"))
    assert_same_outcomes(cpu, on_torch)


TARGET_DTYPES = [torch.bool, torch.int8, torch.uint8, torch.int64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("target_dtype", TARGET_DTYPES)
@pytest.mark.parametrize("score_dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_torch_inputs_match_numpy_inputs(score_dtype, target_dtype):
    scores, targets = make_problem(2)
    score_tensor = torch.from_numpy(scores).to(score_dtype)
    from_torch = tune_thresholds(score_tensor, torch.from_numpy(targets).to(target_dtype))
    # bfloat16 has no numpy dtype: compare with its exact float32 widening.
    widened = score_tensor.to(torch.float32 if score_dtype == torch.bfloat16 else score_dtype)
    from_numpy = tune_thresholds(widened.numpy(), targets.astype(np.float32), device="cpu")
    assert from_torch.status == from_numpy.status
    assert np.array_equal(from_torch.predicted_positives, from_numpy.predicted_positives)
    assert np.array_equal(from_torch.f1, from_numpy.f1)
    predicted = apply_thresholds(score_tensor, from_torch.thresholds)
    assert np.array_equal(predicted.sum(axis=0), from_torch.predicted_positives)


@pytest.mark.parametrize("target_dtype", TARGET_DTYPES)
def test_every_target_dtype_gives_the_bool_targets_whole_result(target_dtype):
    # The default path reads targets in the fold order, the estimate and the plug-in stage
    # too; bfloat16 (no numpy dtype) once failed there.
    scores, targets = make_problem(6, n=600, n_labels=4)
    expected = tune_thresholds(scores, targets.astype(bool), return_curves=True).to_dict()
    found = tune_thresholds(
        scores, torch.from_numpy(targets).to(target_dtype), return_curves=True
    ).to_dict()
    for key in ("thresholds", "per_label", "summary", "diagnosis"):
        assert found[key] == expected[key], key


def test_strided_and_fortran_inputs():
    scores, targets = make_problem(3)
    expected = tune_thresholds(scores, targets, device="cpu")
    fortran = tune_thresholds(np.asfortranarray(scores), np.asfortranarray(targets), device="cpu")
    reversed_rows = tune_thresholds(scores[::-1], targets[::-1], device="cpu")
    for result in (fortran, reversed_rows):
        assert np.array_equal(result.thresholds, expected.thresholds)
        assert result.status == expected.status


def test_lists_are_accepted():
    result = tune_thresholds([[0.9], [0.2]], [[1], [0]], device="cpu")
    assert result.thresholds.tolist() == [(0.9 + 0.2) / 2]


def test_many_labels_span_several_blocks(monkeypatch):
    from labelcut import tuning

    scores, targets = make_problem(4, n=300, n_labels=7)
    # "per_label" keeps no keys (later blocks reuse the first one's memory); the default
    # keeps them all for the second walk.
    for strategy in ("per_label", "adaptive"):
        monkeypatch.setattr(tuning._sorted, "_BLOCK_ELEMENTS", 600)  # 2 labels per block
        blocked = tune_thresholds(
            scores, targets, device="cpu", strategy=strategy, return_curves=True
        )
        monkeypatch.undo()
        whole = tune_thresholds(
            scores, targets, device="cpu", strategy=strategy, return_curves=True
        )
        assert np.array_equal(blocked.thresholds, whole.thresholds)
        assert blocked.status == whole.status
        for mine, theirs in zip(blocked.curves, whole.curves, strict=True):
            for field in ("precision", "recall", "thresholds"):
                np.testing.assert_array_equal(getattr(mine, field), getattr(theirs, field))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.objective)
def test_cuda_matches_cpu(spec):
    scores, targets = make_problem(5, n=5000)
    kwargs = {"beta": spec.beta, "target": spec.target, "min_positives": spec.min_positives}
    cpu = tune_thresholds(scores, targets, spec.objective, device="cpu", **kwargs)
    for inputs in ((scores, targets), (torch.from_numpy(scores).cuda(), torch.tensor(targets))):
        cuda = tune_thresholds(*inputs, spec.objective, device="cuda", **kwargs)
        assert cuda.status == cpu.status
        assert np.array_equal(cuda.thresholds, cpu.thresholds)
        assert np.array_equal(cuda.predicted_positives, cpu.predicted_positives)
        assert np.array_equal(cuda.default_f1, cpu.default_f1)
