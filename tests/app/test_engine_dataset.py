"""The dataset engine's datasets: files found from a folder, glob or URL; schemas checked
from the footers; partitions cut from row groups; values checked where a partition is
read, each error naming the file, the column and the row. Real Parquet files throughout."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelcut.app.engine import DatasetError, open_dataset, read_model_spec
from labelcut.app.engine.partition import PartitionTask, partition_scores
from labelcut.models import DEFAULT_MODEL_DIR, YEAST_TEST, load_model

from ..support.parquet_sets import columns_table, write_dataset

LABELS = ["a", "b", "c"]


def _scores_table(n: int = 40, seed: int = 0) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.random((n, len(LABELS)), dtype=np.float32)
    targets = (rng.random((n, len(LABELS))) < scores).astype(np.uint8)
    return columns_table(targets, LABELS, scores=scores), scores, targets


def _all_scores(dataset) -> tuple[np.ndarray, np.ndarray]:
    parts = [
        partition_scores(PartitionTask(dataset.fs, p, dataset.layout)) for p in dataset.partitions
    ]
    return np.concatenate([s for s, _ in parts]), np.concatenate([t for _, t in parts])


def test_a_folder_is_its_parquet_files_in_order_hidden_ones_skipped(tmp_path):
    table, scores, targets = _scores_table()
    write_dataset(tmp_path / "set", table, cuts=[10, 25])
    (tmp_path / "set" / "_SUCCESS").write_text("")
    (tmp_path / "set" / ".part-000.parquet.crc").write_text("junk")
    (tmp_path / "set" / "notes.txt").write_text("not data")
    dataset = open_dataset(str(tmp_path / "set"))
    assert [f.rsplit("/", 1)[-1] for f in dataset.files] == [
        "part-000.parquet",
        "part-001.parquet",
        "part-002.parquet",
    ]
    assert dataset.labels == LABELS and dataset.rows == 40
    got_scores, got_targets = _all_scores(dataset)
    np.testing.assert_array_equal(got_scores, scores)
    np.testing.assert_array_equal(got_targets, targets)


def test_a_glob_a_single_file_and_a_file_url_name_the_same_rows(tmp_path):
    table, scores, _ = _scores_table()
    write_dataset(tmp_path / "set", table, cuts=[20])
    by_glob = open_dataset(str(tmp_path / "set" / "part-*.parquet"))
    assert by_glob.rows == 40 and len(by_glob.files) == 2
    one = open_dataset(str(tmp_path / "set" / "part-001.parquet"))
    assert one.rows == 20
    np.testing.assert_array_equal(_all_scores(one)[0], scores[20:])
    by_url = open_dataset(f"file://{tmp_path / 'set'}")
    assert by_url.rows == 40


def test_an_fsspec_memory_url_is_read_through_its_filesystem():
    import fsspec

    table, scores, _ = _scores_table(seed=3)
    fs = fsspec.filesystem("memory")
    for i, (start, stop) in enumerate([(0, 15), (15, 40)]):
        with fs.open(f"/engine-test/set/p{i}.parquet", "wb") as fh:
            pq.write_table(table.slice(start, stop - start), fh)
    try:
        dataset = open_dataset("memory://engine-test/set")
        assert dataset.rows == 40
        np.testing.assert_array_equal(_all_scores(dataset)[0], scores)
    finally:
        fs.rm("/engine-test", recursive=True)


def test_partitions_pack_row_groups_up_to_the_limit_across_files(tmp_path):
    table, scores, _ = _scores_table(n=100)
    write_dataset(tmp_path / "set", table, cuts=[70], row_group_rows=10)
    dataset = open_dataset(str(tmp_path / "set"), partition_rows=25)
    # 7 + 3 row groups of 10 rows, two to a partition; the fourth spans both files.
    assert [p.rows for p in dataset.partitions] == [20, 20, 20, 20, 20]
    assert [p.index for p in dataset.partitions] == list(range(5))
    spanning = dataset.partitions[3].pieces
    assert [(piece.path.rsplit("/", 1)[-1], piece.row_groups, piece.first_row, piece.rows)
            for piece in spanning] == [("part-000.parquet", (6,), 60, 10),
                                       ("part-001.parquet", (0,), 0, 10)]  # fmt: skip
    assert dataset.partitions[4].pieces[0].first_row == 10
    np.testing.assert_array_equal(_all_scores(dataset)[0], scores)
    # A row group larger than the limit is a partition of its own, never split.
    whole = open_dataset(str(tmp_path / "set"), partition_rows=5)
    assert [p.rows for p in whole.partitions] == [10] * 10
    # Small files share a partition.
    assert [p.rows for p in open_dataset(str(tmp_path / "set")).partitions] == [100]


def test_labels_follow_the_model_when_one_is_given(tmp_path):
    model = load_model(device="cpu")
    with np.load(YEAST_TEST) as z:
        features, targets = z["X"][:50], z["Y"][:50]
    rng = np.random.default_rng(1)
    scores = rng.random(targets.shape, dtype=np.float32)
    labels = list(model.labels)
    table = columns_table(targets, labels, scores=scores)
    reordered = table.select(list(reversed(table.column_names)))
    write_dataset(tmp_path / "scores", reordered, cuts=[])
    dataset = open_dataset(str(tmp_path / "scores"), model=read_model_spec(DEFAULT_MODEL_DIR))
    assert dataset.labels == labels
    np.testing.assert_array_equal(_all_scores(dataset)[0], scores)
    write_dataset(
        tmp_path / "features",
        columns_table(targets, labels, features=features, feature_names=model.feature_names),
        cuts=[20],
    )
    spec = read_model_spec(DEFAULT_MODEL_DIR)
    featured = open_dataset(str(tmp_path / "features"), model=spec)
    parts = [
        partition_scores(
            PartitionTask(featured.fs, p, featured.layout, str(DEFAULT_MODEL_DIR), "cpu")
        )
        for p in featured.partitions
    ]
    got = np.concatenate([s for s, _ in parts])
    np.testing.assert_allclose(got, model.predict_proba(features), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.concatenate([t for _, t in parts]), targets)


def test_float64_scores_stay_float64(tmp_path):
    table, scores, _ = _scores_table()
    wide = table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.float64() if f.name.startswith("score:") else f.type)
                for f in table.schema
            ]
        )
    )
    write_dataset(tmp_path / "set", wide, cuts=[5])
    got = _all_scores(open_dataset(str(tmp_path / "set")))[0]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, scores.astype(np.float64))


# --- bad datasets: a DatasetError naming the file and the column ---------------------------


def test_no_files_and_no_such_path_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no Parquet files"):
        open_dataset(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="holds no Parquet files"):
        open_dataset(str(tmp_path / "empty" / "*.parquet"))


def test_an_unreadable_file_is_named(tmp_path):
    table, _, _ = _scores_table()
    write_dataset(tmp_path / "set", table, cuts=[20])
    bad = tmp_path / "set" / "part-001.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file PAR1")
    with pytest.raises(DatasetError, match=r"part-001\.parquet.*not a readable Parquet"):
        open_dataset(str(tmp_path / "set"))


def test_mismatched_schemas_between_files_name_both_and_the_columns(tmp_path):
    table, _, _ = _scores_table()
    write_dataset(tmp_path / "set", table, cuts=[20])
    pq.write_table(table.drop_columns(["score:b"]), tmp_path / "set" / "part-002.parquet")
    with pytest.raises(DatasetError) as caught:
        open_dataset(str(tmp_path / "set"))
    message = str(caught.value)
    assert "part-002.parquet" in message and "part-000.parquet" in message
    assert "score:b" in message


def test_a_missing_label_column_is_named(tmp_path):
    table, _, _ = _scores_table()
    write_dataset(tmp_path / "set", table.drop_columns(["b"]), cuts=[])
    with pytest.raises(DatasetError, match=r"part-000\.parquet.*no column for label\(s\) \['b'\]"):
        open_dataset(str(tmp_path / "set"))


def test_a_non_numeric_column_is_named(tmp_path):
    table, _, _ = _scores_table()
    text = table.set_column(0, "a", pa.array(["yes"] * table.num_rows))
    write_dataset(tmp_path / "set", text, cuts=[])
    with pytest.raises(
        DatasetError, match=r"Column 'a' of file '.*part-000\.parquet' must be numeric"
    ):
        open_dataset(str(tmp_path / "set"))


def test_features_without_a_model_are_refused(tmp_path):
    targets = np.zeros((5, 2), dtype=np.uint8)
    table = columns_table(targets, ["a", "b"], features=np.zeros((5, 3), np.float32))
    write_dataset(tmp_path / "set", table, cuts=[])
    with pytest.raises(DatasetError, match="features need a model bundle"):
        open_dataset(str(tmp_path / "set"))


def test_features_that_do_not_match_the_model_are_named(tmp_path):
    spec = read_model_spec(DEFAULT_MODEL_DIR)
    targets = np.zeros((5, len(spec.labels)), dtype=np.uint8)
    names = [*spec.feature_names[:-1], "extra"]
    table = columns_table(
        targets, spec.labels, features=np.zeros((5, len(names)), np.float32), feature_names=names
    )
    write_dataset(tmp_path / "set", table, cuts=[])
    with pytest.raises(DatasetError, match=r"missing feature column\(s\) \['Att103'\].*'extra'"):
        open_dataset(str(tmp_path / "set"), model=spec)


def _bad_value(tmp_path, column: str, row: int, value) -> str:
    """The error of a dataset whose `column` holds `value` at `row` (0-based) of file 1."""
    table, _, _ = _scores_table()
    values = table.column(column).to_numpy().astype(np.float64)
    mask = np.zeros(len(values), dtype=bool)
    if value is None:
        mask[20 + row] = True
    else:
        values[20 + row] = value
    array = pa.array(values, mask=mask)
    table = table.set_column(table.column_names.index(column), column, array)
    write_dataset(tmp_path / "set", table, cuts=[20], row_group_rows=8)
    dataset = open_dataset(str(tmp_path / "set"), partition_rows=8)
    with pytest.raises(DatasetError) as caught:
        _all_scores(dataset)
    return str(caught.value)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (
            "score:b",
            float("nan"),
            r"Score column 'score:b' .* \[0, 1\]; row 12 of file '.*part-001",
        ),
        ("score:c", 1.5, r"Score column 'score:c' .* \[0, 1\]; row 12 of file '.*part-001"),
        ("score:a", -0.25, r"Score column 'score:a' .*row 12 of file"),
        ("b", 2.0, r"Label column 'b' must hold only 0 and 1; row 12 of file '.*part-001.*holds 2"),
        ("a", None, r"Column 'a' has an empty value at row 12 of file '.*part-001"),
    ],
)
def test_a_bad_value_names_the_file_the_column_and_the_row(tmp_path, column, value, expected):
    import re

    message = _bad_value(tmp_path, column, row=11, value=value)
    assert re.search(expected, message), message
