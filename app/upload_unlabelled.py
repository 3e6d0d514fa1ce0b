"""Read an uploaded file of UNLABELLED rows (for `POST /thresholds/{id}/adapt`).

The formats of the validation files, without the labels: a `.npz` with `X` (n,
*input_shape) or `scores` (n, L) (label arrays, if present, are ignored), or a CSV/Parquet
file of feature columns or `score:<label>` columns (label columns, if present, are
ignored). The same memory bounds and errors as `labelcut.app.uploads`, whose decoders this
module reuses.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np

from labelcut.app import uploads
from labelcut.app.uploads import SCORE_PREFIX, InputSpec, UploadError


@dataclass(frozen=True)
class UnlabelledData:
    """Rows without labels: model inputs or the model's probabilities."""

    inputs: np.ndarray | None = None  # (n, *input_shape) float32
    scores: np.ndarray | None = None  # (n, L) float32

    @property
    def n_samples(self) -> int:
        rows = self.inputs if self.inputs is not None else self.scores
        assert rows is not None
        return int(rows.shape[0])


def _npz_wanted(archive: zipfile.ZipFile) -> tuple[dict[str, str], list[str]]:
    members = {m.removesuffix(".npy"): m for m in archive.namelist() if m.endswith(".npy")}
    has_x, has_scores = "X" in members, "scores" in members
    if has_x == has_scores:
        raise UploadError(
            "The .npz file must hold exactly one of 'X' (model inputs) or 'scores' "
            f"(probabilities); it holds {sorted(members) or 'no arrays'}."
        )
    wanted = ["X" if has_x else "scores"]
    wanted += [n for n in ("label_names", "feature_names") if n in members]
    return members, wanted


def _npz(fileobj: IO[bytes], spec: InputSpec, max_data_bytes: int, *, load: bool):
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"The file is not a valid .npz archive: {exc}.") from exc
    with archive:
        members, wanted = _npz_wanted(archive)
        headers = uploads._npz_headers(archive, members, wanted, max_data_bytes, len(spec.labels))
        if not load:
            return sum(header.data_bytes for header in headers.values())
        return {
            name: uploads._load_member(archive, members[name], name, header)
            for name, header in headers.items()
        }


def estimate_unlabelled_bytes(
    fileobj: IO[bytes], fmt: str, spec: InputSpec, max_data_bytes: int
) -> int:
    """What the upload will decode to, judged without decoding it (the tune budget)."""
    try:
        if fmt == "npz":
            return _npz(fileobj, spec, max_data_bytes, load=False)
        return uploads.estimate_data_bytes(fileobj, fmt, spec, max_data_bytes)
    finally:
        fileobj.seek(0)


def read_unlabelled_file(
    fileobj: IO[bytes], fmt: str, spec: InputSpec, *, max_data_bytes: int
) -> UnlabelledData:
    """Parse `fileobj` (seekable, binary) in format `fmt` into `UnlabelledData`."""
    if fmt == "npz":
        arrays = _npz(fileobj, spec, max_data_bytes, load=True)
        if "X" in arrays:
            n = int(arrays["X"].shape[0]) if arrays["X"].ndim else 0
            x = uploads._check_inputs_array(arrays["X"], spec, n, arrays.get("feature_names"))
            return _nonempty(UnlabelledData(inputs=x))
        scores = arrays["scores"]
        n = int(scores.shape[0]) if scores.ndim else 0
        checked = uploads._check_scores_array(scores, n, len(spec.labels))
        order = uploads._label_order(arrays.get("label_names"), spec.labels, len(spec.labels))
        return _nonempty(UnlabelledData(scores=checked[:, order]))
    if fmt == "csv":
        table = uploads._read_csv(fileobj, max_data_bytes)
    elif fmt == "parquet":
        table = uploads._read_parquet(fileobj, max_data_bytes)
    else:
        raise UploadError(f"Unknown format '{fmt}'; expected one of npz, csv, parquet.", 415)
    return _nonempty(_from_table(table, spec))


def _nonempty(data: UnlabelledData) -> UnlabelledData:
    if data.n_samples == 0:
        raise UploadError("The file has no rows; adapting needs at least one row.")
    return data


def _from_table(table, spec: InputSpec) -> UnlabelledData:  # table: pyarrow.Table
    columns = [str(c) for c in table.column_names]
    if len(set(columns)) != len(columns):
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        raise UploadError(f"The file has duplicate columns: {duplicates}.")
    labels = list(spec.labels)
    rest = [c for c in columns if c not in set(labels) and c != "label"]
    if any(c.startswith(SCORE_PREFIX) for c in rest):
        expected = [SCORE_PREFIX + label for label in labels]
        uploads._require_columns(rest, expected, what="score")
        scores = np.stack([uploads._column_as_float(table, c) for c in expected], axis=1)
        return UnlabelledData(scores=uploads._check_scores_array(scores, len(scores), len(labels)))
    if spec.feature_names is not None:
        uploads._require_columns(rest, list(spec.feature_names), what="feature")
        feature_columns = list(spec.feature_names)
    else:
        if len(rest) != spec.n_features:
            raise UploadError(
                f"The file has {len(rest)} feature columns; the model takes {spec.n_features} "
                f"inputs per row (input shape {spec.input_shape})."
            )
        feature_columns = rest
    features = np.stack([uploads._column_as_float(table, c) for c in feature_columns], axis=1)
    inputs = features.astype(np.float32, copy=False).reshape(len(features), *spec.input_shape)
    return UnlabelledData(inputs=inputs)
