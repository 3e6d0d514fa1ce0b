"""`tune_dataset`: thresholds for a Parquet dataset, from mergeable statistics.

The plan (`labelcut.tuning.stats.plan_tuning`) says what each pass collects; the engine
reduces every partition for that pass, merges, and feeds the plan, until the plan is done:
`while (p := plan.next_pass()) is not None: plan.feed(merge(from_arrays(part, p) ...))`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from labelcut.app.engine.base import Progress
from labelcut.app.engine.dataset import open_dataset, read_model_spec
from labelcut.app.engine.partition import PartitionTask
from labelcut.app.engine.progress import Tracker

ENGINES = ("dask", "local")
MODES = ("exact", "quantised")


def tune_dataset(
    source: str,
    *,
    engine: str = "dask",
    scheduler: str | None = None,
    model_dir: str | None = None,
    device: str = "auto",
    mode: str = "exact",
    tune_kwargs: dict[str, Any] | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    partition_rows: int | None = None,
    n_workers: int = 2,
    storage_options: dict[str, Any] | None = None,
) -> Any:  # -> labelcut.tuning.TuningResult
    """Tune per-label thresholds on the Parquet dataset `source` without loading it whole.

    `source`: a directory, glob, file or fsspec URL (see `dataset.open_dataset`).
    `engine`: "dask" (a LocalCluster of `n_workers` processes, or the cluster at
    `scheduler`) or "local" (this process, one partition at a time). `model_dir`: the
    bundle that scores feature columns (on `device` of each worker; "auto": its GPU when it
    has one); with score columns it fixes the label order. `mode`: "exact" (the thresholds
    of `tune_thresholds` on all rows) or "quantised" (scores on a fixed grid first).
    `tune_kwargs`: `tune_thresholds`' keyword arguments (objective, strategy, n_bootstrap,
    ...); `label_names` defaults to the dataset's labels. `progress` is called after every
    partition; setting `cancel` raises `Cancelled` before the next partition.
    `partition_rows`: rows per partition at most (default: about 32 MB decoded; a Parquet
    row group is never split, small files share a partition).

    Raises `DatasetError` for a bad dataset (naming file, column, row), ValueError for bad
    options or a bad bundle, `Cancelled`, and ConnectionError for an unreachable scheduler.
    """
    plan_tuning = _plan_tuning()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    if engine == "local" and scheduler is not None:
        raise ValueError("scheduler is an option of the dask engine, not of the local one.")
    model = None if model_dir is None else read_model_spec(model_dir)
    dataset = open_dataset(
        source, model=model, partition_rows=partition_rows, storage_options=storage_options
    )
    kwargs = dict(tune_kwargs or {})
    kwargs.setdefault("label_names", dataset.labels)
    plan = plan_tuning(mode=mode, **kwargs)  # bad options fail here, before any work
    tasks = [
        PartitionTask(dataset.fs, part, dataset.layout, model_dir=model_dir, device=device)
        for part in dataset.partitions
    ]
    tracker = Tracker(
        partitions=len(tasks),
        rows=dataset.rows,
        passes=int(getattr(plan, "passes_planned", 1)),
        progress=progress,
        cancel=cancel,
        planned=lambda: int(getattr(plan, "passes_planned", 1)),
    )
    tracker.check_cancel()
    if engine == "local":
        from labelcut.app.engine.local_run import run_local

        run_local(plan, tasks, tracker)
    else:
        from labelcut.app.engine.dask_run import run_dask

        run_dask(plan, tasks, tracker, scheduler=scheduler, n_workers=n_workers)
    return plan.result()


def _plan_tuning() -> Callable[..., Any]:
    """`plan_tuning` of the statistics: SPEC-17 names `labelcut.tuning.stats`; the
    implementation keeps it in `stats_tuning`."""
    try:
        from labelcut.tuning.stats import plan_tuning  # type: ignore[attr-defined]
    except ImportError:
        from labelcut.tuning.stats_tuning import plan_tuning
    return plan_tuning
