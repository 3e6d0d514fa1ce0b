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

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import AdaBoostClassifier, BaggingClassifier
from sklearn.linear_model import RidgeClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_check import check_grid
from quality_grid import Case, _each_label, _multi_output, _splits

FAMILIES = ("adaboost", "bagged_trees", "svm_platt", "mlp_wide", "ridge_isotonic")
SEEDS = (5, 6)
CALIBRATION_FOLDS = 3


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
            outs = _each_label(factories[family], x_fit, y_fit, out, CALIBRATION_FOLDS)
        else:
            raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    return Case(name, family, seed, outs[0], y_val, outs[1], y_test)


def main() -> int:
    return check_grid(
        __doc__.splitlines()[0],
        "held-out check (families and seeds used by neither other grid)",
        "held-out",
        Path("/tmp/labelcut-quality-holdout"),
        FAMILIES,
        SEEDS,
        fit_case,
    )


if __name__ == "__main__":
    raise SystemExit(main())
