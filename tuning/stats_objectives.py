"""Issue 18's objectives (cost, micro_f1/micro_fbeta, the abstain band) from statistics.

These objectives read every cut of a label (:class:`tuning.cutpoints.LabelCuts`,
"predict nothing" included), which ``"distinct"`` statistics give exactly:
the cuts' counts are the suffix sums of the counts per distinct score. So the
same per-label rules run here (:func:`tuning.costs.cheapest_cut`, the
Dinkelbach steps of :mod:`tuning.micro`, the abstain cuts of
:mod:`tuning.abstain`), with the same tie rules and thresholds
(:func:`tuning.cutpoints.cut_threshold` in the dtype those modules use: float16
stays float16, bfloat16 is float32). Thresholds, statuses, counts, the
objective's report and (micro) ``global_threshold`` equal ``tune_thresholds``'.

Bootstrap intervals come from the same cuts
(the `*_from_cuts` bodies of :mod:`tuning.objective_bootstrap`); the cross-fitted estimate is nulls
with a reason. Their state is the full distinct
counts: it grows with the distinct scores (about n for continuous scores).
"""

from __future__ import annotations

from dataclasses import replace
from statistics import NormalDist
from typing import Any

import numpy as np

from labelcut.tuning import curves, micro
from labelcut.tuning import objective_bootstrap as boot
from labelcut.tuning._checks import DEFAULT_THRESHOLD, TuningSpec
from labelcut.tuning.abstain import _lower_cut, _upper_cut
from labelcut.tuning.costs import cheapest_cut, cost_vector
from labelcut.tuning.cutpoints import LabelCuts, counts_at, cut_threshold, untunable_status
from labelcut.tuning.exact_pick import decimal_fraction
from labelcut.tuning.objectives import UNSTABLE_WIDTH
from labelcut.tuning.result import LabelOutcomes, TuningResult
from labelcut.tuning.stats import ScoreStats
from labelcut.tuning.stats_result import choose_all
from labelcut.tuning.stats_search import GroupCandidates

_UNTUNABLE = frozenset({"no_positives", "no_negatives", "too_few_positives"})
# The numpy dtype issue 18's modules compare and round in (cutpoints.as_float_array).
_CUT_DTYPES = {"float16": np.float16, "bfloat16": np.float32, "float32": np.float32}


def _cuts(label: GroupCandidates) -> LabelCuts:
    return LabelCuts(label.low, label.tp_at, label.pp_at, label.n_samples, label.positives)


def _outcomes(cuts: list[LabelCuts], thresholds: np.ndarray, statuses: list[str]):
    at = np.array([counts_at(c, t) for c, t in zip(cuts, thresholds, strict=True)], np.int64)
    default = np.array([counts_at(c, DEFAULT_THRESHOLD) for c in cuts], dtype=np.int64)
    return LabelOutcomes(
        thresholds=np.asarray(thresholds, dtype=np.float64),
        statuses=list(statuses),
        positives=np.array([c.positives for c in cuts], dtype=np.int64),
        true_positives=at[:, 0],
        predicted_positives=at[:, 1],
        default_true_positives=default[:, 0],
        default_predicted_positives=default[:, 1],
    )


def tune_objective_from_stats(
    stats: ScoreStats,
    spec: TuningSpec,
    return_curves: bool,
    names: list[str] | None,
    labels: list[GroupCandidates] | None = None,
) -> TuningResult:
    """The :class:`TuningResult` of a cost, joint micro or abstain tune from statistics.

    ``labels``: each label's groups when they are not ``stats``' own (exact-mode cost:
    grid bins with the kept ones refined, :mod:`tuning.stats_exact`).
    """
    from labelcut.tuning.stats_tuning import counted_from_stats

    counted = counted_from_stats(stats, replace(spec, strategy="per_label"), labels)
    cuts = [_cuts(label) for label in counted.labels]
    dtype = _CUT_DTYPES.get(stats.score_dtype, np.float64)
    common = {"diagnosis": counted.diagnosis, "estimate": counted.estimate}
    if spec.objective == "cost":
        if spec.strategy == "global":
            raise ValueError(
                "strategy='global' does not apply to objective='cost': there is no shared "
                "cost optimum; use strategy='per_label' (what 'shrunk' also gives for costs)."
            )
        outcomes, extra = _cost(cuts, counted.labels, spec, names, dtype)
    elif spec.abstain:
        outcomes, extra = _abstain(cuts, spec, dtype)
    else:
        pooled_spec = replace(
            spec,
            objective="f1" if spec.objective == "micro_f1" else "fbeta",
            strategy="global",
            n_bootstrap=0,
        )
        start = choose_all(counted_from_stats(stats, pooled_spec), pooled_spec).shared
        outcomes, extra = _micro(cuts, spec, start, dtype)
    params = extra.pop("params")
    if return_curves:
        keep = [[min(float(t), 1.0), DEFAULT_THRESHOLD] for t in outcomes.thresholds]
        extra["curves"] = [
            curves.compact_curve(label, k) for label, k in zip(counted.labels, keep, strict=True)
        ]
    n_rows = stats.n_rows
    return TuningResult.from_outcomes(outcomes, spec.objective, params, n_rows, **common, **extra)


