"""Read an uploaded validation file into checked arrays in the model's label order.

Supported formats (chosen by file extension, else by content type):

* `.npz`: arrays `Y` (n, L) 0/1, or `y` (n,) one class per row (integers indexing
  `label_names`, else the model's labels; or class names), plus `X` (n, *input_shape) or
  `scores` (n, L); optional `label_names` (L,) and `feature_names` (d,) reorder columns
  by name.
  Loaded with `allow_pickle=False`; declared shapes are checked before inflating.
* `.csv` / `.parquet`: one 0/1 column per model label, named as the label, and
  either feature columns (named as the bundle's feature names, else taken in
  order) or score columns named `score:<label>`. Instead of the label columns, a
  multi-class file may have one `label` column naming each row's class.

Every problem raises `UploadError` whose message names the column, row, array or
label at fault. Rows are counted from 1, the header not included.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from labelcut.app.upload_classes import (
    CLASS_ARRAY,
    ClassTargetError,
    class_column_for,
    classes_from_array,
    classes_from_column,
    is_class_column_type,
    one_hot,
)

SCORE_PREFIX = "score:"
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".7z", ".tar")
FORMATS = ("npz", "csv", "parquet")
_CONTENT_TYPES = {
    "application/x-npz": "npz",
    "application/npz": "npz",
    "application/zip": "npz",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
}


class UploadError(ValueError):
    """An uploaded file cannot be used; `status_code` is the HTTP status to answer."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class InputSpec:
    """What the loaded model expects: label order, per-row input shape, feature names."""

    labels: Sequence[str]
    input_shape: tuple[int, ...]
    feature_names: Sequence[str] | None = None

    @property
    def n_features(self) -> int:
        return int(np.prod(self.input_shape))


@dataclass(frozen=True)
class ValidationData:
    """Validation rows in model label order: targets plus either inputs or scores.

    `classes` is set when the file gave one class per row (`y`, or a `label` column):
    then `targets` is its one-hot form.
    """

    targets: np.ndarray  # (n, L) uint8 0/1
    inputs: np.ndarray | None = None  # (n, *input_shape) float32
    scores: np.ndarray | None = None  # (n, L) float32 probabilities
    classes: np.ndarray | None = None  # (n,) int64 class index per row, model label order

    @property
    def n_samples(self) -> int:
        return int(self.targets.shape[0])


def detect_format(filename: str | None, content_type: str | None) -> str:
    """'npz', 'csv' or 'parquet' from the file name's extension, else its content type."""
    name = (filename or "").lower()
    if name.endswith(_COMPRESSED_SUFFIXES):
        # Clients guess 'text/csv' for 'data.csv.gz'; never parse the compressed bytes as CSV.
        raise UploadError(
            f"The file '{filename}' is compressed ({name.rsplit('.', 1)[-1]}); send the .csv "
            "or .parquet uncompressed, or a .npz (which may be compressed).",
            status_code=415,
        )
    for fmt, extensions in (
        ("npz", (".npz",)),
        ("csv", (".csv",)),
        ("parquet", (".parquet", ".pq")),
    ):
        if name.endswith(extensions):
            return fmt
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in _CONTENT_TYPES:
        return _CONTENT_TYPES[kind]
    raise UploadError(
        f"Unsupported file format for '{filename or '(no name)'}' (content type "
        f"'{content_type or 'none'}'): send a .npz, .csv or .parquet file.",
        status_code=415,
    )


def read_validation_file(
    fileobj: IO[bytes], fmt: str, spec: InputSpec, *, max_data_bytes: int
) -> ValidationData:
    """Parse `fileobj` (seekable, binary) in format `fmt` into `ValidationData`."""
    try:
        if fmt == "npz":
            return _read_npz(fileobj, spec, max_data_bytes)
        class_column = class_column_for(spec.labels)
        if fmt == "csv":
            table = _read_csv(fileobj, max_data_bytes, class_column)
            return _table_to_data(table, spec, max_data_bytes)
        if fmt == "parquet":
            table = _read_parquet(fileobj, max_data_bytes, class_column)
            return _table_to_data(table, spec, max_data_bytes)
    except ClassTargetError as exc:
        raise UploadError(str(exc)) from None
    raise UploadError(f"Unknown format '{fmt}'; expected one of {', '.join(FORMATS)}.", 415)


