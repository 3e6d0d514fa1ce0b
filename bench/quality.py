"""Decision quality of the tuning strategies over a protocol grid, in one run.

The grid (bench/quality_grid.py): five model families (linear, forest, mlp,
knn, bayes) x three split seeds x six MULAN sets (yeast, scene, emotions,
enron, medical, CAL500; CAL500 has no test split, one is carved per seed) =
90 cases. In each, thresholds are tuned on a validation part of the train
split and judged on the untouched test split.

Prints every case, then per strategy the mean test macro- and micro-F1 and the
number of cases where it loses to plain 0.5 (macro by more than 0.002, micro by
more than 0.015), separately for the **selection part** (seed 0: where a
default may be chosen) and the **report part** (seeds 1 and 2: where it is
judged), and the goals of issue 20 on the report part, for the ``adaptive`` strategy
(tuning/adaptive.py; built through bench/quality_adaptive.py until ``tune_thresholds``
offers it) and for today's default. Beside the strategies it
prints `objective="micro_f1"` (issue 18: per-label thresholds chosen jointly) against
`global`, and the test ECE of the scores before and after each calibrator of issue 19
(fit on the validation part). When the tuning result
carries the cross-fitted estimate (``summary.macro_f1.expected``), it also
prints how close the estimate and the in-sample figure come to the test
macro-F1, and how often the 90% interval covers it.

    python bench/quality.py                  # fits on first use, cached in /tmp/labelcut-quality
    python bench/quality.py --cache DIR --seeds 0 1 2 --families linear mlp
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_adaptive import adaptive_estimate, adaptive_for
from quality_grid import DATA_DIR, FAMILIES, SEEDS, SETS, Case, load_case

from labelcut.tuning import DEFAULT_STRATEGY, fit_calibrator, tune_thresholds
from labelcut.tuning._checks import STRATEGIES as TUNE_STRATEGIES
from labelcut.tuning.reliability import expected_calibration_error

STRATEGIES = ("per_label", "global", "shrunk")
ADAPTIVE = "adaptive"  # issue 20's candidate default (tuning/adaptive.py)
ROWS = (*STRATEGIES, ADAPTIVE)
EXTRA = ("micro_f1",)  # objectives shown beside the strategies (not candidates for the default)
CALIBRATORS = ("temperature", "platt", "isotonic")
SELECTION_SEEDS = (0,)
MACRO_TOLERANCE = 0.002
MICRO_TOLERANCE = 0.015


def test_f1(targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    predicted = scores >= np.asarray(thresholds, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            float(f1_score(targets, predicted, average="macro", zero_division=0)),
            float(f1_score(targets, predicted, average="micro", zero_division=0)),
        )


def estimate_cells(result: Any) -> tuple[Any, Any, Any]:
    """(in-sample, expected, expected interval) macro-F1 of a tuning result."""
    macro = result.to_dict()["summary"]["macro_f1"]
    return macro.get("tuned"), macro.get("expected"), macro.get("expected_interval")


def run_case(case: Case) -> dict[str, Any]:
    """Test macro/micro-F1 per strategy, and the default's in-sample and expected figures."""
    n_labels = case.y_val.shape[1]
    row: dict[str, Any] = {"0.5": test_f1(case.y_test, case.scores_test, np.full(n_labels, 0.5))}
    for strategy in STRATEGIES:
        result = tune_thresholds(
            case.scores_val,
            case.y_val,
            strategy=strategy,
            n_bootstrap=0 if strategy != DEFAULT_STRATEGY else 200,
            device="cpu",
        )
        row[strategy] = test_f1(case.y_test, case.scores_test, result.thresholds)
        row[f"{strategy}:estimate"] = estimate_cells(result)
    if ADAPTIVE in TUNE_STRATEGIES:  # wired into tune_thresholds
        result = tune_thresholds(
            case.scores_val, case.y_val, strategy=ADAPTIVE, n_bootstrap=0, device="cpu"
        )
        adaptive = result.thresholds
        row[f"{ADAPTIVE}:estimate"] = estimate_cells(result)
    else:
        choice = adaptive_for(case.scores_val, case.y_val)
        adaptive = choice.thresholds
        row[f"{ADAPTIVE}:estimate"] = adaptive_estimate(case.scores_val, case.y_val, choice)
    row[ADAPTIVE] = test_f1(case.y_test, case.scores_test, adaptive)
    joint = tune_thresholds(
        case.scores_val, case.y_val, "micro_f1", n_bootstrap=0, estimate=False, device="cpu"
    )
    row["micro_f1"] = test_f1(case.y_test, case.scores_test, joint.thresholds)
    row["ece:raw"] = expected_calibration_error(case.scores_test, case.y_test)[1]
    for method in CALIBRATORS:
        calibrator = fit_calibrator(case.scores_val, case.y_val, method)
        calibrated = calibrator.apply(case.scores_test)
        row[f"ece:{method}"] = expected_calibration_error(calibrated, case.y_test)[1]
    return row


def losses(rows: list[dict[str, Any]], strategy: str) -> tuple[int, int]:
    macro = sum(r[strategy][0] < r["0.5"][0] - MACRO_TOLERANCE for r in rows)
    micro = sum(r[strategy][1] < r["0.5"][1] - MICRO_TOLERANCE for r in rows)
    return int(macro), int(micro)


