"""Joint per-label micro-F1 thresholds (objective "micro_f1") against the ``global`` strategy.

On the protocol grid of bench/quality_grid.py (MULAN sets x model families x
split seeds), thresholds are tuned on each case's validation part and judged
on its untouched test split. ``global`` is one shared threshold, the exact
pooled micro-F1 optimum; ``micro_f1`` starts from it and finds the per-label
thresholds that maximise validation micro-F1 jointly (tuning.micro), so it is
never below ``global`` in-sample; the question is whether it still wins on the
test split, where per-label thresholds tuned on few positives may overfit.

Prints every case (validation and test micro-F1 of 0.5, global, micro_f1;
Dinkelbach iterations; labels that predict nothing), then per set and overall
the mean test micro-F1 and macro-F1 and how many cases micro_f1 wins, ties
(within 0.001) and loses. ``shrunk6``: the joint thresholds pulled toward the
shared one afterwards with the default strategy's rule (weight s / (s + 6)),
to show whether a strategy on top of the joint optimum helps.

    python bench/quality_micro.py --cache /tmp/qcache
    python bench/quality_micro.py --cache /tmp/qcache --sets yeast enron --families linear
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_grid import DATA_DIR, FAMILIES, SEEDS, SETS, load_case

from labelcut.tuning import tune_thresholds
from labelcut.tuning.micro import tune_micro_fbeta

TIE = 0.001
SHRINKAGE = 6.0


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def scores_of(targets: np.ndarray, scores: np.ndarray, thresholds) -> tuple[float, float]:
    """(micro-F1, macro-F1) of ``score >= threshold``."""
    predicted = scores >= np.asarray(thresholds, dtype=np.float64)
    return (
        float(f1_score(targets, predicted, average="micro", zero_division=0)),
        float(f1_score(targets, predicted, average="macro", zero_division=0)),
    )


def run_case(case) -> dict[str, float]:
    shared = tune_thresholds(case.scores_val, case.y_val, "f1", strategy="global", n_bootstrap=0)
    started = time.perf_counter()
    joint = tune_micro_fbeta(case.scores_val, case.y_val, start_threshold=shared.global_threshold)
    seconds = time.perf_counter() - started
    row: dict[str, float] = {
        "iterations": joint.iterations,
        "nothing": int(joint.predicts_nothing.sum()),
        "labels": case.y_val.shape[1],
        "seconds": seconds,
    }
    # The default strategy's rule applied afterwards: joint thresholds pulled toward the
    # shared one in logit space, weight s / (s + 6) on a label's own (s: its positives).
    support = case.y_val.sum(axis=0)
    weight = support / (support + SHRINKAGE)
    logits = weight * logit(joint.thresholds) + (1 - weight) * logit(shared.global_threshold)
    shrunk = np.where(weight >= 1, joint.thresholds, 1 / (1 + np.exp(-logits)))
    for name, thresholds in (
        ("0.5", 0.5),
        ("global", shared.global_threshold),
        ("micro_f1", joint.thresholds),
        ("shrunk6", shrunk),
    ):
        row[f"val {name}"] = scores_of(case.y_val, case.scores_val, thresholds)[0]
        row[f"test {name}"], row[f"macro {name}"] = scores_of(
            case.y_test, case.scores_test, thresholds
        )
    assert row["val micro_f1"] >= row["val global"] - 1e-12, "joint optimum below global"
    return row


def summarise(label: str, rows: list[dict[str, float]]) -> str:
    diff = np.array([r["test micro_f1"] - r["test global"] for r in rows])
    wins, losses = int((diff > TIE).sum()), int((diff < -TIE).sum())
    mean = {k: np.mean([r[k] for r in rows]) for k in rows[0]}
    return (
        f"{label:<10} {len(rows):>3}  test micro 0.5 {mean['test 0.5']:.4f}"
        f"  global {mean['test global']:.4f}  micro_f1 {mean['test micro_f1']:.4f}"
        f"  (diff {diff.mean():+.4f}; win/tie/lose {wins}/{len(rows) - wins - losses}/{losses})"
        f"  shrunk6 {mean['test shrunk6']:.4f}"
        f"  | macro global {mean['macro global']:.4f} micro_f1 {mean['macro micro_f1']:.4f}"
        f"  | val global {mean['val global']:.4f} micro_f1 {mean['val micro_f1']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/labelcut-quality"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    args = parser.parse_args()

    rows: dict[tuple[str, str, int], dict[str, float]] = {}
    print(
        f"{'case':<22} {'val global':>10} {'val joint':>9} {'test 0.5':>8} {'test global':>11}"
        f" {'test joint':>10} {'diff':>7} {'iter':>4} {'nothing':>9} {'s':>5}"
    )
    for name in args.sets:
        for family in args.families:
            for seed in args.seeds:
                case = load_case(args.data_dir, args.cache, name, family, seed)
                row = run_case(case)
                rows[(name, family, seed)] = row
                print(
                    f"{name + '-' + family + '-' + str(seed):<22} {row['val global']:>10.4f}"
                    f" {row['val micro_f1']:>9.4f} {row['test 0.5']:>8.4f}"
                    f" {row['test global']:>11.4f} {row['test micro_f1']:>10.4f}"
                    f" {row['test micro_f1'] - row['test global']:>+7.4f}"
                    f" {row['iterations']:>4d} {row['nothing']:>4d}/{row['labels']:<4d}"
                    f" {row['seconds']:>5.2f}",
                    flush=True,
                )
    print()
    for name in args.sets:
        print(summarise(name, [r for (s, _, _), r in rows.items() if s == name]))
    for family in args.families:
        print(summarise(family, [r for (_, f, _), r in rows.items() if f == family]))
    print(summarise("all", list(rows.values())))


if __name__ == "__main__":
    main()
