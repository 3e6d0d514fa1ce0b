"""Every way an upload or a request body can be wrong: a 4xx whose `detail` names the
problem, and a threshold store (active set and history) exactly as it was.

The corpus runs in process against one service that already holds an active set and
an inactive one, so "unchanged" is a real comparison, not None == None.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ..support.inprocess import app_client as make_client
from ..support.inprocess import wait_ready
from ..support.server import REPO
from .bombs import npy_header, npz_deflate_bomb, zip_of
from .conftest import snapshot

LABELS = [f"Class{i}" for i in range(1, 15)]
FEATURES = [f"Att{i}" for i in range(1, 104)]
N = 20  # rows in the small files of the corpus
MAX_BATCH_ROWS = 100
MAX_DATA_MB = 64


@cache
def yeast_rows() -> tuple[np.ndarray, np.ndarray]:
    from labelcut.models import YEAST_TEST

    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return z["X"][:N].astype(np.float32), z["Y"][:N].astype(np.uint8)


@cache
def yeast_scores() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((N, len(LABELS))).astype(np.float32)


# --- file builders -----------------------------------------------------------------------


def csv_cells(scores: bool = False) -> list[list[str]]:
    """A good CSV as rows of cells, header first: features (or scores) then labels."""
    x, y = yeast_rows()
    if scores:
        header = LABELS + [f"score:{label}" for label in LABELS]
        body = [
            [str(int(v)) for v in y[i]] + [f"{v:.6f}" for v in yeast_scores()[i]] for i in range(N)
        ]
    else:
        header = FEATURES + LABELS
        body = [[f"{v:.6f}" for v in x[i]] + [str(int(v)) for v in y[i]] for i in range(N)]
    return [header, *body]


def to_csv(cells: list[list[str]]) -> bytes:
    return ("\n".join(",".join(row) for row in cells) + "\n").encode()


def csv_with(edit: Callable[[list[list[str]]], None], scores: bool = False) -> bytes:
    cells = csv_cells(scores)
    edit(cells)
    return to_csv(cells)


def set_cell(row: int, column: str, value: str, scores: bool = False):
    """An edit that puts `value` in data row `row` (from 1) of `column`."""

    def edit(cells):
        cells[row][cells[0].index(column)] = value

    return edit


def drop_column(column: str):
    def edit(cells):
        i = cells[0].index(column)
        for row in cells:
            del row[i]

    return edit


def add_column(column: str, value: str = "0"):
    def edit(cells):
        cells[0].append(column)
        for row in cells[1:]:
            row.append(value)

    return edit


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def good_npz(**changes) -> bytes:
    x, y = yeast_rows()
    arrays = {"X": x, "Y": y, **changes}
    return npz(**{k: v for k, v in arrays.items() if v is not None})


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def good_table() -> pa.Table:
    x, y = yeast_rows()
    columns = {f: x[:, i] for i, f in enumerate(FEATURES)}
    columns |= {label: y[:, j] for j, label in enumerate(LABELS)}
    return pa.table(columns)


def patch_zip_members(raw: bytes, *, method: int | None = None, flags: int | None = None) -> bytes:
    """Rewrite every member's compression method or flag bits in both zip headers."""
    data = bytearray(raw)
    for signature, method_at, flags_at in ((b"PK\x03\x04", 8, 6), (b"PK\x01\x02", 10, 8)):
        start = 0
        while (i := data.find(signature, start)) >= 0:
            if method is not None:
                data[i + method_at : i + method_at + 2] = method.to_bytes(2, "little")
            if flags is not None:
                data[i + flags_at : i + flags_at + 2] = flags.to_bytes(2, "little")
            start = i + 4
    return bytes(data)


