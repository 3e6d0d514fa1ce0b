"""Run the model over validation inputs in row chunks, so memory stays bounded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labelcut.models import LoadedModel

DEFAULT_CHUNK_ROWS = 8192


def score_inputs(
    model: LoadedModel,
    inputs: np.ndarray,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Probabilities `(n, L)` float32 for `inputs` `(n, *input_shape)`, chunk by chunk.

    `progress(k)` is called after each chunk with the number of rows it scored.
    """
    n = len(inputs)
    scores = np.empty((n, len(model.labels)), dtype=np.float32)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        scores[start:stop] = model.predict_proba(inputs[start:stop])
        if progress is not None:
            progress(stop - start)
    return scores
