"""Issue 18 through ``tune_thresholds``: costs, joint micro F-beta and the abstain band.

The numerics live in :mod:`tuning.costs`, :mod:`tuning.micro`,
:mod:`tuning.abstain` and :mod:`tuning.objective_bootstrap`; this module turns
their results into one :class:`TuningResult` (the same per-label precision,
recall, F1 at the thresholds and at 0.5 as every other objective, plus what
the objective adds, in ``objective_report``).

Strategies:

- ``objective="cost"``: per label only. Each label's cost optimum is exact;
  there is no pooled cost optimum to share, so ``strategy="global"`` is
  refused, and ``"shrunk"`` (the default) tunes per label too (reported as
  ``per_label``): helper F's bench found shrinking toward the Bayes threshold
  lowered the mean test cost (16.58 against 16.26 per row over 90 cases).
- ``objective="micro_f1"`` / ``"micro_fbeta"``: joint by nature; ``strategy``
  does not apply and the result reports ``"joint"``. Dinkelbach's iteration
  starts from the pooled (``global``) threshold of the same call, so in sample
  it is never below ``global``.
- ``decision_rule="abstain"``: two thresholds per label from ``target`` and
  ``npv_target``; per label (reported as ``per_label``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from labelcut.tuning._checks import DEFAULT_THRESHOLD, TuningSpec
from labelcut.tuning.abstain import tune_abstain
from labelcut.tuning.costs import tune_costs
from labelcut.tuning.micro import tune_micro_fbeta
from labelcut.tuning.objective_bootstrap import (
    abstain_intervals,
    cost_intervals,
    micro_intervals,
)
from labelcut.tuning.result import LabelOutcomes, TuningResult

#: Interval width above which a label is flagged unstable (as the core bootstrap).
UNSTABLE_WIDTH = 0.2
_ROWS_PER_CHUNK = 1 << 16
# Abstain statuses that send every row to review (the others still tune one side).
_UNTUNABLE = frozenset({"no_positives", "no_negatives", "too_few_positives"})


def handles(spec: TuningSpec) -> bool:
    """Whether this module tunes ``spec`` (cost, micro_f1/micro_fbeta or abstain)."""
    return spec.objective in ("cost", "micro_f1", "micro_fbeta") or spec.abstain


def counts_at(
    scores: torch.Tensor, targets: torch.Tensor, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, predicted positives, positives) int64 (L,) for ``score >= threshold``.

    Compared in float64, row chunk by row chunk (bounded memory), on the CPU.
    """
    limits = torch.from_numpy(np.asarray(thresholds, dtype=np.float64))
    n_labels = scores.shape[1]
    tp = np.zeros(n_labels, dtype=np.int64)
    pp = np.zeros(n_labels, dtype=np.int64)
    positives = np.zeros(n_labels, dtype=np.int64)
    for start in range(0, scores.shape[0], _ROWS_PER_CHUNK):
        chunk = scores[start : start + _ROWS_PER_CHUNK].cpu().to(torch.float64)
        truth = targets[start : start + _ROWS_PER_CHUNK].cpu().to(torch.bool)
        passes = chunk >= limits
        pp += passes.sum(0).numpy()
        tp += (passes & truth).sum(0).numpy()
        positives += truth.sum(0).numpy()
    return tp, pp, positives


def tune_objective(
    scores: torch.Tensor,
    targets: torch.Tensor,
    spec: TuningSpec,
    label_names: Sequence[str] | None,
    *,
    start_threshold: float | None = None,
    diagnosis: dict[str, Any] | None = None,
) -> TuningResult:
    """The :class:`TuningResult` of a cost, joint micro or abstain tune.

    ``start_threshold``: the pooled threshold Dinkelbach starts from (micro
    only; the caller computes it in its own sorted pass).
    """
    if spec.objective == "cost":
        if spec.strategy == "global":
            raise ValueError(
                "strategy='global' does not apply to objective='cost': there is no shared "
                "cost optimum; use strategy='per_label' (what 'shrunk' also gives for costs)."
            )
        return _cost(scores, targets, spec, label_names, diagnosis)
    if spec.abstain:
        return _abstain(scores, targets, spec, diagnosis)
    return _micro(scores, targets, spec, start_threshold, diagnosis)


def _outcomes(
    scores: torch.Tensor, targets: torch.Tensor, thresholds: np.ndarray, statuses: list[str]
) -> LabelOutcomes:
    tp, pp, positives = counts_at(scores, targets, thresholds)
    default_tp, default_pp, _ = counts_at(
        scores, targets, np.full(len(thresholds), DEFAULT_THRESHOLD)
    )
    return LabelOutcomes(
        thresholds=np.asarray(thresholds, dtype=np.float64),
        statuses=list(statuses),
        positives=positives,
        true_positives=tp,
        predicted_positives=pp,
        default_true_positives=default_tp,
        default_predicted_positives=default_pp,
    )


def _interval_fields(thresholds: np.ndarray | None) -> dict[str, Any]:
    if thresholds is None:
        return {}
    return {
        "threshold_interval": thresholds,
        "unstable": (thresholds[:, 1] - thresholds[:, 0]) > UNSTABLE_WIDTH,
    }


def _pair(values: np.ndarray | None, j: int) -> list[float] | None:
    return None if values is None else [float(values[j, 0]), float(values[j, 1])]


