"""Torch backend: tune blocks of labels with tensor ops (used for CUDA).

Same keys, candidates, objective and tie rule as the CPU backend, but laid out
as ``(C, n)`` tensors: every sorted position carries its counts and positions
that do not start a distinct score are masked out of the argmax.
"""

from __future__ import annotations

import numpy as np
import torch

from labelcut.tuning import sortkeys
from labelcut.tuning.outcome import DEFAULT_THRESHOLD, LabelOutcomes
from labelcut.tuning.select import TuningSpec, label_statuses, midpoint_thresholds, objective_values

# Scores per block; the block's working tensors take about 60 bytes per score.
_BLOCK_ELEMENTS = 1 << 24

_TORCH_FLOAT = {np.float32: torch.float32, np.float64: torch.float64}
_TORCH_INT = {np.int32: torch.int32, np.int64: torch.int64}


def tune_block_torch(
    scores: torch.Tensor, targets: torch.Tensor, spec: TuningSpec, device: torch.device
) -> LabelOutcomes:
    """Tune the ``C`` labels of ``(n, C)`` ``scores``/``targets`` on ``device``."""
    float_np, int_np = sortkeys.work_dtypes(scores.dtype)
    float_dtype, int_dtype = _TORCH_FLOAT[float_np], _TORCH_INT[int_np]
    n_samples = scores.shape[0]
    values = scores.to(device).t().to(float_dtype).contiguous()
    keys = sortkeys.pack_keys_torch(values, targets.to(device).t())
    del values
    keys = torch.sort(keys, dim=1).values
    bits = keys >> 1
    is_start = torch.ones_like(bits, dtype=torch.bool)
    is_start[:, 1:] = bits[:, 1:] != bits[:, :-1]
    positive = keys & 1
    # cum_before[:, i]: positives among sorted positions < i, for i in 0..n.
    cum_before = torch.nn.functional.pad(torch.cumsum(positive, dim=1), (1, 0))
    del positive
    positives = cum_before[:, -1]

    position = torch.arange(n_samples, device=device)
    tp = (positives[:, None] - cum_before[:, :-1]).to(torch.float64)
    pp = (n_samples - position).to(torch.float64)[None, :]
    objective, feasible = objective_values(tp, pp, positives.clamp(min=1)[:, None].double(), spec)
    del tp
    allowed = is_start if feasible is None else is_start & feasible
    objective = torch.where(allowed, objective, -torch.inf)
    # Ties go to the higher threshold: the last maximum in increasing order.
    best = n_samples - 1 - torch.argmax(objective.flip(1), dim=1)
    reachable = allowed.any(dim=1)
    del objective, allowed, is_start

    upper = bits.gather(1, best[:, None])[:, 0].view(float_dtype).double()
    lower = bits.gather(1, (best - 1).clamp(min=0)[:, None])[:, 0].view(float_dtype).double()
    positives_np = positives.cpu().numpy().astype(np.int64)
    statuses = label_statuses(n_samples, positives_np, reachable.cpu().numpy(), spec)
    tuned = midpoint_thresholds(
        upper.cpu().numpy(), lower.cpu().numpy(), (best > 0).cpu().numpy(), scores.dtype
    )
    ok = np.array([status == "ok" for status in statuses], dtype=bool)
    thresholds = np.where(ok, tuned, spec.fallback)

    queries = np.stack([thresholds, np.full_like(thresholds, DEFAULT_THRESHOLD)], axis=1)
    query_keys = torch.from_numpy(sortkeys.query_bits(queries, float_np)).to(device) << 1
    first = torch.searchsorted(keys, query_keys.to(int_dtype), side="left")
    predicted = (n_samples - first).cpu().numpy()
    true = (positives[:, None] - cum_before.gather(1, first)).cpu().numpy()
    return LabelOutcomes(
        thresholds=thresholds,
        statuses=statuses,
        positives=positives_np,
        true_positives=true[:, 0],
        predicted_positives=predicted[:, 0],
        default_true_positives=true[:, 1],
        default_predicted_positives=predicted[:, 1],
    )


def tune_labels_torch(
    scores: torch.Tensor, targets: torch.Tensor, spec: TuningSpec, device: torch.device
) -> LabelOutcomes:
    """Tune every label of validated ``(n, L)`` inputs with torch on ``device``."""
    n_samples, n_labels = scores.shape
    block_labels = max(1, min(n_labels, _BLOCK_ELEMENTS // n_samples))
    parts = [
        tune_block_torch(
            scores[:, start : start + block_labels],
            targets[:, start : start + block_labels],
            spec,
            device,
        )
        for start in range(0, n_labels, block_labels)
    ]
    return LabelOutcomes.concatenate(parts)
