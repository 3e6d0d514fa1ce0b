"""Held-out check of issue 20's goals: families and seeds that neither other grid uses.

Written before the rule it checks was scored anywhere, and run once at the end (nothing is
chosen here). Five families x two split seeds (5, 6) x the six sets of bench/quality.py =
60 cases, scored like it (thresholds tuned on the validation part, judged on the test
split). Families, all scikit-learn, one model per label unless said:

- ``adaboost``: AdaBoost of 50 decision stumps (scores bunched near 0.5);
- ``bagged_trees``: 25 bagged trees of depth 3 (coarse, tied scores);
- ``svm_platt``: a linear SVM (C = 0.1) through ``CalibratedClassifierCV`` (sigmoid, 3 folds);
- ``mlp_wide``: one wide hidden layer (512) with early stopping, all labels at once;
- ``ridge_isotonic``: a ridge classifier through ``CalibratedClassifierCV`` (isotonic,
  3 folds: step-shaped scores).

A label with fewer positives (or negatives) in the fit part than the calibration's folds
scores every row at its fit-part base rate.

    python bench/quality_holdout.py             # cache /tmp/labelcut-quality-holdout
    python bench/quality_holdout.py --fit-only  # fill the cache, tune nothing
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import AdaBoostClassifier, BaggingClassifier
from sklearn.linear_model import RidgeClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ADAPTIVE, STRATEGIES, estimate_cells, estimate_report, goals, losses, test_f1
from quality_grid import DATA_DIR, SETS, Case, _multi_output, _splits

from labelcut.tuning import tune_thresholds

FAMILIES = ("adaboost", "bagged_trees", "svm_platt", "mlp_wide", "ridge_isotonic")
SEEDS = (5, 6)
CALIBRATION_FOLDS = 3
# The strategies whose cross-fitted estimate is judged (issue 20): the default and per_label.
ESTIMATED = ("per_label", ADAPTIVE)
ROWS = (*STRATEGIES, ADAPTIVE)


def _each_label(
    factory: Callable[[int], Any], x_fit: np.ndarray, y_fit: np.ndarray, x_out: list[np.ndarray]
) -> list[np.ndarray]:
    """One model per label from ``factory(seed)``; a label with fewer than
    :data:`CALIBRATION_FOLDS` rows of either class scores its fit-part base rate."""
    outs = [np.empty((len(x), y_fit.shape[1])) for x in x_out]
    for j in range(y_fit.shape[1]):
        column = y_fit[:, j]
        positives = int(column.sum())
        if min(positives, len(column) - positives) < CALIBRATION_FOLDS:
            for out in outs:
                out[:, j] = positives / len(column)
            continue
        model = factory(j).fit(x_fit, column)
        for out, x in zip(outs, x_out, strict=True):
            out[:, j] = model.predict_proba(x)[:, 1]
    return outs


def fit_case(data_dir: Path, name: str, family: str, seed: int) -> Case:
    x_fit, y_fit, x_val, y_val, x_test, y_test = _splits(data_dir, name, seed)
    scaler = StandardScaler().fit(x_fit)
    x_fit, x_val, x_test = (scaler.transform(a) for a in (x_fit, x_val, x_test))
    out = [x_val, x_test]
    factories: dict[str, Callable[[int], Any]] = {
        "adaboost": lambda j: AdaBoostClassifier(n_estimators=50, random_state=seed + j),
        "bagged_trees": lambda j: BaggingClassifier(
            DecisionTreeClassifier(max_depth=3), n_estimators=25, random_state=seed + j
        ),
        "svm_platt": lambda j: CalibratedClassifierCV(
            LinearSVC(C=0.1), method="sigmoid", cv=CALIBRATION_FOLDS
        ),
        "ridge_isotonic": lambda j: CalibratedClassifierCV(
            RidgeClassifier(alpha=1.0), method="isotonic", cv=CALIBRATION_FOLDS
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "mlp_wide":
            mlp = MLPClassifier(
                hidden_layer_sizes=(512,),
                alpha=1e-4,
                early_stopping=True,
                validation_fraction=0.15,
                max_iter=300,
                random_state=seed,
            )
            outs = _multi_output(mlp, x_fit, y_fit, out)
        elif family in factories:
            outs = _each_label(factories[family], x_fit, y_fit, out)
        else:
            raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    return Case(name, family, seed, outs[0], y_val, outs[1], y_test)


def load_case(cache: Path, name: str, family: str, seed: int) -> Case:
    """The case's scores, from the cache when present (fitted and cached otherwise)."""
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
    """Test (macro-F1, micro-F1) of 0.5 and of each strategy as ``tune_thresholds`` runs it."""
    n_labels = case.y_val.shape[1]
    row: dict[str, Any] = {"0.5": test_f1(case.y_test, case.scores_test, np.full(n_labels, 0.5))}
    for strategy in ROWS:
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
    parser.add_argument("--cache", type=Path, default=Path("/tmp/labelcut-quality-holdout"))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--fit-only", action="store_true", help="fill the cache, tune nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.fit_only:
        print("held-out check (families and seeds used by neither other grid)")
        print(f"| set | family | seed | {' | '.join(('0.5', *ROWS))} |  (test macro / micro)")
        print("|---|---|---|" + "---|" * (1 + len(ROWS)))
    rows = []
    for seed in args.seeds:
        for name in SETS:
            for family in args.families:
                case = load_case(args.cache, name, family, seed)
                if args.fit_only:
                    print(f"fitted {name} x {family} x {seed}", flush=True)
                    continue
                row = run_case(case)
                rows.append(row)
                cells = " | ".join(f"{row[s][0]:.3f} / {row[s][1]:.3f}" for s in ("0.5", *ROWS))
                print(f"| {name} | {family} | {seed} | {cells} |", flush=True)
    if rows:
        print(f"\nheld-out part: {len(rows)} cases")
        print(
            "| strategy | mean macro-F1 | mean micro-F1 | macro loses to 0.5 | micro loses to 0.5 |"
        )
        print("|---|---|---|---|---|")
        means = {}
        for strategy in ("0.5", *ROWS):
            macro = float(np.mean([r[strategy][0] for r in rows]))
            micro = float(np.mean([r[strategy][1] for r in rows]))
            means[strategy] = (macro, micro)
            lost = losses(rows, strategy) if strategy != "0.5" else ("-", "-")
            print(f"| {strategy} | {macro:.4f} | {micro:.4f} | {lost[0]} | {lost[1]} |")
        for name in dict.fromkeys(("adaptive", "shrunk")):
            goals(rows, means, name, "the held-out part")
        print("\nthe estimate of what to expect on new data (held-out part):")
        estimate_report(rows)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
