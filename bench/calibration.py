"""Calibration on the MULAN grid: test ECE before and after, and what it does to thresholds.

For every case of bench/quality_grid.py (set x model family x split seed) and every method
(temperature, platt, isotonic): the calibrator is cross-fitted on the validation part
(5 folds, ``cross_fit_calibrate``), thresholds are tuned on the out-of-fold calibrated
validation scores, and the calibrator fit on all validation rows is applied to the test
split. Reported on the test split, against the raw scores:

- ECE (15 equal-width bins, pooled over labels, and the mean of the per-label ECEs) and
  Brier score;
- test macro/micro-F1 of thresholds tuned on the calibrated (cross-fitted) validation
  scores ("cross-fit"), and of thresholds tuned on the raw scores and mapped through the
  calibrator, ``calibrator.map_thresholds`` ("mapped"), each judged on the calibrated test
  scores, against thresholds tuned and judged on raw scores; for ``strategy="per_label"``
  and the default strategy (no bootstrap: it only adds intervals). ``W-L/W-L`` counts the
  cases better / worse than raw by more than 0.002 macro-F1 and 0.015 micro-F1
  (bench/quality.py's tolerances).

    python bench/calibration.py                           # cache /tmp/qcache, seeds 0-2
    python bench/calibration.py --seeds 0 --families linear mlp --sets yeast scene
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_grid import DATA_DIR, FAMILIES, SEEDS, SETS, load_case

from labelcut.tuning import DEFAULT_STRATEGY, tune_thresholds
from labelcut.tuning.cross_fit import cross_fit_calibrate
from labelcut.tuning.reliability import brier_score, expected_calibration_error

METHODS = ("temperature", "platt", "isotonic")
TUNE_STRATEGIES = ("per_label", DEFAULT_STRATEGY)
MACRO_TOLERANCE = 0.002
MICRO_TOLERANCE = 0.015


def _f1(targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    predicted = scores >= thresholds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            float(f1_score(targets, predicted, average="macro", zero_division=0)),
            float(f1_score(targets, predicted, average="micro", zero_division=0)),
        )


def _figures(val: np.ndarray, y_val, test: np.ndarray, y_test, mapped_from=None) -> dict:
    """Test ECE, Brier and F1 of thresholds tuned on ``val``; with ``mapped_from`` (the raw
    validation scores and the calibrator) also of raw-tuned thresholds mapped through it."""
    ece_labels, ece = expected_calibration_error(test, y_test)
    out: dict[str, object] = {
        "ece": ece,
        "ece_mean": float(ece_labels.mean()),
        "brier": brier_score(test, y_test)[1],
    }
    for strategy in TUNE_STRATEGIES:
        result = tune_thresholds(val, y_val, strategy=strategy, n_bootstrap=0, device="cpu")
        out[strategy] = _f1(y_test, test, result.thresholds)
        if mapped_from is not None:
            raw_val, calibrator = mapped_from
            raw = tune_thresholds(raw_val, y_val, strategy=strategy, n_bootstrap=0, device="cpu")
            mapped = calibrator.map_thresholds(raw.thresholds)
            out[f"{strategy}:mapped"] = _f1(y_test, test, mapped)
    return out


def run_case(name: str, family: str, seed: int, cache: Path, timings: dict) -> dict[str, dict]:
    case = load_case(DATA_DIR, cache, name, family, seed)
    rows = {"raw": _figures(case.scores_val, case.y_val, case.scores_test, case.y_test)}
    for method in METHODS:
        start = time.perf_counter()
        fit = cross_fit_calibrate(case.scores_val, case.y_val, method, n_folds=5, seed=seed)
        test = fit.calibrator.apply(case.scores_test)
        timings[method] = timings.get(method, 0.0) + time.perf_counter() - start
        rows[method] = _figures(
            fit.calibrated, case.y_val, test, case.y_test, (case.scores_val, fit.calibrator)
        )
        rows[method]["fitted"] = float(fit.calibrator.fitted.mean())
        if method == "isotonic":
            rows[method]["breakpoints"] = max(len(x) for x, _ in fit.calibrator.breakpoints)
    return rows


def _versus(rows: list[dict], raw: list[tuple[float, float]], key: str) -> str:
    """'macro / micro  W-L/W-L': means, and cases better / worse than raw beyond tolerance."""
    macro = np.mean([r[key][0] for r in rows])
    micro = np.mean([r[key][1] for r in rows])
    pairs = list(zip(rows, raw, strict=True))
    counts = []
    for i, tol in ((0, MACRO_TOLERANCE), (1, MICRO_TOLERANCE)):
        wins = sum(r[key][i] > b[i] + tol for r, b in pairs)
        losses = sum(r[key][i] < b[i] - tol for r, b in pairs)
        counts.append(f"{wins}-{losses}")
    return f"{macro:.4f} / {micro:.4f} {'/'.join(counts):>11}"


def _summary(results: list[tuple[str, str, int, dict]], title: str) -> None:
    if not results:
        return
    print(f"\n{title} ({len(results)} cases)")
    print(f"{'method':12} {'ECE':>7} {'ECEmean':>7} {'Brier':>7}  " + "  ".join(
        f"{s + ' ' + how:>29}" for s in TUNE_STRATEGIES for how in ("cross-fit", "mapped")
    ))  # fmt: skip
    for method in ("raw", *METHODS):
        rows = [r[3][method] for r in results]
        line = f"{method:12} " + " ".join(
            f"{np.mean([r[k] for r in rows]):7.4f}" for k in ("ece", "ece_mean", "brier")
        )
        for strategy in TUNE_STRATEGIES:
            raw = [r[3]["raw"][strategy] for r in results]
            for key in (strategy, f"{strategy}:mapped"):
                key = strategy if method == "raw" else key
                line += f"  {_versus(rows, raw, key):>29}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/qcache"))
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args()
    results, timings = [], {}
    start = time.perf_counter()
    for name in args.sets:
        for family in args.families:
            for seed in args.seeds:
                rows = run_case(name, family, seed, args.cache, timings)
                results.append((name, family, seed, rows))
                cells = " ".join(
                    f"{m}:{rows[m]['ece']:.3f}" for m in ("raw", *METHODS)
                )  # fmt: skip
                print(f"{name:9} {family:7} {seed}  ECE {cells}", flush=True)
    for family in args.families:
        _summary([r for r in results if r[1] == family], f"family {family}")
    for name in args.sets:
        _summary([r for r in results if r[0] == name], f"set {name}")
    _summary(results, "all cases")
    iso = [r[3]["isotonic"]["breakpoints"] for r in results]
    unfit = {m: np.mean([1 - r[3][m]["fitted"] for r in results]) for m in METHODS}
    print(f"\nisotonic breakpoints per label: max {max(iso)}, median {int(np.median(iso))}")
    print("share of labels left uncalibrated (too few positives in a fold): "
          + ", ".join(f"{m} {v:.3f}" for m, v in unfit.items()))  # fmt: skip
    print("cross-fit + apply time: " + ", ".join(f"{m} {t:.1f} s" for m, t in timings.items()))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
