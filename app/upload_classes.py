"""Multi-class validation targets: one class per row, as an `.npz` array `y` or a `label`
column of class names in CSV/Parquet (issue 15).

The uploads module reads the rest of the file; this one turns the class column into class
indices (int64 (n,), in the model's label order) and one-hot targets (n, L) uint8, with
errors that name the array or column and the row (counted from 1). The mapping itself is
`labelcut.tuning.class_indices`; only its messages are reworded here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labelcut.tuning import class_indices

#: The CSV/Parquet column that names each row's class (unless a model label is so named).
CLASS_COLUMN = "label"
#: The `.npz` array of class indices (or class names), one per row.
CLASS_ARRAY = "y"


class ClassTargetError(ValueError):
    """A class column or array that cannot be read; the uploads module answers 422."""


def class_column_for(labels: Sequence[str]) -> str | None:
    """The class column's name for a model with `labels`; None when a label is called so
    (its own 0/1 column then wins: the file is multi-label)."""
    return None if CLASS_COLUMN in labels else CLASS_COLUMN


def one_hot(classes: np.ndarray, n_labels: int) -> np.ndarray:
    """(n, n_labels) uint8 with a single 1 per row, at `classes[i]`."""
    targets = np.zeros((classes.shape[0], n_labels), dtype=np.uint8)
    targets[np.arange(classes.shape[0]), classes] = 1
    return targets


def classes_from_array(
    y: np.ndarray, labels: Sequence[str], names: Sequence[str] | None
) -> np.ndarray:
    """Class index per row (model order) from the `.npz` array `y`.

    `y` holds integers indexing the file's classes (`names`, the archive's `label_names`,
    when it has them, else the model's labels in order) or the class names themselves.
    """
    if y.ndim != 1:
        raise ClassTargetError(
            f"Array 'y' must be 1-D (one class per row); it has shape {y.shape}."
        )
    if y.shape[0] == 0:
        raise ClassTargetError("Array 'y' has no rows; tuning needs at least one validation row.")
    try:
        if y.dtype.kind in "US":
            return class_indices(y, class_names=list(labels))
        file_names = list(labels) if names is None else list(names)
        found = class_indices(y, n_classes=len(file_names))
    except ValueError as exc:
        raise ClassTargetError(f"Array 'y': {exc}") from None
    if names is None:
        return found
    position = {name: i for i, name in enumerate(labels)}
    remap = np.array([position[name] for name in file_names], dtype=np.int64)
    return remap[found]


def is_class_column_type(kind) -> bool:  # kind: pyarrow.DataType
    """Text (plain or dictionary-encoded) or integers, read as their text."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)


def classes_from_column(table, labels: Sequence[str]) -> np.ndarray:  # table: pyarrow.Table
    """Class index per row (model order) from the table's class column.

    The column is dictionary-encoded once, so only its distinct values are looked up.
    Integers are read as their text ("3" for the class named "3").
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(CLASS_COLUMN)
    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise ClassTargetError(f"Column '{CLASS_COLUMN}' has an empty value at row {row + 1}.")
    if not is_class_column_type(column.type):
        raise ClassTargetError(
            f"Column '{CLASS_COLUMN}' must hold class names (text); it holds {column.type}."
        )
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        column = pc.cast(column, pa.string())
    encoded = column.combine_chunks().dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    distinct = [str(value) for value in encoded.dictionary.to_pylist()]
    position = {name: i for i, name in enumerate(labels)}
    remap = np.array([position.get(name, -1) for name in distinct], dtype=np.int64)
    unknown = np.flatnonzero(remap < 0)
    if unknown.size:
        row = int(np.flatnonzero(np.isin(indices, unknown))[0])
        shown = ", ".join(list(labels)[:20]) + (" ..." if len(labels) > 20 else "")
        raise ClassTargetError(
            f"Column '{CLASS_COLUMN}', row {row + 1} holds {distinct[indices[row]]!r}, which is "
            f"not one of the model's classes ({shown})."
        )
    return remap[indices]
