"""What to expect on new data: the cross-fitted estimate every tune reports (issue 20).

How it is built:

1. **Folds.** The validation rows are dealt round-robin into :data:`FOLDS`
   folds in order of their rarest positive label (the label with the fewest
   positives among a row's labels; rows without a label last; ties broken by
   a seeded shuffle), so each label's positives spread evenly over the folds.
2. **Tune on the other folds.** For each fold, every label is tuned on the
   rows of the other folds with the same objective, strategy and parameters.
   Nothing is sorted again: the tune's own sorted pass also sorts each fold's
   rows of a label on their own (a copy of the label's keys, cut into the
   folds' segments), and the training rows' counts at a cut are the whole
   label's counts minus the fold's (a binary search in the fold's sorted keys).
   Cuts are every distinct score when a label has at most
   :data:`EXACT_ROWS` rows, else :data:`GRID_POINTS` cuts at evenly spaced
   sorted positions. The shared threshold of the training rows (``shrunk``,
   ``global``) is the best of every :data:`EDGE_STEP`-th pooled bucket edge of
   :mod:`tuning._shared` (about 5,000 edges), from each fold's counts there.
3. **Pool.** Each row gets the decisions of the thresholds tuned without its
   fold; the pooled out-of-fold decisions give ``expected`` macro-F1, micro-F1
   and per-label F1.
4. **Interval.** A Poisson bootstrap (:data:`BOOTSTRAP` replicates) over at
   most :data:`MAX_GROUPS` random row groups of the pooled out-of-fold counts
   (fewer above 131 labels, :func:`group_count`, so its sums stay bounded) gives
   the figure's standard deviation ``sd``; the 90% interval for a new
   sample of the same kind and size as the validation set is
   ``expected +- 1.645 * sqrt(2) * sd`` (``sqrt(2)``: the estimate's own noise
   plus the new sample's), clipped to [0, 1].
5. **Blend.** Once the tune's in-sample counts are known, :func:`with_in_sample` makes
   ``expected`` the .632+ blend (Efron & Tibshirani 1997) of the in-sample and the
   cross-fitted figures: the cross-fitted figure's weight is 0.632 where the folds show
   no overfitting, rising to 1 as the in-sample figure's edge over the no-information F1
   turns out to be all overfitting. The interval is centred on the blend and widened by
   the optimism the blend keeps; the cross-fitted figures stay beside it.

Labels with fewer than ``2 * FOLDS`` positives get ``expected_f1`` None and a
reason (their figure would be noise); they still count in the expected
macro- and micro-F1, as they count in the in-sample ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from scipy import sparse

from labelcut.tuning import _search, _shared
from labelcut.tuning._checks import TuningSpec
from labelcut.tuning._products import count_product
from labelcut.tuning._sorted import (
    BitRank,
    Candidates,
    bits_to_float,
    positive_flags,
    query_bits,
    work_dtypes,
    worker_threads,
)
from labelcut.tuning.result import f1_of_counts

T = TypeVar("T")

FOLDS = 5
BOOTSTRAP = 200
MAX_GROUPS = 1000
Z_90 = 1.6448536269514722
#: Labels with at most this many rows are tuned over every distinct score in each fold.
EXACT_ROWS = 8192
#: Cuts per label above EXACT_ROWS rows (evenly spaced sorted positions).
GRID_POINTS = 4096
#: The folds' shared thresholds are searched among every EDGE_STEP-th pooled bucket edge
#: (about 5,000 edges, 2**-8 apart relative to the score).
EDGE_STEP = 4
_ROWS_PER_CHUNK = 1 << 13  # rows per chunk of the out-of-fold pass (int16 sums exact)
_CHUNK_ELEMENTS = 1 << 22  # and scores per chunk at most
#: Row groups of all labels together at most (the (3, groups, labels) running sums per
#: thread): above GROUP_BUDGET / MAX_GROUPS (131) labels, fewer groups (MIN_GROUPS at least).
GROUP_BUDGET = 1 << 17
MIN_GROUPS = 100
#: Fewer validation rows than this (two per fold) give no estimate, with a reason.
MIN_ROWS = 2 * FOLDS
#: The cross-fitted figure's weight when the in-sample one shows no overfitting (.632+).
OUT_OF_FOLD_SHARE = 0.632
BLEND_METHOD = (
    f"expected = (1 - w) * in-sample + w * cross-fitted, w = {OUT_OF_FOLD_SHARE} / (1 - "
    f"{1 - OUT_OF_FOLD_SHARE:.3f} R) with R the relative overfitting rate (in-sample - "
    "cross-fitted) / (in-sample - no-information F1), clipped to [0, 1] (the .632+ rule of "
    "Efron & Tibshirani 1997); the interval is centred on it, its half-width widened in "
    "quadrature by (1 - w) * max(in-sample - cross-fitted, 0)"
)
METHOD = (
    f"{FOLDS}-fold cross-fit: tuned on the other folds with the same parameters, scored on "
    "the held-out fold, pooled; 90% interval = expected +- 1.645 * sqrt(2) * sd of a Poisson "
    f"bootstrap ({BOOTSTRAP} replicates) over at most {MAX_GROUPS} row groups (fewer above "
    f"{GROUP_BUDGET // MAX_GROUPS} labels, at least {MIN_GROUPS})"
)


def _in_chunks(
    n_rows: int, rows: int, work: Callable[[slice], T], merge: Callable[[list[T]], T]
) -> T:
    """``merge`` of ``work(rows slice)`` over consecutive row chunks, in order.

    Each worker thread takes one contiguous run of chunks and merges its own
    results first, so at most one merged result per thread is held.
    """
    chunks = [slice(start, start + rows) for start in range(0, n_rows, rows)]
    threads = min(worker_threads(), len(chunks))
    if threads <= 1:
        return merge([work(chunk) for chunk in chunks])
    runs = np.array_split(np.arange(len(chunks)), threads)

    def run(indices: np.ndarray) -> T:
        return merge([work(chunks[i]) for i in indices.tolist()])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return merge(list(pool.map(run, runs)))


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


def _zero_one(targets: torch.Tensor, chunk: slice) -> np.ndarray:
    """Rows ``chunk`` of validated 0/1 targets as a numpy bool or integer array (no copy
    for bool and integer dtypes)."""
    found = targets[chunk].cpu()
    if found.dtype == torch.bool or not (found.dtype.is_floating_point or found.is_complex()):
        return found.numpy()
    return (found != 0).numpy()


def _rarest_order(rarity: np.ndarray, tiebreak: np.ndarray, n_labels: int) -> np.ndarray:
    """Rows sorted by ``rarity`` (ints in 0..n_labels), ties by ``tiebreak`` (floats
    ``k / 2**53`` in [0, 1), as ``Generator.random`` draws them), ties of both by row: the
    same permutation as ``np.lexsort((tiebreak, rarity))``.

    One sort of uint64 keys ``rarity | top bits of tiebreak | row`` (numpy sorts plain
    integers faster than it argsorts: at 1M rows a median of 29 ms against 73 ms here),
    the row read back from the low bits. Rows whose rarity and top bits agree (a few
    in a million) are then put in full-tiebreak order. Where too few tiebreak bits fit
    for that to stay rare, one argsort of ``rarity << 53 | tiebreak``, or lexsort.
    """
    n_rows = len(rarity)
    row_bits = max(1, (n_rows - 1).bit_length())
    tie_bits = min(53, 64 - row_bits - max(1, int(n_labels).bit_length()))
    # Expected pairs sharing their top bits: about n**2 / 2**(tie_bits + 1); at most n / 64.
    if tie_bits < 8 or n_rows > 1 << (tie_bits - 5):
        return _rarest_order_argsort(rarity, tiebreak, n_labels)
    ties = (tiebreak * 2.0**53).astype(np.uint64) >> np.uint64(53 - tie_bits)
    keys = rarity.astype(np.uint64) << np.uint64(tie_bits + row_bits)
    keys |= ties << np.uint64(row_bits)
    keys |= np.arange(n_rows, dtype=np.uint64)
    keys.sort()
    order = (keys & np.uint64((1 << row_bits) - 1)).astype(np.int64)
    prefix = keys >> np.uint64(row_bits)
    same = prefix[1:] == prefix[:-1]
    if not same.any():
        return order
    # Runs of equal prefixes (each in row order now): reorder each by the full tiebreak,
    # then row, in place.
    involved = np.zeros(n_rows, dtype=bool)
    involved[1:] |= same
    involved[:-1] |= same
    starts = involved.copy()
    starts[1:] &= ~same
    run = np.cumsum(starts)[involved]
    rows = order[involved]
    order[involved] = rows[np.lexsort((rows, tiebreak[rows], run))]
    return order


def _rarest_order_argsort(rarity: np.ndarray, tiebreak: np.ndarray, n_labels: int) -> np.ndarray:
    """:func:`_rarest_order` by one argsort of ``rarity << 53 | tiebreak`` (lexsort when the
    rarity does not fit above the 53 random bits)."""
    if n_labels >= 1 << 10:
        return np.lexsort((tiebreak, rarity))
    keys = (rarity.astype(np.int64) << 53) | (tiebreak * 2.0**53).astype(np.int64)
    order = np.argsort(keys)
    ordered = keys[order]
    if np.any(ordered[1:] == ordered[:-1]):  # equal keys: lexsort keeps them in row order
        order = np.argsort(keys, kind="stable")
    return order


def spread_folds(
    targets: torch.Tensor,
    n_folds: int = FOLDS,
    seed: int = 0,
    support: np.ndarray | None = None,
) -> np.ndarray:
    """Fold of each row, int8 (n,): dealt round-robin in order of the rarest positive label.

    ``support`` (L,): the labels' positives when already counted (else one pass counts them).
    """
    n_samples, n_labels = targets.shape
    rows = max(1, (1 << 21) // n_labels)
    if support is None:
        # A chunk's counts fit uint16 below 2**16 rows: a narrower sum, less memory traffic.
        count_type = np.uint16 if rows < 1 << 16 else np.int64
        support = _in_chunks(
            n_samples,
            rows,
            lambda c: _zero_one(targets, c).sum(0, dtype=count_type).astype(np.int64),
            _sum,
        )
    # A row's rarity is the smallest rank (by support) among its labels, n_labels for a
    # row without one: n_labels minus the largest of the weights n_labels - rank over its
    # labels (one multiply and one max per chunk, in the smallest integer type that fits).
    rank = np.empty(n_labels, dtype=np.int64)
    rank[np.argsort(support, kind="stable")] = np.arange(n_labels)
    weight_type = np.uint8 if n_labels < 2**8 else np.int16 if n_labels < 2**15 else np.int32
    weights = (n_labels - rank).astype(weight_type)

    def rarity_of(chunk: slice) -> np.ndarray:
        weighted = np.multiply(_zero_one(targets, chunk), weights, casting="unsafe")
        return n_labels - weighted.max(axis=1).astype(np.int64)

    rarity = _in_chunks(n_samples, rows, rarity_of, np.concatenate)
    order = _rarest_order(rarity, np.random.default_rng(seed).random(n_samples), n_labels)
    folds = np.empty(n_samples, dtype=np.int8)
    folds[order] = np.arange(n_samples) % n_folds
    return folds


@dataclass(frozen=True)
class FoldPlan:
    """The folds of one call: ``folds`` (n,) int8, ``order`` the rows sorted by fold,
    ``bounds`` (K + 1,) where each fold's rows start in ``order``."""

    folds: np.ndarray
    order: np.ndarray
    bounds: np.ndarray

    @classmethod
    def build(
        cls,
        targets: torch.Tensor,
        seed: int,
        n_folds: int = FOLDS,
        support: np.ndarray | None = None,
    ) -> FoldPlan:
        folds = spread_folds(targets, n_folds, seed, support)
        # int32 where it fits: it is kept for the whole call (a third of a keys row).
        order = np.argsort(folds, kind="stable").astype(_index_dtype(len(folds)))
        sizes = np.bincount(folds, minlength=n_folds)
        return cls(folds, order, np.concatenate(([0], np.cumsum(sizes))))

    @property
    def n_folds(self) -> int:
        return len(self.bounds) - 1