def summarise(title: str, rows: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    print(f"\n{title}: {len(rows)} cases")
    print("| strategy | mean macro-F1 | mean micro-F1 | macro loses to 0.5 | micro loses to 0.5 |")
    print("|---|---|---|---|---|")
    means = {}
    for strategy in ("0.5", *ROWS, *EXTRA):
        macro = float(np.mean([r[strategy][0] for r in rows]))
        micro = float(np.mean([r[strategy][1] for r in rows]))
        means[strategy] = (macro, micro)
        lost = losses(rows, strategy) if strategy != "0.5" else ("-", "-")
        print(f"| {strategy} | {macro:.4f} | {micro:.4f} | {lost[0]} | {lost[1]} |")
    wins = sum(r["micro_f1"][1] > r["global"][1] for r in rows)
    print(f"micro_f1 beats global's test micro-F1 in {wins} of {len(rows)} cases")
    raw = float(np.mean([r["ece:raw"] for r in rows]))
    cells = ", ".join(
        f"{m} {np.mean([r[f'ece:{m}'] for r in rows]):.4f} "
        f"(lower in {sum(r[f'ece:{m}'] < r['ece:raw'] for r in rows)})"
        for m in CALIBRATORS
    )
    print(f"test ECE (pooled, 15 bins), mean over cases: raw {raw:.4f}; {cells}")
    return means


def estimate_report(rows: list[dict[str, Any]]) -> bool | None:
    """Gaps of the in-sample and expected macro-F1 to the test figure; interval coverage."""
    passed = True
    for strategy in dict.fromkeys(("per_label", DEFAULT_STRATEGY, ADAPTIVE)):
        found = [(r[f"{strategy}:estimate"], r[strategy][0]) for r in rows]
        if any(e[1] is None for e, _ in found):
            print(f"  {strategy}: the tuning result has no cross-fitted estimate yet")
            return None
        in_gap = float(np.mean([abs(e[0] - t) for e, t in found]))
        ex_gap = float(np.mean([abs(e[1] - t) for e, t in found]))
        covered = float(np.mean([e[2][0] <= t <= e[2][1] for e, t in found if e[2]]))
        limit = 0.7 if strategy == "per_label" else 1.0
        ok = ex_gap <= limit * in_gap and covered >= 0.75
        if strategy != ADAPTIVE or ADAPTIVE == DEFAULT_STRATEGY:
            passed &= ok
        print(
            f"  {strategy}: mean |in-sample - test| {in_gap:.4f}, |expected - test| "
            f"{ex_gap:.4f} (ratio {ex_gap / in_gap:.2f}, goal <= {limit}); 90% interval "
            f"covers the test macro-F1 in {covered:.0%} of cases (goal >= 75%): "
            f"{'PASS' if ok else 'FAIL'}"
        )
    return passed


def goals(
    report: list[dict[str, Any]],
    means: dict[str, tuple[float, float]],
    d: str,
    part: str = "the report part",
) -> bool:
    """Print issue 20's four goals for strategy ``d`` on ``part``; True if all pass."""
    macro_lost, micro_lost = losses(report, d)
    checks = {
        f"macro-F1 more than {MACRO_TOLERANCE} below 0.5's in no case ({macro_lost})": (
            macro_lost == 0
        ),
        f"micro-F1 more than {MICRO_TOLERANCE} below 0.5's in at most 1 case in 40 "
        f"({micro_lost} of {len(report)})": micro_lost <= len(report) / 40,
        f"mean macro-F1 {means[d][0]:.4f} >= per_label's {means['per_label'][0]:.4f}": (
            means[d][0] >= means["per_label"][0]
        ),
        f"mean micro-F1 {means[d][1]:.4f} >= global's {means['global'][1]:.4f} - 0.005": (
            means[d][1] >= means["global"][1] - 0.005
        ),
    }
    role = "the default" if d == DEFAULT_STRATEGY else "candidate default"
    print(f"\ngoals for {role} ({d!r}) on {part}:")
    for text, ok in checks.items():
        print(f"  {text}: {'PASS' if ok else 'FAIL'}")
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/labelcut-quality"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    args = parser.parse_args()
    started = time.perf_counter()
    rows: dict[int, list[dict[str, Any]]] = {seed: [] for seed in args.seeds}
    header = " | ".join(("0.5", *ROWS))
    print(f"| set | family | seed | {header} |  (test macro / micro)")
    print("|---|---|---|" + "---|" * (1 + len(ROWS)))
    for seed in args.seeds:
        for name in args.sets:
            for family in args.families:
                case = load_case(args.data_dir, args.cache, name, family, seed)
                row = run_case(case)
                rows[seed].append(row)
                cells = " | ".join(f"{row[s][0]:.3f} / {row[s][1]:.3f}" for s in ("0.5", *ROWS))
                print(f"| {name} | {family} | {seed} | {cells} |", flush=True)
    selection = [r for s in args.seeds if s in SELECTION_SEEDS for r in rows[s]]
    report = [r for s in args.seeds if s not in SELECTION_SEEDS for r in rows[s]]
    if selection:
        chosen_on = summarise(f"selection part (seeds {SELECTION_SEEDS})", selection)
        goals(selection, chosen_on, ADAPTIVE, "the selection part (where it was chosen)")
    passed = True
    if report:
        means = summarise("report part (the other seeds)", report)
        for name in dict.fromkeys((ADAPTIVE, DEFAULT_STRATEGY)):
            ok = goals(report, means, name)
            if name == DEFAULT_STRATEGY:
                passed &= ok
        print("\nthe estimate of what to expect on new data (report part):")
        estimate_ok = estimate_report(report)
        if estimate_ok is not None:
            passed &= estimate_ok
    print(f"\n{time.perf_counter() - started:.0f} s; OVERALL: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
