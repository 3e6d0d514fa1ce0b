"""Write validation rows as a Parquet dataset of several files (the dataset engine's input).

Real files in the upload format: one 0/1 column per label, then `score:<label>` columns
or feature columns.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def columns_table(
    targets: np.ndarray,
    labels: Sequence[str],
    *,
    scores: np.ndarray | None = None,
    features: np.ndarray | None = None,
    feature_names: Sequence[str] | None = None,
) -> pa.Table:
    """(n, L) targets with (n, L) scores or (n, d) features as one Arrow table."""
    columns: dict[str, np.ndarray] = {
        label: targets[:, j].astype(np.int8) for j, label in enumerate(labels)
    }
    if scores is not None:
        columns |= {f"score:{label}": scores[:, j] for j, label in enumerate(labels)}
    if features is not None:
        names = feature_names or [f"x{i}" for i in range(features.shape[1])]
        columns |= {name: features[:, i] for i, name in enumerate(names)}
    return pa.table(columns)


def write_dataset(
    folder: Path,
    table: pa.Table,
    *,
    cuts: Sequence[int],
    row_group_rows: int | None = None,
) -> list[Path]:
    """`table` split at row positions `cuts` into files part-000.parquet, ... in `folder`
    (file order = row order); each file in row groups of `row_group_rows`."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *sorted(cuts), table.num_rows]
    paths = []
    for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
        path = folder / f"part-{i:03d}.parquet"
        pq.write_table(table.slice(start, stop - start), path, row_group_size=row_group_rows)
        paths.append(path)
    return paths


def random_cuts(rng: np.random.Generator, n_rows: int, n_files: int) -> list[int]:
    """`n_files - 1` distinct cut positions in (0, n_rows): files of random sizes."""
    return sorted(rng.choice(np.arange(1, n_rows), size=n_files - 1, replace=False).tolist())
