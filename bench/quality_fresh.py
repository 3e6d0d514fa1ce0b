"""A fifth check of issue 20's goals: families and seeds no other grid uses (tenth session).

Written before anything was scored on it, and run once for the rule as it stood (nothing
is chosen here). Five families x two split seeds (7, 8) x the six sets of bench/quality.py =
60 cases, scored like the other grids (thresholds tuned on the validation part, judged on
the test split). The families stress score shapes the other grids leave out:

- ``linear_balanced``: logistic regression with ``class_weight="balanced"``, one per label
  (rare labels' scores inflated: 0.5 predicts too much, the opposite of the usual case);
- ``sgd_huber``: a linear model by SGD with the modified Huber loss, one per label
  (piecewise-linear probabilities, many exact 0s and 1s);
- ``knn_distance``: 30 nearest neighbours weighted by distance, all labels at once;
- ``lda``: linear discriminant analysis with Ledoit-Wolf shrinkage, one per label
  (a generative model's over-confident scores);
- ``torch_bce``: a two-layer torch network trained with ``BCEWithLogitsLoss`` on all
  labels at once (the kind of model labelcut serves), 200 full-batch Adam steps.

A label with fewer than 3 positives (or negatives) in the fit part scores every row at its
fit-part base rate.

    python bench/quality_fresh.py             # cache /tmp/labelcut-quality-fresh
    python bench/quality_fresh.py --fit-only  # fill the cache, tune nothing
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
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import estimate_report, goals, losses
from quality_grid import DATA_DIR, SETS, Case, _multi_output, _splits
from quality_holdout import ROWS, _each_label, run_case

FAMILIES = ("linear_balanced", "sgd_huber", "knn_distance", "lda", "torch_bce")
SEEDS = (7, 8)
TORCH_STEPS = 200


def _torch_bce(
    x_fit: np.ndarray, y_fit: np.ndarray, x_out: list[np.ndarray], seed: int
) -> list[np.ndarray]:
    """Sigmoid outputs of a 256-128 ReLU network with dropout, trained with BCE on all labels."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(x_fit.shape[1], 256),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(256, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, y_fit.shape[1]),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss = torch.nn.BCEWithLogitsLoss()
    x, y = torch.tensor(x_fit, dtype=torch.float32), torch.tensor(y_fit, dtype=torch.float32)
    model.train()
    for _ in range(TORCH_STEPS):
        optimiser.zero_grad()
        loss(model(x), y).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        return [
            torch.sigmoid(model(torch.tensor(a, dtype=torch.float32))).double().numpy()
            for a in x_out
        ]


def fit_case(data_dir: Path, name: str, family: str, seed: int) -> Case:
    x_fit, y_fit, x_val, y_val, x_test, y_test = _splits(data_dir, name, seed)
    scaler = StandardScaler().fit(x_fit)
    x_fit, x_val, x_test = (scaler.transform(a) for a in (x_fit, x_val, x_test))
    out = [x_val, x_test]
    factories: dict[str, Callable[[int], Any]] = {
        "linear_balanced": lambda j: LogisticRegression(class_weight="balanced", max_iter=2000),
        "sgd_huber": lambda j: SGDClassifier(
            loss="modified_huber", alpha=1e-3, max_iter=2000, random_state=seed + j
        ),
        "lda": lambda j: LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "knn_distance":
            knn = KNeighborsClassifier(n_neighbors=30, weights="distance")
            outs = _multi_output(knn, x_fit, y_fit, out)
        elif family == "torch_bce":
            outs = _torch_bce(x_fit, y_fit, out, seed)
        elif family in factories:
            outs = _each_label(factories[family], x_fit, y_fit, out)
        else:
            raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    # Distance weights give exact 1.0 to a row that is its own neighbour's copy, and LDA can
    # overflow to 1 - 1e-17: both stay valid probabilities.
    outs = [np.clip(o, 0.0, 1.0) for o in outs]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/labelcut-quality-fresh"))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--fit-only", action="store_true", help="fill the cache, tune nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.fit_only:
        print("fresh check (families and seeds used by no other grid)")
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
        print(f"\nfresh part: {len(rows)} cases")
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
            goals(rows, means, name, "the fresh part")
        print("\nthe estimate of what to expect on new data (fresh part):")
        estimate_report(rows)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
