"""Validation files in every supported format, good and bad, read from real files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from labelcut.app.uploads import (
    InputSpec,
    UploadError,
    detect_format,
    estimate_data_bytes,
    read_validation_file,
)

LABELS = ["a", "b", "c"]
FEATURES = ["f1", "f2", "f3", "f4"]
SPEC = InputSpec(labels=LABELS, input_shape=(4,), feature_names=FEATURES)
BIG = 1 << 30


def make_data(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (rng.random((n, 3)) < 0.5).astype(np.uint8)
    s = rng.random((n, 3)).astype(np.float32)
    return x, y, s


def npz_bytes(**arrays) -> io.BytesIO:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    buf.seek(0)
    return buf


def read(buf, fmt, spec=SPEC, max_bytes=BIG):
    return read_validation_file(buf, fmt, spec, max_data_bytes=max_bytes)


def csv_bytes(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def table_csv(x, y, *, scores=None, features=FEATURES, labels=LABELS) -> str:
    cols = list(features) + list(labels) if scores is None else list(labels)
    if scores is not None:
        cols += [f"score:{label}" for label in labels]
    lines = [",".join(cols)]
    for i in range(len(y)):
        values = [] if scores is not None else [f"{v:.6f}" for v in x[i]]
        values += [str(int(v)) for v in y[i]]
        if scores is not None:
            values += [f"{v:.6f}" for v in scores[i]]
        lines.append(",".join(values))
    return "\n".join(lines) + "\n"


# --- format detection --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ctype", "expected"),
    [
        ("val.npz", None, "npz"),
        ("VAL.CSV", "application/octet-stream", "csv"),
        ("v.parquet", None, "parquet"),
        ("blob", "text/csv; charset=utf-8", "csv"),
        (None, "application/vnd.apache.parquet", "parquet"),
    ],
)
def test_detect_format(name, ctype, expected):
    assert detect_format(name, ctype) == expected


def test_unknown_format_is_415():
    with pytest.raises(UploadError) as info:
        detect_format("data.xlsx", "application/vnd.ms-excel")
    assert info.value.status_code == 415
    assert "data.xlsx" in str(info.value)


# --- NPZ ---------------------------------------------------------------------------------


def test_npz_with_inputs_round_trips():
    x, y, _ = make_data()
    data = read(npz_bytes(X=x, Y=y), "npz")
    np.testing.assert_array_equal(data.inputs, x)
    np.testing.assert_array_equal(data.targets, y)
    assert data.scores is None and data.n_samples == 6


def test_npz_label_and_feature_names_reorder_columns():
    x, y, s = make_data()
    data = read(
        npz_bytes(
            X=x[:, ::-1],
            Y=y[:, ::-1],
            label_names=np.array(LABELS[::-1]),
            feature_names=np.array(FEATURES[::-1]),
        ),
        "npz",
    )
    np.testing.assert_array_equal(data.targets, y)
    np.testing.assert_array_equal(data.inputs, x)
    scored = read(
        npz_bytes(scores=s[:, ::-1], Y=y[:, ::-1], label_names=np.array(LABELS[::-1])), "npz"
    )
    np.testing.assert_array_equal(scored.scores, s)


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"X": np.zeros((6, 4))}, "no array 'Y'"),
        ({"Y": np.zeros((6, 3))}, "exactly one of 'X'"),
        ({"X": np.zeros((5, 4)), "Y": np.zeros((6, 3))}, "'X' has shape (5, 4)"),
        ({"X": np.zeros((6, 5)), "Y": np.zeros((6, 3))}, "expected (6, 4)"),
        ({"X": np.zeros((6, 4)), "Y": np.zeros((6, 2))}, "2 label columns"),
        ({"X": np.zeros((6, 4)), "Y": np.zeros(6)}, "must be 2-D"),
        ({"X": np.zeros((6, 4)), "Y": np.full((6, 3), 2)}, "row 1, label column 1"),
        ({"scores": np.full((6, 3), 1.5), "Y": np.zeros((6, 3))}, "probabilities in [0, 1]"),
        ({"X": np.full((6, 4), np.nan), "Y": np.zeros((6, 3))}, "non-finite"),
        (
            {
                "X": np.zeros((6, 4)),
                "Y": np.zeros((6, 3)),
                "label_names": np.array(["a", "b", "z"]),
            },
            "unknown ['z']",
        ),
        ({"X": np.zeros((0, 4)), "Y": np.zeros((0, 3))}, "no rows"),
    ],
)
def test_npz_errors_name_the_array(arrays, needle):
    with pytest.raises(UploadError) as info:
        read(npz_bytes(**arrays), "npz")
    assert needle in str(info.value)
    assert info.value.status_code == 422


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    np.savez(buf, X=np.array([Payload()], dtype=object), Y=np.zeros((1, 3)))
    buf.seek(0)
    with pytest.raises(UploadError, match="Python objects"):
        read(buf, "npz")
    assert not marker.exists()


def test_npz_inflation_is_refused_from_the_declared_shape():
    # 20,000 x 4 float64 zeros compress to a few KB but declare 640 KB.
    buf = npz_bytes(X=np.zeros((20_000, 4)), Y=np.zeros((20_000, 3), dtype=np.uint8))
    assert len(buf.getvalue()) < 20_000
    with pytest.raises(UploadError) as info:
        read(buf, "npz", max_bytes=100_000)
    assert info.value.status_code == 413 and "LABELCUT_MAX_DATA_MB" in str(info.value)


def test_not_a_zip_is_refused():
    with pytest.raises(UploadError, match=r"not a valid \.npz"):
        read(io.BytesIO(b"hello, world"), "npz")


def test_truncated_npz_is_refused():
    x, y, _ = make_data(200)
    raw = npz_bytes(X=x, Y=y).getvalue()
    with pytest.raises(UploadError):
        read(io.BytesIO(raw[: len(raw) // 2]), "npz")


def test_npz_member_with_corrupt_header():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Y.npy", b"not an npy file at all")
        zf.writestr("X.npy", b"nor this")
    buf.seek(0)
    with pytest.raises(UploadError, match=r"not a valid \.npy"):
        read(buf, "npz")


# --- CSV and Parquet ---------------------------------------------------------------------


def test_csv_features_by_name_in_any_order():
    x, y, _ = make_data()
    text = table_csv(x[:, ::-1], y, features=FEATURES[::-1])
    data = read(csv_bytes(text), "csv")
    np.testing.assert_allclose(data.inputs, x, atol=1e-6)
    np.testing.assert_array_equal(data.targets, y)


def test_csv_scores():
    x, y, s = make_data()
    data = read(csv_bytes(table_csv(x, y, scores=s)), "csv")
    np.testing.assert_allclose(data.scores, s, atol=1e-6)
    assert data.inputs is None


def test_csv_without_feature_names_takes_columns_in_order():
    x, y, _ = make_data()
    spec = InputSpec(labels=LABELS, input_shape=(2, 2), feature_names=None)
    text = table_csv(x, y, features=["p", "q", "r", "s"])
    data = read(csv_bytes(text), "csv", spec=spec)
    np.testing.assert_allclose(data.inputs, x.reshape(6, 2, 2), atol=1e-6)


def test_parquet_round_trips(tmp_path):
    x, y, _ = make_data()
    table = pa.table(
        {
            **{f: x[:, i] for i, f in enumerate(FEATURES)},
            **{label: y[:, j] for j, label in enumerate(LABELS)},
        }
    )
    path = tmp_path / "v.parquet"
    pq.write_table(table, path)
    with path.open("rb") as fh:
        data = read(fh, "parquet")
    np.testing.assert_array_equal(data.inputs, x)
    np.testing.assert_array_equal(data.targets, y)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("f1,f2,f3,f4,a,b,c\n", "no data rows"),
        ("f1,f2,f3,f4,a,b\n1,2,3,4,0,1\n", "label(s) ['c']"),
        ("f1,f2,f3,a,b,c\n1,2,3,0,1,0\n", "missing feature column(s) ['f4']"),
        ("f1,f2,f3,f4,f5,a,b,c\n1,2,3,4,5,0,1,0\n", "unexpected column(s) ['f5']"),
        ("f1,f2,f3,f4,a,b,c\n1,2,3,4,0,1,0\n1,x,3,4,0,1,0\n", "Column 'f2' must be numeric; row 2"),
        ("f1,f2,f3,f4,a,b,c\n1,2,3,4,0,1,0\n1,2,3,nan,0,1,0\n", "'f4' holds a non-finite"),
        ("f1,f2,f3,f4,a,b,c\n1,2,3,4,0,1,0\n1,2,3,4,0,3,0\n", "'b' must hold only 0 and 1; row 2"),
        ("f1,f2,f3,f4,a,b,c\n1,2,3,4,0,1,0\n1,2,3,4,0,1\n", "cannot be parsed"),
        ("a,b,c,score:a,score:b\n0,1,0,0.1,0.2\n", "missing score column(s) ['score:c']"),
        ("a,b,c,score:a,score:b,score:c\n0,1,0,0.1,0.2,7\n", "probabilities in [0, 1]"),
        ("f1,f2,f3,f4,a,b,c\n1,,3,4,0,1,0\n", "empty value at row 1"),
    ],
)
def test_csv_errors_name_the_column_and_row(text, needle):
    with pytest.raises(UploadError) as info:
        read(csv_bytes(text), "csv")
    assert needle in str(info.value)
    assert info.value.status_code == 422


def test_non_parquet_bytes_are_refused():
    with pytest.raises(UploadError, match="not a readable Parquet"):
        read(io.BytesIO(b"PAR1 but not really"), "parquet")


# --- sizes judged before decoding (issue 12) ---------------------------------------------


def _npy(shape, descr="<f4", fortran=False) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}"
    text = text.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    buf.seek(0)
    return buf


def test_npz_estimate_is_the_declared_size_and_leaves_the_file_at_0():
    x, y, _ = make_data(50)
    buf = npz_bytes(X=x, Y=y)
    assert estimate_data_bytes(buf, "npz", SPEC, BIG) == x.nbytes + y.nbytes
    assert buf.tell() == 0
    data = read(buf, "npz")
    np.testing.assert_array_equal(data.inputs, x)


def test_fortran_order_members_read_as_saved():
    x, y, _ = make_data(7)
    buf = npz_bytes(X=np.asfortranarray(x), Y=np.asfortranarray(y))
    data = read(buf, "npz")
    np.testing.assert_array_equal(data.inputs, x)
    np.testing.assert_array_equal(data.targets, y)


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        (
            {"Y.npy": _npy((2, 3), "|u1") + bytes(6) + b"extra", "X.npy": _npy((2, 4)) + bytes(32)},
            "inflates to",
        ),
        (
            {"Y.npy": _npy((2, 3), "|u1") + bytes(2), "X.npy": _npy((2, 4)) + bytes(32)},
            "inflates to",
        ),
        ({"Y.npy": _npy((0, 10**30), "|u1"), "X.npy": _npy((0, 4))}, "axis longer"),
        ({"Y.npy": _npy((2, 3), "|V0"), "X.npy": _npy((2, 4)) + bytes(32)}, "size 0"),
    ],
    ids=["longer", "shorter", "axis-10**30", "zero-itemsize"],
)
def test_npz_member_that_lies_about_its_size(members, needle):
    for check in (lambda b: estimate_data_bytes(b, "npz", SPEC, BIG), lambda b: read(b, "npz")):
        with pytest.raises(UploadError, match=needle) as info:
            check(_zip(members))
        assert info.value.status_code == 422


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f4', 'fortran_order': False, 'shape': ((2, 3), }",
        "{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 200 + "}",
    ],
    ids=["unbalanced", "unclosed-string", "deep"],
)
def test_npz_header_that_does_not_parse_is_422(header):
    text = header.ljust(118) + "\n"
    bad = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()
    with pytest.raises(UploadError, match="Array 'Y'") as info:
        read(_zip({"Y.npy": bad, "X.npy": _npy((2, 4)) + bytes(32)}), "npz")
    assert info.value.status_code == 422


def test_csv_estimate_follows_the_cells_not_the_text():
    x, y, _ = make_data(400)
    text = table_csv(x, y)
    estimate = estimate_data_bytes(csv_bytes(text), "csv", SPEC, BIG)
    decoded = 400 * 7 * 8  # 7 columns of 8-byte numbers
    assert 0.8 * decoded <= estimate <= 1.25 * decoded


def test_csv_decode_is_cut_off_at_the_limit():
    text = "a,b,c\n" + "0,0,0\n" * 200_000  # 1.2 MB of text, 4.8 MB once decoded
    with pytest.raises(UploadError, match="LABELCUT_MAX_DATA_MB") as info:
        read(csv_bytes(text), "csv", max_bytes=2 * 2**20)
    assert info.value.status_code == 413


def test_parquet_estimate_and_row_group_by_row_group_decode(tmp_path):
    x, y, _ = make_data(1000)
    table = pa.table(
        {
            **{f: x[:, i] for i, f in enumerate(FEATURES)},
            **{label: y[:, j] for j, label in enumerate(LABELS)},
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=128)  # 8 row groups
    buf.seek(0)
    assert estimate_data_bytes(buf, "parquet", SPEC, BIG) == 1000 * (4 * 4 + 3 * 1)
    data = read(buf, "parquet")
    np.testing.assert_array_equal(data.inputs, x)
    np.testing.assert_array_equal(data.targets, y)
    with pytest.raises(UploadError, match="LABELCUT_MAX_DATA_MB") as info:
        estimate_data_bytes(buf, "parquet", SPEC, 10_000)
    assert info.value.status_code == 413


# --- multi-class files (issue 15): one class per row --------------------------------------

CLASSES = np.array([0, 2, 1, 1, 0, 2])


def one_hot_of(classes: np.ndarray, n: int = 3) -> np.ndarray:
    return np.eye(n, dtype=np.uint8)[classes]


def test_npz_class_indices_and_names_give_one_hot_targets():
    x, _, _ = make_data()
    for y, names in (
        (CLASSES, None),
        (CLASSES.astype(np.float64), None),  # whole floats are indices too
        (2 - CLASSES, np.array(["c", "b", "a"])),  # indices into the file's own label order
        (np.array(LABELS)[CLASSES], None),  # the class names themselves
    ):
        arrays = {"X": x, "y": y} if names is None else {"X": x, "y": y, "label_names": names}
        data = read(npz_bytes(**arrays), "npz")
        np.testing.assert_array_equal(data.classes, CLASSES)
        np.testing.assert_array_equal(data.targets, one_hot_of(CLASSES))
        np.testing.assert_array_equal(data.inputs, x)


def test_npz_with_both_y_and_Y_reads_Y():
    x, y, _ = make_data()
    data = read(npz_bytes(X=x, Y=y, y=np.zeros(6, dtype=np.int64)), "npz")
    assert data.classes is None
    np.testing.assert_array_equal(data.targets, y)


@pytest.mark.parametrize(
    ("y", "needle"),
    [
        (np.array([0, 1, 3, 0, 0, 0]), "Array 'y': class indices must be in [0, 2]; row 3 is 3"),
        (np.array([0, 1, -1, 0, 0, 0]), "row 3 is -1"),
        (np.array([0, 1, 0.5, 0, 0, 0]), "whole numbers; row 3 is 0.5"),
        (np.zeros((6, 1), dtype=np.int64), "Array 'y' must be 1-D"),
        (np.array(["a", "b", "zebra", "a", "a", "a"]), "row 3: class 'zebra' is not one of"),
        (np.array([True] * 6), "integers"),
    ],
)
def test_npz_bad_class_arrays_name_the_array_and_row(y, needle):
    x, _, _ = make_data()
    with pytest.raises(UploadError) as info:
        read(npz_bytes(X=x, y=y), "npz")
    assert needle in str(info.value)


def test_npz_without_labels_names_both_forms():
    x, _, _ = make_data()
    with pytest.raises(UploadError, match=r"no array 'Y'.*nor 'y'"):
        read(npz_bytes(X=x), "npz")


def test_npz_class_array_counts_its_one_hot_targets_in_the_memory_bound():
    x, _, _ = make_data()
    buf = npz_bytes(X=x, y=CLASSES)
    declared = x.nbytes + CLASSES.nbytes + 6 * len(LABELS)
    assert estimate_data_bytes(buf, "npz", SPEC, BIG) == declared
    with pytest.raises(UploadError) as info:
        read(buf, "npz", max_bytes=declared - 1)
    assert info.value.status_code == 413


def parquet_bytes(table: pa.Table) -> io.BytesIO:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    return buf


def class_table(x: np.ndarray, classes) -> pa.Table:
    columns = {f: x[:, i] for i, f in enumerate(FEATURES)}
    return pa.table({**columns, "label": classes})


def test_csv_and_parquet_label_column_of_class_names():
    x, _, _ = make_data()
    names = np.array(LABELS)[CLASSES]
    table = class_table(x, names)
    csv_buf = io.BytesIO()
    pa.csv.write_csv(table, csv_buf)
    for fmt, buf in (("csv", io.BytesIO(csv_buf.getvalue())), ("parquet", parquet_bytes(table))):
        data = read(buf, fmt)
        np.testing.assert_array_equal(data.classes, CLASSES)
        np.testing.assert_array_equal(data.targets, one_hot_of(CLASSES))
        np.testing.assert_allclose(data.inputs, x)


def test_numeric_class_names_stay_names_in_csv_and_parquet():
    spec = InputSpec(labels=["10", "20", "30"], input_shape=(4,), feature_names=FEATURES)
    x, _, _ = make_data()
    numbers = np.array([10, 30, 20, 20, 10, 30])
    text = io.BytesIO()
    pa.csv.write_csv(class_table(x, numbers), text)
    for fmt, buf in (
        ("csv", io.BytesIO(text.getvalue())),
        ("parquet", parquet_bytes(class_table(x, numbers))),  # an int64 column, read as text
        (
            "parquet",
            parquet_bytes(class_table(x, pa.array(numbers.astype(str)).dictionary_encode())),
        ),
    ):
        data = read(buf, fmt, spec=spec)
        np.testing.assert_array_equal(data.classes, CLASSES)


def test_label_column_with_an_unknown_class_names_the_row():
    x, _, _ = make_data()
    names = list(np.array(LABELS)[CLASSES])
    names[4] = "zebra"
    for fmt, buf in (("parquet", parquet_bytes(class_table(x, names))),):
        with pytest.raises(UploadError, match=r"Column 'label', row 5 holds 'zebra'"):
            read(buf, fmt)
    text = io.BytesIO()
    pa.csv.write_csv(class_table(x, names), text)
    with pytest.raises(UploadError, match=r"row 5 holds 'zebra'.*model's classes \(a, b, c\)"):
        read(io.BytesIO(text.getvalue()), "csv")


def test_parquet_label_column_with_an_empty_value_names_the_row():
    x, _, _ = make_data()
    names = list(np.array(LABELS)[CLASSES])
    names[2] = None
    with pytest.raises(UploadError, match="Column 'label' has an empty value at row 3"):
        read(parquet_bytes(class_table(x, names)), "parquet")


def test_a_file_without_label_columns_says_a_label_column_would_do():
    x, _, _ = make_data()
    table = pa.table({f: x[:, i] for i, f in enumerate(FEATURES)})
    with pytest.raises(UploadError, match="or one 'label' column naming each row's class"):
        read(parquet_bytes(table), "parquet")


def test_parquet_label_column_text_counts_in_the_declared_size():
    x, _, _ = make_data()
    table = class_table(x, np.array(LABELS)[CLASSES])
    buf = parquet_bytes(table)
    declared = estimate_data_bytes(buf, "parquet", SPEC, BIG)
    assert declared >= 6 * (4 * 4 + 8)  # the features plus at least the class offsets
    with pytest.raises(UploadError) as info:
        read(buf, "parquet", max_bytes=6 * 4 * 4 + 8)
    assert info.value.status_code == 413
