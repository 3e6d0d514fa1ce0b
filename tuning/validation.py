"""Argument and array checks for the public tuning functions.

Everything here runs once, at the public boundary; the inner numerics trust
what these functions return. Every error is a ``ValueError`` whose message is
a full sentence naming the argument, what was expected and what was received.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import torch

from labelcut.tuning.strategies import STRATEGIES

OBJECTIVES: tuple[str, ...] = ("f1", "fbeta", "recall_at_precision", "precision_at_recall")
CONSTRAINED_OBJECTIVES: frozenset[str] = frozenset({"recall_at_precision", "precision_at_recall"})

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Float targets are checked for exact 0/1 in blocks of this many elements so
# the check never allocates a mask of the whole input.
_CHECK_BLOCK = 1 << 22


def as_tensor(array: Any, name: str) -> torch.Tensor:
    """Return ``array`` as a torch tensor without copying numpy or torch input.

    Lists and other array-likes are converted with ``np.asarray``. Read-only
    numpy arrays are shared, not copied: nothing in this package writes to its
    inputs.
    """
    if isinstance(array, torch.Tensor):
        return array.detach()
    try:
        values = np.asarray(array)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be an array of numbers, but it could not be read: {error}."
        ) from None
    if values.dtype == object or not (
        np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_
    ):
        raise ValueError(f"{name} must be an array of numbers, but its dtype is {values.dtype}.")
    if any(stride < 0 for stride in values.strides):
        values = np.ascontiguousarray(values)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(values)


def check_scores(scores: Any) -> torch.Tensor:
    """Check ``scores`` is a non-empty ``(n, L)`` float array of probabilities in [0, 1].

    Returns the scores as a tensor (shared with the input where possible).
    """
    values = as_tensor(scores, "scores")
    if values.ndim != 2:
        raise ValueError(
            "scores must be a 2-D array of shape (n_samples, n_labels), "
            f"but it has {values.ndim} dimension(s) with shape {tuple(values.shape)}."
        )
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(
            "scores must hold at least one sample and one label, "
            f"but its shape is {tuple(values.shape)}."
        )
    if values.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            "scores must have a floating-point dtype (float16, bfloat16, float32 or float64), "
            f"but its dtype is {str(values.dtype).removeprefix('torch.')}."
        )
    # min/max propagate NaN, so one parallel pass finds NaN, inf and out-of-range values.
    low, high = (float(v) for v in torch.aminmax(values))
    if math.isnan(low) or math.isnan(high):
        raise ValueError("scores must not contain NaN, but it does.")
    if math.isinf(low) or math.isinf(high):
        raise ValueError("scores must be finite, but it contains an infinite value.")
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"scores must lie in [0, 1], but they range from {low!r} to {high!r}; "
            "pass probabilities (for example sigmoid outputs), not logits."
        )
    return values


def check_targets(targets: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """Check ``targets`` has the scores' ``shape`` and holds only 0 and 1.

    Any bool, integer or float dtype is accepted. Returns a tensor.
    """
    values = as_tensor(targets, "targets")
    if tuple(values.shape) != tuple(shape):
        raise ValueError(
            f"targets must have the same shape as scores {tuple(shape)}, "
            f"but its shape is {tuple(values.shape)}."
        )
    if values.dtype == torch.bool:
        return values
    if values.is_complex():
        raise ValueError(f"targets must hold 0 and 1, but its dtype is {values.dtype}.")
    if values.is_floating_point():
        flat = values.reshape(-1)
        for start in range(0, flat.numel(), _CHECK_BLOCK):
            block = flat[start : start + _CHECK_BLOCK]
            if not bool(((block == 0) | (block == 1)).all()):
                raise ValueError("targets must hold only 0 and 1, but it holds other values.")
        return values
    low, high = (int(v) for v in torch.aminmax(values))
    if low < 0 or high > 1:
        raise ValueError(
            f"targets must hold only 0 and 1, but its values range from {low} to {high}."
        )
    return values


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_objective(objective: Any) -> str:
    """Check ``objective`` is one of :data:`OBJECTIVES` and return it."""
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise ValueError(
            f"objective must be one of {', '.join(OBJECTIVES)}, but got {objective!r}."
        )
    return objective


def check_beta(beta: Any) -> float:
    """Check ``beta`` is a finite number > 0 and return it as a float."""
    if not _is_real(beta) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number greater than 0, but got {beta!r}.")
    return float(beta)


def check_target(target: Any, objective: str) -> float | None:
    """Check ``target``: required in (0, 1] for the constrained objectives.

    For "f1" and "fbeta" it may be None; when given it is still checked, and
    recorded, but it does not affect the result.
    """
    if target is None:
        if objective in CONSTRAINED_OBJECTIVES:
            raise ValueError(
                f"target is required for objective {objective!r}: "
                "pass the minimum precision or recall as a number in (0, 1]."
            )
        return None
    if not _is_real(target) or not math.isfinite(target) or not 0 < target <= 1:
        raise ValueError(f"target must be a number in (0, 1], but got {target!r}.")
    return float(target)


def check_min_positives(min_positives: Any) -> int:
    """Check ``min_positives`` is an integer >= 0 and return it."""
    if not isinstance(min_positives, numbers.Integral) or isinstance(min_positives, bool):
        raise ValueError(f"min_positives must be an integer, but got {min_positives!r}.")
    if min_positives < 0:
        raise ValueError(f"min_positives must be 0 or more, but got {min_positives!r}.")
    return int(min_positives)


def check_fallback(fallback: Any) -> float:
    """Check ``fallback`` is a threshold in [0, 1] and return it as a float."""
    if not _is_real(fallback) or not math.isfinite(fallback) or not 0 <= fallback <= 1:
        raise ValueError(f"fallback must be a threshold in [0, 1], but got {fallback!r}.")
    return float(fallback)


def check_thresholds(thresholds: Any, n_labels: int) -> torch.Tensor:
    """Check ``thresholds`` is a finite ``(L,)`` array; return it as a float64 CPU tensor."""
    values = as_tensor(thresholds, "thresholds")
    if tuple(values.shape) != (n_labels,):
        raise ValueError(
            f"thresholds must have shape ({n_labels},), one per label of scores, "
            f"but its shape is {tuple(values.shape)}."
        )
    values = values.to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError("thresholds must be finite numbers, but it contains NaN or inf.")
    return values


def check_strategy(strategy: Any) -> str:
    """Check ``strategy`` is one of :data:`tuning.strategies.STRATEGIES` and return it."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, but got {strategy!r}.")
    return strategy