class FoldTuning:
    """Each fold's training-rows tune, filled label by label during the sorted pass.

    After the pass, :meth:`thresholds` gives the (K, L) thresholds tuned without
    each fold (with the strategy of ``spec``).
    """

    def __init__(
        self,
        plan: FoldPlan,
        spec: TuningSpec,
        n_labels: int,
        score_dtype: torch.dtype,
        float_dtype: type[np.floating],
        pooled: _shared.PooledCounts | None,
    ) -> None:
        self.plan, self.spec, self.score_dtype, self.float_dtype = (
            plan,
            spec,
            score_dtype,
            float_dtype,
        )
        k = plan.n_folds
        self.own = np.zeros((k, n_labels))
        self.codes = np.zeros((k, n_labels), dtype=np.int64)
        self.train_positives = np.zeros((k, n_labels), dtype=np.int64)
        self.pooled = pooled
        if pooled is not None:
            # Every EDGE_STEP-th pooled bucket edge (and the end): the folds' shared
            # thresholds are searched among these.
            self.edges = np.arange(0, len(pooled.bucketing.edge_bits), EDGE_STEP)
            size = len(self.edges) + 1
            self.fold_tp = np.zeros((k, size), dtype=np.int64)
            self.fold_pp = np.zeros((k, size), dtype=np.int64)
            self._lock = threading.Lock()

    def add_label(self, label: int, full: Candidates, segments: list[np.ndarray]) -> None:
        """Tune ``label`` on each fold's training rows.

        ``segments[f]``: fold f's keys (``bits << 1 | target``), sorted. A fold's counts
        at a cut are one binary search in its keys and a rank of its positives (one
        :class:`BitRank` over the folds' keys side by side); the folds' searches, status
        ladders and midpoints are then one (K, cuts) computation, not one per fold.
        """
        n, positives = full.n_samples, full.positives
        keys = full.keys
        if n <= EXACT_ROWS:
            starts = full.starts.astype(np.int64)
        else:
            sampled = keys[np.linspace(0, n - 1, GRID_POINTS).astype(np.int64)] >> 1
            starts = np.searchsorted(keys, sampled << 1, side="left")  # non-decreasing
            starts = starts[np.concatenate(([True], starts[1:] != starts[:-1]))]
        cut_bits = keys[starts] >> 1
        tp_all = positives - full.positives_before(starts)
        pp_all = n - starts
        values = bits_to_float(cut_bits, self.float_dtype)
        cut_keys = cut_bits << 1
        lengths = np.array([len(segment) for segment in segments], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        flags = np.empty(int(offsets[-1]), dtype=np.uint8)
        for segment, low, high in zip(segments, offsets[:-1], offsets[1:], strict=True):
            positive_flags(segment, flags[low:high])
        rank = BitRank(flags)
        ends = rank.rank(offsets)  # positives before each fold's start, and the total
        fold_positives = np.diff(ends)  # (K,)

        def counts(query_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """(K, Q) fold (true, predicted) positives of ``score >= value of key >> 1``."""
            first = np.stack([np.searchsorted(s, query_keys, side="left") for s in segments])
            tp = ends[1:, None] - rank.rank(offsets[:-1, None] + first)
            return tp, lengths[:, None] - first

        fold_tp, fold_pp = counts(cut_keys)
        tp = (tp_all - fold_tp).astype(np.float64)
        pp = (pp_all - fold_pp).astype(np.float64)
        train_positives = positives - fold_positives
        scores, feasible = _search.objective_values(
            tp,
            np.maximum(pp, 1.0),
            np.maximum(train_positives, 1).astype(np.float64)[:, None],
            self.spec,
        )
        allowed = pp > 0 if feasible is None else (pp > 0) & feasible
        index, reachable = _search.last_maximum(scores, allowed)
        folds = np.arange(len(segments))
        self.codes[:, label] = _search.status_codes(
            n - lengths, train_positives, reachable, self.spec
        )
        self.train_positives[:, label] = train_positives
        # Cuts below the chosen one that predict more rows: the highest of them is the
        # lowest score predicted negative.
        before = np.arange(pp.shape[1]) < index[:, None]
        below = (before & (pp > pp[folds, index][:, None])).sum(1)
        lowers = np.where(below > 0, values[np.maximum(below - 1, 0)], 0.0)
        self.own[:, label] = _search.midpoint_thresholds(
            values[index], lowers, below > 0, self.score_dtype
        )
        if self.pooled is not None:
            edge_keys = self.pooled.bucketing.edge_bits[self.edges].astype(keys.dtype) << 1
            # Edges at or below the label's lowest key count every row of the fold, edges
            # above its highest none: only those between are searched.
            low, high = np.searchsorted(edge_keys, keys[[0, -1]], side="right").tolist()
            inner_tp, inner_pp = counts(edge_keys[low:high])
            with self._lock:
                self.fold_tp[:, :low] += fold_positives[:, None]
                self.fold_pp[:, :low] += lengths[:, None]
                self.fold_tp[:, low:high] += inner_tp
                self.fold_pp[:, low:high] += inner_pp

    def _shared_threshold(self, fold: int) -> float | None:
        """The training rows' pooled optimum over the bucket edges (None if not tunable)."""
        pooled = self.pooled
        at = np.append(self.edges, len(pooled.true_positives) - 1)  # the end: counts 0
        tp = (pooled.true_positives[at] - self.fold_tp[fold]).astype(np.float64)
        pp = (pooled.predicted_positives[at] - self.fold_pp[fold]).astype(np.float64)
        positives = tp[0]
        values, feasible = _search.objective_values(
            tp, np.maximum(pp, 1.0), max(positives, 1.0), self.spec
        )
        allowed = pp > 0 if feasible is None else (pp > 0) & feasible
        index, reachable = _search.last_maximum(values, allowed)
        code = int(_search.status_codes(pp[0], positives, reachable, self.spec))
        if code != _search.OK:
            return None
        edges = bits_to_float(pooled.bucketing.edge_bits[self.edges], self.float_dtype)
        return float(edges[min(int(index), len(edges) - 1)])

    def thresholds(self) -> np.ndarray:
        """(K, L) float64: each fold's thresholds, tuned without it."""
        spec = self.spec
        final = np.empty_like(self.own)
        for fold in range(self.plan.n_folds):
            shared = None if self.pooled is None else self._shared_threshold(fold)
            ok = self.codes[fold] == _search.OK
            statuses = [_search.STATUSES[c] for c in self.codes[fold].tolist()]
            final[fold], _ = _shared.combine(
                spec.strategy,
                self.own[fold],
                ok,
                self.train_positives[fold],
                shared,
                spec.fallback,
                spec.shrinkage,
                statuses=statuses,
                constrained=spec.constrained,
            )
        return final


def _index_dtype(n: int) -> type[np.signedinteger]:
    return np.int32 if n < 2**31 else np.int64


def row_groups(n_samples: int, n_labels: int, seed: int) -> np.ndarray:
    """(n,) each row's random group for the estimate's bootstrap (:func:`group_count`
    groups), int16. Drawn once per call: a tune draws them at its start, when little else
    is held, rather than at the estimate, beside its final walk (8 MB of int64 at 1M rows)."""
    n_groups = min(group_count(n_labels), n_samples)
    groups = np.random.default_rng([seed, 20]).integers(0, n_groups, n_samples)
    return groups.astype(np.int16)  # MAX_GROUPS < 2**15


def _group_counts(
    scores: torch.Tensor,
    targets: torch.Tensor,
    plan: FoldPlan,
    thresholds: np.ndarray,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row group (G, L) float64: out-of-fold true positives, predicted positives, positives.

    One pass over the rows in chunks: each row is compared with its fold's
    thresholds in the scores' work dtype (the smallest work-dtype value >= each
    threshold, so the comparison is exact), and a sparse (G, rows) indicator
    sums the chunk's rows into their random groups (``groups``: :func:`row_groups` of the
    same seed, drawn here when not given).
    """
    n_samples, n_labels = scores.shape
    n_groups = min(group_count(n_labels), n_samples)
    if groups is None:
        groups = row_groups(n_samples, n_labels, seed)
    float_dtype, _ = work_dtypes(scores.dtype)
    flat = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    limits = query_bits(np.minimum(flat, 1.0), float_dtype).view(float_dtype)
    # A threshold above 1 predicts nothing: above every score, whatever the dtype.
    limits = np.where(flat > 1.0, np.inf, limits).astype(float_dtype).reshape(thresholds.shape)

    # int16 sums are exact: a chunk has at most _ROWS_PER_CHUNK (< 2**15) rows; and at most
    # _CHUNK_ELEMENTS scores, whatever the labels (the work arrays are a chunk's shape).
    chunk_rows = max(1, min(_ROWS_PER_CHUNK, _CHUNK_ELEMENTS // max(n_labels, 1)))
    ones = np.ones(chunk_rows, dtype=np.int16)
    column_starts = np.arange(chunk_rows + 1)
    local = threading.local()

    def work(rows: slice) -> np.ndarray:
        if not hasattr(local, "limits"):  # work arrays per thread: no page faults per chunk
            shape = (chunk_rows, n_labels)
            local.limits = np.empty(shape, float_dtype)
            local.passes, local.truth = np.empty(shape, bool), np.empty(shape, bool)
        chunk = scores[rows].cpu()
        if chunk.dtype == torch.bfloat16:
            chunk = chunk.to(torch.float32)
        found = targets[rows].cpu().numpy()
        size = len(found)
        truth, passes, fold_limits = local.truth[:size], local.passes[:size], local.limits[:size]
        np.not_equal(found, 0, out=truth)
        # mode="clip": the folds are valid indices, and "raise" with out= is ten times slower.
        np.take(limits, plan.folds[rows], axis=0, out=fold_limits, mode="clip")
        np.greater_equal(chunk.numpy(), fold_limits, out=passes)
        # Column i holds a 1 in row groups[i]: built as CSC directly (no COO conversion),
        # and the product adds each row of the chunk (0/1 bytes) into its group's row.
        indicator = sparse.csc_matrix(
            (ones[:size], groups[rows], column_starts[: size + 1]), shape=(n_groups, size)
        )
        if not hasattr(local, "sums"):  # this thread's running totals
            local.sums = np.zeros((3, n_groups, n_labels), dtype=np.int64)
            totals.append(local.sums)
        sums = local.sums
        sums[2] += indicator @ truth.view(np.uint8)
        sums[1] += indicator @ passes.view(np.uint8)
        sums[0] += indicator @ np.logical_and(passes, truth, out=passes).view(np.uint8)

    totals: list[np.ndarray] = []  # one running total per thread, summed at the end
    _in_chunks(n_samples, chunk_rows, work, lambda _: None)
    out = _sum(totals).astype(np.float64)
    return out[0], out[1], out[2]


def group_count(n_labels: int) -> int:
    """Row groups of the estimate's bootstrap for ``n_labels`` labels: :data:`MAX_GROUPS`
    while all labels' groups fit :data:`GROUP_BUDGET`, else fewer, down to
    :data:`MIN_GROUPS`."""
    return max(MIN_GROUPS, min(MAX_GROUPS, GROUP_BUDGET // max(n_labels, 1)))


def _interval(expected: float, replicates: np.ndarray) -> list[float]:
    half = Z_90 * float(np.sqrt(2.0)) * float(np.std(replicates))
    return [float(max(0.0, expected - half)), float(min(1.0, expected + half))]


def estimate_from_thresholds(
    scores: torch.Tensor,
    targets: torch.Tensor,
    plan: FoldPlan,
    thresholds: np.ndarray,
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """The estimate's JSON-ready figures from the (K, L) out-of-fold thresholds
    (``groups``: the rows' :func:`row_groups`, drawn here when not given).

    ``macro_f1``/``micro_f1``: ``{"expected": float, "expected_interval": [lo, hi]}``;
    ``expected_f1`` (L,) float or None, ``expected_f1_reason`` (L,) str or None;
    ``method`` (how it was built), ``folds``.
    """
    tp, pp, positives = _group_counts(scores, targets, plan, thresholds, seed, groups)
    per_label = f1_of_counts(tp.sum(0), pp.sum(0), positives.sum(0))
    macro = float(per_label.mean())
    micro = float(f1_of_counts(tp.sum(), pp.sum(), positives.sum()))
    weights = np.random.default_rng([seed, 21]).poisson(1.0, (BOOTSTRAP, tp.shape[0]))
    weights = weights.astype(np.float64)
    boot_tp, boot_pp, boot_pos = (count_product(weights, x) for x in (tp, pp, positives))
    boot_macro = f1_of_counts(boot_tp, boot_pp, boot_pos).mean(1)
    boot_micro = f1_of_counts(boot_tp.sum(1), boot_pp.sum(1), boot_pos.sum(1))
    support = positives.sum(0)
    minimum = 2 * plan.n_folds
    expected_f1: list[float | None] = []
    reasons: list[str | None] = []
    for j, count in enumerate(support.astype(np.int64).tolist()):
        if count < minimum:
            expected_f1.append(None)
            reasons.append(
                f"{count} positive(s): fewer than {minimum} (2 per fold of {plan.n_folds}) "
                "is too few for an out-of-fold estimate"
            )
        else:
            expected_f1.append(float(per_label[j]))
            reasons.append(None)
    return {
        "macro_f1": {"expected": macro, "expected_interval": _interval(macro, boot_macro)},
        "micro_f1": {"expected": micro, "expected_interval": _interval(micro, boot_micro)},
        "expected_f1": expected_f1,
        "expected_f1_reason": reasons,
        "method": METHOD,
        "folds": plan.n_folds,
    }


def no_information_f1(
    support: np.ndarray, predicted: np.ndarray, n_samples: int
) -> tuple[np.ndarray, float]:
    """(L,) per-label and the micro F1 of decisions independent of the truth.

    With prevalence ``p = support / n`` and predicted rate ``q = predicted / n``, a
    decision that ignores the row's truth has ``E[TP] = n p q``, so F1 ``2 p q / (p + q)``
    (0 where ``p + q = 0``); pooled over labels, ``2 sum(p q) / (sum(q) + sum(p))``.
    """
    p = np.asarray(support, dtype=np.float64) / max(n_samples, 1)
    q = np.asarray(predicted, dtype=np.float64) / max(n_samples, 1)
    # Expected counts per row: true positives p q, predicted q, positives p.
    return f1_of_counts(p * q, q, p), float(f1_of_counts((p * q).sum(), q.sum(), p.sum()))


def out_of_fold_weight(in_sample: float, cross_fitted: float, no_information: float) -> float:
    """The cross-fitted figure's weight in the .632+ blend (Efron & Tibshirani 1997).

    ``R = (in_sample - cross_fitted) / (in_sample - no_information)``, the relative
    overfitting rate, clipped to [0, 1] (0 when the in-sample figure does not exceed both);
    the weight is ``0.632 / (1 - 0.368 R)``: 0.632 with no overfitting measured, 1 (the
    cross-fitted figure alone) when the in-sample figure is all overfitting.
    """
    rate = 0.0
    if in_sample > cross_fitted and in_sample > no_information:
        rate = min(1.0, (in_sample - cross_fitted) / (in_sample - no_information))
    return OUT_OF_FOLD_SHARE / (1.0 - (1.0 - OUT_OF_FOLD_SHARE) * rate)


def with_in_sample(
    found: dict[str, Any],
    in_sample_f1: np.ndarray,
    in_sample_micro: float,
    support: np.ndarray,
    predicted: np.ndarray,
    n_samples: int,
) -> dict[str, Any]:
    """The estimate's ``expected`` figures as the .632+ blend of the cross-fitted and the
    in-sample ones (a new dict; ``found`` from :func:`estimate_from_thresholds`).

    Both figures estimate the F1 on new data with errors that are only partly shared: the
    in-sample one is optimistic by however much the tune overfits, the cross-fitted one
    is nearly unbiased but carries the folds' own noise. The blend
    ``(1 - w) in_sample + w cross_fitted`` takes ``w`` from :func:`out_of_fold_weight`,
    so a strategy that overfits (``per_label`` on few rows) leans on the folds, and one
    that does not (the default) averages the two. Macro-F1's ``w`` also blends each label's
    figure (so ``expected`` macro-F1 stays their mean); micro-F1 has its own. Each
    interval is centred on its blended figure, its half-width the cross-fitted one's and
    ``(1 - w) * max(in_sample - cross_fitted, 0)`` (the optimism the blend keeps) added in
    quadrature; the figures before the blend stay as ``cross_fitted`` (per label
    ``cross_fitted_f1``), with ``out_of_fold_weight``.
    """
    if found["macro_f1"]["expected"] is None:
        return found
    in_sample_f1 = np.asarray(in_sample_f1, dtype=np.float64)
    label_floor, micro_floor = no_information_f1(support, predicted, n_samples)
    blended = dict(found)
    for key, in_sample, floor in (
        ("macro_f1", float(in_sample_f1.mean()), float(label_floor.mean())),
        ("micro_f1", float(in_sample_micro), micro_floor),
    ):
        figures = dict(found[key])
        cross_fitted = float(figures["expected"])
        weight = out_of_fold_weight(in_sample, cross_fitted, floor)
        expected = (1.0 - weight) * in_sample + weight * cross_fitted
        low, high = figures["expected_interval"]
        # The cross-fitted interval's half-width (one side may have been clipped), widened
        # by the part of the measured optimism the blend keeps: the true correction lies
        # anywhere between none of it and all of it.
        half = max(high - cross_fitted, cross_fitted - low)
        half = float(np.hypot(half, (1.0 - weight) * max(in_sample - cross_fitted, 0.0)))
        figures.update(
            expected=expected,
            expected_interval=[max(0.0, expected - half), min(1.0, expected + half)],
            cross_fitted=cross_fitted,
            cross_fitted_interval=[low, high],
            out_of_fold_weight=weight,
        )
        blended[key] = figures
        if key == "macro_f1":
            labels = blended["cross_fitted_f1"] = list(found["expected_f1"])
            blended["expected_f1"] = [
                None if value is None else (1.0 - weight) * float(own) + weight * value
                for own, value in zip(in_sample_f1.tolist(), labels, strict=True)
            ]
    blended["method"] = f"{found['method']}; {BLEND_METHOD}"
    return blended


def unavailable(n_labels: int) -> dict[str, Any]:
    """The estimate's fields when there are too few rows for folds: nulls with a reason."""
    reason = f"fewer than {MIN_ROWS} validation rows: too few for {FOLDS} folds"
    empty = {"expected": None, "expected_interval": None, "expected_reason": reason}
    return {
        "macro_f1": dict(empty),
        "micro_f1": dict(empty),
        "expected_f1": [None] * n_labels,
        "expected_f1_reason": [reason] * n_labels,
        "method": METHOD,
        "folds": FOLDS,
    }
