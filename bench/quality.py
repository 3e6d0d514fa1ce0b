"""Decision quality of the tuning strategies on five real multi-label sets, in one run.

For each of yeast, scene, emotions, enron and medical (MULAN splits, read from
``--data-dir``): fit one-vs-rest logistic regression (standardised features,
scikit-learn's defaults) on 70% of the train split, tune thresholds on the
other 30% (seeded split), and score the test split with threshold 0.5 and with
the ``per_label``, ``global`` and default (``shrunk``) strategies. Prints
macro- and micro-F1 per set, a markdown table, PASS/FAIL for the goals of
issue 9, and the sensitivity of the default rule to its constant ``k``.

    python bench/quality.py                       # data in ../shared/data/multilabel
    python bench/quality.py --data-dir DIR --seed 1
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from labelcut.tuning import DEFAULT_STRATEGY, tune_thresholds
from labelcut.tuning.strategies import SHRINKAGE_POSITIVES

SETS = ("yeast", "scene", "emotions", "enron", "medical")
VALIDATION_SHARE = 0.3
MICRO_TOLERANCE = 0.015
K_VALUES = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 20.0, 50.0)
REPO = Path(__file__).resolve().parent.parent


def fit_scores(data_dir: Path, name: str, seed: int):
    """(validation scores, validation targets, test scores, test targets) for one set."""
    with np.load(data_dir / f"{name}_train.npz", allow_pickle=False) as z:
        x, y = z["X"].astype(np.float64), z["Y"].astype(np.int64)
    with np.load(data_dir / f"{name}_test.npz", allow_pickle=False) as z:
        x_test, y_test = z["X"].astype(np.float64), z["Y"].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = round(VALIDATION_SHARE * len(x))
    val, fit = order[:n_val], order[n_val:]
    scaler = StandardScaler().fit(x[fit])
    x_fit, x_val, x_te = (scaler.transform(a) for a in (x[fit], x[val], x_test))
    scores_val = np.empty((n_val, y.shape[1]))
    scores_test = np.empty((len(x_test), y.shape[1]))
    for j in range(y.shape[1]):
        column = y[fit, j]
        if column.min() == column.max():  # one class in the fit part: a constant score
            scores_val[:, j] = scores_test[:, j] = float(column[0])
            continue
        model = LogisticRegression(max_iter=2000).fit(x_fit, column)
        scores_val[:, j] = model.predict_proba(x_val)[:, 1]
        scores_test[:, j] = model.predict_proba(x_te)[:, 1]
    return scores_val, y[val], scores_test, y_test


def test_f1(targets, scores, thresholds) -> tuple[float, float]:
    predicted = scores >= np.asarray(thresholds, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            f1_score(targets, predicted, average="macro", zero_division=0),
            f1_score(targets, predicted, average="micro", zero_division=0),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "../shared/data/multilabel")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fit/validation split")
    args = parser.parse_args()
    default = DEFAULT_STRATEGY
    columns = ("0.5", "per_label", "global", default)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    sensitivity: dict[str, dict[float, tuple[float, float]]] = {}
    print(
        f"fit on {1 - VALIDATION_SHARE:.0%} of train, tune on {VALIDATION_SHARE:.0%} "
        f"(seed {args.seed}), score on test; default strategy {default!r} "
        f"(k = {SHRINKAGE_POSITIVES:g})"
    )
    for name in SETS:
        started = time.perf_counter()
        scores_val, y_val, scores_test, y_test = fit_scores(args.data_dir, name, args.seed)
        row = {"0.5": test_f1(y_test, scores_test, np.full(y_test.shape[1], 0.5))}
        for strategy in columns[1:]:
            tuned = tune_thresholds(
                scores_val, y_val, strategy=strategy, n_bootstrap=0, device="cpu"
            )
            row[strategy] = test_f1(y_test, scores_test, tuned.thresholds)
        sensitivity[name] = {
            k: test_f1(
                y_test,
                scores_test,
                tune_thresholds(
                    scores_val, y_val, strategy="shrunk", shrinkage=k, n_bootstrap=0, device="cpu"
                ).thresholds,
            )
            for k in K_VALUES
        }
        results[name] = row
        report = tune_thresholds(scores_val, y_val, device="cpu", n_bootstrap=200)
        absent = int((y_val.sum(axis=0) == 0).sum())
        few = int(((y_val.sum(axis=0) > 0) & (y_val.sum(axis=0) < 5)).sum())
        print(
            f"{name}: validation {y_val.shape[0]} rows x {y_val.shape[1]} labels, "
            f"test {y_test.shape[0]} rows; {absent} label(s) without positives in validation "
            f"(they get the global threshold {report.global_threshold:.3f}), {few} with 1-4; "
            f"bootstrap flags {int(report.unstable.sum())} unstable; "
            f"{time.perf_counter() - started:.1f} s"
        )
        for message in report.diagnosis["messages"]:
            print(f"  diagnosis: {message}")

    print("\ntest macro-F1 / micro-F1")
    print("| set | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in results.items():
        cells = " | ".join(f"{row[c][0]:.3f} / {row[c][1]:.3f}" for c in columns)
        print(f"| {name} | {cells} |")
    means = {c: np.mean([results[n][c][0] for n in SETS]) for c in columns}
    print("| mean macro-F1 | " + " | ".join(f"{means[c]:.4f}" for c in columns) + " |")

    print("\ngoals for the default strategy:")
    passed = True
    for name, row in results.items():
        macro_ok = row[default][0] >= row["0.5"][0]
        micro_ok = row[default][1] >= row["0.5"][1] - MICRO_TOLERANCE
        passed &= macro_ok and micro_ok
        print(
            f"  {name}: macro {row[default][0]:.3f} >= 0.5's {row['0.5'][0]:.3f}: "
            f"{'PASS' if macro_ok else 'FAIL'}; micro {row[default][1]:.3f} >= 0.5's "
            f"{row['0.5'][1]:.3f} - {MICRO_TOLERANCE}: {'PASS' if micro_ok else 'FAIL'}"
        )
    mean_ok = means[default] > means["per_label"]
    passed &= mean_ok
    print(
        f"  mean macro-F1 {means[default]:.4f} > per_label's {means['per_label']:.4f}: "
        f"{'PASS' if mean_ok else 'FAIL'}"
    )

    print("\nsensitivity to k (shrunk; k = 0 is per_label with the global threshold for")
    print("labels that cannot be tuned): macro / micro per set, goals met")
    for k in K_VALUES:
        cells = "  ".join(f"{sensitivity[n][k][0]:.3f}/{sensitivity[n][k][1]:.3f}" for n in SETS)
        mean = np.mean([sensitivity[n][k][0] for n in SETS])
        each = all(
            sensitivity[n][k][0] >= results[n]["0.5"][0]
            and sensitivity[n][k][1] >= results[n]["0.5"][1] - MICRO_TOLERANCE
            for n in SETS
        )
        print(
            f"  k={k:>4g}: {cells}  mean macro {mean:.4f}; per-set goals "
            f"{'PASS' if each else 'FAIL'}; mean above per_label "
            f"{'PASS' if mean > means['per_label'] else 'FAIL'}"
        )
    print(f"\nOVERALL: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
