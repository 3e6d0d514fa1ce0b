"""What every part of the dataset engine shares: progress reports, cancellation, errors."""

from __future__ import annotations

from dataclasses import dataclass


class DatasetError(ValueError):
    """A dataset that cannot be tuned from; the message names the file, the column and
    (for a bad value) the row, counted from 1 within that file. The service answers 4xx.

    One positional argument only, so it pickles across Dask workers unchanged."""


class Cancelled(Exception):
    """The tune was cancelled (its `cancel` event was set); raised between partitions."""


@dataclass(frozen=True)
class Progress:
    """Where a tune stands, as reported after every partition of every pass.

    `pass_index` is 1-based; `passes` is the plan's upper bound on passes (the plan may end
    sooner). `partitions_done` / `rows_done` count the current pass; `rows` is the
    dataset's total row count (from the Parquet footers, so known up front)."""

    pass_index: int
    passes: int
    partitions_done: int
    partitions: int
    rows_done: int
    rows: int | None
    elapsed_s: float
