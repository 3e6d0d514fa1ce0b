"""tune_thresholds(): the public entry point, as one pipeline of named steps.

1. check the arguments once (:mod:`tuning._checks`: one :class:`TuningSpec`);
2. one sorted pass over the labels (:mod:`tuning._sorted`), reading from each
   label's candidates its own optimum (:mod:`tuning._search`) and, when a
   strategy needs the shared threshold, its counts at the pooled bucket edges;
3. the shared threshold and each label's final one (:mod:`tuning._shared`);
4. per label at its final threshold: counts, bootstrap interval
   (:mod:`tuning.bootstrap`) and compact curve (:mod:`tuning.curves`), read
   from the same sorted keys (in step 2 itself under "per_label");
5. the :class:`TuningResult` (:mod:`tuning.result`);
6. beside 3 to 5, on a thread of its own: the cross-fitted estimate
   (:mod:`tuning.estimate`), from the fold counts step 2 gathered; the diagnosis
   (:func:`tuning.diagnose`) runs beside everything from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from labelcut.tuning import (
    _checks,
    _memory,
    _search,
    _shared,
    adaptive,
    bootstrap,
    curves,
    estimate,
    objectives,
)
from labelcut.tuning._checks import DEFAULT_STRATEGY, DEFAULT_THRESHOLD, SHRINKAGE_POSITIVES
from labelcut.tuning._sorted import Candidates, SortedLabels
from labelcut.tuning.diagnosis import diagnose
from labelcut.tuning.result import LabelOutcomes, TuningResult


def tune_thresholds(
    scores: Any,
    targets: Any,
    objective: str = "f1",
    *,
    beta: float = 1.0,
    target: float | None = None,
    min_positives: int = 1,
    fallback: float = 0.5,
    device: str | torch.device = "auto",
    strategy: str = DEFAULT_STRATEGY,
    shrinkage: float = SHRINKAGE_POSITIVES,
    n_bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.9,
    return_curves: bool = False,
    cost_fp: Any = 1.0,
    cost_fn: Any = 1.0,
    decision_rule: str = "threshold",
    npv_target: float | None = None,
    wilson_confidence: float | None = None,
    label_names: Sequence[str] | None = None,
    estimate: bool = True,
) -> TuningResult:
    """Choose one decision threshold per label from its precision-recall curve.

    A label is predicted positive iff ``score >= threshold``.

    ``scores``: ``(n, L)`` probabilities in [0, 1], numpy or torch, any float
    dtype. ``targets``: ``(n, L)`` of 0/1, any bool, integer or float dtype.
    ``objective``: "f1"; "fbeta" (weights recall ``beta`` times as much as
    precision; ``beta`` in (0, 1e6]); "recall_at_precision" (highest recall
    with precision >= ``target``); "precision_at_recall" (highest precision
    with recall >= ``target``). ``target`` in (0, 1] is required by the last two.

    The search is exact: every distinct score of a label is a candidate cut
    (the points of sklearn's ``precision_recall_curve``); ties in the
    objective go to the higher threshold. The returned threshold is the
    midpoint between the lowest score predicted positive and the highest
    score predicted negative (between the lowest score and 0 when every
    sample is predicted positive), rounded to the scores' dtype; it always
    reproduces the chosen operating point on these scores. Predicting nothing
    is not a candidate: it never wins F1/F-beta or a recall target, and a
    precision target is "unreachable" rather than met by predicting nothing.

    Labels get ``fallback`` instead, with their status saying why, the first
    that applies: "no_positives", "no_negatives", "too_few_positives" (fewer
    than ``min_positives``), "target_unreachable"; tuned labels are "ok".

    ``device``: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"; the
    answers are the same on every device. Raises ``ValueError`` on bad input.

    ``strategy`` (see :mod:`tuning._shared`): "per_label" (each label's own
    optimum, as described above), "global" (one shared threshold, the exact
    optimum of the pooled micro objective; every label gets it) or "shrunk"
    (default: a label's own threshold pulled toward the shared one in logit
    space with weight ``s / (s + shrinkage)`` on its own, ``s`` its positives;
    labels that cannot be tuned get the shared threshold). If the shared
    threshold cannot be tuned either, "global" and "shrunk" act as "per_label".
    The shared threshold is only computed for "global" and "shrunk"
    (``global_threshold`` is None under "per_label").

    ``n_bootstrap`` replicates (0 turns it off, at most 10,000) of a seeded
    Poisson bootstrap over rows give ``confidence`` percentile intervals for
    each threshold and its F1 (see :mod:`tuning.bootstrap`; computed on the
    CPU in bounded memory). Every result carries :func:`tuning.diagnose` of
    the targets. ``return_curves=True`` adds ``result.curves``: each label's
    compact curve with its threshold's and 0.5's operating points kept, equal
    to ``compact_curves(scores, targets, keep=[thresholds, 0.5])``, from the
    same sorted pass.

    Issue 18 (see :mod:`tuning.objectives`): ``objective="cost"`` minimises each
    label's ``cost_fp * FP + cost_fn * FN`` (each a number, one per label, or a
    map label name -> number with ``"*"`` for the rest; maps need
    ``label_names``); per label only (``global`` is refused). ``"micro_f1"`` /
    ``"micro_fbeta"`` choose all thresholds jointly for the pooled score
    (strategy "joint"), from this call's pooled threshold. ``decision_rule=
    "abstain"`` (objective "f1") tunes a lower and an upper threshold per label
    from ``target`` (yes-side precision) and ``npv_target`` (no-side NPV,
    optionally at a ``wilson_confidence`` lower bound); ``thresholds`` are the
    upper ones and ``result.lower_thresholds`` the lower. Other decision rules
    change nothing here (they are stored with a set for ``/predict``).

    ``estimate=True`` (issue 20, :mod:`tuning.estimate`) also reports what to
    expect on new data in ``result.estimate``: 5-fold cross-fitted macro-F1,
    micro-F1 and per-label F1 with 90% intervals, from the same sorted pass, blended
    with the in-sample figures by the .632+ rule (:func:`tuning.estimate.with_in_sample`).
    """
    score_tensor = _checks.check_scores(scores)
    target_tensor = _checks.check_targets(targets, tuple(score_tensor.shape))
    spec = _checks.check_spec(
        objective=objective,
        beta=beta,
        target=target,
        min_positives=min_positives,
        fallback=fallback,
        strategy=strategy,
        shrinkage=shrinkage,
        n_bootstrap=n_bootstrap,
        seed=seed,
        confidence=confidence,
        cost_fp=cost_fp,
        cost_fn=cost_fn,
        decision_rule=decision_rule,
        npv_target=npv_target,
        wilson_confidence=wilson_confidence,
        estimate=estimate,
    )
    run_on = _checks.resolve_device(device)
    if not isinstance(return_curves, bool):
        raise ValueError(f"return_curves must be True or False, but got {return_curves!r}.")
    names = _checks.check_label_names(label_names, score_tensor.shape[1])
    if objectives.handles(spec):
        return _tune_objective(score_tensor, target_tensor, spec, run_on, return_curves, names)
    return _Tuning(score_tensor, target_tensor, spec, run_on, return_curves).run()


def _tune_objective(
    scores: torch.Tensor,
    targets: torch.Tensor,
    spec: _checks.TuningSpec,
    device: torch.device,
    return_curves: bool,
    label_names: list[str] | None,
) -> TuningResult:
    """Issue 18's objectives; micro starts from the pooled threshold of one core pass."""
    start = None
    if spec.objective in _checks.JOINT_OBJECTIVES:
        pooled_spec = replace(
            spec,
            objective="f1" if spec.objective == "micro_f1" else "fbeta",
            strategy="global",
            n_bootstrap=0,
            estimate=False,
        )
        start = _Tuning(scores, targets, pooled_spec, device, False).run().global_threshold
    result = objectives.tune_objective(
        scores, targets, spec, label_names, start_threshold=start, diagnosis=diagnose(targets)
    )
    if spec.estimate:
        result = replace(result, estimate=_refit_estimate(scores, targets, spec, label_names))
        result = _blend_estimate(result)
    if return_curves:
        keep = np.stack([result.thresholds, np.full(len(result.thresholds), DEFAULT_THRESHOLD)], 1)
        # Thresholds above 1 ("predict nothing" at a score of 1.0) are kept as 1.0's point.
        result = replace(
            result,
            curves=curves.compact_curves(scores, targets, keep=np.minimum(keep, 1.0)),
        )
    return result


