"""One shared threshold for every label: the exact optimum of the pooled (micro) objective.

Pooling counts every (row, label) pair as one sample: at threshold ``t`` the
pooled true positives are ``sum_j tp_j(t)``, predicted positives
``sum_j pp_j(t)`` and positives ``P = sum_j P_j``. The objectives are those of
:mod:`tuning.select` on these counts (micro F1, micro F-beta, micro recall at a
micro precision target, micro precision at a micro recall target).

The search is exact over every distinct pooled score without sorting all
``n * L`` of them. Scores are bucketed by the top bits of their float bit
pattern (monotone in the value), and one pass counts samples and positives per
bucket. Each non-empty bucket's lowest score is an exact candidate; an upper
bound on every candidate inside a bucket then shows which buckets may hold a
better (or equal, for the tie rule) cut, and only their scores (plus the next
bucket below each, for the midpoint) are gathered and sorted in a second pass.
Memory stays at one row-chunk plus the buckets' counts and the gathered scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labelcut.tuning import sortkeys
from labelcut.tuning.select import TuningSpec, midpoint_thresholds, objective_values

# Bucket = the score's exponent and this many leading mantissa bits; scores below
# 2**_LOWEST_EXPONENT share bucket 0. About 21,000 buckets for either float dtype.
_MANTISSA_BITS = 10
_LOWEST_EXPONENT = -20
_CHUNK_ELEMENTS = 1 << 22
_MANTISSA = {np.float32: 23, np.float64: 52}


@dataclass(frozen=True)
class PooledChoice:
    """The shared threshold and its pooled counts.

    ``status`` as for a label ("ok", "no_positives", "no_negatives",
    "too_few_positives", "target_unreachable"); ``threshold`` is the fallback
    unless "ok". ``true_positives``/``predicted_positives``/``positives`` are
    the pooled counts at ``threshold`` (for "ok" only; else 0).
    """

    threshold: float
    status: str
    true_positives: int
    predicted_positives: int
    positives: int
    histogram: PooledHistogram | None = None


@dataclass(frozen=True)
class PooledHistogram:
    """Pooled samples and positives per score bucket (increasing), with each bucket's
    lowest possible score ``edges`` (float64): what the bootstrap of the shared
    threshold resamples."""

    counts: np.ndarray
    positives: np.ndarray
    edges: np.ndarray


def _chunks(scores: torch.Tensor, targets: torch.Tensor):
    """Row chunks as (bits int array (r, L), bool targets (r, L)) in the work dtype."""
    float_dtype, int_dtype = sortkeys.work_dtypes(scores.dtype)
    rows = max(1, _CHUNK_ELEMENTS // scores.shape[1])
    for start in range(0, scores.shape[0], rows):
        block = scores[start : start + rows].cpu()
        if block.dtype == torch.bfloat16:
            block = block.to(torch.float32)
        values = block.numpy().astype(float_dtype, copy=True)
        values += 0.0  # -0.0 becomes 0.0
        yield values.view(int_dtype), targets[start : start + rows].cpu().numpy().astype(bool)


def _bucketing(float_dtype) -> tuple[int, int, int]:
    """(base bits, shift, number of buckets) for scores of ``float_dtype`` in [0, 1]."""
    int_dtype = np.int32 if float_dtype == np.float32 else np.int64
    base = int(np.array(2.0**_LOWEST_EXPONENT, dtype=float_dtype).view(int_dtype))
    one = int(np.array(1.0, dtype=float_dtype).view(int_dtype))
    shift = _MANTISSA[float_dtype] - _MANTISSA_BITS
    return base, shift, ((one - base) >> shift) + 2


def _bucket_of(bits: np.ndarray, base: int, shift: int) -> np.ndarray:
    shifted = bits - base
    np.maximum(shifted, -1, out=shifted)
    shifted >>= shift  # -1 >> shift is -1
    shifted += 1
    return shifted.astype(np.intp, copy=False)


def _bounds(above_tp, above_pp, bucket_pos, positives: float, spec: TuningSpec) -> np.ndarray:
    """Upper bound of the objective over the cuts inside each bucket (-inf: none feasible).

    A cut inside bucket b includes ``k <= bucket_pos`` of its positives and at
    least ``max(k, 1)`` of its samples, on top of the counts above the bucket.
    F1, F-beta and precision grow with k along ``pp = above + k``, so the bound
    is their value at ``k = bucket_pos``; recall is at most
    ``(above_tp + bucket_pos) / P``.
    """
    tp = above_tp + bucket_pos
    pp = np.maximum(above_pp + bucket_pos, above_pp + 1)
    if spec.objective in ("f1", "fbeta"):
        values, _ = objective_values(tp, pp, positives, spec)
        return values
    precision, recall = tp / pp, tp / positives
    if spec.objective == "recall_at_precision":
        return np.where(precision >= spec.target, recall, -np.inf)
    return np.where(recall >= spec.target, precision, -np.inf)


def pooled_threshold(scores: torch.Tensor, targets: torch.Tensor, spec: TuningSpec) -> PooledChoice:
    """Exact shared threshold of validated ``(n, L)`` inputs for ``spec`` (pooled counts).

    Same tie rule (the higher threshold wins) and midpoint rule as per label.
    """
    float_dtype, int_dtype = sortkeys.work_dtypes(scores.dtype)
    base, shift, n_buckets = _bucketing(float_dtype)
    counts = np.zeros(n_buckets, dtype=np.int64)
    pos = np.zeros(n_buckets, dtype=np.int64)
    for bits, truth in _chunks(scores, targets):
        bucket = _bucket_of(bits, base, shift)
        counts += np.bincount(bucket.ravel(), minlength=n_buckets)
        pos += np.bincount(bucket[truth], minlength=n_buckets)
    total, positives = int(counts.sum()), int(pos.sum())
    edge_bits = base + (np.arange(-1, n_buckets - 1, dtype=np.int64) << shift)
    edge_bits[0] = 0
    histogram = PooledHistogram(
        counts, pos, sortkeys.bits_to_float(edge_bits.astype(int_dtype), float_dtype)
    )
    status = (
        "no_positives"
        if positives == 0
        else "no_negatives"
        if positives == total
        else "too_few_positives"
        if positives < spec.min_positives
        else "ok"
    )
    if status != "ok":
        return PooledChoice(spec.fallback, status, 0, 0, positives, histogram)

    # above_*[b]: counts in buckets strictly above b.
    above_pp = (np.cumsum(counts[::-1])[::-1] - counts).astype(np.float64)
    above_tp = (np.cumsum(pos[::-1])[::-1] - pos).astype(np.float64)
    nonempty = counts > 0
    floor_values, floor_feasible = objective_values(
        above_tp + pos, np.maximum(above_pp + counts, 1.0), float(positives), spec
    )
    usable = nonempty if floor_feasible is None else nonempty & floor_feasible
    lower_bound = float(floor_values[usable].max()) if usable.any() else -np.inf
    bound = _bounds(above_tp, above_pp, pos.astype(np.float64), float(positives), spec)
    refine = nonempty & (bound >= lower_bound) & (bound > -np.inf)
    if not refine.any():
        return PooledChoice(spec.fallback, "target_unreachable", 0, 0, positives, histogram)
    # Also gather the next non-empty bucket below each refined one: the midpoint needs
    # the highest score under the chosen cut.
    filled = np.flatnonzero(nonempty)
    rank = np.searchsorted(filled, np.flatnonzero(refine))
    refine[filled[rank[rank > 0] - 1]] = True

    keys = []
    for bits, truth in _chunks(scores, targets):
        bucket = _bucket_of(bits.copy(), base, shift)
        take = refine[bucket]
        keys.append((bits[take].astype(int_dtype) << 1) | truth[take].astype(int_dtype))
    key = np.sort(np.concatenate(keys))
    value_bits = key >> 1
    bucket = _bucket_of(value_bits.copy(), base, shift)
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
    pp = above_pp[b] + counts[b] - (starts - first_of_bucket[starts])
    values, feasible = objective_values(tp, pp, float(positives), spec)
    allowed = np.ones(len(starts), dtype=bool) if feasible is None else feasible
    values = np.where(allowed, values, -np.inf)
    if not allowed.any():
        return PooledChoice(spec.fallback, "target_unreachable", 0, 0, positives, histogram)
    best = len(values) - 1 - int(np.argmax(values[::-1]))
    upper = sortkeys.bits_to_float(value_bits[starts[best] : starts[best] + 1], float_dtype)
    has_lower = starts[best] > 0
    lower = sortkeys.bits_to_float(
        value_bits[max(starts[best] - 1, 0) : max(starts[best] - 1, 0) + 1], float_dtype
    )
    [threshold] = midpoint_thresholds(upper, lower, np.array([has_lower]), scores.dtype)
    return PooledChoice(float(threshold), "ok", int(tp[best]), int(pp[best]), positives, histogram)
