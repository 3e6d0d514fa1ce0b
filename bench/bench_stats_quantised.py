"""What quantised statistics cost against exact ones (issue 17): thresholds and test F1.

For each data set, thresholds are tuned on a validation split with
``tune_thresholds`` (exact) and from quantised statistics (``mode="quantised"``,
one grid pass, state O(labels x levels)) at several grid sizes; the figures are
the largest threshold difference, the largest difference in a label's
validation F1 (what the tune optimises) and the difference in macro-F1 on a
held-out test split. Also the state of each mode (bytes of the merged
statistics) and of the two-pass exact mode.

Data: synthetic (``--rows`` validation and as many test rows, 20 labels of
prevalence 0.1% to 50%, logistic scores, float32) and the MULAN sets in
bench/data (a logistic regression per label fitted on the train split; its test
split cut in half: validation and test).

    .venv/bin/python bench/bench_stats_quantised.py --rows 1000000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from labelcut.tuning import tune_thresholds
from labelcut.tuning.result import label_metrics
from labelcut.tuning.stats import ScoreStats, merge_stats
from labelcut.tuning.stats_tuning import plan_tuning

DATA = Path(__file__).parent / "data"
LEVELS = (1 << 10, 1 << 12, 1 << 16)
CHUNK_ROWS = 200_000


def synthetic(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.001, 0.5, 20)
    truth = rng.random((rows, 20)) < prevalence
    signal = rng.normal(size=truth.shape) + np.linspace(1.0, 3.0, 20) * truth
    return (1.0 / (1.0 + np.exp(-signal))).astype(np.float32), truth


def mulan(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train, test = np.load(DATA / f"{name}_train.npz"), np.load(DATA / f"{name}_test.npz")
    x, y = train["X"].astype(np.float64), train["Y"].astype(bool)
    x_test, y_test = test["X"].astype(np.float64), test["Y"].astype(bool)
    mean, std = x.mean(0), x.std(0) + 1e-9
    scores = np.zeros(y_test.shape)
    for j in range(y.shape[1]):
        if y[:, j].all() or not y[:, j].any():
            scores[:, j] = y[:, j].mean()
            continue
        model = LogisticRegression(max_iter=2000).fit((x - mean) / std, y[:, j])
        scores[:, j] = model.predict_proba((x_test - mean) / std)[:, 1]
    half = len(scores) // 2
    scores = scores.astype(np.float32)
    return scores[:half], y_test[:half], scores[half:], y_test[half:]


def reduce_for(scores: np.ndarray, targets: np.ndarray, sizes: list[int]):
    def reduce(pass_):
        parts = [
            ScoreStats.from_arrays(scores[a : a + CHUNK_ROWS], targets[a : a + CHUNK_ROWS], pass_)
            for a in range(0, len(scores), CHUNK_ROWS)
        ]
        merged = merge_stats(parts)
        sizes.append(merged.nbytes)
        return merged

    return reduce


def run(plan, reduce):
    while (pass_ := plan.next_pass()) is not None:
        plan.feed(reduce(pass_))
    return plan.result()


def test_macro_f1(scores, targets, thresholds) -> float:
    predicted = scores.astype(np.float64) >= thresholds
    tp = (predicted & targets).sum(0)
    return float(label_metrics(tp, predicted.sum(0), targets.sum(0), 1.0)["f1"].mean())


def compare(name: str, valid, valid_y, test, test_y, strategy: str) -> None:
    kwargs = dict(strategy=strategy, n_bootstrap=0, estimate=False)
    exact = tune_thresholds(valid, valid_y, **kwargs)
    sizes: list[int] = []
    two_pass = run(plan_tuning("exact", **kwargs), reduce_for(valid, valid_y, sizes))
    assert np.array_equal(two_pass.thresholds, exact.thresholds)
    distinct: list[int] = []
    run(plan_tuning("distinct", **kwargs), reduce_for(valid, valid_y, distinct))
    exact_test = test_macro_f1(test, test_y, exact.thresholds)
    print(
        f"{name:10s} {strategy:9s} exact: state {max(sizes) / 1e6:6.2f} MB ({len(sizes)} passes) "
        f"(distinct {distinct[0] / 1e6:7.2f} MB), test macro-F1 {exact_test:.4f}"
    )
    for levels in LEVELS:
        grid: list[int] = []
        quantised = run(
            plan_tuning("quantised", levels=levels, **kwargs), reduce_for(valid, valid_y, grid)
        )
        diff = np.abs(quantised.thresholds - exact.thresholds).max()
        f1_loss = (exact.f1 - quantised.f1).max()
        test_diff = test_macro_f1(test, test_y, quantised.thresholds) - exact_test
        power = levels.bit_length() - 1
        print(
            f"{'':10s} {'':9s} levels 2^{power:<2d}: state {grid[0] / 1e6:6.2f} MB"
            f"  max|dt| {diff:.2e}  max valid-F1 loss {f1_loss:.2e}  test macro-F1 {test_diff:+.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--strategies", default="per_label,shrunk,global")
    parser.add_argument("--sets", default="synthetic,mulan", help="synthetic, mulan or both")
    args = parser.parse_args()
    started = time.perf_counter()
    if "synthetic" in args.sets:
        valid, valid_y = synthetic(args.rows, 1)
        test, test_y = synthetic(args.rows, 2)
        for strategy in args.strategies.split(","):
            compare(f"synth {args.rows // 1000}k", valid, valid_y, test, test_y, strategy)
    for name in ("yeast", "scene", "emotions", "enron", "medical") if "mulan" in args.sets else ():
        sets = mulan(name)
        for strategy in args.strategies.split(","):
            compare(name, *sets, strategy)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
