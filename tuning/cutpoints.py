"""Every cut of every label, counted exactly, for the objectives that need "predict nothing".

A label's cuts, in increasing order of threshold: cut ``i < m`` predicts positive
iff ``score >= values[i]`` (``values``: the label's ``m`` distinct scores,
increasing), cut ``m`` predicts nothing. Cuts ``0 .. m-1`` are the points of
``sklearn.metrics.precision_recall_curve`` (``drop_intermediate=False``); cut
``m`` is its final ``(precision 1, recall 0)`` point.

Thresholds follow the rules of ``tune_thresholds``: the midpoint between the cut's
lowest predicted score and the highest score below it (0 below cut 0), rounded
to the scores' dtype so that ``score >= threshold`` (compared in float64)
reproduces the cut exactly; if rounding leaves the gap, the cut's own score is
used. "Predict nothing" takes the midpoint between the label's highest score and
1.0, so it stays in [0, 1]; when the highest score is 1.0 itself no threshold in
[0, 1] predicts nothing, and the threshold is the next float above 1.0 in the
scores' dtype (1 + 2**-23 for float32), which is the one case a threshold
leaves [0, 1].

This module depends on numpy only; it accepts numpy arrays and (CPU or CUDA)
torch tensors, which it copies to the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_BLOCK_ELEMENTS = 1 << 22  # elements per row block when checking inputs


@dataclass(frozen=True)
class LabelCuts:
    """One label's cuts (see the module docstring).

    ``values`` (m,) float64: distinct scores, increasing. ``true_positives`` and
    ``predicted_positives`` (m + 1,) int64: counts of cut ``i`` (the last, cut
    ``m``, is "predict nothing": 0 and 0). ``n_samples`` and ``positives``: the
    label's totals.
    """

    values: np.ndarray
    true_positives: np.ndarray
    predicted_positives: np.ndarray
    n_samples: int
    positives: int

    @property
    def nothing(self) -> int:
        """Index of the "predict nothing" cut."""
        return len(self.values)

    def cut_at(self, threshold: float) -> int:
        """Index of the cut that ``score >= threshold`` (float64 comparison) makes."""
        return int(np.searchsorted(self.values, float(threshold), side="left"))


def as_float_array(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores`` as a 2-D numpy float array in its own dtype (bfloat16 widened to float32).

    Raises ``ValueError`` unless it is ``(n, L)`` with n, L >= 1, finite, in [0, 1].
    """
    if hasattr(scores, "detach"):  # a torch tensor, on any device
        scores = scores.detach().cpu()
        if str(scores.dtype) == "torch.bfloat16":
            scores = scores.float()
        scores = scores.numpy()
    array = np.asarray(scores)
    if array.dtype not in _FLOAT_DTYPES:
        if array.dtype.kind in "iub":
            array = array.astype(np.float64)
        else:
            raise ValueError(f"{name} must be a float array, got dtype {array.dtype}.")
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} must be 2-D (rows, labels) with at least one of each.")
    for block in _row_blocks(array):  # bounded temporaries, whatever the input's size
        if not np.isfinite(block).all():
            raise ValueError(f"{name} must be finite (found NaN or infinity).")
        if block.min() < 0 or block.max() > 1:
            raise ValueError(f"{name} must lie in [0, 1].")
    return array


