"""The shared (pooled) threshold, and how it combines with each label's own: ``strategy``.

- ``"per_label"``: each label's own optimum (its status says when the fallback
  is used instead).
- ``"global"``: one threshold for every label, the exact optimum of the pooled
  (micro) objective (see "The pooled threshold" below).
- ``"shrunk"`` (the default): each label's own optimum pulled toward the shared
  one in logit space, with weight ``w = s / (s + k)`` on a label's own
  threshold, ``s`` its validation positives and ``k =``
  :data:`SHRINKAGE_POSITIVES`::

      threshold = sigmoid(w * logit(own) + (1 - w) * logit(shared))

  A label with many positives keeps (nearly) its own threshold; a label with
  ``k`` positives sits halfway (in logit space); a label that could not be
  tuned (no positives in the validation data, too few, no negatives, target
  unreachable) gets the shared threshold, which is better evidence about it
  than the arbitrary 0.5. Logit space because the thresholds of rare labels
  sit near 0, where a plain average would be dominated by the larger value.

Each label also records where its threshold came from: "per_label",
"shrunk", "global" or "fallback".

The pooled threshold
--------------------
Pooling counts every (row, label) pair as one sample: at threshold ``t`` the
pooled true positives are ``sum_j tp_j(t)``, predicted positives
``sum_j pp_j(t)`` and positives ``P = sum_j P_j``; the objectives are those of
:mod:`tuning._search` on these counts (micro F1, micro F-beta, micro recall at
a micro precision target, micro precision at a micro recall target).

The search is exact over every distinct pooled score, and reads everything
from the per-label sorted pass; the ``n * L`` scores are never sorted
together. Scores are bucketed by the top bits of their float bit pattern
(monotone in the value: about 21,000 buckets). During the pass each label adds
its counts at every bucket edge (a binary search of the edges in its sorted
distinct scores), which gives the exact pooled counts at each edge. An upper
bound of the objective over the cuts inside each bucket then shows which
buckets may hold a better (or equal, for the tie rule) cut than the best edge;
only their scores (plus the next non-empty bucket below each, for the
midpoint) are sliced out of each label's kept sorted keys, merged and
searched exactly, with the same tie rule and midpoint as per label.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from labelcut.tuning import _sorted
from labelcut.tuning._checks import SHRINKAGE_POSITIVES, TuningSpec
from labelcut.tuning._search import (
    OK,
    STATUSES,
    group_bounds,
    last_maximum,
    midpoint_thresholds,
    objective_values,
    status_codes,
)

__all__ = ["SHRINKAGE_POSITIVES", "blend", "combine", "logit", "pooled_threshold", "sigmoid"]
# Thresholds are clipped this far inside (0, 1) before taking logits.
_LOGIT_EPS = 1e-9


def logit(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    return np.log(clipped) - np.log1p(-clipped)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def shrinkage_weight(support: np.ndarray, k: float) -> np.ndarray:
    """``s / (s + k)``: the weight of a label's own threshold (1 when k is 0)."""
    support = np.asarray(support, dtype=np.float64)
    if k == 0:
        return np.ones_like(support)
    return support / (support + k)


def blend(own: np.ndarray, shared: float, weight: np.ndarray) -> np.ndarray:
    """``sigmoid(w * logit(own) + (1 - w) * logit(shared))``, exact at w = 0 and w = 1."""
    mixed = sigmoid(weight * logit(own) + (1.0 - weight) * logit(np.float64(shared)))
    return np.where(weight >= 1.0, own, np.where(weight <= 0.0, shared, mixed))


