"""Parquet datasets for the tune-job tests: the yeast test split's labels and the bundled
model's scores as `score:<label>` columns, split over several files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from labelcut.models import YEAST_TEST, load_model


@lru_cache(maxsize=1)
def yeast_scores() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(scores (917, 14) float32, targets (917, 14) uint8, labels) of the bundled model."""
    model = load_model(None, device="cpu")
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        X, Y = z["X"], z["Y"]
    scores = model.predict_proba(X.astype(np.float32))
    scores.setflags(write=False)
    return scores, Y.astype(np.uint8), tuple(model.labels)


def write_score_dataset(directory: Path, files: int = 4, repeat: int = 1) -> Path:
    """`files` Parquet files of label and `score:<label>` columns under `directory`: the
    yeast rows `repeat` times over. Returns `directory`."""
    scores, targets, labels = yeast_scores()
    scores, targets = np.tile(scores, (repeat, 1)), np.tile(targets, (repeat, 1))
    directory.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(scores)), files)):
        columns = {label: targets[rows, j] for j, label in enumerate(labels)}
        columns |= {f"score:{label}": scores[rows, j] for j, label in enumerate(labels)}
        pq.write_table(pa.table(columns), directory / f"part-{i:04d}.parquet")
    return directory


def score_npz(path: Path) -> Path:
    """The same rows as one `.npz` upload (`scores`, `Y`, `label_names`)."""
    scores, targets, labels = yeast_scores()
    np.savez(path, scores=scores, Y=targets, label_names=np.array(labels))
    return path
