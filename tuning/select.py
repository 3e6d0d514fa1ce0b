"""Choose one operating point per label for an objective, and turn it into a threshold.

These functions use only arithmetic and comparisons, so they take numpy arrays
or torch tensors alike (the CPU and CUDA paths share them and give the same
answers).

Objectives, for a candidate predicting ``pp`` samples with ``tp`` of the
label's ``P`` positives correct (all counts exact integers held as float64):

- ``"f1"``: ``2 tp / (pp + P)``.
- ``"fbeta"``: ``(1 + beta²) tp / (beta² P + pp)``.
- ``"recall_at_precision"``: ``tp / P`` among candidates with
  ``tp / pp >= target``.
- ``"precision_at_recall"``: ``tp / pp`` among candidates with
  ``tp / P >= target``.

Each value is one correctly rounded division of exact numbers, so two
candidates whose objectives are equal as fractions compare equal, and the tie
rule (the higher threshold wins) is applied exactly. Precision and recall are
computed exactly as scikit-learn computes its curve, so a constraint holds here
iff it holds on sklearn's curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labelcut.tuning.validation import CONSTRAINED_OBJECTIVES


@dataclass(frozen=True)
class TuningSpec:
    """What to optimise: the validated arguments of ``tune_thresholds``."""

    objective: str
    beta: float
    target: float | None
    min_positives: int
    fallback: float


def objective_values(tp, pp, positives, spec: TuningSpec):
    """Objective value and feasibility of each candidate.

    ``tp``, ``pp``: float64 arrays/tensors of true and predicted positives per
    candidate (``pp >= 1``); ``positives``: the label's positives, broadcastable
    (use 1 for a label without positives: its result is discarded anyway).
    Returns ``(values, feasible)``; ``feasible`` is None when every candidate is.
    """
    if spec.objective == "f1":
        return 2.0 * tp / (pp + positives), None
    if spec.objective == "fbeta":
        beta2 = spec.beta * spec.beta
        return (1.0 + beta2) * tp / (beta2 * positives + pp), None
    precision = tp / pp
    recall = tp / positives
    if spec.objective == "recall_at_precision":
        return recall, precision >= spec.target
    return precision, recall >= spec.target


def best_candidate(values: np.ndarray, feasible: np.ndarray | None) -> int | None:
    """Index of the best feasible candidate; candidates are in increasing score order.

    Ties go to the higher threshold, i.e. the last maximum. None when no
    candidate is feasible.
    """
    if feasible is not None:
        if not feasible.any():
            return None
        values = np.where(feasible, values, -np.inf)
    return len(values) - 1 - int(np.argmax(values[::-1]))


def midpoint_thresholds(
    upper: np.ndarray, lower: np.ndarray, has_lower: np.ndarray, score_dtype: torch.dtype
) -> np.ndarray:
    """Thresholds halfway between the chosen cut's two neighbouring scores.

    ``upper`` (L,): lowest score predicted positive; ``lower`` (L,): highest
    score predicted negative, used where ``has_lower``; where nothing is
    predicted negative the midpoint is taken between ``upper`` and 0. The
    midpoint is rounded to the scores' own dtype, so comparing in that dtype
    or in float64 gives the same answer; if rounding lands outside
    ``(lower, upper]`` (adjacent floats), ``upper`` itself is used. Either way
    ``score >= threshold`` reproduces the chosen operating point exactly.
    Returns float64 (L,).
    """
    below = np.where(has_lower, lower, 0.0)
    with np.errstate(under="ignore"):  # halving a subnormal score is harmless
        midpoint = (upper + below) / 2.0
    rounded = torch.from_numpy(midpoint).to(score_dtype).to(torch.float64).numpy()
    outside = (rounded > upper) | (has_lower & (rounded <= lower))
    return np.where(outside, upper, rounded)


def label_statuses(
    n_samples: int, positives: np.ndarray, reachable: np.ndarray, spec: TuningSpec
) -> list[str]:
    """Status of each label, the first that applies.

    "no_positives", "no_negatives", "too_few_positives" (fewer than
    ``min_positives``), "target_unreachable" (no candidate meets the
    constraint), else "ok".
    """
    statuses = []
    for count, can_reach in zip(positives.tolist(), reachable.tolist(), strict=True):
        if count == 0:
            statuses.append("no_positives")
        elif count == n_samples:
            statuses.append("no_negatives")
        elif count < spec.min_positives:
            statuses.append("too_few_positives")
        elif spec.objective in CONSTRAINED_OBJECTIVES and not can_reach:
            statuses.append("target_unreachable")
        else:
            statuses.append("ok")
    return statuses
