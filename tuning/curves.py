"""Precision-recall curves, whole or compact (downsampled for storage and plotting).

A label's candidates are its distinct scores: predicting positive iff
``score >= v`` for each distinct ``v`` gives every point of the label's
precision-recall curve, the same points as
``sklearn.metrics.precision_recall_curve`` (with ``drop_intermediate=False``).

A curve with one point per distinct score can have as many points as rows;
plots and stored threshold sets need at most about a thousand. Downsampling
keeps the curve's two ends and, exactly, the operating points of any thresholds
asked for (the tuned one, 0.5), so a plot marks them on the curve itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from labelcut.tuning._checks import check_scores, check_targets
from labelcut.tuning._sorted import Candidates, SortedLabels

DEFAULT_MAX_POINTS = 1000


class PRCurve(NamedTuple):
    """One label's precision-recall curve, with sklearn's semantics.

    ``thresholds`` (m,) float64: the label's distinct scores, increasing.
    ``precision`` and ``recall`` (m + 1,) float64: element ``i < m`` is the
    precision/recall of predicting positive iff ``score >= thresholds[i]``;
    the last elements are 1 and 0 (nothing predicted). As in sklearn, recall
    is 1 at every threshold when the label has no positives.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def curve_from_candidates(candidates: Candidates) -> PRCurve:
    """The sklearn-style :class:`PRCurve` of one label."""
    tp = candidates.true_positives
    precision = tp / candidates.predicted_positives
    # sklearn's convention: with no positives, recall is 1 at every threshold.
    positives = candidates.positives
    recall = tp / positives if positives else np.ones_like(tp)
    return PRCurve(
        precision=np.concatenate((precision, [1.0])),
        recall=np.concatenate((recall, [0.0])),
        thresholds=candidates.values,
    )


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


def compact_curve(
    candidates: Candidates, keep: Sequence[float], max_points: int = DEFAULT_MAX_POINTS
) -> PRCurve:
    """One label's downsampled curve, keeping the operating points of ``keep`` exactly.

    Equal to ``downsample_curve(curve_from_candidates(candidates), max_points, keep)``,
    but computes precision and recall only at the points it keeps.
    """
    m = candidates.m
    if m + 1 <= max_points:
        return curve_from_candidates(candidates)
    kept = {candidates.index_at(t) for t in keep}
    spread = np.linspace(0, m - 1, num=max(max_points - 1 - len(kept), 2)).round().astype(int)
    index = np.union1d(spread, np.array(sorted(kept | {0, m}), dtype=int))
    points = index[index < m]
    tp = candidates.true_positives_at(points)
    positives = candidates.positives
    recall = tp / positives if positives else np.ones_like(tp)
    return PRCurve(
        precision=np.concatenate((tp / candidates.predicted_positives_at(points), [1.0])),
        recall=np.concatenate((recall, [0.0])),
        thresholds=candidates.values_at(points),
    )


def precision_recall_curves(scores: Any, targets: Any) -> list[PRCurve]:
    """Per-label precision-recall curves of ``(n, L)`` scores against 0/1 targets.

    A label is predicted positive iff ``score >= threshold``. Curve ``j``
    equals ``sklearn.metrics.precision_recall_curve(targets[:, j], scores[:, j])``
    (default ``drop_intermediate=False``) value for value, with thresholds as
    float64 and without sklearn's warning for labels with no positives.
    Accepts numpy arrays or torch tensors (any float dtype for scores; bool,
    integer or float 0/1 targets). Returns a list of L :class:`PRCurve`.
    """
    score_tensor = check_scores(scores)
    target_tensor = check_targets(targets, tuple(score_tensor.shape))
    sorted_labels = SortedLabels(score_tensor, target_tensor)
    return sorted_labels.walk(lambda _label, candidates: curve_from_candidates(candidates))


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
    ``tune_thresholds(..., return_curves=True)`` returns the same curves (for
    its thresholds and 0.5) from its own sorted pass.
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
    sorted_labels = SortedLabels(score_tensor, target_tensor)
    return sorted_labels.walk(
        lambda label, candidates: compact_curve(candidates, keep_rows[label].tolist(), max_points)
    )
