"""A Parquet dataset named by a directory, a glob or an fsspec URL: its files, what its
columns mean, and its partitions.

Only the Parquet footers are read here (on the client, a few files at a time): the schema
of every file, checked like today's uploads (`labelcut.app.uploads`), and the row groups,
packed into partitions of at most `partition_rows` rows (default: about
`DEFAULT_PARTITION_BYTES` decoded; a row group is never split, small files share one).
The values themselves are checked where a partition is read (`partition.partition_scores`).

Columns (the upload format): one 0/1 column per label, named as the label, and either
`score:<label>` columns (probabilities in [0, 1]) or feature columns, which need a model
bundle to score them. Without a bundle the labels are the score columns' (file order); with
one they are the model's, in its order.
"""

from __future__ import annotations

import glob as _glob
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelcut.app.engine.base import DatasetError
from labelcut.app.upload_classes import CLASS_COLUMN
from labelcut.app.uploads import SCORE_PREFIX

PARQUET_SUFFIXES = (".parquet", ".pq")
#: What one partition decodes to by default: rows per partition = this / a row's bytes, so
#: a worker's memory does not depend on the number of labels or features. Small enough to
#: spread over the workers, large enough that merging statistics stays a small part of the
#: work (each partition's statistics are merged once).
DEFAULT_PARTITION_BYTES = 32 << 20
_PARTITION_ROWS_BOUNDS = (1 << 10, 1 << 22)
#: Footers read at once (remote stores answer slowly, one request per file).
_FOOTER_THREADS = 8
_LISTED = 20  # columns named in one message at most


@dataclass(frozen=True)
class ModelSpec:
    """What the dataset engine needs of a bundle, from its manifest (nothing is loaded)."""

    directory: str
    name: str
    sha256: str
    labels: tuple[str, ...]
    input_shape: tuple[int, ...]
    feature_names: tuple[str, ...] | None

    @property
    def n_features(self) -> int:
        size = 1
        for axis in self.input_shape:
            size *= axis
        return size


@dataclass(frozen=True)
class Layout:
    """What the columns are: label columns (0/1), and score columns or feature columns."""

    labels: tuple[str, ...]
    score_columns: tuple[str, ...] | None  # score:<label>, in `labels` order
    feature_columns: tuple[str, ...] | None  # in the model's input order
    score_dtype: str  # "float32" | "float64": the dtype the scores are tuned in

    @property
    def columns(self) -> list[str]:
        """Every column a partition reads."""
        return [*self.labels, *(self.score_columns or self.feature_columns or ())]


@dataclass(frozen=True)
class Piece:
    """Row groups `row_groups` of file `path` (as the dataset's filesystem names it): `rows`
    rows starting at row `first_row` (0-based) of that file."""

    path: str
    row_groups: tuple[int, ...]
    first_row: int
    rows: int


@dataclass(frozen=True)
class Partition:
    """What one task reads: consecutive row groups, of one file or of several small files
    in a row (`pieces`, in dataset order), at most `partition_rows` rows unless one row
    group alone is larger. `index` is its place in the dataset (file order, then row
    order): the stable chunk id of its statistics."""

    index: int
    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        return sum(piece.rows for piece in self.pieces)


@dataclass(frozen=True)
class Dataset:
    """A resolved, schema-checked dataset. `fs` is an fsspec filesystem (picklable: it
    travels to the workers with each partition)."""

    source: str
    fs: Any
    files: tuple[str, ...]
    layout: Layout
    partitions: tuple[Partition, ...]
    rows: int
    model: ModelSpec | None

    @property
    def labels(self) -> list[str]:
        return list(self.layout.labels)


def read_model_spec(model_dir: str | Path) -> ModelSpec:
    """The bundle's labels and inputs from its manifest; `BundleError` (a ValueError) for a
    bad bundle, ValueError for a softmax one (the engine tunes per-label thresholds)."""
    from labelcut.models.manifest import read_manifest

    manifest = read_manifest(model_dir)
    if manifest.activation != "sigmoid":
        raise ValueError(
            f"The bundle in '{model_dir}' is a multi-class (softmax) model; the dataset engine "
            "tunes per-label thresholds of multi-label (sigmoid) models."
        )
    names = manifest.feature_names
    return ModelSpec(
        directory=str(model_dir),
        name=manifest.name,
        sha256=manifest.weights.sha256,
        labels=tuple(manifest.labels),
        input_shape=tuple(manifest.input_shape),
        feature_names=None if names is None else tuple(names),
    )


