"""One partition: read it, check its values, score it, reduce it to statistics.

Runs where the work runs (a Dask worker process, or the caller's process for the local
engine). Memory is bounded by the partition: its columns are decoded, checked, turned into
`(rows, L)` scores and 0/1 targets, reduced to `ScoreStats`, and dropped; only the
statistics leave. A bundle is loaded once per process (cached by directory and device) on
the process's own device (`device="auto"`: the worker's GPU where it has one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelcut.app.engine.base import DatasetError
from labelcut.app.engine.dataset import Layout, Partition, Piece

_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class PartitionTask:
    """Everything a worker needs to reduce one partition (small, picklable)."""

    fs: Any  # fsspec filesystem of the dataset
    partition: Partition
    layout: Layout
    model_dir: str | None = None
    device: str = "auto"


def reduce_partition(task: PartitionTask, pass_: Any) -> Any:
    """The partition's `ScoreStats` for pass `pass_` (chunk id: the partition's index)."""
    from labelcut.tuning.stats import ScoreStats

    scores, targets = partition_scores(task)
    return ScoreStats.from_arrays(scores, targets, pass_, chunk_id=task.partition.index)


def merge_group(*parts: Any) -> Any:
    """One node of the merge tree: the statistics of `parts` added up."""
    from labelcut.tuning.stats import merge_stats

    return merge_stats(list(parts))


def partition_scores(task: PartitionTask) -> tuple[np.ndarray, np.ndarray]:
    """(scores (r, L) float32/float64 in [0, 1], targets (r, L) uint8 0/1) of the partition,
    in label order; features are scored by the bundle. DatasetError names the file, column
    and row (from 1, within the file) of the first bad value.

    The arrays are column-major (filled as (L, r), transposed): the statistics work label by
    label, and take a column-major array without a transposing copy. A piece (one file's
    row groups) is decoded at a time into them."""
    layout = task.layout
    rows = task.partition.rows
    targets = np.empty((len(layout.labels), rows), dtype=np.uint8)
    if layout.score_columns is not None:
        scores = np.empty((len(layout.labels), rows), dtype=np.dtype(layout.score_dtype))
        for piece, start, table in _pieces(task):
            _fill_targets(targets, start, table, piece, layout.labels)
            for j, name in enumerate(layout.score_columns):
                scores[j, start : start + piece.rows] = _scores(table, piece, name, scores.dtype)
        return scores.T, targets.T
    assert layout.feature_columns is not None and task.model_dir is not None
    features = np.empty((len(layout.feature_columns), rows), dtype=np.float32)
    for piece, start, table in _pieces(task):
        _fill_targets(targets, start, table, piece, layout.labels)
        for j, name in enumerate(layout.feature_columns):
            features[j, start : start + piece.rows] = _finite(table, piece, name)
    model = cached_model(task.model_dir, task.device)
    inputs = np.ascontiguousarray(features.T).reshape(rows, *model.input_shape)
    del features
    from labelcut.app.scoring import score_inputs

    return score_inputs(model, inputs), targets.T


def _pieces(task: PartitionTask) -> Iterator[tuple[Piece, int, Any]]:
    """(piece, its first row within the partition, its table) for each piece in turn."""
    start = 0
    for piece in task.partition.pieces:
        yield piece, start, read_piece(task.fs, piece, task.layout.columns)
        start += piece.rows


def _fill_targets(
    targets: np.ndarray, start: int, table: Any, piece: Piece, labels: tuple[str, ...]
) -> None:
    for j, name in enumerate(labels):
        targets[j, start : start + piece.rows] = _labels(table, piece, name)


def read_piece(fs: Any, piece: Piece, columns: list[str]) -> Any:  # -> pyarrow.Table
    """One file's row groups of a partition, only the columns the layout uses."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open(piece.path, "rb") as fh:
            table = pq.ParquetFile(fh).read_row_groups(list(piece.row_groups), columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(
            f"File '{piece.path}' cannot be read (row groups {_span(piece.row_groups)}): {exc}"
        ) from None
    if table.num_rows != piece.rows:
        raise DatasetError(
            f"File '{piece.path}' row groups {_span(piece.row_groups)} hold {table.num_rows} "
            f"rows; its footer declares {piece.rows}."
        )
    return table


def cached_model(model_dir: str, device: str) -> Any:
    """The bundle in `model_dir` on `device`, loaded once per process."""
    key = (model_dir, device)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from labelcut.models import load_model

            model = _MODELS[key] = load_model(model_dir, device=device)
    return model


def _span(groups: tuple[int, ...]) -> str:
    return str(groups[0]) if len(groups) == 1 else f"{groups[0]}-{groups[-1]}"


def _where(part: Piece, index: int) -> str:
    return f"row {part.first_row + index + 1} of file '{part.path}'"


def _column(table: Any, part: Piece, name: str, dtype: np.dtype) -> np.ndarray:
    import pyarrow.compute as pc

    column = table.column(name)
    if column.null_count:
        index = int(pc.index(pc.is_null(column), True).as_py())
        raise DatasetError(f"Column '{name}' has an empty value at {_where(part, index)}.")
    return column.to_numpy().astype(dtype, copy=False)


def _finite(table: Any, part: Piece, name: str) -> np.ndarray:
    values = _column(table, part, name, np.dtype(np.float32))
    bad = ~np.isfinite(values)
    if bad.any():
        index = int(np.argmax(bad))
        raise DatasetError(
            f"Column '{name}' holds a non-finite value ({values[index]}) at {_where(part, index)}."
        )
    return values


def _scores(table: Any, part: Piece, name: str, dtype: np.dtype) -> np.ndarray:
    values = _column(table, part, name, dtype)
    bad = ~((values >= 0) & (values <= 1))  # NaN fails both comparisons
    if bad.any():
        index = int(np.argmax(bad))
        raise DatasetError(
            f"Score column '{name}' must hold probabilities in [0, 1]; {_where(part, index)} "
            f"holds {values[index]}."
        )
    return values


def _labels(table: Any, part: Piece, name: str) -> np.ndarray:
    values = _column(table, part, name, np.dtype(np.float64))
    bad = ~((values == 0) | (values == 1))
    if bad.any():
        index = int(np.argmax(bad))
        raise DatasetError(
            f"Label column '{name}' must hold only 0 and 1; {_where(part, index)} holds "
            f"{values[index]:g}."
        )
    return values.astype(np.uint8)
