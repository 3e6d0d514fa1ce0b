"""Per-label counts at given thresholds, in row chunks (any device)."""

from __future__ import annotations

import numpy as np
import torch

_CHUNK_ELEMENTS = 1 << 22


def counts_at(
    scores: torch.Tensor, targets: torch.Tensor, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, predicted positives), int64 (L,), for ``score >= thresholds[j]``.

    Compared in float64 on the scores' device, exactly as :func:`tuning.apply_thresholds`.
    """
    n_samples, n_labels = scores.shape
    limits = torch.as_tensor(thresholds, dtype=torch.float64, device=scores.device)
    tp = torch.zeros(n_labels, dtype=torch.int64, device=scores.device)
    pp = torch.zeros(n_labels, dtype=torch.int64, device=scores.device)
    rows = max(1, _CHUNK_ELEMENTS // n_labels)
    for start in range(0, n_samples, rows):
        predicted = scores[start : start + rows].to(torch.float64) >= limits
        pp += predicted.sum(dim=0)
        truth = targets[start : start + rows].to(device=scores.device, dtype=torch.bool)
        tp += (predicted & truth).sum(dim=0)
    return tp.cpu().numpy(), pp.cpu().numpy()