def cost_vectors(spec: TuningSpec, n_labels: int, names) -> tuple[np.ndarray, np.ndarray]:
    """(cost_fp, cost_fn) (L,) as :func:`tuning.costs.tune_costs` resolves and checks them."""
    label_names = names or [str(j) for j in range(n_labels)]
    cost_fp = cost_vector(spec.cost_fp, n_labels, "cost_fp", label_names)
    cost_fn = cost_vector(spec.cost_fn, n_labels, "cost_fn", label_names)
    both_zero = np.flatnonzero((cost_fp == 0) & (cost_fn == 0))
    if len(both_zero):
        raise ValueError(
            f"cost_fp and cost_fn are both 0 for label {label_names[both_zero[0]]}:"
            " every threshold would cost 0."
        )
    return cost_fp, cost_fn


def group_cut_threshold(label: GroupCandidates, index: int, dtype) -> float:
    """:func:`tuning.cutpoints.cut_threshold` of cut ``index`` with each group's highest
    score as the lower neighbour (the same number when groups are distinct scores)."""
    dtype = np.dtype(dtype).type
    if index >= label.m:
        top = float(label.high[-1])
        if top >= 1.0:
            return float(np.nextafter(dtype(1.0), dtype(np.inf)))
        upper, lower, has_lower = 1.0, top, True
    else:
        upper, has_lower = float(label.low[index]), index > 0
        lower = float(label.high[index - 1]) if has_lower else 0.0
    with np.errstate(under="ignore", over="ignore"):  # halving a subnormal is harmless
        rounded = float(dtype((upper + lower) / 2.0))
    if rounded > upper or (has_lower and rounded <= lower):
        return upper
    return rounded


def cost_expandable(label: GroupCandidates, cost_fp: float, cost_fn: float) -> np.ndarray:
    """(m,) bool: the groups inside which a cut could still be cheapest (or tie).

    A cut inside group ``g`` has at least the false positives above the group and
    at least the misses of predicting the whole group, so its cost is at least
    ``cost_fp * FP(g + 1) + cost_fn * FN(g)``; every group's lowest score (and
    "predict nothing") is a cut of exact cost. A float64 margin keeps near-ties.
    """
    tp, pp = label.tp_at.astype(np.float64), label.pp_at.astype(np.float64)
    false_positives, misses = pp - tp, label.positives - tp
    best = float((cost_fp * false_positives + cost_fn * misses).min())
    bound = cost_fp * false_positives[1:] + cost_fn * misses[:-1]
    margin = 32.0 * np.finfo(np.float64).eps * (cost_fp + cost_fn) * max(label.n_samples, 1)
    return (bound <= best + margin) & (label.low < label.high)


