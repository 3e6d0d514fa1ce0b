"""Out-of-sample behaviour of objective="cost" and the abstain band on the protocol grid.

Same grid as bench/quality_micro.py (bench/quality_grid.py: MULAN sets x model
families x split seeds; tuned on validation, judged on test).

cost (``--cost-fp``, ``--cost-fn``, default 1 and 5): test cost summed over
labels, per row, for
  - ``0.5``: every label at 0.5;
  - ``bayes``: every label at ``cost_fp / (cost_fp + cost_fn)``, the optimum
    for calibrated probabilities;
  - ``per_label``: each label's exact validation optimum (tuning.costs);
  - ``shrunk``: the per-label optimum pulled toward ``bayes`` in logit space
    with weight ``s / (s + 6)`` on its own (``s`` its validation positives),
    the default strategy's rule with the Bayes threshold as the shared one.

abstain (``--target``, ``--npv-target``, default 0.9 and 0.95): per case the
mean review share on validation and test; over labels with a non-empty side,
the share of labels whose test precision (NPV) still meets the target, and the
median over those labels of the test precision (NPV), averaged over cases.

    python bench/quality_objectives.py --cache /tmp/qcache
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_grid import DATA_DIR, FAMILIES, SEEDS, SETS, load_case

from labelcut.tuning.abstain import apply_abstain, tune_abstain
from labelcut.tuning.costs import tune_costs

SHRINKAGE = 6.0


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def test_cost(scores, targets, thresholds, cost_fp, cost_fn) -> float:
    predicted = scores >= np.asarray(thresholds, dtype=np.float64)
    fp = (predicted & ~targets).sum()
    fn = (~predicted & targets).sum()
    return float(cost_fp * fp + cost_fn * fn) / len(scores)


def cost_row(case, cost_fp: float, cost_fn: float) -> dict[str, float]:
    y_val, y_test = case.y_val.astype(bool), case.y_test.astype(bool)
    bayes = cost_fp / (cost_fp + cost_fn)
    result = tune_costs(case.scores_val, y_val, cost_fp, cost_fn)
    ok = np.array([s == "ok" for s in result.status])
    own = np.where(ok, result.thresholds, bayes)
    support = y_val.sum(axis=0)
    weight = np.where(ok, support / (support + SHRINKAGE), 0.0)
    mixed = 1 / (1 + np.exp(-(weight * logit(own) + (1 - weight) * logit(np.float64(bayes)))))
    shrunk = np.where(weight >= 1, own, mixed)
    return {
        name: test_cost(case.scores_test, y_test, t, cost_fp, cost_fn)
        for name, t in (("0.5", 0.5), ("bayes", bayes), ("per_label", own), ("shrunk", shrunk))
    }


def abstain_row(case, target: float, npv_target: float, confidence) -> dict[str, float]:
    y_test = case.y_test.astype(bool)
    band = tune_abstain(
        case.scores_val, case.y_val, target, npv_target, wilson_confidence=confidence
    )
    yes, uncertain = apply_abstain(case.scores_test, band.lower, band.upper)
    no = ~yes & ~uncertain
    yes_n, no_n = yes.sum(axis=0), no.sum(axis=0)
    precision = (yes & y_test).sum(axis=0) / np.maximum(yes_n, 1)
    npv = (no & ~y_test).sum(axis=0) / np.maximum(no_n, 1)
    return {
        "val review": float(band.review_share.mean()),
        "test review": float(uncertain.mean()),
        "precision held": float((precision[yes_n > 0] >= target).mean())
        if (yes_n > 0).any()
        else 1.0,
        "npv held": float((npv[no_n > 0] >= npv_target).mean()) if (no_n > 0).any() else 1.0,
        "median precision": float(np.median(precision[yes_n > 0])) if (yes_n > 0).any() else 1.0,
        "median npv": float(np.median(npv[no_n > 0])) if (no_n > 0).any() else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/labelcut-quality"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--cost-fp", type=float, default=1.0)
    parser.add_argument("--cost-fn", type=float, default=5.0)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--npv-target", type=float, default=0.95)
    parser.add_argument(
        "--wilson-confidence", type=float, default=None, help="Wilson lower bounds for the band"
    )
    args = parser.parse_args()

    costs, bands = {}, {}
    for name in args.sets:
        for family in args.families:
            for seed in args.seeds:
                case = load_case(args.data_dir, args.cache, name, family, seed)
                costs[(name, family, seed)] = cost_row(case, args.cost_fp, args.cost_fn)
                bands[(name, family, seed)] = abstain_row(
                    case, args.target, args.npv_target, args.wilson_confidence
                )

    print(f"test cost per row (cost_fp {args.cost_fp}, cost_fn {args.cost_fn}); lower is better")
    names = ("0.5", "bayes", "per_label", "shrunk")
    print(f"{'set':<10} " + " ".join(f"{n:>10}" for n in names) + "   shrunk best of 4")
    for group in [*args.sets, "all"]:
        rows = [r for (s, _, _), r in costs.items() if group in ("all", s)]
        means = [np.mean([r[n] for r in rows]) for n in names]
        best = sum(min(r, key=r.get) == "shrunk" for r in rows)
        print(f"{group:<10} " + " ".join(f"{m:>10.4f}" for m in means) + f"   {best}/{len(rows)}")
    for first, second in (("shrunk", "per_label"), ("shrunk", "bayes"), ("per_label", "bayes")):
        wins = sum(r[first] < r[second] for r in costs.values())
        print(f"{first} below {second}: {wins}/{len(costs)} cases")

    print()
    print(
        f"abstain (target {args.target}, npv_target {args.npv_target},"
        f" wilson_confidence {args.wilson_confidence})"
    )
    keys = (
        "val review", "test review", "precision held", "npv held", "median precision",
        "median npv",
    )  # fmt: skip
    print(f"{'set':<10} " + " ".join(f"{k:>16}" for k in keys))
    for group in [*args.sets, "all"]:
        rows = [r for (s, _, _), r in bands.items() if group in ("all", s)]
        print(f"{group:<10} " + " ".join(f"{np.mean([r[k] for r in rows]):>16.3f}" for k in keys))


if __name__ == "__main__":
    main()
