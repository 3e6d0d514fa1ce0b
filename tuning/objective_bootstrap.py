"""Bootstrap intervals for the cost, joint micro-F-beta and abstain objectives.

The method of :mod:`tuning.bootstrap`: a Poisson bootstrap over validation rows.
With Poisson(1) row weights, a label's weighted positives and negatives at each
distinct score are independent Poisson counts with means equal to the observed
counts, so a replicate is drawn from the label's cuts alone
(:mod:`tuning.cutpoints`), without touching the rows again.

Cost: each label's distinct scores are merged into at most :data:`MAX_GROUPS`
consecutive groups (equal numbers of distinct scores, always split at the
reported thresholds, so the figure of merit there is exact): ``O(B *
MAX_GROUPS)`` per label after its one sort, whatever ``n``. With fewer
distinct scores the replicate optimum is exact; with more, it is found among
group edges. Each label draws from its own seeded stream per block of
:data:`REPLICATES_PER_BLOCK` replicates, so the answer depends on ``seed`` only.
Labels are drawn independently (as the project's bootstrap of the shared
threshold treats (row, label) pairs): the correlation between labels through
shared rows is ignored.

In every replicate the objective is re-tuned the same way (ties to the higher
threshold, in float64: intervals need no exact tie-breaking), which gives an
interval for each reported threshold; the figure of merit is that *of the
reported thresholds* on each replicate (cost per label; pooled micro F-beta;
review share per label). Percentile intervals at ``confidence``. Each function
returns None when ``n_bootstrap`` is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from labelcut.tuning.abstain import wilson_lower
from labelcut.tuning.cutpoints import (
    LabelCuts,
    all_cut_thresholds,
    as_float_array,
    as_target_array,
    iter_label_cuts,
)

MAX_GROUPS = 256
REPLICATES_PER_BLOCK = 25


@dataclass(frozen=True)
class ObjectiveIntervals:
    """Percentile intervals, ``[low, high]`` in the last axis.

    ``thresholds`` (L, 2): each label's re-tuned threshold (for abstain, ``upper``);
    ``lower_thresholds`` (L, 2): abstain's ``lower`` (None otherwise); ``merit``:
    (L, 2) per label (cost, review share) or (2,) pooled (micro F-beta), named by
    ``merit_name``.
    """

    thresholds: np.ndarray
    merit: np.ndarray
    merit_name: str
    lower_thresholds: np.ndarray | None = None


@dataclass(frozen=True)
class Groups:
    """One label's cuts merged into groups: the replicates' raw material.

    ``edges`` (K,) int: the cut indices kept (increasing, first 0, last ``m``:
    "predict nothing"); ``thresholds`` (K,): their thresholds; ``group_pos``,
    ``group_neg`` (K - 1,) float64: positives and negatives between edge ``k``
    and ``k + 1``.
    """

    edges: np.ndarray
    thresholds: np.ndarray
    group_pos: np.ndarray
    group_neg: np.ndarray

    def position(self, cut: int) -> int:
        """Index into ``edges`` of a cut that is one of them."""
        return int(np.searchsorted(self.edges, cut))


def label_groups(cuts: LabelCuts, score_dtype: np.dtype, keep: Sequence[int]) -> Groups:
    """:class:`Groups` of one label, with at most :data:`MAX_GROUPS` groups plus the
    cuts in ``keep`` as edges."""
    m = cuts.nothing
    edges = np.unique(
        np.concatenate((np.linspace(0, m, min(m, MAX_GROUPS) + 1).round(), list(keep)))
    ).astype(np.int64)
    tp = cuts.true_positives[edges].astype(np.float64)
    pp = cuts.predicted_positives[edges].astype(np.float64)
    group_pos = tp[:-1] - tp[1:]
    thresholds = all_cut_thresholds(cuts, score_dtype)[edges]
    return Groups(edges, thresholds, group_pos, pp[:-1] - pp[1:] - group_pos)


def draw_blocks(
    groups: Groups, label: int, n_bootstrap: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of replicates of one label: ``(tp, pp)`` float64 (b, K) at each edge and
    ``positives`` (b,), each block from the label's own seeded stream."""
    for block, start in enumerate(range(0, n_bootstrap, REPLICATES_PER_BLOCK)):
        size = min(REPLICATES_PER_BLOCK, n_bootstrap - start)
        rng = np.random.default_rng([seed, label, block])
        shape = (size, len(groups.group_pos))
        pos = rng.poisson(groups.group_pos, size=shape).astype(np.float64)
        neg = rng.poisson(groups.group_neg, size=shape).astype(np.float64)
        zeros = np.zeros((size, 1))
        tp = np.concatenate((np.cumsum(pos[:, ::-1], axis=1)[:, ::-1], zeros), axis=1)
        fp = np.concatenate((np.cumsum(neg[:, ::-1], axis=1)[:, ::-1], zeros), axis=1)
        yield tp, tp + fp, tp[:, 0]