def _row_blocks(array: np.ndarray) -> Iterator[np.ndarray]:
    rows = max(1, _BLOCK_ELEMENTS // max(array.shape[1], 1))
    for start in range(0, array.shape[0], rows):
        yield array[start : start + rows]


def as_target_array(targets: Any, shape: tuple[int, ...]) -> np.ndarray:
    """0/1 ``targets`` of ``shape`` as a bool array; ``ValueError`` otherwise."""
    if hasattr(targets, "detach"):
        targets = targets.detach().cpu().numpy()
    array = np.asarray(targets)
    if array.shape != shape:
        raise ValueError(f"targets must have the shape of scores {shape}, got {array.shape}.")
    if array.dtype != bool:
        for block in _row_blocks(array):
            if not ((block == 0) | (block == 1)).all():
                raise ValueError("targets must hold only 0 and 1.")
    return array.astype(bool, copy=False)


def label_cuts(column_scores: np.ndarray, column_targets: np.ndarray) -> LabelCuts:
    """The :class:`LabelCuts` of one label: scores (n,) in [0, 1], targets (n,) bool."""
    values64 = np.asarray(column_scores, dtype=np.float64) + 0.0  # -0.0 becomes 0.0
    order = np.argsort(values64, kind="stable")
    ordered = values64[order]
    truth = np.asarray(column_targets, dtype=bool)[order]
    n_samples = len(ordered)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    positives_before = np.concatenate(([0], np.cumsum(truth, dtype=np.int64)))
    positives = int(positives_before[-1])
    true_positives = np.empty(len(starts) + 1, dtype=np.int64)
    true_positives[:-1] = positives - positives_before[starts]
    true_positives[-1] = 0
    predicted_positives = np.empty(len(starts) + 1, dtype=np.int64)
    predicted_positives[:-1] = n_samples - starts
    predicted_positives[-1] = 0
    return LabelCuts(ordered[starts], true_positives, predicted_positives, n_samples, positives)


def iter_label_cuts(scores: np.ndarray, targets: np.ndarray) -> Iterator[LabelCuts]:
    """:func:`label_cuts` of every column of validated ``(n, L)`` arrays, one at a time
    (so memory holds one label's cuts, O(n), however many labels there are)."""
    for j in range(scores.shape[1]):
        yield label_cuts(scores[:, j], targets[:, j])


def cut_threshold(cuts: LabelCuts, index: int, score_dtype: np.dtype) -> float:
    """The threshold that makes cut ``index`` (module docstring), as a float64 number.

    ``score_dtype`` is the dtype of the scores the threshold will be compared with.
    """
    dtype = np.dtype(score_dtype).type
    if index >= cuts.nothing:
        top = float(cuts.values[-1])
        if top >= 1.0:
            return float(np.nextafter(dtype(1.0), dtype(np.inf)))
        upper, lower, has_lower = 1.0, top, True
    else:
        upper = float(cuts.values[index])
        has_lower = index > 0
        lower = float(cuts.values[index - 1]) if has_lower else 0.0
    with np.errstate(under="ignore", over="ignore"):  # halving a subnormal is harmless
        rounded = float(dtype((upper + lower) / 2.0))
    if rounded > upper or (has_lower and rounded <= lower):
        return upper
    return rounded


def counts_at(cuts: LabelCuts, threshold: float) -> tuple[int, int]:
    """(true positives, predicted positives) of ``score >= threshold``."""
    index = cuts.cut_at(threshold)
    return int(cuts.true_positives[index]), int(cuts.predicted_positives[index])


def untunable_status(cuts: LabelCuts, min_positives: int) -> str | None:
    """The project's first-that-applies label status that prevents tuning, else None."""
    if cuts.positives == 0:
        return "no_positives"
    if cuts.positives == cuts.n_samples:
        return "no_negatives"
    if cuts.positives < min_positives:
        return "too_few_positives"
    return None


def all_cut_thresholds(cuts: LabelCuts, score_dtype: np.dtype) -> np.ndarray:
    """float64 (m + 1,): :func:`cut_threshold` of every cut of one label, at once."""
    dtype = np.dtype(score_dtype).type
    values = cuts.values
    top = float(values[-1])
    upper = np.append(values, 1.0)
    lower = np.concatenate(([0.0], values))
    has_lower = np.arange(len(upper)) > 0
    with np.errstate(under="ignore", over="ignore"):
        rounded = ((upper + lower) / 2.0).astype(dtype).astype(np.float64)
    outside = (rounded > upper) | (has_lower & (rounded <= lower))
    thresholds = np.where(outside, upper, rounded)
    if top >= 1.0:
        thresholds[-1] = float(np.nextafter(dtype(1.0), dtype(np.inf)))
    return thresholds
