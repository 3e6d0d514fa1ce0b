"""tune_thresholds() and apply_thresholds(): the public entry points."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from labelcut.tuning import validation
from labelcut.tuning.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_BOOTSTRAP,
    DEFAULT_SEED,
    BootstrapPlan,
    bootstrap_intervals,
)
from labelcut.tuning.counting import counts_at
from labelcut.tuning.cpu import tune_labels_cpu
from labelcut.tuning.diagnosis import diagnose
from labelcut.tuning.pooled import pooled_threshold
from labelcut.tuning.result import TuningResult
from labelcut.tuning.select import TuningSpec
from labelcut.tuning.strategies import DEFAULT_STRATEGY, SHRINKAGE_POSITIVES, combine
from labelcut.tuning.torch_backend import tune_labels_torch


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
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> TuningResult:
    """Choose one decision threshold per label from its precision-recall curve.

    A label is predicted positive iff ``score >= threshold``.

    ``scores``: ``(n, L)`` probabilities in [0, 1], numpy or torch, any float
    dtype. ``targets``: ``(n, L)`` of 0/1, any bool, integer or float dtype.
    ``objective``: "f1"; "fbeta" (weights recall ``beta`` times as much as
    precision); "recall_at_precision" (highest recall with precision >=
    ``target``); "precision_at_recall" (highest precision with recall >=
    ``target``). ``target`` in (0, 1] is required by the last two.

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

    ``strategy`` (see :mod:`tuning.strategies`): "per_label" (each label's own
    optimum, as described above), "global" (one shared threshold, the exact
    optimum of the pooled micro objective; every label gets it) or "shrunk"
    (default: a label's own threshold pulled toward the shared one in logit
    space with weight ``s / (s + shrinkage)`` on its own, ``s`` its positives;
    labels that cannot be tuned get the shared threshold). If the shared
    threshold cannot be tuned either, "global" and "shrunk" act as "per_label".
    The shared threshold is only computed for "global" and "shrunk"
    (``global_threshold`` is None under "per_label").

    ``n_bootstrap`` replicates (0 turns it off) of a seeded Poisson bootstrap
    over rows give ``confidence`` percentile intervals for each threshold and
    its F1 (see :mod:`tuning.bootstrap`; computed on the CPU). Every result
    carries :func:`tuning.diagnose` of the targets.
    """
    score_tensor = validation.check_scores(scores)
    target_tensor = validation.check_targets(targets, tuple(score_tensor.shape))
    objective = validation.check_objective(objective)
    spec = TuningSpec(
        objective=objective,
        beta=validation.check_beta(beta),
        target=validation.check_target(target, objective),
        min_positives=validation.check_min_positives(min_positives),
        fallback=validation.check_fallback(fallback),
    )
    run_on = validation.resolve_device(device)
    strategy = validation.check_strategy(strategy)
    shrinkage = validation.check_shrinkage(shrinkage)
    n_bootstrap = validation.check_n_bootstrap(n_bootstrap)
    seed = validation.check_seed(seed)
    confidence = validation.check_confidence(confidence)

    if run_on.type == "cpu":
        outcomes = tune_labels_cpu(score_tensor, target_tensor, spec)
    else:
        outcomes = tune_labels_torch(score_tensor, target_tensor, spec, run_on)
    # The shared threshold costs a pass over every score; "per_label" never uses it.
    pooled = (
        None if strategy == "per_label" else pooled_threshold(score_tensor, target_tensor, spec)
    )
    shared = pooled.threshold if pooled is not None and pooled.status == "ok" else None
    ok = np.array([status == "ok" for status in outcomes.statuses], dtype=bool)
    thresholds, sources = combine(
        strategy,
        outcomes.thresholds,
        ok,
        outcomes.positives,
        shared,
        spec.fallback,
        shrinkage,
        statuses=outcomes.statuses,
        constrained=objective in validation.CONSTRAINED_OBJECTIVES,
    )
    if strategy != "per_label":
        true_positives, predicted_positives = counts_at(
            score_tensor.to(run_on), target_tensor.to(run_on), thresholds
        )
        outcomes = replace(
            outcomes,
            thresholds=thresholds,
            true_positives=true_positives,
            predicted_positives=predicted_positives,
        )
    intervals = None
    if n_bootstrap:
        plan = BootstrapPlan(spec, strategy, shared, shrinkage, n_bootstrap, seed, confidence)
        intervals = bootstrap_intervals(
            score_tensor,
            target_tensor,
            thresholds,
            plan,
            None if pooled is None else pooled.histogram,
        )
    params = {
        "beta": spec.beta,
        "target": spec.target,
        "min_positives": spec.min_positives,
        "fallback": spec.fallback,
        "strategy": strategy,
        "shrinkage": shrinkage,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "confidence": confidence,
    }
    return TuningResult.from_outcomes(
        outcomes,
        objective,
        params,
        score_tensor.shape[0],
        strategy=strategy,
        label_strategy=sources,
        global_threshold=shared,
        threshold_interval=None
        if intervals is None
        else np.stack([intervals.threshold_low, intervals.threshold_high], axis=1),
        f1_interval=None
        if intervals is None
        else np.stack([intervals.f1_low, intervals.f1_high], axis=1),
        unstable=None if intervals is None else intervals.unstable,
        diagnosis=diagnose(target_tensor),
    )


def apply_thresholds(scores: Any, thresholds: Any) -> np.ndarray:
    """Predict labels: ``(n, L)`` bool array, True iff ``scores[i, j] >= thresholds[j]``.

    ``scores``: ``(n, L)`` probabilities in [0, 1] (numpy or torch, any float
    dtype); ``thresholds``: ``(L,)``. The comparison is made in float64, so it
    agrees exactly with the thresholds reported by :func:`tune_thresholds`.
    """
    score_tensor = validation.check_scores(scores)
    limits = validation.check_thresholds(thresholds, score_tensor.shape[1]).numpy()
    values = score_tensor.cpu()
    if values.dtype == torch.bfloat16:
        values = values.to(torch.float32)
    # numpy compares a float32 array with a float64 array in float64, without a copy.
    return np.greater_equal(values.numpy(), limits[None, :])
