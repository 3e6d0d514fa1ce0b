"""Score fixed thresholds on labelled data: per-label and averaged precision, recall, F1.

Nothing is tuned here: the thresholds come from elsewhere (a stored set) and are
applied with the project's one rule, a label is predicted iff ``score >=
threshold`` (:func:`labelcut.tuning.apply_thresholds`). Conventions follow the
tuning reports: precision is 1 where nothing is predicted, recall 0 where the
label has no positives, F1 0 where both counts are 0. ``macro`` averages the
per-label figures (each label counts once); ``micro`` pools the counts of every
label first, as scikit-learn's ``average="macro"`` / ``"micro"`` do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelcut.tuning.decide import apply_thresholds

DEFAULT_THRESHOLD = 0.5


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    """``numerator / denominator`` in float64, ``empty`` where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, empty, numerator / safe)


def _check_targets(targets: Any, shape: tuple[int, ...]) -> np.ndarray:
    y = np.asarray(targets)
    if y.shape != shape:
        raise ValueError(
            f"targets have shape {tuple(y.shape)}; scores have shape {shape}: they must match."
        )
    if y.dtype.kind not in "biuf":
        raise ValueError(f"targets must be 0/1 numbers; got dtype {y.dtype}.")
    bad = (y != 0) & (y != 1)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"targets must hold only 0 and 1; row {row + 1}, label {col} holds {y[row, col]}."
        )
    return y.astype(bool, copy=False)


def _at(predicted: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Counts and ratios per label for one (n, L) bool prediction."""
    true_positives = np.count_nonzero(predicted & truth, axis=0)
    predicted_positives = np.count_nonzero(predicted, axis=0)
    positives = np.count_nonzero(truth, axis=0)
    return {
        "true_positives": true_positives,
        "predicted_positives": predicted_positives,
        "positives": positives,
        "precision": _ratio(true_positives, predicted_positives, 1.0),
        "recall": _ratio(true_positives, positives, 0.0),
        "f1": _ratio(2 * true_positives, predicted_positives + positives, 0.0),
    }


def _averages(found: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    tp = int(found["true_positives"].sum())
    pp = int(found["predicted_positives"].sum())
    positives = int(found["positives"].sum())
    return {
        "macro": {name: float(found[name].mean()) for name in ("precision", "recall", "f1")},
        "micro": {
            "precision": 1.0 if pp == 0 else tp / pp,
            "recall": 0.0 if positives == 0 else tp / positives,
            "f1": 0.0 if pp + positives == 0 else 2 * tp / (pp + positives),
        },
    }


def _point(found: dict[str, np.ndarray], j: int) -> dict[str, float | int]:
    return {
        "precision": float(found["precision"][j]),
        "recall": float(found["recall"][j]),
        "f1": float(found["f1"][j]),
        "true_positives": int(found["true_positives"][j]),
        "predicted_positives": int(found["predicted_positives"][j]),
    }


def evaluate_thresholds(
    scores: Any,
    targets: Any,
    thresholds: Any,
    *,
    label_names: list[str] | None = None,
    default_threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """Precision, recall and F1 of fixed ``thresholds`` (and of 0.5) on labelled data.

    ``scores``: ``(n, L)`` probabilities in [0, 1]; ``targets``: ``(n, L)`` 0/1;
    ``thresholds``: ``(L,)`` in [0, 1]. Raises ``ValueError`` (a sentence naming the
    problem) for mismatched shapes, targets other than 0/1, or scores or thresholds
    out of range.

    Returns plain Python types: ``n_samples``; ``per_label``, one dict per label in
    order with ``label``, ``threshold``, ``support`` and ``at_threshold`` /
    ``at_default`` (each ``precision``, ``recall``, ``f1``, ``true_positives``,
    ``predicted_positives``); ``summary`` with ``at_threshold`` / ``at_default``, each
    ``{"macro": {precision, recall, f1}, "micro": {...}}``; ``default_threshold``.
    """
    limits = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    bad = ~(np.isfinite(limits) & (limits >= 0) & (limits <= 1))
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"thresholds must be in [0, 1]; label {j} has {limits[j]}.")
    predicted = apply_thresholds(scores, limits)  # checks the scores and the count
    n_samples, n_labels = predicted.shape
    truth = _check_targets(targets, predicted.shape)
    names = [str(j) for j in range(n_labels)] if label_names is None else list(label_names)
    if len(names) != n_labels:
        raise ValueError(f"{len(names)} label names for {n_labels} labels.")
    at_threshold = _at(predicted, truth)
    at_default = _at(apply_thresholds(scores, np.full(n_labels, default_threshold)), truth)
    per_label = [
        {
            "label": name,
            "threshold": float(limits[j]),
            "support": int(at_threshold["positives"][j]),
            "at_threshold": _point(at_threshold, j),
            "at_default": _point(at_default, j),
        }
        for j, name in enumerate(names)
    ]
    return {
        "n_samples": int(n_samples),
        "default_threshold": float(default_threshold),
        "per_label": per_label,
        "summary": {"at_threshold": _averages(at_threshold), "at_default": _averages(at_default)},
    }