# --- NPZ ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NpyHeader:
    """What a member's .npy header declares, read without inflating the data."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    header_bytes: int  # magic + header length, where the data starts in the member

    @property
    def data_bytes(self) -> int:
        return _declared_bytes(self.shape, self.dtype)


# No axis of an array can be longer than this (numpy's intp); a declared axis past it,
# even with another axis of length 0, is a lie about the array, not a big array.
_MAX_AXIS = 2**62


def _npy_header(archive: zipfile.ZipFile, member: str) -> _NpyHeader:
    """Shape, order and dtype declared by a member's .npy header, checked for sanity."""
    name = member.removesuffix(".npy")
    try:
        with archive.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise UploadError(
                    f"Array '{name}' uses .npy format version {version}, "
                    "which is not supported (use 1.0 or 2.0)."
                )
            header_bytes = fh.tell()
    except UploadError:
        raise
    except _ZIP_MEMBER_ERRORS as exc:
        raise UploadError(
            f"Array '{name}' in the .npz file is not a valid .npy array: {exc}"
        ) from exc
    except Exception as exc:
        # numpy parses the header's text as a Python literal: unbalanced brackets raise
        # SyntaxError or tokenize.TokenError, a deep nesting RecursionError/MemoryError.
        raise UploadError(
            f"Array '{name}' in the .npz file has an unreadable .npy header "
            f"({type(exc).__name__}: {str(exc)[:200]})."
        ) from exc
    if any(s < 0 for s in shape):
        raise UploadError(f"Array '{name}' declares a negative dimension in its shape {shape}.")
    if any(s > _MAX_AXIS for s in shape):
        raise UploadError(
            f"Array '{name}' declares an axis longer than any array can be "
            f"({max(shape)} > 2**62) in its shape."
        )
    if dtype.hasobject:
        raise UploadError(
            f"Array '{name}' holds Python objects (a pickled array); labelcut never "
            "unpickles uploads. Save plain numeric or string arrays."
        )
    if dtype.itemsize == 0:
        raise UploadError(f"Array '{name}' has an element type of size 0 ({dtype.str}).")
    return _NpyHeader(tuple(int(s) for s in shape), bool(fortran), dtype, header_bytes)


# zipfile raises NotImplementedError for an unsupported compression method and
# RuntimeError for an encrypted member: both are the sender's problem, not ours.
_ZIP_MEMBER_ERRORS = (
    ValueError,
    OSError,
    zipfile.BadZipFile,
    EOFError,
    NotImplementedError,
    RuntimeError,
)


def _declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    # Python integers: np.prod would wrap around at 2**63 and let a huge shape pass.
    return math.prod(shape) * dtype.itemsize


def _read_npz(fileobj: IO[bytes], spec: InputSpec, max_data_bytes: int) -> ValidationData:
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"The file is not a valid .npz archive: {exc}.") from exc
    with archive:
        members, wanted = _npz_members(archive)
        has_x = "X" in wanted
        headers = _npz_headers(archive, members, wanted, max_data_bytes, len(spec.labels))
        arrays = {
            name: _load_member(archive, members[name], name, header)
            for name, header in headers.items()
        }

    names = arrays.get("label_names")
    classes = None
    if "Y" in arrays:
        targets = _check_targets_array(arrays["Y"], n_labels=len(spec.labels))
        order = _label_order(names, spec.labels, n_found=targets.shape[1])
        targets = targets[:, order]
    else:
        order = _label_order(names, spec.labels, n_found=len(spec.labels))
        file_names = None if names is None else [str(n) for n in names.tolist()]
        classes = classes_from_array(arrays[CLASS_ARRAY], spec.labels, file_names)
        targets = one_hot(classes, len(spec.labels))
    n = targets.shape[0]
    if has_x:
        inputs = _check_inputs_array(arrays["X"], spec, n, arrays.get("feature_names"))
        return ValidationData(targets=targets, inputs=inputs, classes=classes)
    scores = _check_scores_array(arrays["scores"], n, len(spec.labels))[:, order]
    return ValidationData(targets=targets, scores=scores, classes=classes)


