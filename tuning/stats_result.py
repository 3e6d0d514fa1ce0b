"""A :class:`TuningResult` from counted groups: ``tune_thresholds``' steps 2 to 5 on counts.

The same steps as :mod:`tuning.tune`, in the same order, on
:class:`tuning.stats_search.GroupCandidates` instead of sorted rows: each
label's own optimum, the shared threshold (``"global"``/``"shrunk"``), how
they combine (:func:`tuning._shared.combine`), and per label the counts at
the final threshold and at 0.5, the bootstrap interval
(:func:`tuning.bootstrap.label_intervals`) and the compact curve
(:func:`tuning.curves.compact_curve`). With one group per distinct score the
result equals ``tune_thresholds``' on the rows (intervals and curves too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labelcut.tuning import bootstrap, curves
from labelcut.tuning._checks import DEFAULT_THRESHOLD, TuningSpec
from labelcut.tuning._shared import Bucketing, PooledHistogram, combine
from labelcut.tuning.result import LabelOutcomes, TuningResult
from labelcut.tuning.stats_search import GroupCandidates, choose


@dataclass(frozen=True)
class CountedLabels:
    """Everything a tune reads from statistics.

    ``labels``: L :class:`GroupCandidates`; ``pooled``: the pooled groups (all
    labels' groups merged; None when the strategy needs no shared threshold);
    ``pooled_bits``: the work-dtype bit pattern of each pooled group's lowest
    score (for the shared bootstrap's buckets); ``score_dtype``: the scores'
    torch dtype; ``n_rows``; ``diagnosis``; ``estimate`` (or None).
    """

    labels: list[GroupCandidates]
    pooled: GroupCandidates | None
    pooled_bits: np.ndarray | None
    float_dtype: type[np.floating]
    score_dtype: torch.dtype
    n_rows: int
    diagnosis: dict[str, Any]
    estimate: dict[str, Any] | None


@dataclass(frozen=True)
class Choices:
    """Thresholds before the final figures: own (L,), statuses, shared and the final (L,)."""

    own: np.ndarray
    statuses: list[str]
    shared: float | None
    shared_status: str | None
    final: np.ndarray
    sources: list[str] | None


def choose_all(counted: CountedLabels, spec: TuningSpec) -> Choices:
    """Each label's own optimum, the shared threshold and the final thresholds."""
    picks = [choose(label, spec, counted.score_dtype) for label in counted.labels]
    own = np.array([p[0] for p in picks], dtype=np.float64)
    statuses = [p[1] for p in picks]
    if spec.strategy == "per_label":
        return Choices(own, statuses, None, None, own, None)
    assert counted.pooled is not None
    shared_value, shared_status, _ = choose(counted.pooled, spec, counted.score_dtype)
    shared = shared_value if shared_status == "ok" else None
    positives = np.array([label.positives for label in counted.labels], dtype=np.int64)
    final, sources = combine(
        spec.strategy,
        own,
        np.array([status == "ok" for status in statuses], dtype=bool),
        positives,
        shared,
        spec.fallback,
        spec.shrinkage,
        statuses=statuses,
        constrained=spec.constrained,
    )
    return Choices(own, statuses, shared, shared_status, final, sources)


def pooled_histogram(counted: CountedLabels) -> PooledHistogram:
    """The pooled per-bucket counts the shared threshold's bootstrap resamples."""
    assert counted.pooled is not None and counted.pooled_bits is not None
    bucketing = Bucketing.of(counted.float_dtype)
    bucket = bucketing.bucket_of(counted.pooled_bits)
    size = len(bucketing.edge_bits)
    pooled = counted.pooled
    rows = pooled.group_positives + pooled.group_negatives
    counts = np.bincount(bucket, weights=rows, minlength=size).astype(np.int64)
    positives = np.bincount(bucket, weights=pooled.group_positives, minlength=size)
    int_dtype = np.int32 if counted.float_dtype == np.float32 else np.int64
    edges = bucketing.edge_bits.astype(int_dtype).view(counted.float_dtype).astype(np.float64)
    return PooledHistogram(counts, positives.astype(np.int64), edges)


def build_result(
    counted: CountedLabels, spec: TuningSpec, choices: Choices, return_curves: bool
) -> TuningResult:
    """Steps 4 and 5: counts, intervals and curves at the final thresholds; the result."""
    labels, final = counted.labels, choices.final
    tp = np.empty(len(labels), dtype=np.int64)
    pp = np.empty_like(tp)
    default_tp, default_pp = np.empty_like(tp), np.empty_like(tp)
    for j, label in enumerate(labels):
        tp[j], pp[j] = label.counts_at(float(final[j]))
        default_tp[j], default_pp[j] = label.counts_at(DEFAULT_THRESHOLD)
    outcomes = LabelOutcomes(
        thresholds=final,
        statuses=choices.statuses,
        positives=np.array([label.positives for label in labels], dtype=np.int64),
        true_positives=tp,
        predicted_positives=pp,
        default_true_positives=default_tp,
        default_predicted_positives=default_pp,
    )
    extra: dict[str, Any] = {}
    if spec.n_bootstrap:
        ends = np.stack(
            [
                bootstrap.label_intervals(j, label, float(final[j]), spec, choices.shared)
                for j, label in enumerate(labels)
            ]
        )
        intervals = bootstrap.Intervals.from_ends(ends)
        if spec.strategy == "global" and choices.shared is not None:
            low, high = bootstrap.shared_interval(pooled_histogram(counted), spec)
            intervals = intervals.with_thresholds(low, high)
        extra = {
            "threshold_interval": np.stack([intervals.threshold_low, intervals.threshold_high], 1),
            "f1_interval": np.stack([intervals.f1_low, intervals.f1_high], 1),
            "unstable": intervals.unstable,
        }
    if return_curves:
        extra["curves"] = [
            curves.compact_curve(label, [float(final[j]), DEFAULT_THRESHOLD])
            for j, label in enumerate(labels)
        ]
    return TuningResult.from_outcomes(
        outcomes,
        spec.objective,
        spec.params(),
        counted.n_rows,
        strategy=spec.strategy,
        label_strategy=choices.sources,
        global_threshold=choices.shared,
        diagnosis=counted.diagnosis,
        estimate=counted.estimate,
        **extra,
    )
