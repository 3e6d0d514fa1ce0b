"""The dataset engine (issue 17): tune thresholds on a Parquet dataset too big for one
process, from mergeable statistics, on Dask or in-process.

    tune_dataset(source, *, engine="dask", scheduler=None, model_dir=None, device="auto",
                 mode="exact", tune_kwargs=None, progress=None, cancel=None,
                 partition_rows=None, n_workers=2) -> TuningResult
    open_dataset(source, *, model=None, partition_rows=None) -> Dataset  # footers only
    read_model_spec(model_dir) -> ModelSpec                              # manifest only
    Progress, Cancelled, DatasetError

Layout: `dataset` (files, schema checks, partitions), `partition` (read, check, score,
reduce one partition; runs on the workers), `local_run` and `dask_run` (the passes),
`progress` (reports and cancel), `tune` (the driver).
"""

from labelcut.app.engine.base import Cancelled, DatasetError, Progress
from labelcut.app.engine.dataset import (
    DEFAULT_PARTITION_BYTES,
    Dataset,
    ModelSpec,
    open_dataset,
    read_model_spec,
)
from labelcut.app.engine.tune import ENGINES, MODES, tune_dataset

__all__ = [
    "DEFAULT_PARTITION_BYTES",
    "ENGINES",
    "MODES",
    "Cancelled",
    "Dataset",
    "DatasetError",
    "ModelSpec",
    "Progress",
    "open_dataset",
    "read_model_spec",
    "tune_dataset",
]
