"""Tune a Parquet dataset of 10^8 scores: the Dask engine against the in-memory path.

The dataset (written once under /tmp, then reused): `--rows` rows x `--labels` labels as
`--files` Parquet files, each row a 0/1 column per label and a float32 `score:<label>`
column per label, shaped like a model's validation output (bench_tuning's generator:
prevalences 0.5%..40%, saturating sigmoid scores). Default 5M x 20 = 10^8 scores.

Each path runs in a fresh process of its own, so its peak memory is its own:

- in-memory: read every file into (n, L) arrays, then `tune_thresholds` on them;
- Dask: `tune_dataset` on a `LocalCluster` of `--workers` processes (what
  `labelcut tune DIR --engine dask` starts), timed from the cluster's start.

for two tunes: `strategy="per_label", n_bootstrap=0` (the bare one, as the outside check
runs it) and the defaults (200 bootstrap replicates, strategy shrunk: see CONFIGS).
Printed: wall time, the peak resident set of every process (VmHWM: the in-memory
process; the Dask client and each worker) and its rise over the process's resident set
once its imports are done, the decoded size of a partition and of the dataset, and
whether the thresholds agree.

Goals (issue 17), in one run: the thresholds are equal (exact mode); the Dask path's peak
per process is bounded by a partition, not by n: the largest rise of any Dask process over
the whole dataset is within MEMORY_GOAL x the largest rise of a Dask run on a tenth of its
files (same partitions; the in-memory rise grows ten-fold), printed in decoded partitions
too; its wall time is within WALL_GOAL x the in-memory one.

    python bench/bench_scale.py                       # 5M x 20 in 50 files (10^8 scores)
    python bench/bench_scale.py --rows 200000 --files 10     # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

WALL_GOAL = 2.0  # Dask wall / in-memory wall at most
MEMORY_GOAL = 1.5  # a Dask process's peak rise on n rows / on n/10 rows, at most
# "defaults" keeps every default but the strategy: the default "adaptive" chooses on the
# rows' folds, which statistics do not keep, so the Dask path runs it as "shrunk" (and
# says so); the in-memory path runs "shrunk" too, so the two answer the same question.
CONFIGS = {
    "per_label": {"strategy": "per_label", "n_bootstrap": 0},
    "defaults": {"strategy": "shrunk"},
}


def dataset_dir(args: argparse.Namespace) -> Path:
    name = f"rows{args.rows}-labels{args.labels}-files{args.files}-seed{args.seed}"
    return Path(args.data_dir) / name


def write_dataset(folder: Path, rows: int, n_labels: int, files: int, seed: int) -> None:
    """The dataset, file by file (memory: one file at a time); `DONE` marks it complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (folder / "DONE").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prevalence = np.exp(rng.uniform(np.log(0.005), np.log(0.4), n_labels))
    separation = rng.uniform(0.5, 4.0, n_labels)
    sharpness = rng.uniform(1.0, 6.0, n_labels)
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    labels = [f"label{j:02d}" for j in range(n_labels)]
    started = time.perf_counter()
    for i in range(files):
        n = int(bounds[i + 1] - bounds[i])
        file_rng = np.random.default_rng([seed, i])
        columns: dict[str, Any] = {}
        scores = {}
        for j, label in enumerate(labels):
            positive = file_rng.random(n) < prevalence[j]
            logits = file_rng.standard_normal(n, dtype=np.float32) * np.float32(1.5)
            logits += np.where(positive, separation[j], 0.0).astype(np.float32)
            logits += np.float32(np.log(prevalence[j]) - separation[j] / 2)
            logits *= np.float32(sharpness[j])
            columns[label] = positive.astype(np.int8)
            scores[f"score:{label}"] = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        pq.write_table(pa.table({**columns, **scores}), folder / f"part-{i:04d}.parquet")
    (folder / "DONE").write_text(json.dumps({"rows": rows, "labels": n_labels, "files": files}))
    print(f"wrote {folder} in {time.perf_counter() - started:.1f} s", flush=True)


def memory_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


def process_memory() -> dict[str, int]:
    """This process's resident set now and at its peak, bytes (a worker runs it too)."""
    return {"rss": memory_kib("VmRSS") * 1024, "peak": memory_kib("VmHWM") * 1024}


def warm_worker() -> dict[str, int]:
    """Import what a partition task imports, then the worker's memory (its baseline)."""
    import labelcut.app.engine.partition
    import labelcut.tuning.stats  # noqa: F401

    return process_memory()


# --- the two paths, each run in a child process -----------------------------------------


def run_memory(folder: Path, config: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from labelcut.tuning import tune_thresholds

    base = process_memory()["rss"]
    started = time.perf_counter()
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    table = pq.read_table(files)
    labels = [c for c in table.column_names if not c.startswith("score:")]
    scores = np.stack([table.column(f"score:{c}").to_numpy() for c in labels], axis=1)
    targets = np.stack([table.column(c).to_numpy() for c in labels], axis=1).astype(np.uint8)
    del table
    read_s = time.perf_counter() - started
    result = tune_thresholds(scores, targets, label_names=labels, **CONFIGS[config])
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "read_s": read_s,
        "thresholds": [float(t) for t in result.thresholds],
        "base": base,
        "peak": process_memory()["peak"],
        "data_bytes": scores.nbytes + targets.nbytes,
    }


