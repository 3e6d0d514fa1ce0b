"""Benchmark tune_thresholds(objective="f1") against a scikit-learn loop, in one run.

Synthetic, seeded data shaped like a multi-label model's validation output:
float32 sigmoid scores (saturating at 0 and 1 like real ones) and uint8 targets
correlated with them, with prevalences from 0.5% to 40%. The baseline is the
obvious loop: ``sklearn.metrics.precision_recall_curve`` per label and the
argmax of F1 (ties to the higher threshold, as tuning does). The script checks
both pick the same operating point per label and prints both times, the
ratio and the peak memory of the tuning call.

Peak memory is the increase of the process's peak resident set (VmHWM, reset
just before the call through /proc/self/clear_refs) over its resident set
before the call, compared with the input arrays' nbytes. This sees torch and
numpy allocations alike.

    python bench/bench_tuning.py                    # n=1,000,000, L=100, CPU
    python bench/bench_tuning.py --n 100000 --labels 20
    python bench/bench_tuning.py --device cuda      # on a GPU machine
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve

from labelcut.tuning import tune_thresholds

SPEED_GOAL = 5.0  # times faster than the sklearn loop
MEMORY_GOAL = 3.0  # peak increase, in multiples of the input arrays' bytes


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="samples (default 1,000,000)")
    parser.add_argument("--labels", type=int, default=100, help="labels (default 100)")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda", "cuda:N" or "auto"')
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(
        f"data: n={args.n:,} L={args.labels} seed={args.seed}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, device={args.device}"
    )
    scores, targets = make_data(args.n, args.labels, args.seed)
    input_bytes = scores.nbytes + targets.nbytes
    print(
        f"inputs: scores {scores.dtype} {scores.nbytes / 2**20:.0f} MiB + targets "
        f"{targets.dtype} {targets.nbytes / 2**20:.0f} MiB = {input_bytes / 2**20:.0f} MiB"
    )
    if args.device != "cpu":  # start CUDA outside the timed call
        tune_thresholds(
            scores[:1000, :2],
            targets[:1000, :2],
            device=args.device,
            strategy="per_label",
            n_bootstrap=0,
        )
        torch.cuda.reset_peak_memory_stats()

    load_before = os.getloadavg()[0]
    rss_before = memory_kib("VmRSS")
    exact_peak = reset_peak_memory()
    started, cpu_started = time.perf_counter(), time.process_time()
    # Plain per-label tuning, without the bootstrap: the sklearn loop computes exactly this.
    result = tune_thresholds(
        scores, targets, objective="f1", device=args.device, strategy="per_label", n_bootstrap=0
    )
    tuning_s = time.perf_counter() - started
    tuning_cpu_s = time.process_time() - cpu_started
    peak_increase = (memory_kib("VmHWM") - rss_before) * 1024
    print(
        f"tune_thresholds(objective='f1', device={args.device!r}): {tuning_s:.2f} s "
        f"(CPU time of all its threads {tuning_cpu_s:.2f} s)"
    )
    if args.device != "cpu":
        print(f"  CUDA peak allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")

    started, cpu_started = time.perf_counter(), time.process_time()
    lowest_positive, best_f1 = sklearn_loop(scores, targets)
    sklearn_s = time.perf_counter() - started
    sklearn_cpu_s = time.process_time() - cpu_started
    print(
        f"sklearn precision_recall_curve + argmax F1 loop: {sklearn_s:.2f} s "
        f"(CPU time {sklearn_cpu_s:.2f} s)"
    )
    load_after = os.getloadavg()[0]
    if max(load_before, load_after) > (os.cpu_count() or 1) * 0.75:
        print(
            f"note: load average {load_before:.1f} before / {load_after:.1f} after on "
            f"{os.cpu_count()} CPUs: other processes share the cores, so the multi-threaded "
            "tuning call is slowed more than the single-threaded loop"
        )

    same, ties, problems = agreement(scores, result, lowest_positive, best_f1)
    for problem in problems[:10]:
        print("  disagreement:", problem)
    ratio = sklearn_s / tuning_s
    memory_ratio = peak_increase / input_bytes
    how = "VmHWM reset before the call" if exact_peak else "VmHWM since start: an upper bound"
    print(
        f"agreement: {same}/{args.labels} labels at the same operating point, {ties} equal-F1 "
        f"ties resolved differently, {len(problems)} disagreements"
    )
    print(f"speed-up: {ratio:.1f}x (sklearn {sklearn_s:.2f} s / tuning {tuning_s:.2f} s)")
    print(
        f"peak memory increase during the call: {peak_increase / 2**20:.0f} MiB = "
        f"{memory_ratio:.2f}x the inputs ({how})"
    )
    checks = [
        ("answers agree with sklearn", not problems),
        (f"speed >= {SPEED_GOAL:.0f}x the sklearn loop", ratio >= SPEED_GOAL),
        (f"peak memory <= {MEMORY_GOAL:.0f}x the inputs", memory_ratio <= MEMORY_GOAL),
    ]
    for name, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {name}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
