"""Bootstrap intervals for the cost, joint micro-F-beta and abstain objectives.

The method of :mod:`tuning.bootstrap`: a Poisson bootstrap over validation rows.
With Poisson(1) row weights, a label's weighted positives and negatives at each
distinct score are independent Poisson counts with means equal to the observed
counts, so a replicate is drawn from the label's cuts alone
(:mod:`tuning.cutpoints`), ``O(B * m)`` per label without touching the rows
again. Each label draws from its own seeded streams, one per block of
:data:`REPLICATES_PER_BLOCK` replicates, so the answer depends on ``seed`` only
(not on memory limits). Labels are drawn independently, as the project's
bootstrap of the shared threshold treats (row, label) pairs; the correlation
between labels through shared rows is ignored.

In every replicate the objective is re-tuned the same way (exact over the
replicate's cuts, ties to the higher threshold, in float64: intervals need no
exact tie-breaking), giving an interval for each reported threshold; the
figure of merit is the one *of the reported thresholds* on each replicate
(cost per label; micro F-beta; review share per label). Percentile intervals
at ``confidence``. Returns None when ``n_bootstrap`` is 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelcut.tuning.cutpoints import (
    LabelCuts,
    all_cut_thresholds,
    all_label_cuts,
    as_float_array,
    as_target_array,
)

REPLICATES_PER_BLOCK = 50


@dataclass(frozen=True)
class ObjectiveIntervals:
    """Percentile intervals: ``thresholds`` (L, 2) [low, high] for each reported threshold
    (for abstain, of ``upper``), ``lower_thresholds`` (L, 2) (abstain only, else None),
    ``merit`` (L, 2) per label or (2,) pooled (micro), named by ``merit_name``."""

    thresholds: np.ndarray
    merit: np.ndarray
    merit_name: str
    lower_thresholds: np.ndarray | None = None


def _label_blocks(
    cuts: LabelCuts, label: int, n_bootstrap: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of replicates of one label: ``(tp, pp)`` float64 (b, m + 1) per cut and
    ``positives`` (b,), from the label's own seeded stream per block."""
    tp, pp = cuts.true_positives, cuts.predicted_positives
    group_pos = (tp[:-1] - tp[1:]).astype(np.float64)
    group_neg = (pp[:-1] - pp[1:]).astype(np.float64) - group_pos
    for block, start in enumerate(range(0, n_bootstrap, REPLICATES_PER_BLOCK)):
        size = min(REPLICATES_PER_BLOCK, n_bootstrap - start)
        rng = np.random.default_rng([seed, label, block])
        pos = rng.poisson(group_pos, size=(size, len(group_pos))).astype(np.float64)
        neg = rng.poisson(group_neg, size=(size, len(group_neg))).astype(np.float64)
        zeros = np.zeros((size, 1))
        rep_tp = np.concatenate((np.cumsum(pos[:, ::-1], axis=1)[:, ::-1], zeros), axis=1)
        rep_pp = rep_tp + np.concatenate((np.cumsum(neg[:, ::-1], axis=1)[:, ::-1], zeros), axis=1)
        yield rep_tp, rep_pp, rep_tp[:, 0]


def _last_argmax(values: np.ndarray) -> np.ndarray:
    """Per row, the last index of the maximum (ties to the higher threshold)."""
    return values.shape[1] - 1 - np.argmax(values[:, ::-1], axis=1)


def _interval(samples: np.ndarray, confidence: float) -> np.ndarray:
    """[low, high] along axis 0 (percentiles at ``confidence``)."""
    alpha = (1.0 - confidence) / 2.0
    return np.moveaxis(np.quantile(samples, [alpha, 1.0 - alpha], axis=0), 0, -1)


def _setup(scores: Any, targets: Any, n_bootstrap: int, confidence: float):
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError("n_bootstrap must be an integer >= 0.")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1).")
    score_array = as_float_array(scores)
    truth = as_target_array(targets, score_array.shape)
    return score_array, all_label_cuts(score_array, truth)


def cost_intervals(
    scores: Any,
    targets: Any,
    cost_fp: np.ndarray,
    cost_fn: np.ndarray,
    thresholds: np.ndarray,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.9,
) -> ObjectiveIntervals | None:
    """Intervals for each label's cost-optimal threshold and the cost of ``thresholds``.

    ``cost_fp``/``cost_fn``: (L,) as :func:`tuning.costs.cost_vector` gives them;
    ``thresholds`` (L,): the reported ones (``CostResult.thresholds``).
    """
    score_array, cuts = _setup(scores, targets, n_bootstrap, confidence)
    if n_bootstrap == 0:
        return None
    n_labels = len(cuts)
    rep_thresholds = np.empty((n_bootstrap, n_labels))
    rep_cost = np.empty((n_bootstrap, n_labels))
    for j, label in enumerate(cuts):
        cut_thresholds = all_cut_thresholds(label, score_array.dtype)
        reported = label.cut_at(thresholds[j])
        row = 0
        for tp, pp, positives in _label_blocks(label, j, n_bootstrap, seed):
            cost = cost_fp[j] * (pp - tp) + cost_fn[j] * (positives[:, None] - tp)
            best = _last_argmax(-cost)
            rep_thresholds[row : row + len(tp), j] = cut_thresholds[best]
            rep_cost[row : row + len(tp), j] = cost[:, reported]
            row += len(tp)
    return ObjectiveIntervals(
        _interval(rep_thresholds, confidence), _interval(rep_cost, confidence), "cost"
    )