def combine(
    strategy: str,
    own: np.ndarray,
    ok: np.ndarray,
    support: np.ndarray,
    shared: float | None,
    fallback: float,
    k: float,
    statuses: list[str] | None = None,
    constrained: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Final thresholds (L,) and each label's source for ``strategy``.

    ``own``: per-label thresholds (used where ``ok``); ``shared``: the pooled
    threshold, None when it could not be tuned (then every strategy falls back
    to per-label thresholds where ok and ``fallback`` elsewhere). With a
    ``constrained`` objective (a precision or recall target is a promise per
    label), "shrunk" keeps every tuned label's own threshold and gives the
    shared one only to labels without enough positives; "target_unreachable"
    labels keep ``fallback``.
    """
    own = np.asarray(own, dtype=np.float64)
    if strategy == "per_label" or shared is None:
        sources = ["per_label" if good else "fallback" for good in ok.tolist()]
        return np.where(ok, own, fallback), sources
    if strategy == "global":
        return np.full_like(own, shared), ["global"] * len(own)
    weight = np.where(ok, 1.0 if constrained else shrinkage_weight(support, k), 0.0)
    if constrained and statuses is not None:
        unreachable = np.array([status == "target_unreachable" for status in statuses], dtype=bool)
        thresholds = np.where(ok, own, np.where(unreachable, fallback, shared))
        sources = [
            "per_label" if good else "fallback" if bad else "global"
            for good, bad in zip(ok.tolist(), unreachable.tolist(), strict=True)
        ]
        return thresholds, sources
    sources = [
        "per_label" if w >= 1.0 else "global" if w <= 0.0 else "shrunk" for w in weight.tolist()
    ]
    return blend(np.where(ok, own, shared), shared, weight), sources


# ---------------------------------------------------------------------------
# The pooled threshold

# Bucket = the score's exponent and this many leading mantissa bits; scores below
# 2**_LOWEST_EXPONENT share bucket 0. About 21,000 buckets for either float dtype.
_MANTISSA_BITS = 10
_LOWEST_EXPONENT = -20
_MANTISSA = {np.float32: 23, np.float64: 52}


@dataclass(frozen=True)
class Bucketing:
    """Score buckets of one float dtype: ``edge_bits[b]`` is bucket b's lowest bit pattern."""

    base: int
    shift: int
    edge_bits: np.ndarray  # (n_buckets,), the keys' integer dtype

    @classmethod
    def of(cls, float_dtype: type[np.floating]) -> Bucketing:
        int_dtype = np.int32 if float_dtype == np.float32 else np.int64
        base = int(np.array(2.0**_LOWEST_EXPONENT, dtype=float_dtype).view(int_dtype))
        one = int(np.array(1.0, dtype=float_dtype).view(int_dtype))
        shift = _MANTISSA[float_dtype] - _MANTISSA_BITS
        n_buckets = ((one - base) >> shift) + 2
        edge_bits = base + (np.arange(-1, n_buckets - 1, dtype=np.int64) << shift)
        edge_bits[0] = 0
        return cls(base, shift, edge_bits.astype(int_dtype))

    def bucket_of(self, bits: np.ndarray) -> np.ndarray:
        """Bucket index (intp) of each non-negative score bit pattern."""
        shifted = bits.astype(np.int64) - self.base
        np.maximum(shifted, -1, out=shifted)
        shifted >>= self.shift  # -1 >> shift is -1
        shifted += 1
        return shifted.astype(np.intp, copy=False)


class PooledCounts:
    """Pooled counts at every bucket edge, added label by label during the sorted pass.

    ``true_positives[b]``/``predicted_positives[b]`` (int64, n_buckets + 1,
    the last 0): pooled counts of ``score >= edge b``. Thread-safe :meth:`add`.
    """

    def __init__(self, bucketing: Bucketing) -> None:
        self.bucketing = bucketing
        size = len(bucketing.edge_bits) + 1
        self.true_positives = np.zeros(size, dtype=np.int64)
        self.predicted_positives = np.zeros(size, dtype=np.int64)
        self._lock = threading.Lock()

    def add(self, candidates: _sorted.Candidates) -> None:
        """Add one label's counts at each edge (a binary search of the edges in its keys).

        Edges at or below the label's lowest key count all its rows, edges above its
        highest none: only the edges between are searched.
        """
        keys = candidates.keys
        edge_keys = self._edge_keys(keys.dtype)
        low, high = np.searchsorted(edge_keys, keys[[0, -1]], side="right").tolist()
        first = np.searchsorted(keys, edge_keys[low:high])
        tp = candidates.positives - candidates.positives_before(first)
        pp = candidates.n_samples - first
        with self._lock:
            self.true_positives[:low] += candidates.positives
            self.predicted_positives[:low] += candidates.n_samples
            self.true_positives[low:high] += tp
            self.predicted_positives[low:high] += pp

    def _edge_keys(self, key_dtype: np.dtype) -> np.ndarray:
        """Edge bit patterns as keys (``bits << 1``): the first key of each bucket."""
        return self.bucketing.edge_bits.astype(key_dtype) << 1


@dataclass(frozen=True)
class PooledHistogram:
    """Pooled samples and positives per score bucket (increasing), with each bucket's
    lowest possible score ``edges`` (float64): what the bootstrap of the shared
    threshold resamples."""

    counts: np.ndarray
    positives: np.ndarray
    edges: np.ndarray


@dataclass(frozen=True)
class PooledChoice:
    """The shared threshold and its pooled counts.

    ``status`` as for a label ("ok", "no_positives", "no_negatives",
    "too_few_positives", "target_unreachable"); ``threshold`` is the fallback
    unless "ok". ``true_positives``/``predicted_positives`` are the pooled
    counts at ``threshold`` (for "ok" only; else 0); ``positives`` the pooled
    positives.
    """

    threshold: float
    status: str
    true_positives: int
    predicted_positives: int
    positives: int
    histogram: PooledHistogram


def _gather(sorted_labels: _sorted.SortedLabels, refine: np.ndarray, bucketing: Bucketing):
    """The kept sorted keys of every label that fall in the ``refine`` buckets, merged."""
    changes = np.diff(np.concatenate(([0], refine.astype(np.int8), [0])))
    run_starts, run_stops = np.flatnonzero(changes == 1), np.flatnonzero(changes == -1)
    # In the keys' own dtype: a wider query would make searchsorted convert every key.
    edge_keys = bucketing.edge_bits.astype(sorted_labels.key_dtype) << 1
    parts = []
    for label in range(sorted_labels.n_labels):
        keys = sorted_labels.keys(label)
        low = np.searchsorted(keys, edge_keys[run_starts], side="left")
        high = np.full(len(run_stops), len(keys))
        inside = run_stops < len(edge_keys)
        high[inside] = np.searchsorted(keys, edge_keys[run_stops[inside]], side="left")
        # Every position of every run at once (runs can number thousands: no slice each).
        lengths = high - low
        total = int(lengths.sum())
        if total:
            first_out = np.cumsum(lengths) - lengths
            parts.append(keys[np.arange(total) + np.repeat(low - first_out, lengths)])
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, sorted_labels.key_dtype)


