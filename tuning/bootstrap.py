"""Bootstrap confidence intervals for each label's threshold and its F1 there.

Method: a Poisson bootstrap over validation rows. Each replicate gives every
row a Poisson(1) weight (the large-n limit of the multinomial bootstrap), so
for one label the replicate's weighted positives and negatives at each
distinct score are independent Poisson counts with means equal to the observed
counts. That lets a replicate be drawn from the label's sorted candidates
alone, without touching the ``n`` rows again.

Cost: a label's distinct scores are merged into at most :data:`MAX_GROUPS`
consecutive groups (equal numbers of distinct scores, always split at the
reported threshold so F1 there is exact), so the work is
``O(B * min(m, MAX_GROUPS))`` per label on top of the call's one sort, whatever
``n``. With fewer distinct scores than that, the replicate optimum is exact;
with more, it is found among group edges (a resolution of 1/MAX_GROUPS of the
label's score quantiles).

Memory bound: replicates are drawn in chunks of rows of the ``(B, groups)``
arrays sized so that one chunk's working arrays stay under
:data:`WORK_BYTES` (64 MiB) per worker thread, whatever ``n_bootstrap``, ``n``
or the number of distinct scores; what outlives a chunk is O(B) per label
(its replicate thresholds and F1, reduced to four interval ends at once).
Each label's draws come from its own seeded streams, so the answer does not
depend on the chunk size or on the threads.

In each replicate the label is re-tuned with the same objective and strategy
(its own optimum, then the shrinkage rule with the replicate's support); the
shared threshold is held at its estimate (it pools every label, so it varies
far less than a rare label's). Under ``strategy="global"`` with a tuned shared
threshold, the shared threshold itself is resampled: pooled positives and
negatives per score bucket (:mod:`tuning._shared`) are drawn the same way
(treating (row, label) pairs as independent) and its optimum taken among
edges of at most :data:`MAX_GROUPS` merged buckets; every label gets that
interval (and its F1 replicates need only the counts above and below its
threshold). When the shared threshold could not be tuned, "global" labels
keep their own thresholds, and their intervals are those of their own
re-tuned optima. F1 "at that threshold" is the F1 of
the reported threshold on each replicate. Intervals are percentile intervals
at ``confidence`` (default 0.9: the 5th and 95th percentiles). A label is
``unstable`` when either interval is wider than :data:`WIDE_INTERVAL`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from labelcut.tuning._checks import TuningSpec
from labelcut.tuning._search import OK, last_maximum, objective_values, status_codes
from labelcut.tuning._shared import PooledHistogram, blend, shrinkage_weight
from labelcut.tuning._sorted import Candidates

MAX_GROUPS = 512
#: An interval wider than this (threshold in score units, or F1) marks the label unstable.
WIDE_INTERVAL = 0.2
#: Working memory of one chunk of replicates, per worker thread.
WORK_BYTES = 64 << 20
# float64 arrays of a chunk's shape alive at once (draws, suffix sums, objective, masks).
_ARRAYS_PER_CHUNK = 10


@dataclass(frozen=True)
class Intervals:
    """(L,) float64 interval ends for thresholds and F1, and bool ``unstable``."""

    threshold_low: np.ndarray
    threshold_high: np.ndarray
    f1_low: np.ndarray
    f1_high: np.ndarray
    unstable: np.ndarray

    @classmethod
    def from_ends(cls, ends: np.ndarray) -> Intervals:
        """From an (L, 4) array of (threshold low, high, F1 low, high)."""
        t_low, t_high, f_low, f_high = (np.ascontiguousarray(ends[:, i]) for i in range(4))
        unstable = (t_high - t_low > WIDE_INTERVAL) | (f_high - f_low > WIDE_INTERVAL)
        return cls(t_low, t_high, f_low, f_high, unstable)

    def with_thresholds(self, low: float, high: float) -> Intervals:
        """The same F1 intervals with every label's threshold interval set to (low, high)."""
        t_low, t_high = np.full_like(self.f1_low, low), np.full_like(self.f1_low, high)
        unstable = (t_high - t_low > WIDE_INTERVAL) | (self.f1_high - self.f1_low > WIDE_INTERVAL)
        return Intervals(t_low, t_high, self.f1_low, self.f1_high, unstable)


