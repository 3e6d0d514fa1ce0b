"""Validation files in every supported format, good and bad, read from real files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pyarrow as pa
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