def pooled_threshold(
    counts: PooledCounts,
    sorted_labels: _sorted.SortedLabels,
    spec: TuningSpec,
    score_dtype: torch.dtype,
) -> PooledChoice:
    """Exact shared threshold from the pooled edge counts and the kept sorted keys.

    Same tie rule (the higher threshold wins) and midpoint rule as per label.
    """
    bucketing = counts.bucketing
    float_dtype = sorted_labels.float_dtype
    pp_at, tp_at = counts.predicted_positives, counts.true_positives
    bucket_counts, pos = pp_at[:-1] - pp_at[1:], tp_at[:-1] - tp_at[1:]
    total, positives = int(pp_at[0]), int(tp_at[0])
    histogram = PooledHistogram(
        bucket_counts, pos, _sorted.bits_to_float(bucketing.edge_bits, float_dtype)
    )
    [code] = np.atleast_1d(status_codes(total, positives, True, spec))
    if code != OK:  # the same ladder as a label's
        return PooledChoice(spec.fallback, STATUSES[code], 0, 0, positives, histogram)

    # above_*[b]: counts in buckets strictly above b.
    above_pp, above_tp = pp_at[1:].astype(np.float64), tp_at[1:].astype(np.float64)
    nonempty = bucket_counts > 0
    floor_values, floor_feasible = objective_values(
        above_tp + pos, np.maximum(above_pp + bucket_counts, 1.0), float(positives), spec
    )
    usable = nonempty if floor_feasible is None else nonempty & floor_feasible
    lower_bound = float(floor_values[usable].max()) if usable.any() else -np.inf
    bound = group_bounds(above_tp, above_pp, pos.astype(np.float64), float(positives), spec)
    refine = nonempty & (bound >= lower_bound) & (bound > -np.inf)
    if not refine.any():
        return PooledChoice(spec.fallback, "target_unreachable", 0, 0, positives, histogram)
    # Also gather the next non-empty bucket below each refined one: the midpoint needs
    # the highest score under the chosen cut.
    filled = np.flatnonzero(nonempty)
    rank = np.searchsorted(filled, np.flatnonzero(refine))
    refine[filled[rank[rank > 0] - 1]] = True

    key = _gather(sorted_labels, refine, bucketing)
    value_bits = key >> 1
    bucket = bucketing.bucket_of(value_bits)
    is_start = np.ones(len(key), dtype=bool)
    is_start[1:] = value_bits[1:] != value_bits[:-1]
    bucket_start = np.ones(len(key), dtype=bool)
    bucket_start[1:] = bucket[1:] != bucket[:-1]
    position = np.arange(len(key))
    first_of_bucket = np.maximum.accumulate(np.where(bucket_start, position, 0))
    cum_before = np.concatenate(([0], np.cumsum(key & 1)))
    within_tp = cum_before[position] - cum_before[first_of_bucket]
    starts = np.flatnonzero(is_start)
    b = bucket[starts]
    tp = above_tp[b] + pos[b] - within_tp[starts]
    pp = above_pp[b] + bucket_counts[b] - (starts - first_of_bucket[starts])
    values, feasible = objective_values(tp, pp, float(positives), spec)
    best, reachable = last_maximum(values, feasible)
    if not reachable:
        return PooledChoice(spec.fallback, "target_unreachable", 0, 0, positives, histogram)
    best = int(best)
    at = starts[best]
    upper = _sorted.bits_to_float(value_bits[at : at + 1], float_dtype)
    lower = _sorted.bits_to_float(value_bits[max(at - 1, 0) : max(at - 1, 0) + 1], float_dtype)
    [threshold] = midpoint_thresholds(upper, lower, np.array([at > 0]), score_dtype)
    return PooledChoice(float(threshold), "ok", int(tp[best]), int(pp[best]), positives, histogram)