def micro_intervals(
    scores: Any,
    targets: Any,
    thresholds: np.ndarray,
    beta: float = 1.0,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.9,
    max_iterations: int = 100,
) -> ObjectiveIntervals | None:
    """Intervals for each jointly tuned threshold and the micro F-beta of ``thresholds``.

    Each replicate re-runs Dinkelbach's iteration (:mod:`tuning.micro`) from the
    reported thresholds, all replicates of a block at once.
    """
    score_array, cuts = _setup(scores, targets, n_bootstrap, confidence)
    if n_bootstrap == 0:
        return None
    beta2, n_labels = beta * beta, len(cuts)
    cut_thresholds = [all_cut_thresholds(label, score_array.dtype) for label in cuts]
    reported = [label.cut_at(t) for label, t in zip(cuts, thresholds, strict=True)]
    streams = [_label_blocks(label, j, n_bootstrap, seed) for j, label in enumerate(cuts)]
    rep_thresholds = np.empty((n_bootstrap, n_labels))
    rep_merit = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, REPLICATES_PER_BLOCK):
        blocks = [next(stream) for stream in streams]
        positives = sum(block[2] for block in blocks)

        def fbeta(chosen: list[np.ndarray], blocks=blocks, positives=positives) -> np.ndarray:
            rows = np.arange(len(positives))
            tp = sum(block[0][rows, i] for block, i in zip(blocks, chosen, strict=True))
            pp = sum(block[1][rows, i] for block, i in zip(blocks, chosen, strict=True))
            return np.where(tp > 0, (1 + beta2) * tp / np.maximum(pp + beta2 * positives, 1), 0)

        size = len(positives)
        chosen = [np.full(size, i) for i in reported]
        lam = fbeta(chosen)
        rep_merit[start : start + size] = lam
        for _ in range(max_iterations):
            chosen = [
                _last_argmax((1 + beta2) * tp - lam[:, None] * pp) for tp, pp, _positives in blocks
            ]
            value = fbeta(chosen)
            done = value <= lam * (1 + 1e-12) + 1e-15
            lam = np.maximum(value, lam)
            if done.all():
                break
        for j, i in enumerate(chosen):
            rep_thresholds[start : start + size, j] = cut_thresholds[j][i]
    return ObjectiveIntervals(
        _interval(rep_thresholds, confidence), _interval(rep_merit, confidence), "micro_fbeta"
    )


def abstain_intervals(
    scores: Any,
    targets: Any,
    lower: np.ndarray,
    upper: np.ndarray,
    target: float,
    npv_target: float,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.9,
) -> ObjectiveIntervals | None:
    """Intervals for each label's ``upper`` and ``lower`` and the review share of the
    reported band ``[lower, upper)`` (same rules as :func:`tuning.abstain.tune_abstain`;
    a replicate with no cut meeting a target takes that side's empty threshold)."""
    score_array, cuts = _setup(scores, targets, n_bootstrap, confidence)
    if n_bootstrap == 0:
        return None
    n_labels = len(cuts)
    rep_upper = np.empty((n_bootstrap, n_labels))
    rep_lower = np.empty((n_bootstrap, n_labels))
    rep_share = np.empty((n_bootstrap, n_labels))
    for j, label in enumerate(cuts):
        cut_thresholds = all_cut_thresholds(label, score_array.dtype)
        hi_reported, lo_reported = label.cut_at(upper[j]), label.cut_at(lower[j])
        m = label.nothing
        row = 0
        for tp, pp, positives in _label_blocks(label, j, n_bootstrap, seed):
            size, total = len(tp), pp[:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                meets = (pp[:, :m] > 0) & (tp[:, :m] / pp[:, :m] >= target)
                below = total[:, None] - pp
                negatives_below = below - (positives[:, None] - tp)
                npv_ok = (below > 0) & (negatives_below / below >= npv_target)
            hi = np.where(meets.any(axis=1), np.argmax(meets, axis=1), m)
            npv_ok &= np.arange(m + 1)[None, :] <= hi[:, None]
            lo = np.where(npv_ok.any(axis=1), _last_argmax(npv_ok.astype(np.int8)), -1)
            rows = slice(row, row + size)
            rep_upper[rows, j] = cut_thresholds[hi]
            rep_lower[rows, j] = np.where(lo >= 0, cut_thresholds[np.maximum(lo, 0)], 0.0)
            band = pp[:, lo_reported] - pp[:, hi_reported]
            rep_share[rows, j] = np.where(total > 0, band / np.maximum(total, 1), 0.0)
            row += size
    return ObjectiveIntervals(
        _interval(rep_upper, confidence),
        _interval(rep_share, confidence),
        "review_share",
        lower_thresholds=_interval(rep_lower, confidence),
    )