def _last_argmax(values: np.ndarray) -> np.ndarray:
    """Per row, the last index of the maximum (ties to the higher threshold)."""
    return values.shape[1] - 1 - np.argmax(values[:, ::-1], axis=1)


def _interval(samples: np.ndarray, confidence: float) -> np.ndarray:
    """[low, high] percentiles along axis 0, moved to the last axis."""
    alpha = (1.0 - confidence) / 2.0
    return np.moveaxis(np.quantile(samples, [alpha, 1.0 - alpha], axis=0), 0, -1)


def _labels(scores: Any, targets: Any, n_bootstrap: int, confidence: float):
    """Validated inputs: (score dtype, iterator over each label's cuts)."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError("n_bootstrap must be an integer >= 0.")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1).")
    score_array = as_float_array(scores)
    truth = as_target_array(targets, score_array.shape)
    return score_array.dtype, iter_label_cuts(score_array, truth)


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

    ``cost_fp``/``cost_fn`` (L,) as :func:`tuning.costs.cost_vector` gives them;
    ``thresholds`` (L,): the reported ones (``CostResult.thresholds``).
    """
    dtype, labels = _labels(scores, targets, n_bootstrap, confidence)
    if n_bootstrap == 0:
        return None
    return cost_intervals_from_cuts(
        labels, dtype, cost_fp, cost_fn, thresholds, n_bootstrap, seed, confidence
    )


def cost_intervals_from_cuts(
    cuts: Iterable[LabelCuts],
    dtype: np.dtype,
    cost_fp: np.ndarray,
    cost_fn: np.ndarray,
    thresholds: np.ndarray,
    n_bootstrap: int,
    seed: int,
    confidence: float,
) -> ObjectiveIntervals:
    """:func:`cost_intervals` from each label's cuts (read from rows or from statistics)."""
    rep_thresholds = np.empty((n_bootstrap, len(thresholds)))
    rep_cost = np.empty((n_bootstrap, len(thresholds)))
    for j, label in enumerate(cuts):
        reported = label.cut_at(thresholds[j])
        groups = label_groups(label, dtype, [reported])
        at = groups.position(reported)
        row = 0
        for tp, pp, positives in draw_blocks(groups, j, n_bootstrap, seed):
            cost = cost_fp[j] * (pp - tp) + cost_fn[j] * (positives[:, None] - tp)
            rows = slice(row, row + len(tp))
            rep_thresholds[rows, j] = groups.thresholds[_last_argmax(-cost)]
            rep_cost[rows, j] = cost[:, at]
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
    reported thresholds, the replicates of a block all at once. Memory: every
    label's block, ``L * REPLICATES_PER_BLOCK * (MAX_GROUPS + 2)`` float64 pairs.
    """
    dtype, labels = _labels(scores, targets, n_bootstrap, confidence)
    if n_bootstrap == 0:
        return None
    return micro_intervals_from_cuts(
        labels, dtype, thresholds, beta, n_bootstrap, seed, confidence, max_iterations
    )


def micro_intervals_from_cuts(
    cuts: Iterable[LabelCuts],
    dtype: np.dtype,
    thresholds: np.ndarray,
    beta: float,
    n_bootstrap: int,
    seed: int,
    confidence: float,
    max_iterations: int = 100,
) -> ObjectiveIntervals:
    """:func:`micro_intervals` from each label's cuts (read from rows or from statistics)."""
    gain = 1.0 + beta * beta
    beta2 = beta * beta
    groups, reported = [], []
    for label, threshold in zip(cuts, thresholds, strict=True):
        cut = label.cut_at(threshold)
        groups.append(label_groups(label, dtype, [cut]))
        reported.append(groups[-1].position(cut))
    streams = [draw_blocks(g, j, n_bootstrap, seed) for j, g in enumerate(groups)]
    rep_thresholds = np.empty((n_bootstrap, len(groups)))
    rep_merit = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, REPLICATES_PER_BLOCK):
        blocks = [next(stream) for stream in streams]
        positives = sum(block[2] for block in blocks)
        rows = np.arange(len(positives))

        def fbeta(chosen, blocks=blocks, positives=positives, rows=rows) -> np.ndarray:
            tp = sum(block[0][rows, i] for block, i in zip(blocks, chosen, strict=True))
            pp = sum(block[1][rows, i] for block, i in zip(blocks, chosen, strict=True))
            return np.where(tp > 0, gain * tp / np.maximum(pp + beta2 * positives, 1e-300), 0.0)

        chosen = [np.full(len(rows), i) for i in reported]
        lam = fbeta(chosen)
        rep_merit[start : start + len(rows)] = lam
        for _ in range(max_iterations):
            chosen = [_last_argmax(gain * tp - lam[:, None] * pp) for tp, pp, _pos in blocks]
            value = fbeta(chosen)
            converged = value <= lam * (1.0 + 1e-12)
            lam = np.maximum(value, lam)
            if converged.all():
                break
        for j, i in enumerate(chosen):
            rep_thresholds[start : start + len(rows), j] = groups[j].thresholds[i]
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
    wilson_confidence: float | None = None,
) -> ObjectiveIntervals | None:
    """Intervals for each label's ``upper`` and ``lower`` and the review share of the
    reported band ``[lower, upper)``, with the rules of :func:`tuning.abstain.tune_abstain`
    (a replicate where no cut meets a target takes that side's empty threshold;
    ``wilson_confidence`` is tune_abstain's ``wilson_confidence``)."""
    dtype, labels = _labels(scores, targets, n_bootstrap, confidence)
    if n_bootstrap == 0:
        return None
    return abstain_intervals_from_cuts(
        labels, dtype, lower, upper, target, npv_target, wilson_confidence,
        n_bootstrap, seed, confidence,
    )  # fmt: skip