def replicate_chunks(n_boot: int, width: int) -> Iterator[slice]:
    """Slices of replicates whose ``(rows, width)`` working arrays fit :data:`WORK_BYTES`."""
    rows = max(1, WORK_BYTES // (max(width, 1) * 8 * _ARRAYS_PER_CHUNK))
    for start in range(0, n_boot, rows):
        yield slice(start, min(start + rows, n_boot))


def _suffix_sums(draws: np.ndarray) -> np.ndarray:
    """``out[:, g] = draws[:, g:].sum(1)`` (counts at ``score >= edge g``)."""
    return np.cumsum(draws[:, ::-1], axis=1, dtype=np.float64)[:, ::-1]


def _f1(tp: np.ndarray, pp: np.ndarray, positives: np.ndarray) -> np.ndarray:
    denominator = pp + positives
    return np.where(denominator > 0, 2.0 * tp / np.maximum(denominator, 1.0), 0.0)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _groups(candidates: Candidates, threshold: float) -> tuple[np.ndarray, int]:
    """Start indices of merged groups of distinct scores (increasing) and the index
    of the group that starts at the reported threshold's cut (len(starts) if none)."""
    m = candidates.m
    cut = candidates.index_at(threshold)
    starts = np.unique(np.linspace(0, m, num=min(m, MAX_GROUPS) + 1).astype(np.int64)[:-1])
    starts = np.union1d(starts, [cut] if cut < m else [])
    return starts.astype(np.int64), int(np.searchsorted(starts, cut))


def _split_at(candidates: Candidates, threshold: float) -> tuple[np.ndarray, int]:
    """As :func:`_groups` with only the groups below and above the threshold's cut."""
    cut = candidates.index_at(threshold)
    starts = np.unique(np.array([0, cut if cut < candidates.m else 0], dtype=np.int64))
    return starts, int(np.searchsorted(starts, cut))


def _counts_at_starts(candidates: Candidates, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tp, pp) float64 at distinct-score indices ``starts``; index m (past the end) gives 0."""
    inside = starts < candidates.m
    clipped = np.where(inside, starts, 0)
    tp = np.where(inside, candidates.true_positives_at(clipped), 0.0)
    return tp, np.where(inside, candidates.predicted_positives_at(clipped), 0.0)


def _replicate_optima(
    tp: np.ndarray, pp: np.ndarray, positives: np.ndarray, spec: TuningSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate row: the best edge (the one tie rule) and whether the status ladder says ok."""
    with np.errstate(divide="ignore", invalid="ignore"):
        objective, feasible = objective_values(
            tp, np.maximum(pp, 1.0), np.maximum(positives, 1.0)[:, None], spec
        )
    allowed = pp > 0
    if feasible is not None:
        allowed &= feasible
    # A group with no weight repeats the counts of the group above: the tie rule picks the
    # higher one, as on the data itself.
    best, reachable = last_maximum(objective, allowed)
    ok = status_codes(pp[:, 0], positives, reachable, spec) == OK
    return best, ok


def label_intervals(
    label: int,
    candidates: Candidates,
    threshold: float,
    spec: TuningSpec,
    shared: float | None,
) -> np.ndarray:
    """(4,) interval ends (threshold low, high, F1 low, high) of one label.

    ``threshold`` is the label's reported threshold; ``shared`` the shared one
    (None when it could not be tuned). Under "global" with a shared threshold
    the threshold ends are NaN here: every label gets the shared interval.
    """
    n_boot = spec.n_bootstrap
    retune = not (spec.strategy == "global" and shared is not None)
    # Without re-tuning, F1 at the threshold needs only the counts above and below it.
    starts, cut_group = (_groups if retune else _split_at)(candidates, threshold)
    tp_at, pp_at = _counts_at_starts(candidates, np.append(starts, candidates.m))
    positives_in = tp_at[:-1] - tp_at[1:]
    negatives_in = (pp_at[:-1] - pp_at[1:]) - positives_in
    positive_rng, negative_rng = np.random.default_rng([spec.seed, 0, label]).spawn(2)
    if retune:
        below = candidates.values_at(np.maximum(starts - 1, 0))
        edges = (candidates.values_at(starts) + np.where(starts > 0, below, 0.0)) / 2.0

    replicate_thresholds = np.empty(n_boot)
    replicate_f1 = np.empty(n_boot)
    for rows in replicate_chunks(n_boot, len(starts)):
        size = (rows.stop - rows.start, len(starts))
        tp = _suffix_sums(positive_rng.poisson(positives_in, size=size))
        pp = tp + _suffix_sums(negative_rng.poisson(negatives_in, size=size))
        positives = tp[:, 0]
        if cut_group < len(starts):
            replicate_f1[rows] = _f1(tp[:, cut_group], pp[:, cut_group], positives)
        else:  # nothing predicted at the threshold
            replicate_f1[rows] = _f1(np.zeros(size[0]), np.zeros(size[0]), positives)
        if not retune:
            continue
        best, ok = _replicate_optima(tp, pp, positives, spec)
        own = edges[best]
        if spec.strategy == "per_label" or shared is None:
            replicate_thresholds[rows] = np.where(ok, own, spec.fallback)
        elif spec.constrained:  # targets are per-label promises
            replicate_thresholds[rows] = np.where(ok, own, shared)
        else:
            weight = np.where(ok, shrinkage_weight(positives, spec.shrinkage), 0.0)
            replicate_thresholds[rows] = blend(np.where(ok, own, shared), shared, weight)
    f_low, f_high = _percentiles(replicate_f1, spec.confidence)
    if not retune:
        return np.array([np.nan, np.nan, f_low, f_high])
    t_low, t_high = _percentiles(replicate_thresholds, spec.confidence)
    return np.array([t_low, t_high, f_low, f_high])


def shared_interval(histogram: PooledHistogram, spec: TuningSpec) -> tuple[float, float]:
    """Percentile interval of the shared threshold, re-tuned on pooled replicates.

    The filled buckets are merged into at most :data:`MAX_GROUPS` groups (equal
    numbers of buckets), as a label's distinct scores are; the replicate
    optimum is taken among group edges.
    """
    filled = np.flatnonzero(histogram.counts)
    starts = np.unique(
        np.linspace(0, len(filled), num=min(len(filled), MAX_GROUPS) + 1).astype(np.int64)[:-1]
    )
    positives_in = np.add.reduceat(histogram.positives[filled], starts).astype(np.float64)
    negatives_in = np.add.reduceat(histogram.counts[filled], starts) - positives_in
    edges = histogram.edges[filled[starts]]
    positive_rng, negative_rng = np.random.default_rng([spec.seed, 1]).spawn(2)
    replicate_thresholds = np.empty(spec.n_bootstrap)
    for rows in replicate_chunks(spec.n_bootstrap, len(starts)):
        size = (rows.stop - rows.start, len(starts))
        tp = _suffix_sums(positive_rng.poisson(positives_in, size=size))
        pp = tp + _suffix_sums(negative_rng.poisson(negatives_in, size=size))
        best, ok = _replicate_optima(tp, pp, tp[:, 0], spec)
        replicate_thresholds[rows] = np.where(ok, edges[best], spec.fallback)
    return _percentiles(replicate_thresholds, spec.confidence)