class Pickled:
    """Unpickling this creates the file at `path`: proof that an upload was unpickled."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


# --- the corpus --------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    send: Callable  # (client) -> response
    status: int
    needle: str

    def param(self):
        return pytest.param(self, id=self.id)


def upload(name: str, content: Callable[[], bytes], content_type: str | None = None, **form):
    def send(client):
        file = (name, content()) if content_type is None else (name, content(), content_type)
        return client.post("/tune-thresholds", files={"file": file}, data=form)

    return send


def predict_json(body):
    return lambda client: client.post("/predict", json=body)


def predict_raw(text: str | bytes, content_type: str = "application/json"):
    return lambda client: client.post(
        "/predict", content=text, headers={"content-type": content_type}
    )


def row(value=0.0, width=103):
    return [value] * width


def raw_rows(token: str) -> str:
    return '{"inputs": [[' + ",".join([token] * 103) + "]]}"


UPLOAD_CASES = [
    # empty and header-only
    Case("empty-csv", upload("v.csv", lambda: b""), 422, "The CSV file is empty"),
    Case("empty-npz", upload("v.npz", lambda: b""), 422, "not a valid .npz"),
    Case("empty-parquet", upload("v.parquet", lambda: b""), 422, "not a readable Parquet"),
    Case("header-only-csv", upload("v.csv", lambda: to_csv(csv_cells()[:1])), 422, "no data rows"),
    # missing and extra columns
    Case(
        "csv-missing-label",
        upload("v.csv", lambda: csv_with(drop_column("Class14"))),
        422,
        "no column for label(s) ['Class14']",
    ),
    Case(
        "csv-missing-feature",
        upload("v.csv", lambda: csv_with(drop_column("Att103"))),
        422,
        "missing feature column(s) ['Att103']",
    ),
    Case(
        "csv-extra-column",
        upload("v.csv", lambda: csv_with(add_column("Extra"))),
        422,
        "unexpected column(s) ['Extra']",
    ),
    Case(
        "csv-duplicate-column",
        upload("v.csv", lambda: csv_with(add_column("Att5"))),
        422,
        "duplicate columns: ['Att5']",
    ),
    Case(
        "csv-missing-score-column",
        upload("v.csv", lambda: csv_with(drop_column("score:Class2"), scores=True)),
        422,
        "missing score column(s) ['score:Class2']",
    ),
    # text, NaN and inf in numbers; empty cells
    Case(
        "csv-text-in-feature",
        upload("v.csv", lambda: csv_with(set_cell(3, "Att5", "abc"))),
        422,
        "Column 'Att5' must be numeric; row 3 holds 'abc'",
    ),
    Case(
        "csv-nan-in-feature",
        upload("v.csv", lambda: csv_with(set_cell(2, "Att7", "nan"))),
        422,
        "Column 'Att7' holds a non-finite value (nan) at row 2",
    ),
    Case(
        "csv-inf-in-feature",
        upload("v.csv", lambda: csv_with(set_cell(4, "Att9", "inf"))),
        422,
        "Column 'Att9' holds a non-finite value (inf) at row 4",
    ),
    Case(
        "csv-empty-cell",
        upload("v.csv", lambda: csv_with(set_cell(1, "Att2", ""))),
        422,
        "Column 'Att2' has an empty value at row 1",
    ),
    Case(
        "csv-text-in-label",
        upload("v.csv", lambda: csv_with(set_cell(5, "Class1", "yes"))),
        422,
        "Column 'Class1' must be numeric; row 5 holds 'yes'",
    ),
    # labels other than 0/1, scores outside [0, 1]
    Case(
        "csv-label-2",
        upload("v.csv", lambda: csv_with(set_cell(2, "Class3", "2"))),
        422,
        "Label column 'Class3' must hold only 0 and 1; row 2 holds 2",
    ),
    Case(
        "csv-label-half",
        upload("v.csv", lambda: csv_with(set_cell(6, "Class4", "0.5"))),
        422,
        "Label column 'Class4' must hold only 0 and 1; row 6 holds 0.5",
    ),
    Case(
        "csv-label-negative",
        upload("v.csv", lambda: csv_with(set_cell(1, "Class1", "-1"))),
        422,
        "Label column 'Class1' must hold only 0 and 1; row 1 holds -1",
    ),
    Case(
        "csv-score-above-1",
        upload("v.csv", lambda: csv_with(set_cell(3, "score:Class2", "1.5"), scores=True)),
        422,
        "probabilities in [0, 1]; row 3, column 2 holds 1.5",
    ),
    Case(
        "csv-score-below-0",
        upload("v.csv", lambda: csv_with(set_cell(1, "score:Class1", "-0.1"), scores=True)),
        422,
        "probabilities in [0, 1]; row 1, column 1",
    ),
    Case(
        "csv-score-nan",
        upload("v.csv", lambda: csv_with(set_cell(2, "score:Class5", "nan"), scores=True)),
        422,
        "Column 'score:Class5' holds a non-finite value (nan) at row 2",
    ),
    # ragged rows, binary garbage
    Case(
        "csv-ragged-short-row",
        upload("v.csv", lambda: csv_with(lambda cells: cells[2].pop())),
        422,
        "Expected 117 columns, got 116",
    ),
    Case(
        "csv-ragged-long-row",
        upload("v.csv", lambda: csv_with(lambda cells: cells[3].append("1"))),
        422,
        "Expected 117 columns, got 118",
    ),
    Case(
        "csv-not-utf8",
        upload("v.csv", lambda: csv_with(set_cell(2, "Att3", "QQQ")).replace(b"QQQ", b"\xff\x81")),
        422,
        "Column 'Att3' must be numeric; row 2 holds b'\\xff\\x81'",
    ),
    # NPZ: missing arrays, mismatched rows, wrong widths, wrong rank
    Case("npz-no-Y", upload("v.npz", lambda: good_npz(Y=None)), 422, "has no array 'Y'"),
    Case(
        "npz-no-X-or-scores",
        upload("v.npz", lambda: good_npz(X=None)),
        422,
        "exactly one of 'X' (model inputs) or 'scores'",
    ),
    Case(
        "npz-X-and-scores",
        upload("v.npz", lambda: good_npz(scores=yeast_scores())),
        422,
        "exactly one of 'X' (model inputs) or 'scores'",
    ),
    Case(
        "npz-rows-mismatch",
        upload("v.npz", lambda: good_npz(X=yeast_rows()[0][:-1])),
        422,
        f"Array 'X' has shape ({N - 1}, 103); expected ({N}, 103)",
    ),
    Case(
        "npz-X-too-narrow",
        upload("v.npz", lambda: good_npz(X=yeast_rows()[0][:, :100])),
        422,
        f"Array 'X' has shape ({N}, 100); expected ({N}, 103)",
    ),
    Case(
        "npz-Y-too-narrow",
        upload("v.npz", lambda: good_npz(Y=yeast_rows()[1][:, :13])),
        422,
        "Array 'Y' has 13 label columns; the model has 14 labels",
    ),
    Case(
        "npz-scores-wrong-width",
        upload("v.npz", lambda: good_npz(X=None, scores=yeast_scores()[:, :12])),
        422,
        f"Array 'scores' has shape ({N}, 12); expected ({N}, 14)",
    ),
    Case(
        "npz-Y-rank-1",
        upload("v.npz", lambda: good_npz(Y=yeast_rows()[1][:, 0])),
        422,
        "Array 'Y' must be 2-D",
    ),
    Case(
        "npz-X-rank-3",
        upload("v.npz", lambda: good_npz(X=yeast_rows()[0][:, :, None])),
        422,
        f"Array 'X' has shape ({N}, 103, 1)",
    ),
    Case(
        "npz-no-rows",
        upload("v.npz", lambda: npz(X=np.zeros((0, 103)), Y=np.zeros((0, 14)))),
        422,
        "Array 'Y' has no rows",
    ),
    # NPZ: values and dtypes
    Case(
        "npz-Y-not-binary",
        upload("v.npz", lambda: good_npz(Y=np.full((N, 14), 3))),
        422,
        "Array 'Y' must hold only 0 and 1; row 1, label column 1 holds",
    ),
    Case(
        "npz-Y-nan",
        upload("v.npz", lambda: good_npz(Y=np.full((N, 14), np.nan))),
        422,
        "Array 'Y' must hold only 0 and 1",
    ),
    Case(
        "npz-Y-strings",
        upload("v.npz", lambda: good_npz(Y=np.full((N, 14), "1"))),
        422,
        "Array 'Y' must be numeric 0/1",
    ),
    Case(
        "npz-X-strings",
        upload("v.npz", lambda: good_npz(X=np.full((N, 103), "x"))),
        422,
        "Array 'X' must be numeric",
    ),
    Case(
        "npz-X-complex",
        upload("v.npz", lambda: good_npz(X=np.zeros((N, 103), dtype=complex))),
        422,
        "Array 'X' must be numeric",
    ),
    Case(
        "npz-X-inf",
        upload("v.npz", lambda: good_npz(X=np.full((N, 103), np.inf, dtype=np.float32))),
        422,
        "Array 'X' holds a non-finite value (inf) at row 1, column 1",
    ),
    Case(
        "npz-scores-nan",
        upload("v.npz", lambda: good_npz(X=None, scores=np.full((N, 14), np.nan))),
        422,
        "Array 'scores' holds a non-finite value",
    ),
    Case(
        "npz-scores-above-1",
        upload("v.npz", lambda: good_npz(X=None, scores=np.full((N, 14), 2.0))),
        422,
        "Array 'scores' must hold probabilities in [0, 1]",
    ),
    # NPZ: names that do not match the model
    Case(
        "npz-unknown-label-name",
        upload("v.npz", lambda: good_npz(label_names=np.array([*LABELS[:-1], "Nope"]))),
        422,
        "missing ['Class14']; unknown ['Nope']",
    ),
    Case(
        "npz-duplicate-label-name",
        upload("v.npz", lambda: good_npz(label_names=np.array([*LABELS[:-1], "Class1"]))),
        422,
        "duplicate names",
    ),
    Case(
        "npz-label-names-count",
        upload("v.npz", lambda: good_npz(label_names=np.array(LABELS[:5]))),
        422,
        "Array 'label_names' has 5 names but 'Y' has 14 columns",
    ),
    Case(
        "npz-label-names-numeric",
        upload("v.npz", lambda: good_npz(label_names=np.arange(14))),
        422,
        "Array 'label_names' must be a 1-D array of strings",
    ),
    Case(
        "npz-unknown-feature-name",
        upload("v.npz", lambda: good_npz(feature_names=np.array([*FEATURES[:-1], "Bogus"]))),
        422,
        "'feature_names' does not match the model: missing ['Att103']; unknown ['Bogus']",
    ),
    Case(
        "npz-feature-names-scalar",
        upload("v.npz", lambda: good_npz(feature_names=np.array(5))),
        422,
        "Array 'feature_names' must be a 1-D array of strings",
    ),
    # NPZ: broken containers and members
    Case(
        "npz-truncated",
        upload("v.npz", lambda: good_npz()[:3000]),
        422,
        "not a valid .npz archive",
    ),
    Case("npz-not-a-zip", upload("v.npz", lambda: b"hello, world"), 422, "not a valid .npz"),
    Case(
        "npz-member-not-npy",
        upload("v.npz", lambda: zip_of({"Y.npy": b"garbage", "X.npy": b"more garbage"})),
        422,
        "Array 'Y' in the .npz file is not a valid .npy array",
    ),
    Case(
        "npz-npy-version-3",
        upload(
            "v.npz",
            lambda: zip_of({"Y.npy": npy_header((2, 14), version=3), "X.npy": b""}),
        ),
        422,
        "Array 'Y' uses .npy format version (3, 0)",
    ),
    Case(
        "npz-negative-dimension",
        upload(
            "v.npz",
            lambda: zip_of({"Y.npy": npy_header((-1, 14)), "scores.npy": npy_header((2, 14))}),
        ),
        422,
        "Array 'Y' declares a negative dimension",
    ),
    Case(
        "npz-unknown-compression",
        upload("v.npz", lambda: patch_zip_members(good_npz(), method=99)),
        422,
        "compression method",
    ),
    Case(
        "npz-encrypted-member",
        upload("v.npz", lambda: patch_zip_members(good_npz(), flags=1)),
        422,
        "encrypted",
    ),
    # NPZ: declared sizes past LABELCUT_MAX_DATA_MB are refused before inflating
    Case(
        "npz-declares-112-GB",
        upload(
            "v.npz",
            lambda: zip_of({"Y.npy": npy_header((10**9, 14)), "X.npy": npy_header((10**9, 103))}),
        ),
        413,
        "LABELCUT_MAX_DATA_MB",
    ),
    Case(
        "npz-declared-shape-wraps-int64",
        upload(
            "v.npz",
            lambda: zip_of(
                {"Y.npy": npy_header((2**32, 2**32)), "scores.npy": npy_header((2**32, 2**32))}
            ),
        ),
        413,
        "LABELCUT_MAX_DATA_MB",
    ),
    Case(
        "npz-deflate-bomb-2GB",
        upload("v.npz", lambda: deflate_bomb()),
        413,
        "LABELCUT_MAX_DATA_MB",
    ),
    # Parquet
    Case(
        "parquet-not-parquet",
        upload("v.parquet", lambda: b"PAR1 but not really"),
        422,
        "not a readable Parquet file",
    ),
    Case(
        "parquet-truncated",
        upload("v.parquet", lambda: parquet(good_table())[:-100]),
        422,
        "not a readable Parquet file",
    ),
    Case(
        "parquet-string-column",
        upload(
            "v.parquet",
            lambda: parquet(good_table().set_column(0, "Att1", pa.array(["x"] * N))),
        ),
        422,
        "Column 'Att1' must be numeric (integer, float or boolean); the Parquet file declares "
        "it as string",
    ),
    Case(
        "parquet-missing-label",
        upload("v.parquet", lambda: parquet(good_table().drop_columns(["Class7"]))),
        422,
        "no column for label(s) ['Class7']",
    ),
    Case(
        "parquet-label-2",
        upload(
            "v.parquet",
            lambda: parquet(
                good_table().set_column(103, "Class1", pa.array(np.full(N, 2, np.uint8)))
            ),
        ),
        422,
        "Label column 'Class1' must hold only 0 and 1; row 1 holds 2",
    ),
    Case(
        "parquet-declares-too-many-rows",
        upload("v.parquet", lambda: parquet_rle_bomb()),
        413,
        "LABELCUT_MAX_DATA_MB",
    ),
    # Unknown formats
    Case("format-xlsx", upload("v.xlsx", lambda: b"PK\x03\x04"), 415, "Unsupported file format"),
    Case(
        "format-no-name-octet-stream",
        upload("blob", lambda: b"1,2,3", "application/octet-stream"),
        415,
        "send a .npz, .csv or .parquet file",
    ),
    Case(
        "format-gzipped-csv",
        upload("v.csv.gz", lambda: b"\x1f\x8b\x08\x00"),
        415,
        "'v.csv.gz' is compressed",
    ),
    Case("format-json", upload("v.json", lambda: b"{}", "application/json"), 415, "'v.json'"),
]


@cache
def deflate_bomb() -> bytes:
    # X (5,300,000 x 103) float32 + Y (5,300,000 x 14) uint8 = 2.26 GB (2,157 MiB) of
    # zeros, just over the default LABELCUT_MAX_DATA_MB of 2048; about 2 MB on the wire.
    return npz_deflate_bomb(5_300_000)


@cache
def parquet_rle_bomb() -> bytes:
    # 10 M rows of one int64 column: 80 MB decoded, a few KB encoded.
    return parquet(pa.table({"Att1": pa.array(np.zeros(10_000_000, np.int64))}))


def tune_form(**form):
    return upload("v.npz", lambda: good_npz(), **form)


FORM_CASES = [
    Case("form-unknown-objective", tune_form(objective="accuracy"), 422, "objective"),
    Case("form-beta-zero", tune_form(objective="fbeta", beta="0"), 422, "beta must be > 0"),
    Case("form-beta-negative", tune_form(objective="fbeta", beta="-2"), 422, "beta must be > 0"),
    Case("form-beta-nan", tune_form(objective="fbeta", beta="nan"), 422, "beta must be > 0"),
    Case("form-beta-inf", tune_form(objective="fbeta", beta="inf"), 422, "beta must be"),
    Case(
        "form-beta-overflows",
        tune_form(objective="fbeta", beta="1e300"),
        422,
        "beta must be > 0",
    ),
    Case("form-beta-text", tune_form(objective="fbeta", beta="big"), 422, "beta"),
    Case(
        "form-target-missing-rap",
        tune_form(objective="recall_at_precision"),
        422,
        "objective 'recall_at_precision' needs the form field 'target'",
    ),
    Case(
        "form-target-missing-par",
        tune_form(objective="precision_at_recall"),
        422,
        "objective 'precision_at_recall' needs the form field 'target'",
    ),
    Case(
        "form-target-zero",
        tune_form(objective="recall_at_precision", target="0"),
        422,
        "target must be in (0, 1]",
    ),
    Case(
        "form-target-above-1",
        tune_form(objective="precision_at_recall", target="1.5"),
        422,
        "target must be in (0, 1]",
    ),
    Case(
        "form-target-nan",
        tune_form(objective="precision_at_recall", target="nan"),
        422,
        "target must be in (0, 1]",
    ),
    Case("form-min-positives-negative", tune_form(min_positives="-1"), 422, "min_positives"),
    Case("form-min-positives-fraction", tune_form(min_positives="1.5"), 422, "min_positives"),
    Case("form-min-positives-text", tune_form(min_positives="many"), 422, "min_positives"),
    Case("form-activate-maybe", tune_form(activate="maybe"), 422, "activate"),
    Case("form-activate-number", tune_form(activate="2"), 422, "activate"),
    Case(
        "form-no-file",
        lambda client: client.post("/tune-thresholds", data={"objective": "f1"}),
        422,
        "file",
    ),
    Case(
        "form-file-as-text-field",
        lambda client: client.post("/tune-thresholds", data={"file": "X,Y\n1,0\n"}),
        422,
        "file",
    ),
]

PREDICT_CASES = [
    Case(
        "predict-row-too-short",
        predict_json({"inputs": [row(width=5)]}),
        422,
        "inputs[0] has shape [5]; the model expects [103]",
    ),
    Case(
        "predict-row-too-long",
        predict_json({"inputs": [row(), row(width=104)]}),
        422,
        "inputs[1] has shape [104]; the model expects [103]",
    ),
    Case(
        "predict-rows-nested-too-deep",
        predict_json({"inputs": [[row()]]}),
        422,
        "inputs[0] has shape [1, 103]",
    ),
    Case("predict-scalar-row", predict_json({"inputs": [1.0]}), 422, "inputs[0] has shape []"),
    Case("predict-empty", predict_json({"inputs": []}), 422, "inputs is empty"),
    Case(
        "predict-too-many-rows",
        predict_json({"inputs": [row()] * (MAX_BATCH_ROWS + 1)}),
        413,
        f"inputs has {MAX_BATCH_ROWS + 1} rows, over the limit of {MAX_BATCH_ROWS} rows per "
        "request (LABELCUT_MAX_BATCH_ROWS)",
    ),
    Case(
        "predict-text",
        predict_json({"inputs": [["a"] * 103]}),
        422,
        "inputs[0] is not a nested list of numbers",
    ),
    Case("predict-dict-row", predict_json({"inputs": [{"Att1": 1}]}), 422, "inputs[0]"),
    Case(
        "predict-null",
        predict_json({"inputs": [[None] * 103]}),
        422,
        "inputs[0] holds a missing or non-finite value",
    ),
    Case(
        "predict-nan",
        predict_raw(raw_rows("NaN")),
        422,
        "inputs[0] holds a missing or non-finite value at position 0",
    ),
    Case("predict-infinity", predict_raw(raw_rows("-Infinity")), 422, "non-finite value"),
    Case("predict-overflows-float32", predict_raw(raw_rows("1e39")), 422, "non-finite value"),
    Case(
        "predict-near-float32-max",
        predict_json({"inputs": [row(3e38)]}),
        422,
        "inputs[0] drives the model to a non-finite output",
    ),
    Case("predict-inputs-not-a-list", predict_json({"inputs": 5}), 422, "inputs"),
    Case("predict-no-inputs", predict_json({"rows": [row()]}), 422, "inputs"),
    Case("predict-unknown-field", predict_json({"inputs": [row()], "foo": 1}), 422, "foo"),
    Case(
        "predict-override-unknown-label",
        predict_json({"inputs": [row()], "thresholds": {"Nope": 0.2}}),
        422,
        "thresholds names unknown label 'Nope'",
    ),
    Case(
        "predict-override-above-1",
        predict_json({"inputs": [row()], "thresholds": {"Class1": 1.5}}),
        422,
        "thresholds['Class1'] is 1.5; it must be in [0, 1]",
    ),
    Case(
        "predict-override-negative",
        predict_json({"inputs": [row()], "thresholds": {"Class2": -0.1}}),
        422,
        "thresholds['Class2'] is -0.1; it must be in [0, 1]",
    ),
    Case(
        "predict-override-nan",
        predict_raw('{"inputs": [[' + ",".join(["0"] * 103) + ']], "thresholds": {"Class3": NaN}}'),
        422,
        "thresholds['Class3'] is nan",
    ),
    Case(
        "predict-override-text",
        predict_json({"inputs": [row()], "thresholds": {"Class1": "high"}}),
        422,
        "thresholds",
    ),
    Case(
        "predict-return-logits-maybe",
        predict_json({"inputs": [row()], "return_logits": "maybe"}),
        422,
        "return_logits",
    ),
    Case("predict-malformed-json", predict_raw("{not json"), 422, "JSON decode error"),
    Case("predict-truncated-json", predict_raw('{"inputs": [[1, 2'), 422, "JSON decode error"),
    Case("predict-json-array", predict_json([row()]), 422, "dictionary"),
    Case(
        "predict-not-utf8",
        predict_raw(b'{"inputs": [[\x81]]}'),
        422,
        "'utf-8' codec can't decode byte 0x81",
    ),
]

SET_ID_CASES = [
    Case("get-unknown-set", lambda c: c.get("/thresholds/999"), 404, "No threshold set has id 999"),
    Case("get-set-0", lambda c: c.get("/thresholds/0"), 404, "No threshold set has id 0"),
    Case("get-negative-set", lambda c: c.get("/thresholds/-3"), 404, "No threshold set has id -3"),
    Case("get-set-not-int", lambda c: c.get("/thresholds/abc"), 422, "set_id"),
    Case(
        "activate-unknown-set",
        lambda c: c.post("/thresholds/999/activate"),
        404,
        "No threshold set has id 999",
    ),
    Case("activate-set-not-int", lambda c: c.post("/thresholds/1.5/activate"), 422, "set_id"),
    Case(
        "get-set-id-past-int64",
        lambda c: c.get(f"/thresholds/{2**64}"),
        404,
        "No threshold set has id",
    ),
    Case(
        "activate-set-id-past-int64",
        lambda c: c.post(f"/thresholds/{2**64}/activate"),
        404,
        "No threshold set has id",
    ),
    Case("history-limit-0", lambda c: c.get("/thresholds/history?limit=0"), 422, "limit"),
    Case(
        "history-offset-negative", lambda c: c.get("/thresholds/history?offset=-1"), 422, "offset"
    ),
    Case(
        "history-offset-past-int64",
        lambda c: c.get(f"/thresholds/history?offset={2**64}"),
        422,
        "offset",
    ),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory, yeast_npz_bytes):
    data_dir = tmp_path_factory.mktemp("bad-input") / "data"
    with make_client(data_dir, max_batch_rows=MAX_BATCH_ROWS, max_data_mb=MAX_DATA_MB) as c:
        wait_ready(c)
        # One active set and one inactive one, so "unchanged" compares real content.
        for form in ({"objective": "f1"}, {"objective": "fbeta", "beta": "2", "activate": "false"}):
            response = c.post(
                "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, data=form
            )
            assert response.status_code == 200, response.text
        yield c


def check_case(client, case: Case) -> None:
    before = snapshot(client)
    response = case.send(client)
    assert response.status_code == case.status, response.text[:2000]
    if case.status >= 400:
        body = response.json()
        detail = body["detail"]
        text = detail if isinstance(detail, str) else json.dumps(detail)
        assert case.needle in text, text
    assert snapshot(client) == before


@pytest.mark.parametrize("case", [c.param() for c in UPLOAD_CASES])
def test_bad_upload_is_refused_and_changes_nothing(client, case):
    check_case(client, case)


@pytest.mark.parametrize("case", [c.param() for c in FORM_CASES])
def test_bad_form_parameter_is_refused_and_changes_nothing(client, case):
    check_case(client, case)


@pytest.mark.parametrize("case", [c.param() for c in PREDICT_CASES])
def test_bad_predict_body_is_refused_and_changes_nothing(client, case):
    check_case(client, case)


@pytest.mark.parametrize("case", [c.param() for c in SET_ID_CASES])
def test_bad_set_id_is_refused_and_changes_nothing(client, case):
    check_case(client, case)


def test_pickled_npz_is_refused_without_unpickling(client, tmp_path):
    marker = tmp_path / "unpickled"
    Pickled.path = str(marker)
    content = npz(X=np.array([Pickled()], dtype=object), Y=np.zeros((1, 14)))
    check_case(
        client,
        Case("pickle", upload("v.npz", lambda: content), 422, "Array 'X' holds Python objects"),
    )
    # Our own control: this payload does create the file when it is unpickled.
    assert not marker.exists()
    with np.load(io.BytesIO(content), allow_pickle=True) as z:
        z["X"]
    assert marker.exists()


def test_good_files_of_every_format_are_accepted(client, yeast_npz_bytes):
    """The corpus's builders make valid files when left unedited: each case is one flaw."""
    for name, content in (
        ("v.csv", to_csv(csv_cells())),
        ("s.csv", to_csv(csv_cells(scores=True))),
        ("v.npz", good_npz(label_names=np.array(LABELS), feature_names=np.array(FEATURES))),
        ("v.parquet", parquet(good_table())),
    ):
        response = client.post(
            "/tune-thresholds", files={"file": (name, content)}, data={"activate": "false"}
        )
        assert response.status_code == 200, (name, response.text)
    assert zipfile.is_zipfile(io.BytesIO(deflate_bomb()))


