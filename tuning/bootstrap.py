"""Bootstrap confidence intervals for each label's threshold and its F1 there.

Method: a Poisson bootstrap over validation rows. Each replicate gives every
row a Poisson(1) weight (the large-n limit of the multinomial bootstrap), so
for one label the replicate's weighted positives and negatives at each
distinct score are independent Poisson counts with means equal to the observed
counts. That lets a replicate be drawn from the label's sorted candidates
alone, without touching the ``n`` rows again: ``B`` replicates cost ``B``
draws per candidate plus cumulative sums, all as ``(B, m)`` arrays.

Bound: a label's distinct scores are merged into at most
:data:`MAX_GROUPS` consecutive groups (equal numbers of distinct scores,
always split at the reported threshold so F1 there is exact), so the cost is
``O(B * min(m, MAX_GROUPS))`` per label on top of one sort of the inputs,
whatever ``n``. With fewer distinct scores than that, the replicate optimum is
exact; with more, it is found among group edges (a resolution of 1/MAX_GROUPS
of the label's score quantiles).

In each replicate the label is re-tuned with the same objective and strategy
(its own optimum, then the shrinkage rule with the replicate's support); the
shared threshold is held at its estimate (it pools every label, so it varies
far less than a rare label's). Under ``strategy="global"`` the shared threshold
itself is resampled: pooled positives and negatives per score bucket of
:mod:`tuning.pooled` are drawn the same way (treating (row, label) pairs as
independent) and its optimum taken among bucket edges; every label gets that
interval. F1 "at that threshold" is the F1 of the reported threshold on each
replicate. Intervals are percentile intervals at ``confidence`` (default 0.9:
the 5th and 95th percentiles). A label is ``unstable`` when either interval is
wider than :data:`WIDE_INTERVAL`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labelcut.tuning.candidates import Candidates
from labelcut.tuning.cpu import block_plan, sorted_label_blocks
from labelcut.tuning.pooled import PooledHistogram
from labelcut.tuning.select import TuningSpec, objective_values
from labelcut.tuning.strategies import blend, shrinkage_weight
from labelcut.tuning.validation import CONSTRAINED_OBJECTIVES

DEFAULT_N_BOOTSTRAP = 200
DEFAULT_CONFIDENCE = 0.9
DEFAULT_SEED = 0
MAX_GROUPS = 512
#: An interval wider than this (threshold in score units, or F1) marks the label unstable.
WIDE_INTERVAL = 0.2


@dataclass(frozen=True)
class Intervals:
    """(L,) float64 interval ends for thresholds and F1, and bool ``unstable``."""

    threshold_low: np.ndarray
    threshold_high: np.ndarray
    f1_low: np.ndarray
    f1_high: np.ndarray
    unstable: np.ndarray


@dataclass(frozen=True)
class BootstrapPlan:
    """What every label's replicates need besides its candidates."""

    spec: TuningSpec
    strategy: str
    shared: float | None
    shrinkage: float
    n_bootstrap: int
    seed: int
    confidence: float


