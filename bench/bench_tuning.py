"""Benchmark tune_thresholds against a scikit-learn loop and a sort floor, in one run.

Synthetic, seeded data shaped like a multi-label model's validation output:
float32 sigmoid scores (saturating at 0 and 1 like real ones) and uint8 targets
correlated with them, with prevalences from 0.5% to 40%. Timed, in one run (each
tune ``--repeats`` times, default 3, and the median reported with the range: single
calls on a 2-core VM vary by 20%; the sklearn loop and the floor once):

- the baseline: ``sklearn.metrics.precision_recall_curve`` per label and the
  argmax of F1 (ties to the higher threshold, as tuning does);
- the bare path: ``tune_thresholds(strategy="per_label", n_bootstrap=0)``,
  which computes exactly what the baseline does (checked label by label);
- the default path: what ``/tune-thresholds`` runs with its defaults
  (``adaptive``, 200 bootstrap replicates, the cross-fitted estimate) with the compact
  curves it stores (``return_curves=True``); ``bench/tuning_stages.py`` splits it into
  its stages;
- the default path without the estimate (``estimate=False``): the estimate's cost is
  the ratio of the two (issue 20: at most 1.5x);
- the floor: sorting the same packed int32 keys label by label in place, on
  the same threads (numpy's sort; packing and copying not counted).

Peak memory is the increase of the process's peak resident set (VmHWM, reset
just before each call through /proc/self/clear_refs) over its resident set
before the call, compared with the input arrays' nbytes. It sees torch and
numpy allocations alike. A call after others starts with the allocator's free memory
(glibc keeps what an earlier call freed) already counted in its "before", so the default
path is also measured as the first call of a fresh process (``--first-call``, run as a
subprocess: a small warm-up tune, then one default tune), which is what a one-shot
``labelcut tune`` needs; the memory goal is checked on the largest of the figures. The
load average is printed: other processes on the cores slow the multi-threaded calls
more than the single-threaded loop.

    python bench/bench_tuning.py                    # n=1,000,000, L=100, CPU
    python bench/bench_tuning.py --n 100000 --labels 20
    python bench/bench_tuning.py --device cuda      # on a GPU machine
"""

from __future__ import annotations

# isort: off
# First, as in the labelcut command and server: numpy then gets the sort kernels
# they run with (on AMD Zen 4 the AVX2 ones; labelcut/_cpu.py says why).
import labelcut

# isort: on
import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve

from labelcut.tuning import tune_thresholds

BARE_GOAL = 20.0  # times faster than the sklearn loop
DEFAULT_GOAL = 10.0
FLOOR_GOAL = 5.0  # the bare path within this many times the sort floor
MEMORY_GOAL = 1.0  # peak increase, in multiples of the input arrays' bytes
ESTIMATE_GOAL = 1.5  # the default tune with the cross-fitted estimate / without it (issue 20)


def make_data(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, L) float32 scores in [0, 1] and uint8 targets, generated label by label."""
    rng = np.random.default_rng(seed)
    scores = np.empty((n, n_labels), dtype=np.float32)
    targets = np.empty((n, n_labels), dtype=np.uint8)
    prevalence = np.exp(rng.uniform(np.log(0.005), np.log(0.4), n_labels))
    separation = rng.uniform(0.5, 4.0, n_labels)
    for j in range(n_labels):
        positive = rng.random(n) < prevalence[j]
        logits = rng.standard_normal(n, dtype=np.float32) * np.float32(1.5)
        logits += np.where(positive, separation[j], 0.0).astype(np.float32)
        logits += np.float32(np.log(prevalence[j]) - separation[j] / 2)
        logits *= np.float32(rng.uniform(1.0, 6.0))  # confident models saturate
        scores[:, j] = 1.0 / (1.0 + np.exp(-logits))
        targets[:, j] = positive
    return scores, targets


def memory_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


def reset_peak_memory() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measured(call: Callable[[], Any]) -> tuple[Any, float, float, int]:
    """(result, wall seconds, CPU seconds of all threads, peak RSS increase in bytes)."""
    rss_before = memory_kib("VmRSS")
    reset_peak_memory()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = call()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return result, wall, cpu, (memory_kib("VmHWM") - rss_before) * 1024


def repeated(call: Callable[[], Any], repeats: int) -> tuple[Any, float, float, int, str]:
    """:func:`measured` ``repeats`` times: (last result, median wall, median CPU, largest
    peak, the walls' range in words). This machine's timings vary by 20% from one call to
    the next (other jobs, first-touch page faults of fresh memory), the median less."""
    runs = [measured(call) for _ in range(repeats)]
    walls = sorted(run[1] for run in runs)
    spread = "" if repeats == 1 else f", median of {repeats}: {walls[0]:.2f}-{walls[-1]:.2f} s"
    return (
        runs[-1][0],
        float(np.median(walls)),
        float(np.median([run[2] for run in runs])),
        max(run[3] for run in runs),
        spread,
    )


def sklearn_loop(scores: np.ndarray, targets: np.ndarray):
    """Per label: the lowest score predicted positive and F1 at the best-F1 cut."""
    lowest_positive, best_f1 = [], []
    for j in range(scores.shape[1]):
        precision, recall, thresholds = precision_recall_curve(targets[:, j], scores[:, j])
        precision, recall = precision[:-1], recall[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        best = len(f1) - 1 - int(np.argmax(f1[::-1]))  # ties: the higher threshold
        lowest_positive.append(float(thresholds[best]))
        best_f1.append(float(f1[best]))
    return np.array(lowest_positive), np.array(best_f1)


def packed_keys(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(L, n) int32 keys ``score_bits << 1 | target``, as tuning sorts them."""
    keys = np.ascontiguousarray(scores.T).view(np.int32) << 1
    keys |= targets.T
    return keys


def sort_floor(keys: np.ndarray, threads: int) -> None:
    """Sort every label's keys in place, labels split over ``threads`` threads."""
    blocks = np.array_split(np.arange(keys.shape[0]), threads)

    def run(rows: np.ndarray) -> None:
        if len(rows):
            keys[rows[0] : rows[-1] + 1].sort(axis=1)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(run, blocks))


