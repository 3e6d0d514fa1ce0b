"""``objective="cost"``: each label's threshold minimises ``cost_fp * FP + cost_fn * FN``.

The search is exact over every cut of the label (:mod:`tuning.cutpoints`):
each distinct score and "predict nothing" (the right answer when a false alarm
costs more than every positive's miss is worth). Costs are compared exactly
(:mod:`tuning.exact_pick`, reading each cost as the decimal it was written
as), and ties go to the higher threshold, as in
``tune_thresholds``. Labels that cannot be tuned get ``fallback`` with the
project's statuses ("no_positives", "no_negatives", "too_few_positives").

Costs: a number for every label, a sequence of L numbers, or a mapping from
label name to number (``"*"`` gives the default for names left out). Each must
be finite and >= 0; a label with both costs 0 is refused (every threshold
would cost 0, so there is nothing to choose). A cost of 0 on one side makes
the other side's errors the only ones that count: with ``cost_fp = 0`` the
threshold sits just below the lowest-scored positive (the highest cut with
FN = 0), with ``cost_fn = 0`` the label predicts nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelcut.tuning.cutpoints import (
    LabelCuts,
    as_float_array,
    as_target_array,
    counts_at,
    cut_threshold,
    iter_label_cuts,
    untunable_status,
)
from labelcut.tuning.exact_pick import best_cut, decimal_fraction

DEFAULT_THRESHOLD = 0.5


def cost_vector(
    value: float | Sequence[float] | Mapping[str, float] | np.ndarray,
    n_labels: int,
    name: str,
    label_names: Sequence[str] | None = None,
) -> np.ndarray:
    """One cost per label as float64 (L,), from a number, L numbers or a name -> number map.

    Raises ``ValueError`` naming ``name`` (and the label) for a map with an
    unknown name or a missing one (without ``"*"``), a sequence of the wrong
    length, or a value that is not a finite number >= 0.
    """
    if isinstance(value, Mapping):
        names = [str(j) for j in range(n_labels)] if label_names is None else list(label_names)
        unknown = sorted(set(value) - set(names) - {"*"})
        if unknown:
            raise ValueError(f"{name} names unknown labels: {', '.join(map(str, unknown[:10]))}.")
        missing = [label for label in names if label not in value]
        if missing and "*" not in value:
            raise ValueError(
                f"{name} gives no cost for labels {', '.join(missing[:10])}"
                ' (add them or a default "*").'
            )
        raw: list[Any] = [value.get(label, value.get("*")) for label in names]
    elif np.ndim(value) == 0:
        raw = [value] * n_labels
    else:
        raw = list(np.asarray(value).ravel())
        if len(raw) != n_labels:
            raise ValueError(f"{name} has {len(raw)} values for {n_labels} labels.")
    costs = np.empty(n_labels, dtype=np.float64)
    names = label_names or [str(j) for j in range(n_labels)]
    for j, item in enumerate(raw):
        if isinstance(item, bool) or not isinstance(item, (int, float, np.number)):
            raise ValueError(f"{name} for label {names[j]} must be a number, got {item!r}.")
        number = float(item)
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{name} for label {names[j]} must be finite and >= 0, got {item!r}.")
        costs[j] = number
    return costs


@dataclass(frozen=True)
class CostResult:
    """Per-label thresholds minimising cost, with the costs they achieve.

    Arrays are (L,): ``thresholds`` float64, ``status`` list[str],
    ``cost_fp``/``cost_fn`` float64 (the costs used), ``false_positives``/
    ``false_negatives`` int64 and ``cost`` float64 at ``thresholds``, the same at
    0.5 as ``default_*``; ``predicts_nothing`` bool (the threshold is above every
    validation score). ``total_cost``/``default_total_cost``: sums over labels.
    """

    thresholds: np.ndarray
    status: list[str]
    cost_fp: np.ndarray
    cost_fn: np.ndarray
    false_positives: np.ndarray
    false_negatives: np.ndarray
    cost: np.ndarray
    default_false_positives: np.ndarray
    default_false_negatives: np.ndarray
    default_cost: np.ndarray
    predicts_nothing: np.ndarray
    n_samples: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def total_cost(self) -> float:
        return float(self.cost.sum())

    @property
    def default_total_cost(self) -> float:
        return float(self.default_cost.sum())

    def to_dict(self, label_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready: per label and summed, as the service reports it."""
        names = list(label_names) if label_names else [str(j) for j in range(len(self.status))]
        per_label = [
            {
                "label": names[j],
                "threshold": float(self.thresholds[j]),
                "status": self.status[j],
                "cost_fp": float(self.cost_fp[j]),
                "cost_fn": float(self.cost_fn[j]),
                "false_positives": int(self.false_positives[j]),
                "false_negatives": int(self.false_negatives[j]),
                "cost": float(self.cost[j]),
                "predicts_nothing": bool(self.predicts_nothing[j]),
                "at_default": {
                    "threshold": DEFAULT_THRESHOLD,
                    "false_positives": int(self.default_false_positives[j]),
                    "false_negatives": int(self.default_false_negatives[j]),
                    "cost": float(self.default_cost[j]),
                },
            }
            for j in range(len(names))
        ]
        return {
            "objective": "cost",
            "params": dict(self.params),
            "n_samples": self.n_samples,
            "thresholds": {names[j]: float(t) for j, t in enumerate(self.thresholds)},
            "per_label": per_label,
            "summary": {"cost": {"tuned": self.total_cost, "default": self.default_total_cost}},
        }


