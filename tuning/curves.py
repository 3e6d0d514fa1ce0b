"""Per-label candidate operating points and precision-recall curves.

A label's candidates are its distinct scores: predicting positive iff
``score >= v`` for each distinct ``v`` gives every point of the label's
precision-recall curve, the same points as
``sklearn.metrics.precision_recall_curve`` (with ``drop_intermediate=False``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from labelcut.tuning.candidates import Candidates
from labelcut.tuning.cpu import block_plan, sorted_label_blocks
from labelcut.tuning.validation import check_scores, check_targets


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
    block_labels, workers = block_plan(*score_tensor.shape)
    return sorted_label_blocks(
        score_tensor,
        target_tensor,
        block_labels,
        workers,
        lambda _label, candidates: curve_from_candidates(candidates),
    )
