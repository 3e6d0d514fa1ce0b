"""Calibration quality: expected calibration error, Brier score, reliability diagrams.

Binning: ``n_bins`` (default 15) equal-width bins on [0, 1] with scikit-learn's
``calibration_curve(strategy="uniform")`` edges: bin 0 is ``[0, 1/B]``, bin ``b > 0`` is
``(b/B, (b+1)/B]``.

- ECE of a label = ``sum_b (n_b / n) * |mean predicted_b - observed frequency_b|`` over its
  non-empty bins, i.e. ``sum_b |sum of p - sum of y| / n``.
- Overall ECE is *pooled*: all ``n * L`` (row, label) predictions binned together. It can be
  lower than the mean of the per-label ECEs (errors of opposite sign in different labels
  cancel within a bin), so both are reported (``ece`` and ``ece_mean``).
- Brier score of a label = ``mean (p - y)^2``; overall = the mean over all ``n * L`` entries
  (equal to the mean of the per-label scores, since every label has ``n`` rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BINS = 15


def _check(probabilities: np.ndarray, targets: np.ndarray, n_bins: int):
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(targets)
    if p.ndim != 2 or y.shape != p.shape:
        raise ValueError(
            f"probabilities and targets must be 2-D arrays of one shape, got {p.shape} "
            f"and {y.shape}."
        )
    if len(p) == 0:
        raise ValueError("probabilities must have at least one row.")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite numbers in [0, 1].")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("targets must be 0 or 1.")
    if not 1 <= int(n_bins) <= 10_000:
        raise ValueError(f"n_bins must be in [1, 10000], got {n_bins}.")
    return p, y.astype(np.float64), int(n_bins)


def bin_edges(n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """The ``n_bins + 1`` bin edges on [0, 1]."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def bin_statistics(
    probabilities: np.ndarray, targets: np.ndarray, n_bins: int = DEFAULT_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label and bin: row counts int64, sums of ``p`` and sums of ``y``, each ``(L, B)``."""
    p, y, n_bins = _check(probabilities, targets, n_bins)
    n_labels = p.shape[1]
    bins = np.searchsorted(bin_edges(n_bins)[1:-1], p, side="left")  # (n, L) in [0, B)
    flat = (bins + n_bins * np.arange(n_labels)[None, :]).ravel()
    size = n_labels * n_bins
    counts = np.bincount(flat, minlength=size).reshape(n_labels, n_bins)
    sum_p = np.bincount(flat, weights=p.ravel(), minlength=size).reshape(n_labels, n_bins)
    sum_y = np.bincount(flat, weights=y.ravel(), minlength=size).reshape(n_labels, n_bins)
    return counts.astype(np.int64), sum_p, sum_y


def expected_calibration_error(
    probabilities: np.ndarray, targets: np.ndarray, n_bins: int = DEFAULT_BINS
) -> tuple[np.ndarray, float]:
    """ECE per label float64 ``(L,)`` and the pooled overall ECE (see the module docstring)."""
    counts, sum_p, sum_y = bin_statistics(probabilities, targets, n_bins)
    n = counts[0].sum()
    per_label = np.abs(sum_p - sum_y).sum(axis=1) / n
    pooled = float(np.abs(sum_p.sum(axis=0) - sum_y.sum(axis=0)).sum() / counts.sum())
    return per_label, pooled


def brier_score(probabilities: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float]:
    """Brier score per label float64 ``(L,)`` and overall (mean over all entries)."""
    p, y, _ = _check(probabilities, targets, DEFAULT_BINS)
    per_label = np.mean((p - y) ** 2, axis=0)
    return per_label, float(per_label.mean())


def reliability_diagrams(
    probabilities: np.ndarray, targets: np.ndarray, n_bins: int = DEFAULT_BINS
) -> list[dict[str, Any]]:
    """One reliability diagram per label, JSON-ready: ``bin_centers``, ``mean_predicted``
    and ``observed`` (None for empty bins) and ``counts``, each a list of ``n_bins``."""
    counts, sum_p, sum_y = bin_statistics(probabilities, targets, n_bins)
    edges = bin_edges(counts.shape[1])
    centers = [float(c) for c in (edges[:-1] + edges[1:]) / 2]
    out = []
    for c, sp, sy in zip(counts, sum_p, sum_y, strict=True):
        filled = c > 0
        safe = np.where(filled, c, 1)
        out.append(
            {
                "bin_centers": centers,
                "mean_predicted": [
                    float(v) if f else None for v, f in zip(sp / safe, filled, strict=True)
                ],
                "observed": [
                    float(v) if f else None for v, f in zip(sy / safe, filled, strict=True)
                ],
                "counts": [int(v) for v in c],
            }
        )
    return out


def calibration_report(
    probabilities: np.ndarray,
    targets: np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """JSON-ready figures of one set of probabilities ``(n, L)``:
    ``{"n_bins", "ece", "ece_mean", "brier", "per_label": [{"label", "ece", "brier",
    "reliability": {...}}]}``; labels default to "0".."L-1"."""
    ece, ece_pooled = expected_calibration_error(probabilities, targets, n_bins)
    brier, brier_all = brier_score(probabilities, targets)
    diagrams = reliability_diagrams(probabilities, targets, n_bins)
    names = [str(j) for j in range(len(ece))] if label_names is None else list(label_names)
    if len(names) != len(ece):
        raise ValueError(f"label_names must name {len(ece)} labels, got {len(names)}.")
    return {
        "n_bins": int(n_bins),
        "ece": ece_pooled,
        "ece_mean": float(ece.mean()),
        "brier": brier_all,
        "per_label": [
            {"label": name, "ece": float(e), "brier": float(b), "reliability": d}
            for name, e, b, d in zip(names, ece, brier, diagrams, strict=True)
        ],
    }


def compare_calibration(
    raw: np.ndarray,
    calibrated: np.ndarray,
    targets: np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``{"before": calibration_report(raw), "after": calibration_report(calibrated)}``.

    For a set's report pass the out-of-fold calibrated validation scores as ``calibrated``
    (figures on rows the calibrator did not see)."""
    return {
        "before": calibration_report(raw, targets, n_bins=n_bins, label_names=label_names),
        "after": calibration_report(calibrated, targets, n_bins=n_bins, label_names=label_names),
    }