def abstain_intervals_from_cuts(
    cuts: Iterable[LabelCuts],
    dtype: np.dtype,
    lower: np.ndarray,
    upper: np.ndarray,
    target: float,
    npv_target: float,
    wilson_confidence: float | None,
    n_bootstrap: int,
    seed: int,
    confidence: float,
) -> ObjectiveIntervals:
    """:func:`abstain_intervals` from each label's cuts (read from rows or from statistics)."""
    z = None if wilson_confidence is None else NormalDist().inv_cdf(wilson_confidence)
    shape = (n_bootstrap, len(upper))
    rep_upper, rep_lower, rep_share = np.empty(shape), np.empty(shape), np.empty(shape)
    for j, label in enumerate(cuts):
        hi_cut, lo_cut = label.cut_at(upper[j]), label.cut_at(lower[j])
        groups = label_groups(label, dtype, [hi_cut, lo_cut])
        hi_at, lo_at = groups.position(hi_cut), groups.position(lo_cut)
        last = len(groups.edges) - 1  # "predict nothing"
        row = 0
        for tp, pp, positives in draw_blocks(groups, j, n_bootstrap, seed):
            total = pp[:, 0]
            below = total[:, None] - pp  # rows under each edge
            negatives_below = below - (positives[:, None] - tp)
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = wilson_lower(tp[:, :last], pp[:, :last], z)
                meets = (pp[:, :last] > 0) & (precision >= target)
                npv_ok = (below > 0) & (wilson_lower(negatives_below, below, z) >= npv_target)
            hi = np.where(meets.any(axis=1), np.argmax(meets, axis=1), last)
            npv_ok &= np.arange(last + 1)[None, :] <= hi[:, None]
            lo = _last_argmax(npv_ok.astype(np.int8))
            rows = slice(row, row + len(tp))
            rep_upper[rows, j] = groups.thresholds[hi]
            rep_lower[rows, j] = np.where(npv_ok.any(axis=1), groups.thresholds[lo], 0.0)
            band = pp[:, lo_at] - pp[:, hi_at]
            rep_share[rows, j] = np.where(total > 0, band / np.maximum(total, 1.0), 0.0)
            row += len(tp)
    return ObjectiveIntervals(
        _interval(rep_upper, confidence),
        _interval(rep_share, confidence),
        "review_share",
        lower_thresholds=_interval(rep_lower, confidence),
    )
