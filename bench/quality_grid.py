"""The protocol grid of bench/quality.py: model families x split seeds x data sets.

Each case fits one model family on the fit part of a set's train split, scores
its validation part (where thresholds are tuned) and its test split (where they
are judged). Scores are cached under ``--cache`` (one ``.npz`` per case), so the
strategies can be compared again without refitting.

Families (hyperparameters are ours, fixed, and not tuned to the goals):
``linear`` one-vs-rest logistic regression; ``forest`` a random forest;
``mlp`` a one-hidden-layer network with sigmoid outputs; ``knn`` 15 nearest
neighbours (coarse, tied scores); ``bayes`` one-vs-rest Gaussian naive Bayes
(over-confident scores piled at 0 and 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

DATA_DIR = Path(__file__).resolve().parent / "data"
SETS = ("yeast", "scene", "emotions", "enron", "medical", "cal500")
FAMILIES = ("linear", "forest", "mlp", "knn", "bayes")
SEEDS = (0, 1, 2)
VALIDATION_SHARE = 0.3
CAL500_TEST_SHARE = 0.3  # CAL500 ships without a test split: carve one per seed


@dataclass(frozen=True)
class Case:
    """Validation and test scores `(n, L)` float64 with their 0/1 targets."""

    name: str
    family: str
    seed: int
    scores_val: np.ndarray
    y_val: np.ndarray
    scores_test: np.ndarray
    y_test: np.ndarray


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return z["X"].astype(np.float64), z["Y"].astype(np.int64)


def _splits(data_dir: Path, name: str, seed: int):
    if name == "cal500":
        x_all, y_all = _load(data_dir / "cal500.npz")
        order = np.random.default_rng(1000 + seed).permutation(len(x_all))
        n_test = round(CAL500_TEST_SHARE * len(x_all))
        x, y = x_all[order[n_test:]], y_all[order[n_test:]]
        x_test, y_test = x_all[order[:n_test]], y_all[order[:n_test]]
    else:
        x, y = _load(data_dir / f"{name}_train.npz")
        x_test, y_test = _load(data_dir / f"{name}_test.npz")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = round(VALIDATION_SHARE * len(x))
    val, fit = order[:n_val], order[n_val:]
    return x[fit], y[fit], x[val], y[val], x_test, y_test


def _per_label(model_factory, x_fit, y_fit, x_out: list[np.ndarray]) -> list[np.ndarray]:
    outs = [np.empty((len(x), y_fit.shape[1])) for x in x_out]
    for j in range(y_fit.shape[1]):
        column = y_fit[:, j]
        if column.min() == column.max():  # one class in the fit part: a constant score
            for out in outs:
                out[:, j] = float(column[0])
            continue
        model = model_factory().fit(x_fit, column)
        for out, x in zip(outs, x_out, strict=True):
            out[:, j] = model.predict_proba(x)[:, 1]
    return outs


def _each_label(
    factory: Callable[[int], Any],
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_out: list[np.ndarray],
    min_class_rows: int,
) -> list[np.ndarray]:
    """One model per label from ``factory(label)``; a label with fewer than
    ``min_class_rows`` fit-part rows of either class scores its fit-part base rate (a
    calibration with that many folds could not fit it)."""
    outs = [np.empty((len(x), y_fit.shape[1])) for x in x_out]
    for j in range(y_fit.shape[1]):
        column = y_fit[:, j]
        positives = int(column.sum())
        if min(positives, len(column) - positives) < min_class_rows:
            for out in outs:
                out[:, j] = positives / len(column)
            continue
        model = factory(j).fit(x_fit, column)
        for out, x in zip(outs, x_out, strict=True):
            out[:, j] = model.predict_proba(x)[:, 1]
    return outs


def _multi_output(model, x_fit, y_fit, x_out: list[np.ndarray]) -> list[np.ndarray]:
    model.fit(x_fit, y_fit)
    outs = []
    for x in x_out:
        probas = model.predict_proba(x)
        if isinstance(probas, np.ndarray):  # MLPClassifier: (n, L) sigmoid outputs
            outs.append(probas.astype(np.float64))
            continue
        columns = []
        for j, p in enumerate(probas):  # a list of (n, classes) per label
            classes = model.classes_[j]
            columns.append(p[:, list(classes).index(1)] if 1 in classes else np.zeros(len(x)))
        outs.append(np.stack(columns, axis=1))
    return outs


def fit_case(data_dir: Path, name: str, family: str, seed: int) -> Case:
    x_fit, y_fit, x_val, y_val, x_test, y_test = _splits(data_dir, name, seed)
    scaler = StandardScaler().fit(x_fit)
    x_fit, x_val, x_test = (scaler.transform(a) for a in (x_fit, x_val, x_test))
    outs: list[np.ndarray]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "linear":
            outs = _per_label(
                lambda: LogisticRegression(max_iter=2000), x_fit, y_fit, [x_val, x_test]
            )
        elif family == "bayes":
            outs = _per_label(GaussianNB, x_fit, y_fit, [x_val, x_test])
        elif family == "forest":
            forest = RandomForestClassifier(
                n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1
            )
            outs = _multi_output(forest, x_fit, y_fit, [x_val, x_test])
        elif family == "knn":
            knn = KNeighborsClassifier(n_neighbors=15)
            outs = _multi_output(knn, x_fit, y_fit, [x_val, x_test])
        elif family == "mlp":
            mlp = MLPClassifier(
                hidden_layer_sizes=(128,), alpha=1e-3, max_iter=300, random_state=seed
            )
            outs = _multi_output(mlp, x_fit, y_fit, [x_val, x_test])
        else:
            raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    return Case(name, family, seed, outs[0], y_val, outs[1], y_test)


def load_case(data_dir: Path, cache: Path | None, name: str, family: str, seed: int) -> Case:
    """The case's scores, from the cache when present (fitted and cached otherwise)."""
    path = None if cache is None else cache / f"{name}-{family}-{seed}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Case(name, family, seed, *(z[k] for k in ("sv", "yv", "st", "yt")))
    case = fit_case(data_dir, name, family, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, sv=case.scores_val, yv=case.y_val, st=case.scores_test, yt=case.y_test
        )
    return case