def _cost(scores, targets, spec, label_names, diagnosis) -> TuningResult:
    found = tune_costs(
        scores,
        targets,
        spec.cost_fp,
        spec.cost_fn,
        min_positives=max(spec.min_positives, 1),
        fallback=spec.fallback,
        label_names=label_names,
    )
    intervals = None
    if spec.n_bootstrap:
        intervals = cost_intervals(
            scores,
            targets,
            found.cost_fp,
            found.cost_fn,
            found.thresholds,
            n_bootstrap=spec.n_bootstrap,
            seed=spec.seed,
            confidence=spec.confidence,
        )
    per_label = [
        {
            "cost": float(found.cost[j]),
            "default_cost": float(found.default_cost[j]),
            "cost_fp": float(found.cost_fp[j]),
            "cost_fn": float(found.cost_fn[j]),
            "false_positives": int(found.false_positives[j]),
            "false_negatives": int(found.false_negatives[j]),
            "default_false_positives": int(found.default_false_positives[j]),
            "default_false_negatives": int(found.default_false_negatives[j]),
            "predicts_nothing": bool(found.predicts_nothing[j]),
            "cost_interval": _pair(None if intervals is None else intervals.merit, j),
        }
        for j in range(len(found.status))
    ]
    report = {
        "per_label": per_label,
        "summary": {"cost": {"tuned": found.total_cost, "default": found.default_total_cost}},
    }
    cost_spec = replace(spec, cost_fp=found.cost_fp, cost_fn=found.cost_fn)
    return TuningResult.from_outcomes(
        _outcomes(scores, targets, found.thresholds, found.status),
        spec.objective,
        cost_spec.params(),
        scores.shape[0],
        strategy="per_label",
        diagnosis=diagnosis,
        objective_report=report,
        **_interval_fields(None if intervals is None else intervals.thresholds),
    )


def _micro(scores, targets, spec, start_threshold, diagnosis) -> TuningResult:
    beta = 1.0 if spec.objective == "micro_f1" else spec.beta
    found = tune_micro_fbeta(
        scores, targets, beta, start_threshold=start_threshold, fallback=spec.fallback
    )
    intervals = None
    if spec.n_bootstrap:
        intervals = micro_intervals(
            scores,
            targets,
            found.thresholds,
            beta,
            n_bootstrap=spec.n_bootstrap,
            seed=spec.seed,
            confidence=spec.confidence,
        )
    n_labels = len(found.thresholds)
    statuses = ["ok" if found.status == "ok" else found.status] * n_labels
    report = {
        "per_label": [
            {"predicts_nothing": bool(found.predicts_nothing[j])} for j in range(n_labels)
        ],
        "summary": {
            "micro_fbeta": {
                "tuned": found.micro_fbeta,
                "start": found.start_micro_fbeta,
                "default": found.default_micro_fbeta,
                "interval": None
                if intervals is None
                else [float(intervals.merit[0]), float(intervals.merit[1])],
            },
            "iterations": found.iterations,
            "trace": list(found.trace),
        },
    }
    params = spec.params()
    params["beta"] = beta
    return TuningResult.from_outcomes(
        _outcomes(scores, targets, found.thresholds, statuses),
        spec.objective,
        params,
        scores.shape[0],
        strategy="joint",
        label_strategy=["joint"] * n_labels,
        global_threshold=found.start_threshold,
        diagnosis=diagnosis,
        objective_report=report,
        **_interval_fields(None if intervals is None else intervals.thresholds),
    )


def _abstain(scores, targets, spec, diagnosis) -> TuningResult:
    found = tune_abstain(
        scores,
        targets,
        spec.target,
        spec.npv_target,
        min_positives=max(spec.min_positives, 1),
        wilson_confidence=spec.wilson_confidence,
    )
    intervals = None
    if spec.n_bootstrap:
        intervals = abstain_intervals(
            scores,
            targets,
            found.lower,
            found.upper,
            spec.target,
            spec.npv_target,
            n_bootstrap=spec.n_bootstrap,
            seed=spec.seed,
            confidence=spec.confidence,
            wilson_confidence=spec.wilson_confidence,
        )
    share, npv = found.review_share, found.npv
    per_label = [
        {
            "lower_threshold": float(found.lower[j]),
            "review_share": float(share[j]),
            "coverage": float(1.0 - share[j]),
            "npv": float(npv[j]),
            "yes": int(found.yes[j]),
            "no": int(found.no[j]),
            "uncertain": int(found.uncertain[j]),
            "clipped": bool(found.clipped[j]),
            "review_share_interval": _pair(None if intervals is None else intervals.merit, j),
            "lower_interval": _pair(None if intervals is None else intervals.lower_thresholds, j),
        }
        for j in range(len(found.status))
    ]
    n_labels = len(found.status)
    report = {
        "per_label": per_label,
        "summary": {
            "review_share": float(found.uncertain.sum() / (found.n_samples * n_labels)),
        },
    }
    return TuningResult.from_outcomes(
        _outcomes(scores, targets, found.upper, found.status),
        spec.objective,
        spec.params(),
        scores.shape[0],
        strategy="per_label",
        label_strategy=["fallback" if s in _UNTUNABLE else "per_label" for s in found.status],
        diagnosis=diagnosis,
        objective_report=report,
        lower_thresholds=np.asarray(found.lower, dtype=np.float64),
        **_interval_fields(None if intervals is None else intervals.thresholds),
    )
