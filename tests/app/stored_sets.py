"""Store a threshold set the way wave 2 stores them (SPEC-wave2: extras in `params`),
straight into a server's SQLite store, for the /predict tests to activate over HTTP.

The report (`result`) is a real one, from `tune_thresholds` on the given scores, so that
every route that shows the set can; its per-label thresholds are replaced by the stored
ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labelcut import tuning
from labelcut.app.store import NewThresholdSet, ThresholdStore


def store_set(
    data_dir: Path,
    model: Any,
    scores: np.ndarray,
    targets: np.ndarray,
    thresholds: np.ndarray,
    params: dict[str, Any],
    *,
    objective: str = "f1",
) -> int:
    """Save a set of `model` (inactive) with `thresholds` `(L,)` and extra `params`; its id."""
    labels = list(model.labels)
    report = tuning.tune_thresholds(
        scores, targets, "f1", n_bootstrap=0, strategy="per_label"
    ).to_dict(label_names=labels)
    for entry, value in zip(report["per_label"], thresholds, strict=True):
        entry["threshold"] = float(value)
    store = ThresholdStore(Path(data_dir) / "thresholds.sqlite3")
    try:
        stored = store.save(
            NewThresholdSet(
                model_name=model.name,
                model_sha256=model.sha256,
                labels=labels,
                objective=objective,
                params={**report["params"], **params},
                data_sha256="0" * 64,
                n_samples=len(scores),
                thresholds=[float(t) for t in thresholds],
                result={key: report.get(key) for key in ("per_label", "summary", "diagnosis")},
            ),
            activate=False,
        )
    finally:
        store.close()
    return stored.id
