"""Compact precision-recall curves for storage and plotting.

A curve with one point per distinct score can have as many points as rows;
plots and stored threshold sets need at most about a thousand. Downsampling
keeps the curve's two ends and, exactly, the operating points of any thresholds
asked for (the tuned one, 0.5), so a plot marks them on the curve itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelcut.tuning.cpu import block_plan, sorted_label_blocks
from labelcut.tuning.curves import PRCurve, curve_from_candidates
from labelcut.tuning.validation import check_scores, check_targets

DEFAULT_MAX_POINTS = 1000


def operating_index(curve: PRCurve, threshold: float) -> int:
    """Index into ``curve.precision``/``recall`` of predicting positive iff score >= threshold.

    It is the smallest distinct score >= ``threshold``; ``len(curve.thresholds)``
    (the end point: nothing predicted) when every score is below it.
    """
    return int(np.searchsorted(curve.thresholds, threshold, side="left"))


def downsample_curve(
    curve: PRCurve, max_points: int = DEFAULT_MAX_POINTS, keep: Sequence[float] = ()
) -> PRCurve:
    """At most ``max_points`` points of ``curve`` (plus the kept ones), same semantics.

    Keeps the first point, the end point (precision 1, recall 0) and the
    operating point of every threshold in ``keep``; the rest are spread evenly
    over the curve's points in score order. The result is a ``PRCurve`` whose
    element ``i`` still means "predict positive iff score >= thresholds[i]".
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2; got {max_points}.")
    m = len(curve.thresholds)
    if m + 1 <= max_points:
        return curve
    kept = {operating_index(curve, t) for t in keep}
    spread = np.linspace(0, m - 1, num=max(max_points - 1 - len(kept), 2)).round().astype(int)
    index = np.union1d(spread, np.array(sorted(kept | {0, m}), dtype=int))
    points = index[index < m]
    return PRCurve(
        precision=np.concatenate((curve.precision[points], [curve.precision[m]])),
        recall=np.concatenate((curve.recall[points], [curve.recall[m]])),
        thresholds=curve.thresholds[points],
    )


def compact_curves(
    scores: Any,
    targets: Any,
    *,
    keep: Any = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> list[PRCurve]:
    """Per-label downsampled precision-recall curves of ``(n, L)`` scores and 0/1 targets.

    ``keep`` is an optional ``(L, k)`` array of thresholds whose operating points
    each label's curve keeps exactly (e.g. the tuned threshold and 0.5). Only
    one label's full curve per worker thread exists at a time, so memory stays
    bounded for large ``n``. Semantics as :func:`tuning.precision_recall_curves`.
    """
    score_tensor = check_scores(scores)
    target_tensor = check_targets(targets, tuple(score_tensor.shape))
    n_labels = score_tensor.shape[1]
    keep_rows = np.zeros((n_labels, 0)) if keep is None else np.asarray(keep, dtype=np.float64)
    if keep_rows.ndim == 1:
        keep_rows = keep_rows[:, None]
    if keep_rows.shape[0] != n_labels:
        raise ValueError(
            f"keep must have one row per label ({n_labels}); it has shape {keep_rows.shape}."
        )
    block_labels, workers = block_plan(*score_tensor.shape)
    return sorted_label_blocks(
        score_tensor,
        target_tensor,
        block_labels,
        workers,
        lambda label, candidates: downsample_curve(
            curve_from_candidates(candidates), max_points, keep_rows[label].tolist()
        ),
    )
