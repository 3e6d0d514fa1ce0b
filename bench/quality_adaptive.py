"""The "adaptive" strategy (tuning/adaptive.py) on one grid case, from the public API.

Until the strategy is wired into ``tune_thresholds``, the grid builds its inputs here:
the tune's fold plan (:class:`labelcut.tuning.estimate.FoldPlan`, seed 0) and the
"shrunk" thresholds on all rows and on each fold's training rows, from
``tune_thresholds(strategy="shrunk")``.
"""

from __future__ import annotations

import numpy as np
import torch

from labelcut.tuning import tune_thresholds
from labelcut.tuning.adaptive import AdaptiveChoice, adaptive_thresholds
from labelcut.tuning.estimate import FoldPlan, estimate_from_thresholds


def adaptive_for(scores: np.ndarray, targets: np.ndarray, seed: int = 0) -> AdaptiveChoice:
    """``adaptive_thresholds`` with its inputs tuned from ``scores``/``targets`` (n, L)."""
    plan = FoldPlan.build(torch.from_numpy(np.asarray(targets)), seed)
    folds = plan.folds.astype(np.int64)

    def shrunk(rows: np.ndarray) -> np.ndarray:
        result = tune_thresholds(
            scores[rows],
            targets[rows],
            strategy="shrunk",
            n_bootstrap=0,
            estimate=False,
            seed=seed,
            device="cpu",
        )
        return np.asarray(result.thresholds, dtype=np.float64)

    per_fold = [shrunk(np.flatnonzero(folds != f)) for f in range(plan.n_folds)]
    return adaptive_thresholds(
        scores,
        targets,
        folds,
        shrunk(np.arange(len(scores))),
        np.stack(per_fold),
    )


def adaptive_estimate(
    scores: np.ndarray, targets: np.ndarray, choice: AdaptiveChoice, seed: int = 0
) -> tuple[float, float, list[float]]:
    """(in-sample macro-F1, cross-fitted expected macro-F1, its 90% interval) of ``choice``.

    The expected figure scores each fold's rows with ``choice.fold_thresholds`` (the rule
    built without that fold; ``rho`` and ``tau`` are the ones chosen on all rows).
    """
    y = torch.from_numpy(np.asarray(targets))
    plan = FoldPlan.build(y, seed)
    found = estimate_from_thresholds(
        torch.from_numpy(np.asarray(scores)), y, plan, choice.fold_thresholds, seed
    )
    decided = scores >= choice.thresholds
    tp = (decided & (targets == 1)).sum(0)
    denominator = decided.sum(0) + (targets == 1).sum(0)
    in_sample = float(np.mean(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0)))
    macro = found["macro_f1"]
    return in_sample, macro["expected"], macro["expected_interval"]