def _blend_estimate(result: TuningResult) -> TuningResult:
    """The result with its estimate's ``expected`` figures blended with its in-sample ones
    (:func:`tuning.estimate.with_in_sample`, the .632+ rule)."""
    if result.estimate is None:
        return result
    blended = estimate.with_in_sample(
        result.estimate,
        result.f1,
        result.micro_f1,
        result.support,
        result.predicted_positives,
        result.n_samples,
    )
    return replace(result, estimate=blended)


def _refit_estimate(
    scores: torch.Tensor,
    targets: torch.Tensor,
    spec: _checks.TuningSpec,
    label_names: list[str] | None,
) -> dict[str, Any]:
    """The estimate of issue 18's objectives: each fold's thresholds from a tune of the
    other folds' rows (these objectives have their own sorted passes, so it re-sorts)."""
    if scores.shape[0] < estimate.MIN_ROWS:
        return estimate.unavailable(scores.shape[1])
    plan = estimate.FoldPlan.build(targets, spec.seed)
    folds = torch.from_numpy(plan.folds.astype(np.int64))
    inner = replace(spec, n_bootstrap=0, estimate=False)
    thresholds = np.stack(
        [
            objectives.tune_objective(
                scores[folds != fold], targets[folds != fold], inner, label_names
            ).thresholds
            for fold in range(plan.n_folds)
        ]
    )
    return estimate.estimate_from_thresholds(scores, targets, plan, thresholds, spec.seed)


