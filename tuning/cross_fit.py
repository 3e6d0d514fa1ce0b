"""Cross-fitted calibration: calibrated validation scores that the calibrator did not see.

Thresholds tuned on scores calibrated by a map fit on the same rows would be tuned on
optimistic numbers (isotonic regression in particular memorises its data). So the rows are
split into folds; each fold's scores are calibrated by a calibrator fit on the other folds
(out-of-fold, "OOF"), and thresholds are tuned on those. The calibrator that is served is
fit on all rows.

Folds (:func:`label_stratified_folds`) spread each label's positives: every row is keyed by
its rarest positive label (rows without labels form their own group), rows are shuffled with
``seed``, ordered by key, and dealt to the folds in turn. Each key group is thus split
evenly (counts differ by at most one between folds), which keeps the positives of rare labels
apart, and fold sizes differ by at most one.

Rare labels fall back to the identity map consistently: a label is calibrated only if the
training part of *every* fold has ``min_count`` positives and negatives; otherwise it is
uncalibrated in every fold and in the served calibrator, so the thresholds tuned on the OOF
scores are on the scale that is served.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from labelcut.tuning.calibration import (
    DEFAULT_MIN_COUNT,
    METHODS,
    Calibrator,
    check_fit_inputs,
    fit_calibrator,
    to_probabilities,
)


class CrossFit(NamedTuple):
    """``calibrated`` float64 ``(n, L)``: out-of-fold calibrated validation probabilities
    (tune thresholds on these); ``calibrator``: the calibrator fit on all rows (serve it);
    ``folds`` int64 ``(n,)``: each row's fold."""

    calibrated: np.ndarray
    calibrator: Calibrator
    folds: np.ndarray


def label_stratified_folds(targets: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index int64 ``(n,)`` in ``[0, n_folds)`` for 0/1 ``targets`` ``(n, L)``."""
    y = np.asarray(targets)
    if y.ndim != 2:
        raise ValueError(f"targets must be a 2-D array (n, L), got shape {y.shape}.")
    n, n_labels = y.shape
    if not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be in [2, n_rows={n}], got {n_folds}.")
    positive = y.astype(bool)
    prevalence = positive.sum(axis=0)
    # Rarest positive label of each row (ties to the lower index); n_labels for no label.
    rank = np.where(positive, prevalence[None, :], np.iinfo(np.int64).max)
    key = np.where(positive.any(axis=1), np.argmin(rank, axis=1), n_labels)
    shuffled = np.random.default_rng(seed).permutation(n)
    order = shuffled[np.argsort(key[shuffled], kind="stable")]
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % n_folds
    return folds


def cross_fit_calibrate(
    scores: np.ndarray,
    targets: np.ndarray,
    method: str,
    n_folds: int = 5,
    seed: int = 0,
    *,
    logits: bool = False,
    min_count: int = DEFAULT_MIN_COUNT,
) -> CrossFit:
    """Out-of-fold calibrated scores ``(n, L)`` and the calibrator fit on all rows.

    ``scores`` ``(n, L)``: probabilities, or logits with ``logits=True``; ``targets``
    ``(n, L)`` 0/1. ``method`` is one of :data:`labelcut.tuning.calibration.METHODS`;
    ``"none"`` returns the probabilities unchanged (as float64).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    s, y = check_fit_inputs(scores, targets, logits)
    folds = label_stratified_folds(y, n_folds, seed)
    if method == "none":
        calibrated = to_probabilities(s) if logits else s.copy()
        return CrossFit(calibrated, Calibrator.identity(s.shape[1]), folds)
    # A label is calibrated only if every fold's training part can fit it (see module doc).
    fit_labels = np.ones(s.shape[1], dtype=bool)
    for k in range(n_folds):
        train_y = y[folds != k]
        positives = train_y.sum(axis=0)
        fit_labels &= (positives >= min_count) & (len(train_y) - positives >= min_count)
    parts = [
        fit_calibrator(
            s[folds != k], y[folds != k], method,
            logits=logits, min_count=min_count, fit_labels=fit_labels,
        )
        for k in range(n_folds)
    ]  # fmt: skip
    full = fit_calibrator(s, y, method, logits=logits, min_count=min_count, fit_labels=fit_labels)
    calibrated = np.empty_like(s)
    for k, part in enumerate(parts):
        held = folds == k
        calibrated[held] = part.apply_logits(s[held]) if logits else part.apply(s[held])
    return CrossFit(calibrated, full, folds)
