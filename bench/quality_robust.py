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

import sys
import warnings
from pathlib import Path

from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_check import check_grid
from quality_grid import Case, _multi_output, _per_label, _splits

FAMILIES = ("gbdt", "mlp_deep", "logit_strong", "extra", "knn5")
SEEDS = (3, 4)


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


def main() -> int:
    return check_grid(
        __doc__.splitlines()[0],
        "robustness check (families and seeds not used to choose anything)",
        "robustness",
        Path("/tmp/labelcut-quality-robust"),
        FAMILIES,
        SEEDS,
        fit_case,
    )


if __name__ == "__main__":
    raise SystemExit(main())