def open_dataset(
    source: str,
    *,
    model: ModelSpec | None = None,
    partition_rows: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Dataset:
    """Resolve `source` into files, check every file's schema, and cut it into partitions.

    `source`: a directory (every `.parquet`/`.pq` file below it, names starting with `_` or
    `.` skipped, as Spark and Dask write `_SUCCESS` and `_metadata`), a glob, one file, or
    any of those as an fsspec URL (`s3://bucket/set/`, `memory://...`). Raises
    `DatasetError` naming the file and column at fault."""
    if partition_rows is not None and partition_rows < 1:
        raise ValueError(f"partition_rows must be >= 1; got {partition_rows}.")
    fs, files = list_files(source, storage_options)
    footers = _read_footers(fs, files)
    layout = _check_schemas(files, [schema for schema, _ in footers], model)
    limit = partition_rows or default_partition_rows(layout)
    partitions = _cut(files, [groups for _, groups in footers], limit)
    rows = sum(p.rows for p in partitions)
    if rows == 0:
        raise DatasetError(f"The dataset '{source}' has no rows ({len(files)} file(s), all empty).")
    return Dataset(source, fs, tuple(files), layout, tuple(partitions), rows, model)


def default_partition_rows(layout: Layout) -> int:
    """Rows of about DEFAULT_PARTITION_BYTES decoded: per row, a 1-byte label, and a score
    (4 or 8 bytes) per label or a float32 per feature plus the float32 scores."""
    labels = len(layout.labels)
    if layout.score_columns is not None:
        row_bytes = labels * (1 + (8 if layout.score_dtype == "float64" else 4))
    else:
        row_bytes = labels * 5 + 4 * len(layout.feature_columns or ())
    low, high = _PARTITION_ROWS_BOUNDS
    return max(low, min(high, DEFAULT_PARTITION_BYTES // max(row_bytes, 1)))


def list_files(source: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    """(filesystem, sorted file paths) of `source`; DatasetError when it names none."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    except (ValueError, ImportError, OSError) as exc:
        raise DatasetError(f"Cannot open the dataset '{source}': {exc}") from None
    try:
        if _glob.has_magic(path):
            found = fs.glob(path, detail=True)
            files = [name for name, info in found.items() if info.get("type") != "directory"]
        elif fs.isdir(path):
            files = [
                name
                for name in fs.find(path)
                if name.lower().endswith(PARQUET_SUFFIXES) and not _hidden(name, path)
            ]
        elif fs.exists(path):
            files = [path]
        else:
            raise DatasetError(
                f"The dataset '{source}' does not exist (no such file or directory)."
            )
    except OSError as exc:
        raise DatasetError(f"Cannot list the dataset '{source}': {exc}") from None
    if not files:
        raise DatasetError(
            f"The dataset '{source}' holds no Parquet files ({' or '.join(PARQUET_SUFFIXES)})."
        )
    return fs, sorted(files)


def _hidden(name: str, root: str) -> bool:
    relative = name[len(root) :].lstrip("/")
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def _read_footers(fs: Any, files: Sequence[str]) -> list[tuple[Any, list[int]]]:
    """(arrow schema, rows per row group) of every file, a few files at a time."""
    threads = max(1, min(_FOOTER_THREADS, len(files)))
    with ThreadPoolExecutor(threads, thread_name_prefix="labelcut-footer") as pool:
        return list(pool.map(lambda path: _read_footer(fs, path), files))


def _read_footer(fs: Any, path: str) -> tuple[Any, list[int]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as fh:
            meta = pq.ParquetFile(fh)
            schema = meta.schema_arrow
            groups = [meta.metadata.row_group(i).num_rows for i in range(meta.num_row_groups)]
            declared = meta.metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"File '{path}' is not a readable Parquet file: {exc}") from None
    if any(n < 0 for n in groups) or declared != sum(groups):
        raise DatasetError(
            f"File '{path}': the footer declares {declared} rows but its row groups hold "
            f"{sum(groups)}; the file's metadata is damaged."
        )
    return schema, groups


def _cut(files: Sequence[str], group_rows: Sequence[list[int]], limit: int) -> list[Partition]:
    """The row groups of all files, in order, packed into partitions of at most `limit`
    rows (a row group is never split; small files share a partition, which keeps the
    number of statistics to merge, and so the merge work, proportional to rows / limit)."""
    found: list[Partition] = []
    pieces: list[Piece] = []
    rows = 0

    def close_partition() -> None:
        nonlocal pieces, rows
        if pieces:
            found.append(Partition(len(found), tuple(pieces)))
        pieces, rows = [], 0

    for path, groups in zip(files, group_rows, strict=True):
        offset = 0
        current: list[int] = []
        first = 0
        for group, n in enumerate(groups):
            if n and rows + n > limit and (pieces or current):
                if current:
                    pieces.append(Piece(path, tuple(current), first, offset - first))
                    current = []
                close_partition()
            if n:
                if not current:
                    first = offset
                current.append(group)
                rows += n
            offset += n
        if current:
            pieces.append(Piece(path, tuple(current), first, offset - first))
    close_partition()
    return found


def _check_schemas(files: Sequence[str], schemas: Sequence[Any], model: ModelSpec | None) -> Layout:
    """Every file holds the same columns, each numeric; the layout from the first file."""
    first, reference = files[0], schemas[0]
    names = [str(n) for n in reference.names]
    for path, schema in zip(files, schemas, strict=True):
        found = [str(n) for n in schema.names]
        if len(set(found)) != len(found):
            duplicates = sorted({c for c in found if found.count(c) > 1})
            raise DatasetError(f"File '{path}' has duplicate columns: {duplicates}.")
        if set(found) != set(names):
            missing = [c for c in names if c not in set(found)]
            extra = [c for c in found if c not in set(names)]
            raise DatasetError(
                f"File '{path}' has other columns than '{first}' (the files of a dataset must "
                f"share one schema): missing {missing[:_LISTED]}, extra {extra[:_LISTED]}."
            )
        for field in schema:
            if not _is_numeric(field.type):
                raise DatasetError(
                    f"Column '{field.name}' of file '{path}' must be numeric (integer, float or "
                    f"boolean); the file declares it as {field.type}."
                )
    layout = _layout(first, names, model)
    return _with_score_dtype(layout, reference)


def _layout(path: str, names: list[str], model: ModelSpec | None) -> Layout:
    scores_given = [c for c in names if c.startswith(SCORE_PREFIX)]
    if model is None:
        if not scores_given:
            raise DatasetError(
                f"File '{path}' has no '{SCORE_PREFIX}<label>' columns, so its columns are "
                "labels and features, and features need a model bundle to score them "
                "(pass model_dir, or --model on the command line)."
            )
        labels = [c.removeprefix(SCORE_PREFIX) for c in scores_given]
    else:
        labels = list(model.labels)
    if CLASS_COLUMN in names and CLASS_COLUMN not in labels:
        raise DatasetError(
            f"File '{path}' has a '{CLASS_COLUMN}' column (one class per row); the dataset "
            "engine tunes multi-label sets: give one 0/1 column per label instead."
        )
    missing = [label for label in labels if label not in names]
    if missing:
        raise DatasetError(
            f"File '{path}' has no column for label(s) {missing[:_LISTED]}; it needs one 0/1 "
            f"column per label ({labels[:_LISTED]})."
        )
    rest = [c for c in names if c not in set(labels)]
    if scores_given:
        expected = [SCORE_PREFIX + label for label in labels]
        _require(path, rest, expected, what="score")
        return Layout(tuple(labels), tuple(expected), None, "float32")
    assert model is not None  # no score columns without a model was refused above
    if model.feature_names is not None:
        _require(path, rest, list(model.feature_names), what="feature")
        features = list(model.feature_names)
    elif len(rest) != model.n_features:
        raise DatasetError(
            f"File '{path}' has {len(rest)} feature columns besides the labels; the model "
            f"takes {model.n_features} inputs per row (input shape {model.input_shape})."
        )
    else:
        features = rest
    return Layout(tuple(labels), None, tuple(features), "float32")


def _require(path: str, found: Sequence[str], expected: Sequence[str], *, what: str) -> None:
    missing = [c for c in expected if c not in set(found)]
    extra = [c for c in found if c not in set(expected)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {what} column(s) {missing[:_LISTED]}")
        if extra:
            parts.append(f"unexpected column(s) {extra[:_LISTED]}")
        raise DatasetError(f"File '{path}': the columns do not match: {'; '.join(parts)}.")


def _with_score_dtype(layout: Layout, schema: Any) -> Layout:
    """Scores are tuned in float64 when the first file stores any score as float64 (as an
    upload of that file would be), else in float32; every partition is cast to it, so the
    thresholds do not depend on which file a row came from."""
    import pyarrow as pa

    if layout.score_columns is None:
        return layout  # the model's scores: float32
    wide = any(pa.types.is_float64(schema.field(c).type) for c in layout.score_columns)
    if not wide:
        return layout
    return Layout(layout.labels, layout.score_columns, None, "float64")


def _is_numeric(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
