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

Draws: a replicate does not draw every group. Groups within :data:`WINDOW` of
the label's own optimum (on the data) are drawn one by one; farther away they
are drawn together, in units growing from 2 to :data:`SPAN` groups. A unit's
count is then split over its groups (multinomial with the groups' shares:
together with the unit's Poisson draw, exactly independent Poisson draws per
group) only in the replicates where an upper bound of the objective inside the
unit (:func:`tuning._search.group_bounds`) reaches the best unit edge; elsewhere
no group inside can be the optimum or tie with it. So the replicate optima have
exactly the distribution of drawing all groups, at about a fifth of the draws
(``tests/tuning/test_tuning_bootstrap_units.py`` checks the pruning against
every group's counts). Labels with at most ``2 * WINDOW + 1 + SPAN`` groups draw
every group as before.

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
from typing import TYPE_CHECKING

import numpy as np

from labelcut.tuning._checks import TuningSpec
from labelcut.tuning._search import (
    OK,
    group_bounds,
    last_maximum,
    objective_values,
    status_codes,
)
from labelcut.tuning._shared import PooledHistogram, blend, shrinkage_weight
from labelcut.tuning._sorted import Candidates
from labelcut.tuning.result import f1_of_counts

if TYPE_CHECKING:
    from labelcut.tuning.adaptive import ReplicatePull

MAX_GROUPS = 512
#: An interval wider than this (threshold in score units, or F1) marks the label unstable.
WIDE_INTERVAL = 0.2
#: Groups within this many of the label's own optimum are drawn one by one; the rest
#: :data:`SPAN` at a time, split only where a replicate's optimum may lie (exact).
WINDOW = 24
SPAN = 16
BAND = 16
# Relative slack of the bound test (F-beta rounds twice along the bound's diagonal).
_BOUND_SLACK = 1e-12
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


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _groups(candidates: Candidates, threshold: float) -> tuple[np.ndarray, int]:
    """Start indices of merged groups of distinct scores (increasing) and the index
    of the group that starts at the reported threshold's cut (len(starts) if none)."""
    m = candidates.m
    cut = candidates.index_at(threshold)
    if m <= MAX_GROUPS:  # every distinct score its own group (the cut's among them)
        return np.arange(m, dtype=np.int64), cut
    starts = np.unique(np.linspace(0, m, num=MAX_GROUPS + 1).astype(np.int64)[:-1])
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


def _units(tp_at: np.ndarray, pp_at: np.ndarray, cut_group: int, spec: TuningSpec) -> np.ndarray:
    """Start groups of the units a replicate draws: each group alone within
    :data:`WINDOW` groups of the label's own optimum on the data, then units growing
    from 2 to :data:`SPAN` groups with the distance; the threshold's cut group always
    starts a unit."""
    n_groups = len(tp_at)
    if n_groups <= 2 * WINDOW + 1 + SPAN:
        return np.arange(n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        values, feasible = objective_values(
            tp_at, np.maximum(pp_at, 1.0), max(float(tp_at[0]), 1.0), spec
        )
    allowed = pp_at > 0 if feasible is None else (pp_at > 0) & feasible
    best, reachable = last_maximum(values, allowed)
    center = int(best) if bool(reachable) else min(cut_group, n_groups - 1)
    low, high = max(0, center - WINDOW), min(n_groups, center + WINDOW + 1)
    above = high + np.cumsum(_sizes_outward(n_groups - high)) - _sizes_outward(n_groups - high)
    below = low - np.cumsum(_sizes_outward(low))  # each unit ends where the one above starts
    parts = [np.arange(low, high), above[above < n_groups], np.maximum(below, 0), [0]]
    if cut_group < n_groups:
        parts.append([cut_group])
    return np.unique(np.concatenate(parts).astype(np.int64))


def _sizes_outward(count: int) -> np.ndarray:
    """Sizes of the units that cover ``count`` groups going outward: 2, 4, ... up to
    :data:`SPAN`, each size for :data:`BAND` groups (the last unit may overrun)."""
    sizes, covered, size = [], 0, 2
    while covered < count:
        for _ in range(max(BAND // size, 1)):
            if covered >= count:
                break
            sizes.append(size)
            covered += size
        size = min(size * 2, SPAN)
    return np.array(sizes, dtype=np.int64)


#: Rows per call of ``Generator.multinomial``: it holds the GIL for the whole call (about
#: 2.7 ms per 1,000 rows of 64 groups), so 200,000 rows in one call stalled the server's
#: event loop for 0.5 s. Rows are drawn in order, so the chunks give the same draws.
_MULTINOMIAL_ROWS = 4096


def _multinomial(rng: np.random.Generator, counts: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """``rng.multinomial(counts, shares)`` ((K,) counts, (K, width) shares), in chunks of
    :data:`_MULTINOMIAL_ROWS` rows: the same draws, with the GIL free between chunks."""
    if len(counts) <= _MULTINOMIAL_ROWS:
        return rng.multinomial(counts, shares)
    return np.concatenate(
        [
            rng.multinomial(counts[i : i + _MULTINOMIAL_ROWS], shares[i : i + _MULTINOMIAL_ROWS])
            for i in range(0, len(counts), _MULTINOMIAL_ROWS)
        ]
    )


class _Replicates:
    """One label's replicate counts: Poisson draws per unit of groups (:func:`_units`), and
    for the (replicate, unit) pairs whose bound says the optimum may lie inside, the
    unit's split over its groups given its draw (multinomial, from separate streams, so
    the draws do not depend on the chunks).

    The split of a Poisson count over its groups is multinomial with the groups' shares,
    so the counts at every group edge have exactly the distribution of independent
    Poisson draws per group; units whose bound stays below a replicate's best edge can
    hold neither a maximum nor a tie with it, so they are never split.
    """

    def __init__(
        self,
        positives_in: np.ndarray,
        negatives_in: np.ndarray,
        units: np.ndarray,
        rngs: list[np.random.Generator],
    ) -> None:
        self.units = units
        self.n_groups = len(positives_in)
        self.bounds = np.append(units, self.n_groups)
        self.sizes = np.diff(self.bounds)
        self.unit_positives = np.add.reduceat(positives_in, units)
        self.unit_negatives = np.add.reduceat(negatives_in, units)
        self.rngs = rngs
        width = int(self.sizes.max())
        # Each unit's groups' shares of its positives and negatives, padded to `width`.
        member = self.units[:, None] + np.arange(width)
        inside = member < self.bounds[1:, None]
        member = np.where(inside, member, 0)
        self.inside = inside

        def shares(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
            grouped = np.where(inside, counts[member], 0.0)
            empty = totals <= 0
            grouped[empty, 0] = 1.0  # a unit without counts: its (zero) draw goes anywhere
            return grouped / np.where(empty, 1.0, totals)[:, None]

        if width > 1:
            self.positive_shares = shares(positives_in, self.unit_positives)
            self.negative_shares = shares(negatives_in, self.unit_negatives)

    def draw(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(tp, pp) (rows, units) at each unit's start and the units' own draws."""
        size = (rows, len(self.units))
        positive_draws = self.rngs[0].poisson(self.unit_positives, size=size)
        negative_draws = self.rngs[1].poisson(self.unit_negatives, size=size)
        tp = _suffix_sums(positive_draws)
        return tp, tp + _suffix_sums(negative_draws), positive_draws, negative_draws

    def optima(
        self,
        tp: np.ndarray,
        pp: np.ndarray,
        positive_draws: np.ndarray,
        negative_draws: np.ndarray,
        spec: TuningSpec,
        prune: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`_replicate_optima` over every group edge, splitting only the units
        whose bound reaches the best unit edge (with a relative slack for F-beta's
        double rounding: splitting more never changes the answer); ``prune=False``
        splits every unit (the reference the tests compare with)."""
        rows = len(tp)
        positives = tp[:, 0]
        scale = np.maximum(positives, 1.0)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            edge_values, feasible = objective_values(tp, np.maximum(pp, 1.0), scale, spec)
        edge_allowed = pp > 0 if feasible is None else (pp > 0) & feasible
        values = np.full((rows, self.n_groups), -np.inf)
        allowed = np.zeros((rows, self.n_groups), dtype=bool)
        values[:, self.units] = edge_values
        allowed[:, self.units] = edge_allowed
        if self.sizes.max() > 1:
            best_edge = np.where(edge_allowed, edge_values, -np.inf).max(axis=1)
            above_tp = np.concatenate((tp[:, 1:], np.zeros((rows, 1))), axis=1)
            above_pp = np.concatenate((pp[:, 1:], np.zeros((rows, 1))), axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                bound = group_bounds(above_tp, above_pp, positive_draws, scale, spec)
            reach = best_edge - np.abs(best_edge) * _BOUND_SLACK
            split = (self.sizes > 1) & (bound > -np.inf) & (bound >= reach[:, None])
            if not prune:
                split = np.broadcast_to(self.sizes > 1, bound.shape)
            self._split(
                split,
                above_tp,
                above_pp,
                positive_draws,
                negative_draws,
                scale,
                spec,
                values,
                allowed,
            )
        index, reachable = last_maximum(values, allowed)
        ok = status_codes(pp[:, 0], positives, reachable, spec) == OK
        return index, ok

    def split_counts(
        self,
        row: np.ndarray,
        unit: np.ndarray,
        positive_draws: np.ndarray,
        negative_draws: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(K, width) positives and negatives of each group of units ``unit[k]`` in
        replicates ``row[k]``, given the units' draws (padding groups get 0)."""
        positive = _multinomial(
            self.rngs[2], positive_draws[row, unit].astype(np.int64), self.positive_shares[unit]
        )
        negative = _multinomial(
            self.rngs[3], negative_draws[row, unit].astype(np.int64), self.negative_shares[unit]
        )
        return positive, negative

    def _split(
        self,
        split,
        above_tp,
        above_pp,
        positive_draws,
        negative_draws,
        scale,
        spec,
        values,
        allowed,
    ) -> None:
        """Fill ``values``/``allowed`` at the inner edges of the split (replicate, unit) pairs."""
        row, unit = np.nonzero(split)
        if len(row) == 0:
            return
        positive, negative = self.split_counts(row, unit, positive_draws, negative_draws)
        inner_tp = above_tp[row, unit][:, None] + _suffix_sums(positive)
        inner_pp = above_pp[row, unit][:, None] + _suffix_sums(positive + negative)
        with np.errstate(divide="ignore", invalid="ignore"):
            inner_values, feasible = objective_values(
                inner_tp, np.maximum(inner_pp, 1.0), scale[row], spec
            )
        inner = self.inside[unit].copy()
        inner[:, 0] = False  # the unit's start: already an edge
        inner_allowed = inner & (inner_pp > 0)
        if feasible is not None:
            inner_allowed &= feasible
        pair, offset = np.nonzero(inner)
        column = self.units[unit[pair]] + offset
        values[row[pair], column] = inner_values[pair, offset]
        allowed[row[pair], column] = inner_allowed[pair, offset]


def label_intervals(
    label: int,
    candidates: Candidates,
    threshold: float,
    spec: TuningSpec,
    shared: float | None,
    pull: ReplicatePull | None = None,
) -> np.ndarray:
    """(4,) interval ends (threshold low, high, F1 low, high) of one label.

    ``threshold`` is the label's reported threshold; ``shared`` the shared one
    (None when it could not be tuned). Under "global" with a shared threshold
    the threshold ends are NaN here: every label gets the shared interval.
    ``pull`` (the "adaptive" strategy's, :class:`tuning.adaptive.ReplicatePull`): each
    replicate's re-tuned "shrunk" threshold or own optimum is mapped through the kept rule,
    so the interval is that of the reported threshold (without it, "adaptive" replicates
    would be "shrunk" ones, and the reported threshold fell outside its own interval for
    30-70% of the labels of bench_tuning-style data).
    """
    n_boot = spec.n_bootstrap
    retune = not (spec.strategy == "global" and shared is not None)
    # Without re-tuning, F1 at the threshold needs only the counts above and below it.
    starts, cut_group = (_groups if retune else _split_at)(candidates, threshold)
    tp_at, pp_at = _counts_at_starts(candidates, np.append(starts, candidates.m))  # (G + 1,)
    positives_in = tp_at[:-1] - tp_at[1:]
    negatives_in = (pp_at[:-1] - pp_at[1:]) - positives_in
    rngs = np.random.default_rng([spec.seed, 0, label]).spawn(4)
    units = np.arange(len(starts))
    if retune:
        units = _units(tp_at[:-1], pp_at[:-1], cut_group, spec)
    replicates = _Replicates(positives_in, negatives_in, units, rngs)
    cut_unit = int(np.searchsorted(units, cut_group))
    if retune:
        below = candidates.values_at(np.maximum(starts - 1, 0))
        # The same indices as the counts' query above (the candidates remember its positions).
        values = candidates.values_at(np.append(starts, 0))[:-1]
        edges = (values + np.where(starts > 0, below, 0.0)) / 2.0

    replicate_thresholds = np.empty(n_boot)
    replicate_f1 = np.empty(n_boot)
    for rows in replicate_chunks(n_boot, len(starts)):
        size = rows.stop - rows.start
        tp, pp, positive_draws, negative_draws = replicates.draw(size)
        positives = tp[:, 0]
        if cut_group < len(starts):
            replicate_f1[rows] = f1_of_counts(tp[:, cut_unit], pp[:, cut_unit], positives)
        else:  # nothing predicted at the threshold
            replicate_f1[rows] = f1_of_counts(np.zeros(size), np.zeros(size), positives)
        if not retune:
            continue
        best, ok = replicates.optima(tp, pp, positive_draws, negative_draws, spec)
        own = edges[best]
        if pull is not None and pull.component == "own":
            replicate_thresholds[rows] = pull.thresholds(np.where(ok, own, pull.at_data))
        elif spec.strategy == "per_label" or shared is None:
            replicate_thresholds[rows] = np.where(ok, own, spec.fallback)
        elif spec.constrained:  # targets are per-label promises
            replicate_thresholds[rows] = np.where(ok, own, shared)
        else:
            weight = np.where(ok, shrinkage_weight(positives, spec.shrinkage), 0.0)
            replicate_thresholds[rows] = blend(np.where(ok, own, shared), shared, weight)
        if pull is not None and pull.component == "shrunk":
            replicate_thresholds[rows] = pull.thresholds(replicate_thresholds[rows])
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