def _npz_members(archive: zipfile.ZipFile) -> tuple[dict[str, str], list[str]]:
    """The archive's arrays by name, and the ones a validation file uses (refused if the
    required ones are missing)."""
    members = {m.removesuffix(".npy"): m for m in archive.namelist() if m.endswith(".npy")}
    if "Y" not in members and CLASS_ARRAY not in members:
        raise UploadError(
            f"The .npz file has no array 'Y' (the 0/1 labels) nor '{CLASS_ARRAY}' (one class "
            f"per row); it holds {sorted(members) or 'no arrays'}."
        )
    has_x, has_scores = "X" in members, "scores" in members
    if has_x == has_scores:
        raise UploadError(
            "The .npz file must hold exactly one of 'X' (model inputs) or 'scores' "
            f"(probabilities) next to the labels; it holds {sorted(members)}."
        )
    # 'Y' wins when both are there (it also says which rows have several labels).
    wanted = ["Y" if "Y" in members else CLASS_ARRAY, "X" if has_x else "scores"]
    wanted += [n for n in ("label_names", "feature_names") if n in members]
    return members, wanted


def _npz_headers(
    archive: zipfile.ZipFile,
    members: dict[str, str],
    wanted: list[str],
    max_data_bytes: int,
    n_labels: int,
) -> dict[str, _NpyHeader]:
    """Every wanted member's header, with the sizes checked before a byte is inflated: the
    declared arrays (plus the one-hot targets built from a class array `y`) must fit
    `max_data_bytes`, and each zip member's inflated size must be what its .npy header says
    (a member that claims to inflate to more is refused)."""
    headers = {name: _npy_header(archive, members[name]) for name in wanted}
    declared = _npz_declared_bytes(headers, n_labels)
    if declared > max_data_bytes:
        raise UploadError(
            f"The .npz arrays would take {declared / 2**20:.1f} MB once inflated, over the "
            f"limit of {max_data_bytes / 2**20:.1f} MB (LABELCUT_MAX_DATA_MB).",
            status_code=413,
        )
    for name, header in headers.items():
        inflated = archive.getinfo(members[name]).file_size
        expected = header.header_bytes + header.data_bytes
        if inflated != expected:
            raise UploadError(
                f"Array '{name}' in the .npz file inflates to {inflated} bytes, but its .npy "
                f"header declares {expected} ({header.shape} of {header.dtype.str}); "
                "the archive is damaged or forged."
            )
    return headers


def _npz_declared_bytes(headers: dict[str, _NpyHeader], n_labels: int) -> int:
    declared = sum(header.data_bytes for header in headers.values())
    if CLASS_ARRAY in headers:  # its one-hot (n, L) uint8 targets
        declared += math.prod(headers[CLASS_ARRAY].shape[:1]) * n_labels
    return declared