def run_dask(folder: Path, config: str, workers: int) -> dict[str, Any]:
    from distributed import Client

    import labelcut.tuning.stats  # noqa: F401  (the client's imports, before its baseline)
    from labelcut.app.engine import dask_run, open_dataset, tune_dataset

    base = process_memory()["rss"]
    started = time.perf_counter()
    cluster = dask_run.local_cluster(workers)
    try:
        with Client(cluster, set_as_default=False) as client:
            start_s = time.perf_counter() - started
            bases = client.run(warm_worker)
            result = tune_dataset(
                str(folder),
                scheduler=cluster.scheduler_address,
                tune_kwargs=CONFIGS[config],
            )
            wall = time.perf_counter() - started
            after = client.run(process_memory)
    finally:
        cluster.close()
    dataset = open_dataset(str(folder))
    largest = max(p.rows for p in dataset.partitions)
    return {
        "wall_s": wall,
        "cluster_start_s": start_s,
        "thresholds": [float(t) for t in result.thresholds],
        "base": base,
        "peak": process_memory()["peak"],
        "workers": [
            {"base": bases[address]["rss"], "peak": after[address]["peak"]} for address in after
        ],
        "partitions": len(dataset.partitions),
        "rows": dataset.rows,
        "partition_rows": largest,
        # Decoded: a float32 score and a 1-byte label per label and row (as read).
        "partition_bytes": largest * len(dataset.labels) * 5,
    }


def child(args: argparse.Namespace) -> None:
    folder = Path(args.dataset)
    if args.child == "memory":
        found = run_memory(folder, args.config)
    else:
        found = run_dask(folder, args.config, args.workers)
    print("RESULT " + json.dumps(found), flush=True)


def run_child(kind: str, folder: Path, config: str, workers: int) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", kind, "--dataset", str(folder), "--config", config,
        "--workers", str(workers),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{kind} / {config} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def tenth_dataset(folder: Path, files: int) -> Path:
    """A dataset of the first tenth of `folder`'s files (symbolic links, beside it)."""
    tenth = folder.with_name(folder.name + "-tenth")
    tenth.mkdir(exist_ok=True)
    for path in sorted(folder.glob("*.parquet"))[: max(1, files // 10)]:
        link = tenth / path.name
        if not link.exists():
            link.symlink_to(path)
    return tenth


def max_rise(dask: dict[str, Any]) -> int:
    """The largest peak rise over its baseline of any process of a Dask run."""
    rises = [dask["peak"] - dask["base"]]
    rises += [worker["peak"] - worker["base"] for worker in dask["workers"]]
    return max(rises)


def report(
    config: str, memory: dict[str, Any], dask: dict[str, Any], tenth: dict[str, Any] | None
) -> list[bool]:
    part = dask["partition_bytes"]
    equal = memory["thresholds"] == dask["thresholds"]
    print(f"\n== {config}: tune_thresholds(..., {CONFIGS[config] or 'defaults'})")
    print(
        f"in-memory : wall {memory['wall_s']:7.1f} s (read {memory['read_s']:.1f} s)   peak "
        f"{mb(memory['peak'])} (rise {mb(memory['peak'] - memory['base'])}; arrays "
        f"{mb(memory['data_bytes'])})"
    )
    print(
        f"dask      : wall {dask['wall_s']:7.1f} s (cluster start {dask['cluster_start_s']:.1f} "
        f"s)   client peak {mb(dask['peak'])} (rise {mb(dask['peak'] - dask['base'])})"
    )
    for i, worker in enumerate(dask["workers"]):
        print(
            f"  worker {i}: peak {mb(worker['peak'])} (rise {mb(worker['peak'] - worker['base'])})"
        )
    rise = max_rise(dask)
    print(
        f"  {dask['partitions']} partitions of at most {dask['partition_rows']:,} rows = "
        f"{mb(part)} decoded each; largest rise of a Dask process {mb(rise)} = "
        f"{rise / part:.0f} partitions"
    )
    met = [equal]
    print(f"goal: thresholds equal ................................ {'met' if equal else 'MISSED'}")
    if tenth is not None:
        small = max_rise(tenth)
        bounded = rise <= MEMORY_GOAL * small
        print(
            f"  on a tenth of the files ({tenth['rows']:,} rows, {tenth['partitions']} "
            f"partitions): largest rise {mb(small)}"
        )
        print(
            f"goal: Dask rise per process at n <= {MEMORY_GOAL:g}x at n/10 ....... "
            f"{'met' if bounded else 'MISSED'} ({rise / small:.2f}x)"
        )
        met.append(bounded)
    fast = dask["wall_s"] <= WALL_GOAL * memory["wall_s"]
    ratio = dask["wall_s"] / memory["wall_s"]
    print(
        f"goal: Dask wall <= {WALL_GOAL:g}x in-memory ......................... "
        f"{'met' if fast else 'MISSED'} ({ratio:.2f}x)"
    )
    return [*met, fast]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", dest="data_dir", default="/tmp/labelcut-bench-scale")
    parser.add_argument("--configs", default="per_label,defaults", help="comma-separated")
    parser.add_argument("--child", choices=("memory", "dask"), help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    folder = dataset_dir(args)
    write_dataset(folder, args.rows, args.labels, args.files, args.seed)
    load = os.getloadavg()
    print(
        f"dataset: {folder} ({args.rows:,} rows x {args.labels} labels = "
        f"{args.rows * args.labels:,} scores, {args.files} files); {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f}"
    )
    met = []
    for i, config in enumerate(args.configs.split(",")):
        memory = run_child("memory", folder, config, args.workers)
        dask = run_child("dask", folder, config, args.workers)
        # Once: the same tune on a tenth of the files, to show the rise does not grow with n.
        tenth = None
        if i == 0 and args.files >= 10:
            tenth = run_child("dask", tenth_dataset(folder, args.files), config, args.workers)
        met += report(config, memory, dask, tenth)
    print(f"\n{sum(met)} of {len(met)} goals met; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