def _best(values: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: index of the last maximum among allowed columns, and whether any is allowed."""
    masked = np.where(allowed, values, -np.inf)
    width = masked.shape[1]
    best = width - 1 - np.argmax(masked[:, ::-1], axis=1)
    return best, allowed.any(axis=1)


def _suffix_sums(draws: np.ndarray) -> np.ndarray:
    """``out[:, g] = draws[:, g:].sum(1)`` (counts at ``score >= edge g``)."""
    return np.cumsum(draws[:, ::-1], axis=1, dtype=np.float64)[:, ::-1]


def _f1(tp: np.ndarray, pp: np.ndarray, positives: np.ndarray) -> np.ndarray:
    denominator = pp + positives
    return np.where(denominator > 0, 2.0 * tp / np.maximum(denominator, 1.0), 0.0)


def _groups(candidates: Candidates, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Start indices of merged groups of distinct scores (increasing) and the index
    of the group that starts at the reported threshold's cut (len(starts) if none)."""
    m = len(candidates.bits)
    values = candidates.values
    cut = int(np.searchsorted(values, threshold, side="left"))
    starts = np.unique(np.linspace(0, m, num=min(m, MAX_GROUPS) + 1).astype(np.int64)[:-1])
    starts = np.union1d(starts, [cut] if cut < m else [])
    return starts.astype(np.int64), int(np.searchsorted(starts, cut))


def label_replicates(
    label: int, candidates: Candidates, threshold: float, plan: BootstrapPlan
) -> tuple[np.ndarray, np.ndarray]:
    """(B,) replicate thresholds and (B,) F1 at ``threshold`` for one label."""
    spec, n_boot = plan.spec, plan.n_bootstrap
    starts, cut_group = _groups(candidates, threshold)
    tp_edges = np.append(candidates.true_positives, 0.0)
    pp_edges = np.append(candidates.predicted_positives, 0.0)
    ends = np.append(starts[1:], len(candidates.bits))
    positives_in = tp_edges[starts] - tp_edges[ends]
    negatives_in = (pp_edges[starts] - pp_edges[ends]) - positives_in
    rng = np.random.default_rng([plan.seed, 0, label])
    tp = _suffix_sums(rng.poisson(positives_in, size=(n_boot, len(starts))))
    pp = tp + _suffix_sums(rng.poisson(negatives_in, size=(n_boot, len(starts))))
    positives, total = tp[:, 0], pp[:, 0]

    at = cut_group if cut_group < len(starts) else None
    f1 = _f1(
        tp[:, at] if at is not None else np.zeros(n_boot),
        pp[:, at] if at is not None else np.zeros(n_boot),
        positives,
    )
    if plan.strategy == "global":
        return np.full(n_boot, threshold), f1

    values = candidates.values
    lower = np.where(starts > 0, values[np.maximum(starts - 1, 0)], 0.0)
    edges = (values[starts] + lower) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        objective, feasible = objective_values(
            tp, np.maximum(pp, 1.0), np.maximum(positives, 1.0)[:, None], spec
        )
    allowed = pp > 0
    if feasible is not None:
        allowed &= feasible
    # A group with no weight repeats the counts of the group above: the tie rule picks the
    # higher one, as on the data itself.
    best, reachable = _best(objective, allowed)
    ok = (positives > 0) & (positives < total) & (positives >= spec.min_positives) & reachable
    own = edges[best]
    if plan.strategy == "per_label" or plan.shared is None:
        return np.where(ok, own, spec.fallback), f1
    if spec.objective in CONSTRAINED_OBJECTIVES:  # targets are per-label promises
        return np.where(ok, own, plan.shared), f1
    weight = np.where(ok, shrinkage_weight(positives, plan.shrinkage), 0.0)
    return blend(np.where(ok, own, plan.shared), plan.shared, weight), f1


def shared_replicates(histogram: PooledHistogram, plan: BootstrapPlan) -> np.ndarray:
    """(B,) replicate shared thresholds (bucket edges) from the pooled histogram."""
    filled = np.flatnonzero(histogram.counts)
    positives_in = histogram.positives[filled].astype(np.float64)
    negatives_in = histogram.counts[filled] - positives_in
    rng = np.random.default_rng([plan.seed, 1])
    n_boot = plan.n_bootstrap
    tp = _suffix_sums(rng.poisson(positives_in, size=(n_boot, len(filled))))
    pp = tp + _suffix_sums(rng.poisson(negatives_in, size=(n_boot, len(filled))))
    positives = tp[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        objective, feasible = objective_values(
            tp, np.maximum(pp, 1.0), np.maximum(positives, 1.0)[:, None], plan.spec
        )
    allowed = pp > 0
    if feasible is not None:
        allowed &= feasible
    best, reachable = _best(objective, allowed)
    ok = (positives > 0) & reachable
    return np.where(ok, histogram.edges[filled][best], plan.spec.fallback)


def bootstrap_intervals(
    scores: torch.Tensor,
    targets: torch.Tensor,
    thresholds: np.ndarray,
    plan: BootstrapPlan,
    histogram: PooledHistogram | None,
) -> Intervals:
    """Percentile intervals for every label of validated ``(n, L)`` inputs (on the CPU)."""
    block_labels, workers = block_plan(*scores.shape)
    parts = sorted_label_blocks(
        scores,
        targets,
        block_labels,
        workers,
        lambda label, candidates: label_replicates(
            label, candidates, float(thresholds[label]), plan
        ),
    )
    replicate_thresholds = np.stack([p[0] for p in parts])  # (L, B)
    replicate_f1 = np.stack([p[1] for p in parts])
    if plan.strategy == "global" and histogram is not None and plan.shared is not None:
        replicate_thresholds[:] = shared_replicates(histogram, plan)[None, :]
    tail = (1.0 - plan.confidence) / 2.0
    t_low, t_high = np.quantile(replicate_thresholds, [tail, 1.0 - tail], axis=1)
    f_low, f_high = np.quantile(replicate_f1, [tail, 1.0 - tail], axis=1)
    unstable = (t_high - t_low > WIDE_INTERVAL) | (f_high - f_low > WIDE_INTERVAL)
    return Intervals(t_low, t_high, f_low, f_high, unstable)