def npz_data_bytes(fileobj: IO[bytes], spec: InputSpec, max_data_bytes: int) -> int:
    """Bytes the arrays of a .npz validation file declare, checked as `read_validation_file`
    checks them but without inflating anything (for the memory budget of a tune)."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"The file is not a valid .npz archive: {exc}.") from exc
    with archive:
        members, wanted = _npz_members(archive)
        headers = _npz_headers(archive, members, wanted, max_data_bytes, len(spec.labels))
    fileobj.seek(0)
    return _npz_declared_bytes(headers, len(spec.labels))


_READ_CHUNK = 1 << 20


def _load_member(
    archive: zipfile.ZipFile, member: str, name: str, header: _NpyHeader
) -> np.ndarray:
    """Inflate one member into an array of its declared shape, a chunk at a time, never
    past the declared size: the stream must end exactly where the header says."""
    flat = np.empty(math.prod(header.shape), dtype=header.dtype)
    view = memoryview(flat.view(np.uint8).reshape(-1))
    try:
        with archive.open(member) as fh:
            fh.seek(header.header_bytes)
            done = 0
            while done < len(view):
                chunk = fh.read(min(_READ_CHUNK, len(view) - done))
                if not chunk:
                    raise UploadError(
                        f"Array '{name}' in the .npz file is truncated: its data ends after "
                        f"{done} of {len(view)} bytes."
                    )
                view[done : done + len(chunk)] = chunk
                done += len(chunk)
            if fh.read(1):
                raise UploadError(
                    f"Array '{name}' in the .npz file holds more data than its header "
                    f"declares ({header.shape} of {header.dtype.str})."
                )
    except UploadError:
        raise
    except _ZIP_MEMBER_ERRORS as exc:
        raise UploadError(f"Array '{name}' in the .npz file cannot be read: {exc}") from exc
    return flat.reshape(header.shape, order="F" if header.fortran_order else "C")


def _show(value: np.generic) -> str:
    """A value as the sender wrote it: 1.5, nan, 2 (not numpy's np.float32(1.5))."""
    return repr(value.item())


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _check_targets_array(y: np.ndarray, n_labels: int) -> np.ndarray:
    if y.ndim != 2:
        raise UploadError(f"Array 'Y' must be 2-D (rows, labels); it has shape {y.shape}.")
    if y.shape[0] == 0:
        raise UploadError("Array 'Y' has no rows; tuning needs at least one validation row.")
    if y.shape[1] != n_labels:
        raise UploadError(
            f"Array 'Y' has {y.shape[1]} label columns; the model has {n_labels} labels."
        )
    if y.dtype.kind not in "biuf":
        raise UploadError(f"Array 'Y' must be numeric 0/1; it has dtype {y.dtype}.")
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        row, col = _first_bad(bad)
        raise UploadError(
            f"Array 'Y' must hold only 0 and 1; row {row + 1}, label column {col + 1} "
            f"holds {_show(y[row, col])}."
        )
    return y.astype(np.uint8, copy=False)


def _label_order(names: np.ndarray | None, labels: Sequence[str], n_found: int) -> np.ndarray:
    """Column index in the file of each model label (identity when the file has no names)."""
    if names is None:
        return np.arange(n_found)
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise UploadError("Array 'label_names' must be a 1-D array of strings.")
    found = [str(n) for n in names.tolist()]
    if len(found) != n_found:
        raise UploadError(
            f"Array 'label_names' has {len(found)} names but 'Y' has {n_found} columns."
        )
    _require_same_names(found, labels, what="label_names")
    position = {name: i for i, name in enumerate(found)}
    return np.array([position[label] for label in labels])


def _require_same_names(found: Sequence[str], expected: Sequence[str], what: str) -> None:
    missing = [n for n in expected if n not in set(found)]
    extra = [n for n in found if n not in set(expected)]
    if missing or extra or len(set(found)) != len(found):
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unknown {extra}")
        if len(set(found)) != len(found):
            parts.append("duplicate names")
        raise UploadError(
            f"'{what}' does not match the model: {'; '.join(parts)} "
            f"(the model expects {list(expected)})."
        )


def _check_finite(x: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        index = _first_bad(bad)
        raise UploadError(
            f"Array '{name}' holds a non-finite value ({_show(x[index])}) at row {index[0] + 1}"
            + (f", column {index[1] + 1}" if len(index) > 1 else "")
            + "."
        )


def _check_inputs_array(
    x: np.ndarray, spec: InputSpec, n: int, feature_names: np.ndarray | None
) -> np.ndarray:
    expected = (n, *spec.input_shape)
    if x.dtype.kind not in "biuf":
        raise UploadError(f"Array 'X' must be numeric; it has dtype {x.dtype}.")
    if x.shape != expected:
        raise UploadError(
            f"Array 'X' has shape {x.shape}; expected {expected} "
            f"({n} rows as in 'Y', each of the model's input shape {spec.input_shape})."
        )
    x = x.astype(np.float32, copy=False)
    if feature_names is not None and spec.feature_names is not None and len(spec.input_shape) == 1:
        if feature_names.ndim != 1 or feature_names.dtype.kind not in "US":
            raise UploadError(
                "Array 'feature_names' must be a 1-D array of strings; it has dtype "
                f"{feature_names.dtype} and shape {feature_names.shape}."
            )
        found = [str(f) for f in feature_names.tolist()]
        _require_same_names(found, spec.feature_names, what="feature_names")
        if found != list(spec.feature_names):
            position = {name: i for i, name in enumerate(found)}
            x = x[:, [position[f] for f in spec.feature_names]]
    _check_finite(x, "X")
    return x


def _check_scores_array(scores: np.ndarray, n: int, n_labels: int) -> np.ndarray:
    if scores.dtype.kind not in "biuf":
        raise UploadError(f"Array 'scores' must be numeric; it has dtype {scores.dtype}.")
    if scores.shape != (n, n_labels):
        raise UploadError(
            f"Array 'scores' has shape {scores.shape}; expected {(n, n_labels)} "
            "(one row per row of 'Y', one column per model label)."
        )
    scores = scores.astype(np.float32, copy=False)
    _check_finite(scores, "scores")
    bad = (scores < 0) | (scores > 1)
    if bad.any():
        row, col = _first_bad(bad)
        raise UploadError(
            f"Array 'scores' must hold probabilities in [0, 1]; row {row + 1}, column "
            f"{col + 1} holds {_show(scores[row, col])}."
        )
    return scores


# --- CSV and Parquet ---------------------------------------------------------------------


def _csv_error(exc: Exception) -> UploadError:
    message = str(exc).split("\n")[0]
    if "Empty CSV file" in message:
        return UploadError("The CSV file is empty: expected a header row and data rows.")
    return UploadError(f"The CSV file cannot be parsed: {message}")


def _read_csv(
    fileobj: IO[bytes], max_data_bytes: int, class_column: str | None = None
):  # -> pyarrow.Table
    """Decode a block (4 MB of text) at a time, refusing once the decoded columns pass
    `max_data_bytes`: a CSV of short cells ("0,") decodes to 4x its size or more.
    `class_column`, when the file has it, is read as text (class "3" stays a name)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    errors = (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError)
    try:
        reader = pacsv.open_csv(
            fileobj,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            # Only an empty field is missing; 'nan' stays a (non-finite) number, reported as such.
            convert_options=pacsv.ConvertOptions(
                null_values=[""],
                strings_can_be_null=False,
                column_types={class_column: pa.string()} if class_column else None,
            ),
        )
        batches = []
        decoded = 0
        for batch in reader:
            decoded += batch.nbytes
            if decoded > max_data_bytes:
                raise UploadError(
                    f"The CSV file decodes to more than {max_data_bytes / 2**20:.1f} MB "
                    f"(past row {sum(len(b) for b in batches) + len(batch)}), over the limit "
                    "(LABELCUT_MAX_DATA_MB).",
                    status_code=413,
                )
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except errors as exc:
        raise _csv_error(exc) from exc


def csv_data_bytes(fileobj: IO[bytes], spec: InputSpec, max_data_bytes: int) -> int:
    """An estimate of what a CSV decodes to, from its first 1 MB: rows (file size over the
    sampled bytes per row) x columns x 8 bytes. Only an estimate: the decode itself is
    bounded by `max_data_bytes` as it goes."""
    del spec, max_data_bytes
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    sample = fileobj.read(1 << 20)
    fileobj.seek(0)
    header, _, rest = sample.partition(b"\n")
    n_columns = header.count(b",") + 1
    lines = rest.count(b"\n")
    bytes_per_row = len(rest) / lines if lines else max(len(rest), 1)
    rows = max(1.0, (size - len(header) - 1) / bytes_per_row)
    return int(rows * n_columns * 8)


def _parquet_layout(parquet, file_size: int) -> tuple[int, list[int]]:  # parquet: ParquetFile
    """Row count and per-row-group row counts, checked against each other and against the
    file before any page is decoded: the file's footer, every row group and every column
    chunk must agree, and no column chunk may claim more bytes than the file holds."""
    meta = parquet.metadata
    group_rows = []
    compressed = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_rows < 0:
            raise UploadError(f"Parquet row group {i} declares {group.num_rows} rows.")
        for j in range(group.num_columns):
            chunk = group.column(j)
            if chunk.num_values != group.num_rows:
                raise UploadError(
                    f"Parquet row group {i} declares {group.num_rows} rows but its column "
                    f"'{chunk.path_in_schema}' declares {chunk.num_values} values; the file's "
                    "metadata does not agree with itself."
                )
            if chunk.total_compressed_size < 0 or chunk.total_uncompressed_size < 0:
                raise UploadError(
                    f"Parquet row group {i}, column '{chunk.path_in_schema}' declares a "
                    "negative size."
                )
            compressed += chunk.total_compressed_size
        group_rows.append(group.num_rows)
    if compressed > file_size:
        raise UploadError(
            f"The Parquet file's column chunks declare {compressed} bytes, more than the "
            f"whole file ({file_size} bytes); its metadata is forged or damaged."
        )
    return max(meta.num_rows, sum(group_rows)), group_rows


def _parquet_row_bytes(schema, class_column: str | None = None) -> int:  # pyarrow.Schema
    """Bytes per decoded row; only fixed-width numeric columns are accepted, and the class
    column (text) whose bytes `_class_column_bytes` adds."""
    row_bytes = 0
    for column in schema:
        kind = column.type
        if column.name == class_column and is_class_column_type(kind):
            row_bytes += 8  # its offsets or dictionary indices
            continue
        if not _is_numeric_type(kind):
            raise UploadError(
                f"Column '{column.name}' must be numeric (integer, float or boolean); "
                f"the Parquet file declares it as {kind}."
            )
        row_bytes += max(kind.bit_width // 8, 1)
    return row_bytes


def _class_column_bytes(parquet, class_column: str | None) -> int:  # parquet: ParquetFile
    """The text of the class column as its chunks declare it, uncompressed (0 without it)."""
    names = parquet.schema_arrow.names
    if class_column is None or class_column not in names:
        return 0
    meta = parquet.metadata
    total = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for j in range(group.num_columns):
            chunk = group.column(j)
            if chunk.path_in_schema == class_column:
                total += max(chunk.total_uncompressed_size, 0)
    return total


def _open_parquet(
    fileobj: IO[bytes], max_data_bytes: int, class_column: str | None = None
):  # -> (ParquetFile, list[int])
    """Open a Parquet file and check what its metadata declares, without decoding a page:
    only fixed-width numeric columns (and the text class column), counts that agree
    (footer, row groups, column chunks), and rows x widths within `max_data_bytes` (413
    past it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fileobj.seek(0, 2)
    file_size = fileobj.tell()
    fileobj.seek(0)
    try:
        parquet = pq.ParquetFile(fileobj)
        if class_column in parquet.schema_arrow.names:
            # The class column decodes as a dictionary: its distinct names once, plus indices.
            fileobj.seek(0)
            parquet = pq.ParquetFile(fileobj, read_dictionary=[class_column])
        schema = parquet.schema_arrow
        footer_rows = parquet.metadata.num_rows
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as exc:
        raise UploadError(f"The file is not a readable Parquet file: {exc}") from exc
    row_bytes = _parquet_row_bytes(schema, class_column)
    n_rows, group_rows = _parquet_layout(parquet, file_size)
    declared = n_rows * row_bytes + _class_column_bytes(parquet, class_column)
    if declared > max_data_bytes:
        raise UploadError(
            f"The Parquet file declares {n_rows} rows of {len(schema)} columns, "
            f"{declared / 2**20:.1f} MB once decoded, over the limit of "
            f"{max_data_bytes / 2**20:.1f} MB (LABELCUT_MAX_DATA_MB).",
            status_code=413,
        )
    if footer_rows != sum(group_rows):
        raise UploadError(
            f"The Parquet footer declares {footer_rows} rows but its row groups hold "
            f"{sum(group_rows)}; the file's metadata is forged or damaged."
        )
    return parquet, group_rows


def _read_parquet(
    fileobj: IO[bytes], max_data_bytes: int, class_column: str | None = None
):  # -> pyarrow.Table
    """Check the declared schema and row counts in the metadata, then decode a column of a
    row group at a time with a running bound.

    A Parquet column of one repeated value compresses (and RLE-encodes) to a few
    bytes per million rows, so the size is judged from the metadata before any page is
    decoded (`_open_parquet`). While decoding, each piece must hold the rows its
    metadata says, and the running total must stay within `max_data_bytes`.
    """
    import pyarrow as pa

    parquet, group_rows = _open_parquet(fileobj, max_data_bytes, class_column)
    try:
        return _decode_parquet(parquet, parquet.schema_arrow, group_rows, max_data_bytes)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as exc:
        if isinstance(exc, UploadError):
            raise
        raise UploadError(f"The Parquet file cannot be decoded: {exc}") from exc


def _decode_parquet(parquet, schema, group_rows: list[int], max_data_bytes: int):
    import pyarrow as pa

    names = list(schema.names)
    pieces: dict[str, list] = {name: [] for name in names}
    decoded = 0
    for i, expected in enumerate(group_rows):
        for name in names:
            column = parquet.read_row_group(i, columns=[name]).column(0)
            decoded += column.nbytes
            if len(column) != expected:
                raise UploadError(
                    f"Parquet row group {i}, column '{name}' holds {len(column)} rows; its "
                    f"metadata declares {expected}."
                )
            if decoded > max_data_bytes:
                raise UploadError(
                    f"The Parquet file decodes to more than {max_data_bytes / 2**20:.1f} MB, "
                    "over the limit (LABELCUT_MAX_DATA_MB).",
                    status_code=413,
                )
            pieces[name].extend(column.chunks)
    arrays = [pa.chunked_array(pieces[name], type=schema.field(name).type) for name in names]
    return pa.Table.from_arrays(arrays, schema=schema)


def parquet_data_bytes(fileobj: IO[bytes], spec: InputSpec, max_data_bytes: int) -> int:
    """Bytes a Parquet file declares once decoded, checked as `read_validation_file` checks
    them (schema, row counts, sizes) but without decoding a page."""
    class_column = class_column_for(spec.labels)
    parquet, group_rows = _open_parquet(fileobj, max_data_bytes, class_column)
    rows = sum(group_rows) * _parquet_row_bytes(parquet.schema_arrow, class_column)
    return rows + _class_column_bytes(parquet, class_column)


def estimate_data_bytes(fileobj: IO[bytes], fmt: str, spec: InputSpec, max_data_bytes: int) -> int:
    """What the upload will decode to, judged without decoding it (for the tune's memory
    budget): exact for .npz and Parquet (declared, and checked), an estimate for CSV.
    Raises `UploadError` where the declared sizes alone refuse the file."""
    estimate = {"npz": npz_data_bytes, "csv": csv_data_bytes, "parquet": parquet_data_bytes}
    if fmt not in estimate:
        raise UploadError(f"Unknown format '{fmt}'; expected one of {', '.join(FORMATS)}.", 415)
    try:
        return estimate[fmt](fileobj, spec, max_data_bytes)
    finally:
        fileobj.seek(0)


def _column_as_float(table, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(name)
    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise UploadError(f"Column '{name}' has an empty value at row {row + 1}.")
    kind = column.type
    if not _is_numeric_type(kind):
        values = column.to_pylist()
        row, value = next(
            ((i, v) for i, v in enumerate(values) if not _is_number(v)), (0, values[0])
        )
        raise UploadError(f"Column '{name}' must be numeric; row {row + 1} holds {value!r}.")
    array = column.to_numpy().astype(np.float64 if pa.types.is_float64(kind) else np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argmax(bad))
        raise UploadError(
            f"Column '{name}' holds a non-finite value ({array[row]}) at row {row + 1}."
        )
    return array


def _is_numeric_type(kind) -> bool:  # kind: pyarrow.DataType
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _table_to_data(table, spec: InputSpec, max_data_bytes: int) -> ValidationData:
    columns = [str(c) for c in table.column_names]
    if len(set(columns)) != len(columns):
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        raise UploadError(f"The file has duplicate columns: {duplicates}.")
    if table.num_rows == 0:
        raise UploadError("The file has a header but no data rows.")
    if table.nbytes > max_data_bytes:
        raise UploadError(
            f"The parsed table takes {table.nbytes / 2**20:.1f} MB, over the limit of "
            f"{max_data_bytes / 2**20:.1f} MB (LABELCUT_MAX_DATA_MB).",
            status_code=413,
        )
    labels = list(spec.labels)
    missing_labels = [label for label in labels if label not in columns]
    class_column = class_column_for(labels)
    classes = None
    if missing_labels and class_column is not None and class_column in columns:
        classes = classes_from_column(table, labels)
        targets = one_hot(classes, len(labels))
        rest = [c for c in columns if c != class_column]
    elif missing_labels:
        alternative = (
            f", or one '{class_column}' column naming each row's class" if class_column else ""
        )
        raise UploadError(
            f"The file has no column for label(s) {missing_labels}; it needs one 0/1 column "
            f"per model label {labels}{alternative}."
        )
    else:
        targets = np.stack([_label_column(table, label) for label in labels], axis=1)
        rest = [c for c in columns if c not in set(labels)]
    score_columns = [c for c in rest if c.startswith(SCORE_PREFIX)]
    if score_columns:
        expected = [SCORE_PREFIX + label for label in labels]
        _require_columns(rest, expected, what="score")
        scores = np.stack([_column_as_float(table, c) for c in expected], axis=1)
        return ValidationData(
            targets=targets,
            scores=_check_scores_array(scores, len(targets), len(labels)),
            classes=classes,
        )
    if spec.feature_names is not None:
        _require_columns(rest, list(spec.feature_names), what="feature")
        feature_columns = list(spec.feature_names)
    else:
        if len(rest) != spec.n_features:
            raise UploadError(
                f"The file has {len(rest)} feature columns besides the labels; the model takes "
                f"{spec.n_features} inputs per row (input shape {spec.input_shape})."
            )
        feature_columns = rest
    features = np.stack([_column_as_float(table, c) for c in feature_columns], axis=1)
    inputs = features.astype(np.float32, copy=False).reshape(len(features), *spec.input_shape)
    return ValidationData(targets=targets, inputs=inputs, classes=classes)


def _require_columns(found: Sequence[str], expected: Sequence[str], what: str) -> None:
    missing = [c for c in expected if c not in set(found)]
    extra = [c for c in found if c not in set(expected)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"missing {what} column(s) {missing[:20]}" + (" ..." if len(missing) > 20 else "")
            )
        if extra:
            parts.append(f"unexpected column(s) {extra[:20]}" + (" ..." if len(extra) > 20 else ""))
        raise UploadError(f"The file's columns do not match the model: {'; '.join(parts)}.")


def _label_column(table, label: str) -> np.ndarray:
    values = _column_as_float(table, label)
    bad = ~((values == 0) | (values == 1))
    if bad.any():
        row = int(np.argmax(bad))
        raise UploadError(
            f"Label column '{label}' must hold only 0 and 1; row {row + 1} holds {values[row]:g}."
        )
    return values.astype(np.uint8)