# --- peak memory while refusing a bomb ---------------------------------------------------

# The peak is VmHWM, not getrusage's ru_maxrss: on Linux a child's ru_maxrss starts at
# its parent's high-water mark (kept across fork and exec), and pytest's process is big.
_MEASURE = """
import io, json, sys
from labelcut.app.uploads import InputSpec, UploadError, read_validation_file

def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

content = open(sys.argv[1], "rb").read()
spec = InputSpec(labels=[f"Class{i}" for i in range(1, 15)], input_shape=(103,))
before = peak_kb()
try:
    read_validation_file(io.BytesIO(content), "npz", spec, max_data_bytes=int(sys.argv[2]))
    status = 200
except UploadError as exc:
    status = exc.status_code
print(json.dumps({"status": status, "grew_mb": (peak_kb() - before) / 1024}))
"""


def measure_read(tmp_path, content: bytes, max_data_mb: float) -> dict:
    path = tmp_path / "bomb.npz"
    path.write_bytes(content)
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(int(max_data_mb * 2**20))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.slow
def test_deflate_bomb_is_refused_with_bounded_memory(tmp_path):
    # 2.26 GB declared and deflated to ~2 MB, against the default 2048 MB limit.
    refused = measure_read(tmp_path, deflate_bomb(), max_data_mb=2048)
    assert refused["status"] == 413
    assert refused["grew_mb"] < 32, refused
    # Control: the same kind of file under the limit is inflated, and the measurement sees it.
    inflated = measure_read(tmp_path, npz_deflate_bomb(655_360), max_data_mb=2048)
    assert inflated["status"] == 200
    assert inflated["grew_mb"] > 200, inflated
