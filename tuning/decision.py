"""Decision rules: turn ``(n, L)`` scores and per-label thresholds into predicted labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from labelcut.tuning import validation

DECISION_RULES: tuple[str, ...] = ("threshold", "at_least_one", "exactly_one", "top_k")


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

    Ties in score go to the lower label index (argmax and stable sorting).
    """
    if not isinstance(rule, str) or rule not in DECISION_RULES:
        raise ValueError(f"rule must be one of {', '.join(DECISION_RULES)}, but got {rule!r}.")
    if rule == "top_k":
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an integer of at least 1 for rule 'top_k', but got {k!r}.")
    elif k is not None:
        raise ValueError(f"k is only used with rule 'top_k', but got k={k!r} for rule {rule!r}.")
    score_tensor = validation.check_scores(scores)
    limits = validation.check_thresholds(thresholds, score_tensor.shape[1]).numpy()
    values = score_tensor.cpu().to(dtype=score_tensor.dtype).double().numpy()
    passes = values >= limits[None, :]
    rows = np.arange(values.shape[0])
    if rule == "threshold":
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