class _Tuning:
    """One call's state, walked through once: own optima, shared threshold, final figures."""

    def __init__(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        spec: _checks.TuningSpec,
        device: torch.device,
        return_curves: bool,
    ) -> None:
        self.scores, self.targets, self.spec, self.device = scores, targets, spec, device
        self.return_curves = return_curves
        self.needs_shared = spec.strategy != "per_label"
        self.per_label_extras = bool(spec.n_bootstrap) or return_curves
        self.sorted = SortedLabels(scores, targets)
        self.pooled_counts = (
            _shared.PooledCounts(_shared.Bucketing.of(self.sorted.float_dtype))
            if self.needs_shared
            else None
        )
        # Work that reads only the inputs and is needed only at the end runs on threads
        # beside the sorted passes (its numpy calls release the GIL), filling the gaps
        # where the passes leave a core idle: the diagnosis from the start, the estimate
        # once the first pass has counted the folds.
        self._beside = ThreadPoolExecutor(max_workers=2)
        self._diagnosis = self._beside.submit(self._diagnose)
        self.folds = None
        # "adaptive" (objective f1 only; "shrunk" otherwise) chooses on the estimate's folds.
        self.adaptive = spec.strategy == "adaptive" and spec.objective == "f1"
        self.choice: adaptive.AdaptiveChoice | None = None
        self._pulls: list[adaptive.ReplicatePull] | None = None  # the bootstrap's, "adaptive"
        self._row_groups: np.ndarray | None = None  # the estimate's bootstrap groups
        if (spec.estimate or self.adaptive) and scores.shape[0] >= estimate.MIN_ROWS:
            try:
                plan = estimate.FoldPlan.build(targets, spec.seed)
            except BaseException:
                self._beside.shutdown(wait=False)
                raise
            self._row_groups = (
                estimate.row_groups(*scores.shape, spec.seed) if spec.estimate else None
            )
            self.folds = estimate.FoldTuning(
                plan,
                spec,
                scores.shape[1],
                scores.dtype,
                self.sorted.float_dtype,
                self.pooled_counts,
            )

    def run(self) -> TuningResult:
        """Steps 2 to 5, in order (step 6, the estimate, beside steps 3 to 5)."""
        try:
            return self._run()
        finally:
            self._beside.shutdown(wait=False)

    def _run(self) -> TuningResult:
        own, figures = self._own_optima()
        self._release_free_memory()  # the pass's sort copies and fold segments
        # The estimate needs only the first pass's counts, but "adaptive" estimates its own
        # rule, known once its choice is made (it is then submitted from there).
        self._expected = None if self.adaptive else self._beside.submit(self._estimate)
        pooled, sources = None, None
        if self.needs_shared:
            own, sources, pooled, figures = self._with_shared_threshold(own)
        if self._expected is None:
            self._expected = self._beside.submit(self._estimate)
        expected = self._expected
        shared = pooled.threshold if pooled is not None and pooled.status == "ok" else None
        intervals = self._intervals(figures, pooled, shared)
        result = TuningResult.from_outcomes(
            own,
            self.spec.objective,
            self.spec.params(),
            self.scores.shape[0],
            strategy=self.spec.strategy,
            label_strategy=sources,
            global_threshold=shared,
            threshold_interval=None
            if intervals is None
            else np.stack([intervals.threshold_low, intervals.threshold_high], axis=1),
            f1_interval=None
            if intervals is None
            else np.stack([intervals.f1_low, intervals.f1_high], axis=1),
            unstable=None if intervals is None else intervals.unstable,
            diagnosis=self._diagnosis.result(),
            curves=[f["curve"] for f in figures] if self.return_curves else None,
            estimate=expected.result(),
            objective_report=None
            if self.choice is None
            else {"summary": {"adaptive": self.choice.report()}},
        )
        self._release_free_memory()  # what the walk and the estimate left: the caller's again
        return _blend_estimate(result)

    def _diagnose(self) -> dict[str, Any]:
        found = diagnose(self.targets)
        # Beside the sorted pass: what it freed would otherwise sit under the pass's peak.
        self._release_free_memory()
        return found

    def _release_free_memory(self) -> None:
        """Between stages of a large tune: the freed temporaries back to the system
        (:mod:`tuning._memory`), so the next stage's peak is not on top of them."""
        if self.scores.shape[0] * self.scores.shape[1] >= _memory.RELEASE_ELEMENTS:
            _memory.release_free_memory()

    def _estimate(self) -> dict[str, Any] | None:
        """Step 6 (issue 20): the out-of-fold figures from each fold's thresholds."""
        if not self.spec.estimate:
            return None
        if self.folds is None:
            return estimate.unavailable(self.scores.shape[1])
        fold_thresholds = (
            self.choice.fold_thresholds if self.choice is not None else self.folds.thresholds()
        )
        found = estimate.estimate_from_thresholds(
            self.scores,
            self.targets,
            self.folds.plan,
            fold_thresholds,
            self.spec.seed,
            self._row_groups,
        )
        self._release_free_memory()  # beside the final walk, as the diagnosis beside the pass
        return found

    def _own_optima(self) -> tuple[LabelOutcomes, list[dict[str, Any]]]:
        """Step 2: each label's own optimum; under "per_label" also its final figures."""
        spec, on_cpu = self.spec, self.device.type == "cpu"
        own_torch = None
        if not on_cpu:
            own_torch = _search.tune_labels_torch(self.scores, self.targets, spec, self.device)
            if not self.needs_shared and not self.per_label_extras and self.folds is None:
                return own_torch, [{} for _ in own_torch.statuses]

        def first_look(label: int, candidates: Candidates):
            if own_torch is None:
                own = _search.choose_label(candidates, spec, self.scores.dtype)
                threshold = float(own.thresholds[0])
            else:
                own, threshold = None, float(own_torch.thresholds[label])
            if self.pooled_counts is not None:
                self.pooled_counts.add(candidates)
                return own, {}
            return own, self._figures(label, candidates, threshold, None)

        if self.folds is None:
            parts = self.sorted.walk(first_look, keep=self.needs_shared)
        else:
            plan = self.folds.plan
            parts = self.sorted.walk(
                first_look,
                keep=self.needs_shared,
                segments=(plan.order, plan.bounds),
                segment_handle=self.folds.add_label,
            )
        if own_torch is None:
            own = LabelOutcomes.concatenate([part[0] for part in parts])
        else:
            own = own_torch
        return own, [part[1] for part in parts]

    def _figures(
        self, label: int, candidates: Candidates, threshold: float, shared: float | None
    ) -> dict[str, Any]:
        """Step 4 for one label: its counts, interval and curve at its final ``threshold``."""
        figures: dict[str, Any] = {"counts": candidates.counts_at(threshold)}
        if self.spec.n_bootstrap:
            figures["interval"] = bootstrap.label_intervals(
                label,
                candidates,
                threshold,
                self.spec,
                shared,
                None if self._pulls is None else self._pulls[label],
            )
        if self.return_curves:
            figures["curve"] = curves.compact_curve(candidates, [threshold, DEFAULT_THRESHOLD])
        return figures

    def _with_shared_threshold(self, own: LabelOutcomes):
        """Step 3 and 4 for "shrunk"/"global": the shared threshold, each label's final one,
        and its figures there. Returns (outcomes, sources, pooled choice, figures)."""
        spec = self.spec
        pooled = _shared.pooled_threshold(self.pooled_counts, self.sorted, spec, self.scores.dtype)
        shared = pooled.threshold if pooled.status == "ok" else None
        thresholds, sources = _shared.combine(
            spec.strategy,
            own.thresholds,
            np.array([status == "ok" for status in own.statuses], dtype=bool),
            own.positives,
            shared,
            spec.fallback,
            spec.shrinkage,
            statuses=own.statuses,
            constrained=spec.constrained,
        )
        if self.adaptive and self.folds is not None:
            # combine() gave the "shrunk" thresholds; the folds' own come from the pass.
            # The plug-in stage reads only the inputs and the folds, but it runs here, after
            # the pass: beside it, it saved little time on 2 cores and its memory met the
            # kept keys' peak (0.94-0.98x the inputs against 0.77x, bench_tuning's measure).
            plan = self.folds.plan
            plugin = adaptive.plugin_optima(self.scores, self.targets, plan.folds, plan.n_folds)
            self._release_free_memory()  # the calibration's temporaries, before its re-read
            self.choice = adaptive.choose(plugin, thresholds, self.folds.thresholds())
            # Its calibration (every label's sorted fold scores) is not read again: freed
            # before the final walk, where the kept keys, the bootstrap and the estimate
            # beside it meet (0.08x the inputs at 1M x 100).
            del plugin
            self._release_free_memory()
            if spec.n_bootstrap:  # the bootstrap re-tunes what the kept rule reads off the curve
                self._pulls = self.choice.replicate_pulls(thresholds, own.thresholds)
            thresholds = self.choice.thresholds
            sources = ["adaptive"] * len(thresholds)
            self._expected = self._beside.submit(self._estimate)
        figures = self._final_figures(thresholds, shared)
        true_positives, predicted_positives = self._counts_at(thresholds, figures)
        final = replace(
            own,
            thresholds=thresholds,
            true_positives=true_positives,
            predicted_positives=predicted_positives,
        )
        return final, sources, pooled, figures

    def _final_figures(self, thresholds: np.ndarray, shared: float | None) -> list[dict]:
        """Step 4 after the shared threshold: a second walk over the kept keys, no sort."""
        if not self.per_label_extras:
            return [{} for _ in range(len(thresholds))]
        return self.sorted.walk_again(
            lambda label, candidates: self._figures(
                label, candidates, float(thresholds[label]), shared
            )
        )

    def _counts_at(
        self, thresholds: np.ndarray, extras: list[dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        if extras and "counts" in extras[0]:
            counts = np.array([e["counts"] for e in extras], dtype=np.int64)
            return counts[:, 0], counts[:, 1]
        return self.sorted.counts_at(thresholds)

    def _intervals(
        self,
        figures: list[dict[str, Any]],
        pooled: _shared.PooledChoice | None,
        shared: float | None,
    ) -> bootstrap.Intervals | None:
        """Each label's bootstrap intervals (the shared one's for every label under "global")."""
        if not self.spec.n_bootstrap:
            return None
        intervals = bootstrap.Intervals.from_ends(np.stack([f["interval"] for f in figures]))
        if self.spec.strategy == "global" and pooled is not None and shared is not None:
            low, high = bootstrap.shared_interval(pooled.histogram, self.spec)
            intervals = intervals.with_thresholds(low, high)
        return intervals
