"""Where the default path's time goes: bench/bench_tuning.py's default tune, stage by stage.

Each stage of ``tune_thresholds`` (the defaults, ``return_curves=True``, on bench_tuning's
synthetic data) is wrapped for the timed calls only, and its wall time and process CPU
time (all threads, so a stage with work beside it counts that work too) are summed per
call. The stages follow ``tuning/tune.py``:

- ``init``: ``_Tuning.__init__`` (the fold plan; the diagnosis starts beside it);
- ``sorted pass``: ``SortedLabels.walk`` (packing, the sorts, own optima, the folds'
  tunes, the pooled counts);
- ``shared threshold``: ``_shared.pooled_threshold``;
- ``plug-in``: ``adaptive.plugin_optima`` (calibration, plug-in optima, held-out sorts);
- ``choice``: ``adaptive.choose``;
- ``final walk``: ``SortedLabels.walk_again`` (bootstrap, counts, curves), with the
  estimate (``_Tuning._estimate``) on a thread beside it, also listed on its own.

It prints each call, then the medians. "cores" is CPU over wall: 2.0 keeps both cores of
a 2-core machine busy. No goal is checked here (bench/bench_tuning.py checks them).

    python bench/tuning_stages.py                        # n=1,000,000, L=100, 3 calls
    python bench/tuning_stages.py --n 200000 --labels 40 --repeats 5
"""

from __future__ import annotations

# isort: off
import labelcut  # first: numpy gets the sort kernels labelcut chooses (labelcut/_cpu.py)

# isort: on
import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tuning import make_data

from labelcut.tuning import _shared, adaptive, tune_thresholds
from labelcut.tuning import tune as tune_module
from labelcut.tuning._sorted import SortedLabels

#: (stage name, owner, attribute): the functions timed, in pipeline order.
STAGES: tuple[tuple[str, Any, str], ...] = (
    ("init", tune_module._Tuning, "__init__"),
    ("sorted pass", SortedLabels, "walk"),
    ("shared threshold", _shared, "pooled_threshold"),
    ("plug-in", adaptive, "plugin_optima"),
    ("choice", adaptive, "choose"),
    ("final walk", SortedLabels, "walk_again"),
    ("estimate (beside)", tune_module._Tuning, "_estimate"),
)


def _timed(function: Callable[..., Any], totals: dict[str, list[float]], name: str):
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            total = totals.setdefault(name, [0.0, 0.0])
            total[0] += time.perf_counter() - wall
            total[1] += time.process_time() - cpu

    return wrapper


def timed_calls(call: Callable[[], Any], repeats: int) -> list[dict[str, list[float]]]:
    """``call()`` ``repeats`` times with every stage wrapped; per call, stage -> [wall, CPU]
    (and ``"total"``). The wrappers are removed afterwards."""
    totals: dict[str, list[float]] = {}
    originals = [(owner, attribute, getattr(owner, attribute)) for _, owner, attribute in STAGES]
    # tune.py calls ``adaptive.plugin_optima`` etc. through the modules, so patching the
    # module attributes reaches it.
    for (name, owner, attribute), (_, _, original) in zip(STAGES, originals, strict=True):
        setattr(owner, attribute, _timed(original, totals, name))
    runs = []
    try:
        for _ in range(repeats):
            totals.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            totals["total"] = [time.perf_counter() - wall, time.process_time() - cpu]
            runs.append({name: list(value) for name, value in totals.items()})
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scores, targets = make_data(args.n, args.labels, args.seed)
    print(f"data: n={args.n:,} L={args.labels}; numpy sort kernels: {labelcut._cpu.SORT_KERNELS}")
    tune_thresholds(scores[:1000, :2], targets[:1000, :2], return_curves=True)  # warm up
    runs = timed_calls(lambda: tune_thresholds(scores, targets, return_curves=True), args.repeats)
    names = [name for name, _, _ in STAGES] + ["total"]
    for index, run in enumerate(runs, 1):
        cells = ", ".join(f"{n} {run[n][0]:.3f}" for n in names if n in run)
        print(f"call {index}: {cells} s")
    print("\n| stage | wall (median) | CPU (median) | cores |")
    print("|---|---|---|---|")
    for name in names:
        found = [run[name] for run in runs if name in run]
        if not found:
            continue
        wall = float(np.median([f[0] for f in found]))
        cpu = float(np.median([f[1] for f in found]))
        print(f"| {name} | {wall:.3f} s | {cpu:.2f} s | {cpu / wall if wall else 0:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