def _cost(
    cuts: list[LabelCuts], labels: list[GroupCandidates], spec: TuningSpec, names, dtype
) -> tuple[LabelOutcomes, dict]:
    """:func:`tuning.costs.tune_costs` on cuts, reported as :mod:`tuning.objectives` does."""
    n_labels = len(cuts)
    cost_fp, cost_fn = cost_vectors(spec, n_labels, names)
    thresholds, statuses, nothing = np.empty(n_labels), [], np.zeros(n_labels, dtype=bool)
    for j, label in enumerate(cuts):
        status = untunable_status(label, max(spec.min_positives, 1))
        if status is None:
            best = cheapest_cut(label, float(cost_fp[j]), float(cost_fn[j]))
            thresholds[j] = group_cut_threshold(labels[j], best, dtype)
            nothing[j] = best == label.nothing
        else:
            thresholds[j] = spec.fallback
        statuses.append(status or "ok")
    outcomes = _outcomes(cuts, thresholds, statuses)
    intervals = None
    if spec.n_bootstrap:
        intervals = boot.cost_intervals_from_cuts(
            cuts, dtype, cost_fp, cost_fn, thresholds, spec.n_bootstrap, spec.seed,
            spec.confidence,
        )  # fmt: skip
    fp = outcomes.predicted_positives - outcomes.true_positives
    fn = outcomes.positives - outcomes.true_positives
    default_fp = outcomes.default_predicted_positives - outcomes.default_true_positives
    default_fn = outcomes.positives - outcomes.default_true_positives
    cost, default_cost = cost_fp * fp + cost_fn * fn, cost_fp * default_fp + cost_fn * default_fn
    per_label = [
        {
            "cost": float(cost[j]), "default_cost": float(default_cost[j]),
            "cost_fp": float(cost_fp[j]), "cost_fn": float(cost_fn[j]),
            "false_positives": int(fp[j]), "false_negatives": int(fn[j]),
            "default_false_positives": int(default_fp[j]),
            "default_false_negatives": int(default_fn[j]),
            "predicts_nothing": bool(nothing[j]),
            "cost_interval": _pair(None if intervals is None else intervals.merit, j),
        }
        for j in range(n_labels)
    ]  # fmt: skip
    summary = {"cost": {"tuned": float(cost.sum()), "default": float(default_cost.sum())}}
    return outcomes, {
        "params": replace(spec, cost_fp=cost_fp, cost_fn=cost_fn).params(),
        "strategy": "per_label",
        "objective_report": {"per_label": per_label, "summary": summary},
        **_interval_fields(intervals),
    }


def _pair(values: np.ndarray | None, j: int) -> list[float] | None:
    return None if values is None else [float(values[j, 0]), float(values[j, 1])]


def _interval_fields(intervals) -> dict[str, Any]:
    """The result's ``threshold_interval`` and ``unstable``, as :mod:`tuning.objectives`."""
    if intervals is None:
        return {}
    thresholds = intervals.thresholds
    return {
        "threshold_interval": thresholds,
        "unstable": (thresholds[:, 1] - thresholds[:, 0]) > UNSTABLE_WIDTH,
    }


def _micro(cuts: list[LabelCuts], spec: TuningSpec, start: float | None, dtype):
    """:func:`tuning.micro.tune_micro_fbeta` on cuts (the same Dinkelbach steps)."""
    beta = 1.0 if spec.objective == "micro_f1" else spec.beta
    beta2 = decimal_fraction(beta) ** 2
    gain = 1 + beta2
    n_labels, n_samples = len(cuts), cuts[0].n_samples
    positives = sum(c.positives for c in cuts)

    def at(threshold: float | None) -> tuple[int, int]:
        index = [c.nothing if threshold is None else c.cut_at(threshold) for c in cuts]
        tp = sum(int(c.true_positives[i]) for c, i in zip(cuts, index, strict=True))
        return tp, sum(int(c.predicted_positives[i]) for c, i in zip(cuts, index, strict=True))

    candidates = [micro._candidates(c, float(gain), np.dtype(dtype)) for c in cuts]
    params = {**spec.params(), "beta": beta}
    report: dict[str, Any] = {"iterations": 0, "trace": []}
    if positives == 0:
        thresholds = np.full(n_labels, spec.fallback)
        statuses, shown_start, start_value = ["no_positives"] * n_labels, None, None
        tuned = default = 0.0
    else:
        start_value = None if start is None else micro._fbeta(*at(start), positives, beta2)
        lam = start_value if start_value else micro._fbeta(*at(0.0), positives, beta2)
        chosen, trace = [], []
        while len(trace) < 1000:
            step = micro._best_cuts(candidates, gain, lam, n_samples)
            value = micro._fbeta(*micro._pooled(candidates, step), positives, beta2)
            trace.append(float(value))
            chosen = step
            if value == lam:
                break
            lam = value
        thresholds = np.array([c.thresholds[i] for c, i in zip(candidates, chosen, strict=True)])
        statuses, shown_start = ["ok"] * n_labels, start
        tuned = float(micro._fbeta(*micro._pooled(candidates, chosen), positives, beta2))
        default = float(micro._fbeta(*at(DEFAULT_THRESHOLD), positives, beta2))
        start_value = None if start_value is None else float(start_value)
        report = {"iterations": len(trace), "trace": trace}
    outcomes = _outcomes(cuts, thresholds, statuses)
    nothing = outcomes.predicted_positives == 0 if positives == 0 else _nothing(cuts, thresholds)
    intervals = None
    if spec.n_bootstrap:
        intervals = boot.micro_intervals_from_cuts(
            cuts, dtype, thresholds, beta, spec.n_bootstrap, spec.seed, spec.confidence
        )
    interval = None if intervals is None else [float(x) for x in intervals.merit[:2]]
    merit = {"tuned": tuned, "start": start_value, "default": default, "interval": interval}
    return outcomes, {
        "params": params,
        "strategy": "joint",
        "label_strategy": ["joint"] * n_labels,
        "global_threshold": shown_start,
        "objective_report": {
            "per_label": [{"predicts_nothing": bool(x)} for x in nothing],
            "summary": {"micro_fbeta": merit, **report},
        },
        **_interval_fields(intervals),
    }