def agreement(scores, result, lowest_positive, best_f1) -> tuple[int, int, list[str]]:
    """(same operating point, ties resolved apart, problems) over the labels."""
    same, ties, problems = 0, 0, []
    for j in range(scores.shape[1]):
        column = scores[:, j]
        threshold = result.thresholds[j]
        predicted = column >= threshold
        ours_lowest = float(column[predicted].min()) if predicted.any() else np.inf
        if result.status[j] != "ok":
            problems.append(f"label {j}: status {result.status[j]}")
        elif ours_lowest == lowest_positive[j]:
            same += 1
        elif abs(result.f1[j] - best_f1[j]) <= 1e-12:
            ties += 1
        else:
            problems.append(
                f"label {j}: tuning F1 {result.f1[j]:.12f} at {threshold!r}, "
                f"sklearn F1 {best_f1[j]:.12f} at {lowest_positive[j]!r}"
            )
    return same, ties, problems


def first_call(args: argparse.Namespace) -> int:
    """``--first-call``: one default tune in this fresh process, after a small warm-up (as
    in :func:`main`); prints its wall seconds and peak RSS increase in bytes as JSON."""
    scores, targets = make_data(args.n, args.labels, args.seed)
    tune_thresholds(scores[:1000, :2], targets[:1000, :2], device=args.device, return_curves=True)
    _, wall, _, peak = measured(
        lambda: tune_thresholds(scores, targets, device=args.device, return_curves=True)
    )
    print(json.dumps({"wall": wall, "peak": peak}))
    return 0


