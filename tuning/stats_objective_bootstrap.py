"""Bootstrap intervals of issue 18's objectives from counted cuts, not rows.

:mod:`tuning.objective_bootstrap` draws every replicate from a label's cuts
(:class:`tuning.cutpoints.LabelCuts`): with Poisson(1) row weights the
weighted positives (negatives) of ``c`` rows are one Poisson(c) draw. Its
public functions read the cuts from rows; these are the same loops reading
them from statistics, with the same groups (:func:`label_groups`), the same
seeded streams (:func:`draw_blocks`) and the same re-tuning rules, so with
``"distinct"`` statistics the intervals equal ``tune_thresholds``'. (The
loops are restated here because the originals take rows; a ``cuts=`` entry
in :mod:`tuning.objective_bootstrap` would let both share one body.)
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from labelcut.tuning.abstain import wilson_lower
from labelcut.tuning.cutpoints import LabelCuts
from labelcut.tuning.objective_bootstrap import (
    REPLICATES_PER_BLOCK,
    ObjectiveIntervals,
    _interval,
    _last_argmax,
    draw_blocks,
    label_groups,
)


def cost_intervals(
    cuts: list[LabelCuts], dtype, cost_fp, cost_fn, thresholds, n_bootstrap, seed, confidence
) -> ObjectiveIntervals:
    """:func:`tuning.objective_bootstrap.cost_intervals` on cuts."""
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
    cuts: list[LabelCuts], dtype, thresholds, beta, n_bootstrap, seed, confidence
) -> ObjectiveIntervals:
    """:func:`tuning.objective_bootstrap.micro_intervals` on cuts (100 iterations at most)."""
    gain, beta2 = 1.0 + beta * beta, beta * beta
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
        for _ in range(100):
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
    cuts: list[LabelCuts], dtype, lower, upper, spec, n_bootstrap, seed, confidence
) -> ObjectiveIntervals:
    """:func:`tuning.objective_bootstrap.abstain_intervals` on cuts."""
    wilson = spec.wilson_confidence
    z = None if wilson is None else NormalDist().inv_cdf(wilson)
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
            below = total[:, None] - pp
            negatives_below = below - (positives[:, None] - tp)
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = wilson_lower(tp[:, :last], pp[:, :last], z)
                meets = (pp[:, :last] > 0) & (precision >= spec.target)
                npv_ok = (below > 0) & (wilson_lower(negatives_below, below, z) >= spec.npv_target)
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
