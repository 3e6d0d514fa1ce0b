"""Robustness check of issue 20's goals on models the protocol grid never saw.

Not part of the protocol, but no longer untouched: the variants of issue 20's rule were
compared here too (README, "Decision quality"); bench/quality_holdout.py is the grid that
chose nothing. Five other model families x two other split seeds (3, 4) x the same six sets
= 60 cases, scored like bench/quality.py (thresholds tuned on the validation part, judged on
the test split; "adaptive" as ``tune_thresholds`` runs it). Families:
``gbdt`` histogram gradient boosting per label (50 rounds); ``mlp_deep`` a two-layer
network (256, 128) with weak weight decay (over-confident); ``logit_strong`` logistic
regression with strong regularisation (C = 0.05: scores squashed toward the base rate);
``extra`` extremely randomised trees (200, min 5 per leaf); ``knn5`` 5 nearest
neighbours (six score levels).

    python bench/quality_robust.py   # fits on first use; cache /tmp/labelcut-quality-robust
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ADAPTIVE, STRATEGIES, estimate_cells, estimate_report, goals, losses, test_f1
from quality_grid import DATA_DIR, SETS, Case, _multi_output, _per_label, _splits

from labelcut.tuning import tune_thresholds

FAMILIES = ("gbdt", "mlp_deep", "logit_strong", "extra", "knn5")
SEEDS = (3, 4)
# The strategies whose cross-fitted estimate is judged (issue 20): the default and per_label.
ESTIMATED = ("per_label", ADAPTIVE)
ROWS = (*STRATEGIES, ADAPTIVE)


def fit_case(data_dir: Path, name: str, family: str, seed: int) -> Case:
    x_fit, y_fit, x_val, y_val, x_test, y_test = _splits(data_dir, name, seed)
    scaler = StandardScaler().fit(x_fit)
    x_fit, x_val, x_test = (scaler.transform(a) for a in (x_fit, x_val, x_test))
    out = [x_val, x_test]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "gbdt":
            outs = _per_label(
                lambda: HistGradientBoostingClassifier(max_iter=50, random_state=seed),
                x_fit,
                y_fit,
                out,
            )
        elif family == "logit_strong":
            outs = _per_label(lambda: LogisticRegression(C=0.05, max_iter=2000), x_fit, y_fit, out)
        elif family == "mlp_deep":
            mlp = MLPClassifier(
                hidden_layer_sizes=(256, 128), alpha=1e-5, max_iter=200, random_state=seed
            )
            outs = _multi_output(mlp, x_fit, y_fit, out)
        elif family == "extra":
            extra = ExtraTreesClassifier(
                n_estimators=200, min_samples_leaf=5, random_state=seed, n_jobs=1
            )
            outs = _multi_output(extra, x_fit, y_fit, out)
        elif family == "knn5":
            outs = _multi_output(KNeighborsClassifier(n_neighbors=5), x_fit, y_fit, out)
        else:
            raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    return Case(name, family, seed, outs[0], y_val, outs[1], y_test)


def load_case(cache: Path, name: str, family: str, seed: int) -> Case:
    path = cache / f"{name}-{family}-{seed}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Case(name, family, seed, *(z[k] for k in ("sv", "yv", "st", "yt")))
    case = fit_case(DATA_DIR, name, family, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, sv=case.scores_val, yv=case.y_val, st=case.scores_test, yt=case.y_test
    )
    return case


def run_case(case: Case) -> dict[str, Any]:
    n_labels = case.y_val.shape[1]
    row: dict[str, Any] = {"0.5": test_f1(case.y_test, case.scores_test, np.full(n_labels, 0.5))}
    for strategy in ROWS:  # "adaptive" as tune_thresholds runs it (its folds, its "shrunk")
        result = tune_thresholds(
            case.scores_val,
            case.y_val,
            strategy=strategy,
            n_bootstrap=0,
            estimate=strategy in ESTIMATED,
            device="cpu",
        )
        row[strategy] = test_f1(case.y_test, case.scores_test, result.thresholds)
        if strategy in ESTIMATED:
            row[f"{strategy}:estimate"] = estimate_cells(result)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/labelcut-quality-robust"))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args()
    started = time.perf_counter()
    print("robustness check (families and seeds not used to choose anything)")
    print(f"| set | family | seed | {' | '.join(('0.5', *ROWS))} |  (test macro / micro)")
    print("|---|---|---|" + "---|" * (1 + len(ROWS)))
    rows = []
    for seed in args.seeds:
        for name in SETS:
            for family in args.families:
                row = run_case(load_case(args.cache, name, family, seed))
                rows.append(row)
                cells = " | ".join(f"{row[s][0]:.3f} / {row[s][1]:.3f}" for s in ("0.5", *ROWS))
                print(f"| {name} | {family} | {seed} | {cells} |", flush=True)
    print(f"\nrobustness part: {len(rows)} cases")
    print("| strategy | mean macro-F1 | mean micro-F1 | macro loses to 0.5 | micro loses to 0.5 |")
    print("|---|---|---|---|---|")
    means = {}
    for strategy in ("0.5", *ROWS):
        macro = float(np.mean([r[strategy][0] for r in rows]))
        micro = float(np.mean([r[strategy][1] for r in rows]))
        means[strategy] = (macro, micro)
        lost = losses(rows, strategy) if strategy != "0.5" else ("-", "-")
        print(f"| {strategy} | {macro:.4f} | {micro:.4f} | {lost[0]} | {lost[1]} |")
    for name in (ADAPTIVE, "shrunk"):
        goals(rows, means, name, "the robustness part")
    print("\nthe estimate of what to expect on new data (robustness part):")
    estimate_report(rows)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