def first_call_in_a_fresh_process(args: argparse.Namespace) -> tuple[float, int]:
    """(wall seconds, peak RSS increase in bytes) of :func:`first_call`, run as a subprocess."""
    command = [sys.executable, __file__, "--first-call", "--n", str(args.n)]
    command += ["--labels", str(args.labels), "--seed", str(args.seed), "--device", args.device]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figures["wall"]), int(figures["peak"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="samples (default 1,000,000)")
    parser.add_argument("--labels", type=int, default=100, help="labels (default 100)")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda", "cuda:N" or "auto"')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each tune, median reported (default 3)"
    )
    parser.add_argument(
        "--first-call",
        action="store_true",
        help="only one default tune in this process, printed as JSON (the bench runs it)",
    )
    args = parser.parse_args()
    if args.first_call:
        return first_call(args)

    threads = torch.get_num_threads()
    print(
        f"data: n={args.n:,} L={args.labels} seed={args.seed}; torch {torch.__version__}, "
        f"numpy {np.__version__}, {threads} torch threads, {os.cpu_count()} CPUs, "
        f"device={args.device}"
    )
    print(f"numpy sort kernels: {labelcut._cpu.SORT_KERNELS}")
    scores, targets = make_data(args.n, args.labels, args.seed)
    input_bytes = scores.nbytes + targets.nbytes
    print(
        f"inputs: scores {scores.dtype} {scores.nbytes / 2**20:.0f} MiB + targets "
        f"{targets.dtype} {targets.nbytes / 2**20:.0f} MiB = {input_bytes / 2**20:.0f} MiB"
    )
    # Warm up (threads, CUDA) outside the timed calls.
    tune_thresholds(scores[:1000, :2], targets[:1000, :2], device=args.device, return_curves=True)
    if args.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    load_before = os.getloadavg()

    bare, bare_s, bare_cpu, bare_peak, bare_spread = repeated(
        lambda: tune_thresholds(
            scores,
            targets,
            device=args.device,
            strategy="per_label",
            n_bootstrap=0,
            estimate=False,
        ),
        args.repeats,
    )
    print(
        f"bare path    tune_thresholds(strategy='per_label', n_bootstrap=0, estimate=False): "
        f"{bare_s:6.2f} s (CPU {bare_cpu:.2f} s{bare_spread}), peak +{bare_peak / 2**20:.0f} MiB"
    )
    _, plain_s, plain_cpu, plain_peak, plain_spread = repeated(
        lambda: tune_thresholds(
            scores, targets, device=args.device, return_curves=True, estimate=False
        ),
        args.repeats,
    )
    print(
        f"default path without the estimate (estimate=False, return_curves=True): "
        f"{plain_s:6.2f} s (CPU {plain_cpu:.2f} s{plain_spread}), "
        f"peak +{plain_peak / 2**20:.0f} MiB"
    )
    default, default_s, default_cpu, default_peak, default_spread = repeated(
        lambda: tune_thresholds(scores, targets, device=args.device, return_curves=True),
        args.repeats,
    )
    print(
        f"default path tune_thresholds(defaults, return_curves=True), with the estimate: "
        f"{default_s:6.2f} s (CPU {default_cpu:.2f} s{default_spread}), "
        f"peak +{default_peak / 2**20:.0f} MiB"
    )
    expected = default.to_dict()["summary"]["macro_f1"]
    assert default.curves is not None and len(default.curves) == args.labels
    default = None  # its memory back before the fresh process builds its own inputs
    first_s, first_peak = first_call_in_a_fresh_process(args)
    print(
        f"default path, the first call of a fresh process: {first_s:6.2f} s, "
        f"peak +{first_peak / 2**20:.0f} MiB"
    )
    estimate_ratio = default_s / plain_s
    print(
        f"estimate: the default tune with it / without it = {estimate_ratio:.2f}x wall, "
        f"{default_cpu / plain_cpu:.2f}x CPU (expected macro-F1 {expected['expected']:.4f}, "
        f"in sample {expected['tuned']:.4f})"
    )
    if args.device != "cpu":
        print(f"  CUDA peak allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")

    keys = packed_keys(scores, targets)
    _, floor_s, _, _ = measured(lambda: sort_floor(keys, threads))  # once: it sorts in place
    keys = None  # free the copy before the baseline
    print(f"floor        numpy sort of the packed int32 keys, {threads} threads: {floor_s:6.2f} s")

    (lowest_positive, best_f1), sklearn_s, sklearn_cpu, _ = measured(
        lambda: sklearn_loop(scores, targets)
    )
    print(
        f"baseline     sklearn precision_recall_curve + argmax F1 loop:    {sklearn_s:6.2f} s "
        f"(CPU {sklearn_cpu:.2f} s)"
    )
    load_after = os.getloadavg()
    print(
        f"load average (1, 5, 15 min): before {', '.join(f'{v:.1f}' for v in load_before)}; "
        f"after {', '.join(f'{v:.1f}' for v in load_after)} on {os.cpu_count()} CPUs"
        + (
            " (shared: the multi-threaded calls lose more than the single-threaded loop)"
            if max(load_before[0], load_after[0]) > (os.cpu_count() or 1) * 0.75
            else ""
        )
    )

    same, ties, problems = agreement(scores, bare, lowest_positive, best_f1)
    for problem in problems[:10]:
        print("  disagreement:", problem)
    print(
        f"agreement: {same}/{args.labels} labels at the same operating point, {ties} equal-F1 "
        f"ties resolved differently, {len(problems)} disagreements"
    )
    bare_ratio, default_ratio = sklearn_s / bare_s, sklearn_s / default_s
    floor_ratio = bare_s / floor_s
    peak_ratio = max(bare_peak, default_peak, first_peak) / input_bytes
    print(
        f"speed-up: bare {bare_ratio:.1f}x, default {default_ratio:.1f}x the sklearn loop; "
        f"bare = {floor_ratio:.1f}x the sort floor; peak memory "
        f"{bare_peak / input_bytes:.2f}x (bare) / {default_peak / input_bytes:.2f}x (default) / "
        f"{first_peak / input_bytes:.2f}x (default, first call of a fresh process) the inputs"
    )
    # CPU seconds are less sensitive to other processes than wall time: the loop uses
    # one core, so on an idle machine the wall-time ratio is about the CPU-time ratio
    # times the threads' parallel efficiency.
    print(
        f"CPU-time ratios: sklearn CPU / bare CPU {sklearn_cpu / bare_cpu:.1f}x, "
        f"/ default CPU {sklearn_cpu / default_cpu:.1f}x ({threads} threads)"
    )
    checks = [
        ("answers agree with sklearn", not problems),
        (f"default path >= {DEFAULT_GOAL:.0f}x the sklearn loop", default_ratio >= DEFAULT_GOAL),
        (f"bare path >= {BARE_GOAL:.0f}x the sklearn loop", bare_ratio >= BARE_GOAL),
        (f"bare path within {FLOOR_GOAL:.0f}x the sort floor", floor_ratio <= FLOOR_GOAL),
        (f"peak extra memory <= {MEMORY_GOAL:.0f}x the inputs", peak_ratio <= MEMORY_GOAL),
        (
            f"the estimate costs <= {ESTIMATE_GOAL}x the default tune without it",
            estimate_ratio <= ESTIMATE_GOAL,
        ),
    ]
    for name, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {name}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