def _nothing(cuts: list[LabelCuts], thresholds: np.ndarray) -> np.ndarray:
    return np.array([c.cut_at(t) == c.nothing for c, t in zip(cuts, thresholds, strict=True)])


def _abstain(cuts: list[LabelCuts], spec: TuningSpec, dtype) -> tuple[LabelOutcomes, dict]:
    """:func:`tuning.abstain.tune_abstain` on cuts, reported as :mod:`tuning.objectives` does."""
    assert spec.target is not None and spec.npv_target is not None
    wilson = spec.wilson_confidence
    z = None if wilson is None else NormalDist().inv_cdf(float(wilson))
    n_labels = len(cuts)
    lower, upper = np.empty(n_labels), np.empty(n_labels)
    statuses, per_label = [], []
    for j, label in enumerate(cuts):
        status = untunable_status(label, max(spec.min_positives, 1))
        hi, lo, clipped = label.nothing, None, False
        if status is None:
            found = _upper_cut(label, spec.target, z)
            status = "target_unreachable" if found is None else None
            hi = label.nothing if found is None else found
            lo, clipped = _lower_cut(label, spec.npv_target, hi, z)
            if lo is None and status is None:
                status = "npv_target_unreachable"
        statuses.append(status or "ok")
        upper[j] = cut_threshold(label, hi, dtype)
        lower[j] = 0.0 if lo is None else cut_threshold(label, lo, dtype)
        low_index = 0 if lo is None else lo
        yes = int(label.predicted_positives[hi])
        no = label.n_samples - int(label.predicted_positives[low_index])
        negatives_below = no - (label.positives - int(label.true_positives[low_index]))
        share = (label.n_samples - yes - no) / label.n_samples
        per_label.append(
            {
                "lower_threshold": float(lower[j]), "review_share": float(share),
                "coverage": float(1.0 - share),
                "npv": float(negatives_below / no) if no else 1.0,
                "yes": yes, "no": no, "uncertain": label.n_samples - yes - no,
                "clipped": bool(clipped), "review_share_interval": None, "lower_interval": None,
            }
        )  # fmt: skip
    if spec.n_bootstrap:
        intervals = boot.abstain_intervals_from_cuts(
            cuts, dtype, lower, upper, spec.target, spec.npv_target, spec.wilson_confidence,
            spec.n_bootstrap, spec.seed, spec.confidence,
        )  # fmt: skip
        for j, entry in enumerate(per_label):
            entry["review_share_interval"] = _pair(intervals.merit, j)
            entry["lower_interval"] = _pair(intervals.lower_thresholds, j)
    else:
        intervals = None
    uncertain = sum(entry["uncertain"] for entry in per_label)
    summary = {"review_share": float(uncertain / (cuts[0].n_samples * n_labels))}
    return _outcomes(cuts, upper, statuses), {
        "params": spec.params(),
        "strategy": "per_label",
        "label_strategy": ["fallback" if s in _UNTUNABLE else "per_label" for s in statuses],
        "objective_report": {"per_label": per_label, "summary": summary},
        "lower_thresholds": lower,
        **_interval_fields(intervals),
    }