def label_errors(cuts: LabelCuts) -> tuple[np.ndarray, np.ndarray]:
    """(false positives, false negatives) int64 (m + 1,) of every cut of one label."""
    false_positives = cuts.predicted_positives - cuts.true_positives
    return false_positives, cuts.positives - cuts.true_positives


def cheapest_cut(cuts: LabelCuts, cost_fp: float, cost_fn: float) -> int:
    """Index of the exact minimum-cost cut (ties to the higher threshold)."""
    false_positives, false_negatives = label_errors(cuts)
    approx = cost_fp * false_positives + cost_fn * false_negatives
    exact_fp, exact_fn = decimal_fraction(cost_fp), decimal_fraction(cost_fn)
    return best_cut(
        approx,
        (cost_fp + cost_fn) * cuts.n_samples,
        lambda i: exact_fp * int(false_positives[i]) + exact_fn * int(false_negatives[i]),
        maximise=False,
    )


def tune_costs(
    scores: Any,
    targets: Any,
    cost_fp: Any = 1.0,
    cost_fn: Any = 1.0,
    *,
    min_positives: int = 1,
    fallback: float = 0.5,
    label_names: Sequence[str] | None = None,
) -> CostResult:
    """Per-label thresholds minimising ``cost_fp * FP + cost_fn * FN`` exactly.

    ``scores`` (n, L) in [0, 1] (numpy or torch, any float dtype), ``targets``
    (n, L) 0/1. ``cost_fp``/``cost_fn``: see :func:`cost_vector`
    (``label_names`` resolves a map). A label is predicted iff
    ``score >= threshold``. Raises ``ValueError`` on bad input.
    """
    score_array = as_float_array(scores)
    truth = as_target_array(targets, score_array.shape)
    n_samples, n_labels = score_array.shape
    names = list(label_names) if label_names else [str(j) for j in range(n_labels)]
    if len(names) != n_labels:
        raise ValueError(f"label_names has {len(names)} names for {n_labels} labels.")
    fp_costs = cost_vector(cost_fp, n_labels, "cost_fp", names)
    fn_costs = cost_vector(cost_fn, n_labels, "cost_fn", names)
    both_zero = np.flatnonzero((fp_costs == 0) & (fn_costs == 0))
    if len(both_zero):
        raise ValueError(
            f"cost_fp and cost_fn are both 0 for label {names[both_zero[0]]}:"
            " every threshold would cost 0."
        )
    if not (math.isfinite(fallback) and 0.0 <= fallback <= 1.0):
        raise ValueError("fallback must be a number in [0, 1].")
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 1:
        raise ValueError("min_positives must be an integer >= 1.")

    thresholds = np.empty(n_labels)
    statuses: list[str] = []
    counts = np.zeros((4, n_labels), dtype=np.int64)  # fp, fn, default fp, default fn
    nothing = np.zeros(n_labels, dtype=bool)
    for j, cuts in enumerate(iter_label_cuts(score_array, truth)):
        status = untunable_status(cuts, min_positives)
        if status is None:
            best = cheapest_cut(cuts, float(fp_costs[j]), float(fn_costs[j]))
            thresholds[j] = cut_threshold(cuts, best, score_array.dtype)
            nothing[j] = best == cuts.nothing
        else:
            thresholds[j] = fallback
        statuses.append(status or "ok")
        for row, threshold in ((0, thresholds[j]), (2, DEFAULT_THRESHOLD)):
            tp, pp = counts_at(cuts, threshold)
            counts[row, j], counts[row + 1, j] = pp - tp, cuts.positives - tp
    return CostResult(
        thresholds=thresholds,
        status=statuses,
        cost_fp=fp_costs,
        cost_fn=fn_costs,
        false_positives=counts[0],
        false_negatives=counts[1],
        cost=fp_costs * counts[0] + fn_costs * counts[1],
        default_false_positives=counts[2],
        default_false_negatives=counts[3],
        default_cost=fp_costs * counts[2] + fn_costs * counts[3],
        predicts_nothing=nothing,
        n_samples=n_samples,
        params={
            "cost_fp": fp_costs.tolist(),
            "cost_fn": fn_costs.tolist(),
            "min_positives": min_positives,
            "fallback": fallback,
        },
    )
