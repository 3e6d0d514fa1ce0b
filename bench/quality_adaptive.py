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


def main() -> int:
    """Time ``adaptive_thresholds`` against the whole "shrunk" tune, back to back."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scores = rng.random((args.rows, args.labels)).astype(np.float32)
    targets = (rng.random((args.rows, args.labels)) < 0.3 * scores).astype(np.int8)
    folds = FoldPlan.build(torch.from_numpy(targets), 0).folds.astype(np.int64)
    shrunk = np.full(args.labels, 0.3)
    print(f"{args.rows} x {args.labels}, float32 scores")
    for _ in range(args.repeats):
        started = time.perf_counter()
        tune_thresholds(scores, targets, strategy="shrunk", device="cpu")
        tuned = time.perf_counter()
        adaptive_thresholds(scores, targets, folds, shrunk, np.tile(shrunk, (5, 1)))
        done = time.perf_counter()
        print(
            f"shrunk tune (200 replicates + estimate) {tuned - started:.2f} s; "
            f"adaptive_thresholds {done - tuned:.2f} s ({(done - tuned) / (tuned - started):.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