def check_shrinkage(shrinkage: Any) -> float:
    """Check ``shrinkage`` is a finite number >= 0 and return it as a float."""
    if not _is_real(shrinkage) or not math.isfinite(shrinkage) or shrinkage < 0:
        raise ValueError(f"shrinkage must be a finite number of 0 or more, but got {shrinkage!r}.")
    return float(shrinkage)


def check_n_bootstrap(n_bootstrap: Any) -> int:
    """Check ``n_bootstrap`` is an integer in [0, 10000] and return it."""
    if (
        not isinstance(n_bootstrap, numbers.Integral)
        or isinstance(n_bootstrap, bool)
        or not 0 <= n_bootstrap <= 10_000
    ):
        raise ValueError(
            f"n_bootstrap must be an integer from 0 to 10000, but got {n_bootstrap!r}."
        )
    return int(n_bootstrap)


def check_seed(seed: Any) -> int:
    """Check ``seed`` is an integer >= 0 and return it."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer of 0 or more, but got {seed!r}.")
    return int(seed)


def check_confidence(confidence: Any) -> float:
    """Check ``confidence`` is a number in (0, 1) and return it as a float."""
    if not _is_real(confidence) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), but got {confidence!r}.")
    return float(confidence)


def resolve_device(device: Any) -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" (or a torch.device) into a usable device.

    "auto" picks CUDA when it is available, else the CPU.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f'device must be "auto", "cpu", "cuda" or "cuda:N", but got {device!r}.'
        ) from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise ValueError(f'device must be "auto", "cpu", "cuda" or "cuda:N", but got {device!r}.')
    if not torch.cuda.is_available():
        raise ValueError(f"device is {device!r}, but CUDA is not available on this machine.")
    index = resolved.index if resolved.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device is {device!r}, but this machine has {torch.cuda.device_count()} "
            "CUDA device(s)."
        )
    return torch.device("cuda", index)
