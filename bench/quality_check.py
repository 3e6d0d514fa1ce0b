"""What the extra grids share (bench/quality_robust.py, quality_holdout.py, quality_fresh.py).

Each grid fits its own families on the six sets of bench/quality.py, caches each case's
scores, tunes every strategy on the validation part and judges it on the test split, then
prints every case, the means, issue 20's goals and the estimate's figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ADAPTIVE, STRATEGIES, estimate_cells, estimate_report, goals, losses, test_f1
from quality_grid import DATA_DIR, SETS, Case

from labelcut.tuning import tune_thresholds

#: The strategies whose cross-fitted estimate is judged (issue 20): the default and per_label.
ESTIMATED = ("per_label", ADAPTIVE)
ROWS = (*STRATEGIES, ADAPTIVE)

FitCase = Callable[[Path, str, str, int], Case]


def cached_case(cache: Path, name: str, family: str, seed: int, fit: FitCase) -> Case:
    """The case's scores, from ``cache`` when present (``fit`` and cached otherwise)."""
    path = cache / f"{name}-{family}-{seed}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Case(name, family, seed, *(z[k] for k in ("sv", "yv", "st", "yt")))
    case = fit(DATA_DIR, name, family, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, sv=case.scores_val, yv=case.y_val, st=case.scores_test, yt=case.y_test
    )
    return case


def run_case(case: Case) -> dict[str, Any]:
    """Test (macro-F1, micro-F1) of 0.5 and of each strategy as ``tune_thresholds`` runs it."""
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


def check_grid(
    description: str,
    title: str,
    part: str,
    default_cache: Path,
    families: tuple[str, ...],
    seeds: tuple[int, ...],
    fit: FitCase,
) -> int:
    """The command line of one grid: ``--cache``, ``--families``, ``--seeds``, ``--fit-only``;
    prints every case (``title`` first), then ``part``'s means, goals and estimate."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cache", type=Path, default=default_cache)
    parser.add_argument("--families", nargs="+", default=list(families))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--fit-only", action="store_true", help="fill the cache, tune nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.fit_only:
        print(title)
        print(f"| set | family | seed | {' | '.join(('0.5', *ROWS))} |  (test macro / micro)")
        print("|---|---|---|" + "---|" * (1 + len(ROWS)))
    rows = []
    for seed in args.seeds:
        for name in SETS:
            for family in args.families:
                case = cached_case(args.cache, name, family, seed, fit)
                if args.fit_only:
                    print(f"fitted {name} x {family} x {seed}", flush=True)
                    continue
                row = run_case(case)
                rows.append(row)
                cells = " | ".join(f"{row[s][0]:.3f} / {row[s][1]:.3f}" for s in ("0.5", *ROWS))
                print(f"| {name} | {family} | {seed} | {cells} |", flush=True)
    if rows:
        print(f"\n{part} part: {len(rows)} cases")
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
        for name in dict.fromkeys((ADAPTIVE, "shrunk")):
            goals(rows, means, name, f"the {part} part")
        print(f"\nthe estimate of what to expect on new data ({part} part):")
        estimate_report(rows)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0
