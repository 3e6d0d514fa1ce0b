"""Decisions: turn ``(n, L)`` scores and per-label thresholds into predicted labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labelcut.tuning import _checks
from labelcut.tuning._checks import DECISION_RULES

__all__ = ["DECISION_RULES", "apply_decision_rule", "apply_thresholds"]


def apply_thresholds(scores: Any, thresholds: Any) -> np.ndarray:
    """Predict labels: ``(n, L)`` bool array, True iff ``scores[i, j] >= thresholds[j]``.

    ``scores``: ``(n, L)`` probabilities in [0, 1] (numpy or torch, any float
    dtype); ``thresholds``: ``(L,)``. The comparison is made in float64, so it
    agrees exactly with the thresholds reported by :func:`tuning.tune_thresholds`.
    """
    score_tensor = _checks.check_scores(scores)
    limits = _checks.check_thresholds(thresholds, score_tensor.shape[1]).numpy()
    values = score_tensor.cpu()
    if values.dtype == torch.bfloat16:
        values = values.to(torch.float32)
    # numpy compares a float32 array with a float64 array in float64, without a copy.
    return np.greater_equal(values.numpy(), limits[None, :])


def apply_decision_rule(
    scores: Any, thresholds: Any, rule: str = "threshold", k: int | None = None
) -> np.ndarray:
    """Predicted labels as a bool ``(n, L)`` array.

    ``scores``: ``(n, L)`` probabilities in [0, 1] (numpy or torch, any float
    dtype); ``thresholds``: ``(L,)``. A label "passes" iff ``score >= threshold``
    (compared in float64, as :func:`tuning.apply_thresholds`). Rules:

    - ``"threshold"``: every label that passes (may be none).
    - ``"at_least_one"``: every label that passes; a row where none passes gets
      its top-scoring label.
    - ``"exactly_one"``: the top-scoring label of each row, thresholds ignored
      (the multi-class rule, argmax).
    - ``"top_k"``: the ``k`` highest-scoring labels among those that pass
      (fewer when fewer pass). ``k`` is required, an integer >= 1.
    - ``"abstain"``: the confident yeses, i.e. every label that passes its
      (upper) threshold, as ``"threshold"``; the review band between a set's
      lower and upper thresholds comes from :func:`tuning.apply_abstain`.

    Ties in score go to the lower label index (argmax and stable sorting).
    """
    rule, k = _checks.check_decision_rule(rule, k)
    score_tensor = _checks.check_scores(scores)
    limits = _checks.check_thresholds(thresholds, score_tensor.shape[1]).numpy()
    values = score_tensor.cpu().to(dtype=score_tensor.dtype).double().numpy()
    passes = values >= limits[None, :]
    rows = np.arange(values.shape[0])
    if rule in ("threshold", "abstain"):
        return passes
    if rule in ("at_least_one", "exactly_one"):
        top = np.zeros_like(passes)
        top[rows, np.argmax(values, axis=1)] = True
        if rule == "exactly_one":
            return top
        return passes | (top & ~passes.any(axis=1, keepdims=True))
    # top_k: rank labels by score (stable: ties keep the lower index first) among passing ones.
    order = np.argsort(-np.where(passes, values, -1.0), axis=1, kind="stable")
    chosen = np.zeros_like(passes)
    keep = order[:, : int(k)]
    chosen[rows[:, None], keep] = True
    return chosen & passes
