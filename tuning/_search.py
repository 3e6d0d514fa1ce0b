"""Choosing a point on a curve: the objectives, the one tie rule and the one status ladder.

Objectives, for a candidate predicting ``pp`` samples with ``tp`` of the
label's ``P`` positives correct (all counts exact integers held as float64):

- ``"f1"``: ``2 tp / (pp + P)``.
- ``"fbeta"``: ``(1 + beta²) tp / (beta² P + pp)``.
- ``"recall_at_precision"``: ``tp / P`` among candidates with
  ``tp / pp >= target``.
- ``"precision_at_recall"``: ``tp / pp`` among candidates with
  ``tp / P >= target``.

Each value is one correctly rounded division of exact numbers, so two
candidates whose objectives are equal as fractions compare equal, and the tie
rule (:func:`last_maximum`: the higher threshold wins) is applied exactly.
Precision and recall are computed exactly as scikit-learn computes its curve,
so a constraint holds here iff it holds on sklearn's curve. Everything that
picks a cut (a label, a bootstrap replicate, the pooled threshold, the torch
backend) goes through :func:`objective_values`, :func:`last_maximum` and
:func:`status_codes`.

The arithmetic functions take numpy arrays or torch tensors alike, so the CPU
and CUDA paths give the same answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labelcut.tuning import _sorted
from labelcut.tuning._checks import DEFAULT_THRESHOLD, TuningSpec
from labelcut.tuning.result import LabelOutcomes

#: Label statuses in the order they are tested; every status but "ok" means the fallback.
STATUSES: tuple[str, ...] = (
    "no_positives",
    "no_negatives",
    "too_few_positives",
    "target_unreachable",
    "ok",
)
OK = STATUSES.index("ok")


def objective_values(tp: Any, pp: Any, positives: Any, spec: TuningSpec) -> tuple[Any, Any]:
    """Objective value and feasibility of each candidate.

    ``tp``, ``pp``: float64 arrays/tensors of true and predicted positives per
    candidate (``pp >= 1``); ``positives``: the label's positives, broadcastable
    (use 1 for a label without positives: its result is discarded anyway).
    Returns ``(values, feasible)``; ``feasible`` is None when every candidate is.
    """
    if spec.objective == "f1":
        return 2.0 * tp / (pp + positives), None
    if spec.objective == "fbeta":
        beta2 = spec.beta * spec.beta
        return (1.0 + beta2) * tp / (beta2 * positives + pp), None
    precision = tp / pp
    recall = tp / positives
    if spec.objective == "recall_at_precision":
        return recall, precision >= spec.target
    return precision, recall >= spec.target


def last_maximum(values: Any, allowed: Any = None) -> tuple[Any, Any]:
    """The tie rule: index of the last maximum along the last axis, among ``allowed``.

    Candidates are in increasing score order, so the last maximum is the
    higher threshold. ``values``: numpy array or torch tensor, 1-D or 2-D;
    ``allowed``: same shape bool or None (all allowed). Returns ``(index,
    any_allowed)`` with the last axis removed; where nothing is allowed the
    index is meaningless.
    """
    if isinstance(values, torch.Tensor):
        if allowed is not None:
            values = torch.where(allowed, values, -torch.inf)
        width = values.shape[-1]
        index = width - 1 - torch.argmax(values.flip(-1), dim=-1)
        return index, (
            torch.ones_like(index, dtype=torch.bool) if allowed is None else allowed.any(dim=-1)
        )
    if allowed is not None:
        values = np.where(allowed, values, -np.inf)
    width = values.shape[-1]
    index = width - 1 - np.argmax(values[..., ::-1], axis=-1)
    reachable = np.ones(np.shape(index), bool) if allowed is None else allowed.any(axis=-1)
    return index, reachable


def group_bounds(above_tp: Any, above_pp: Any, group_tp: Any, positives: Any, spec: TuningSpec):
    """Upper bound of the objective over the cuts inside a group of consecutive candidates
    (-inf where none can be feasible), for numpy arrays that broadcast.

    ``above_tp``/``above_pp``: counts of the samples above the group; ``group_tp``: the
    group's positives. A cut inside the group includes ``k <= group_tp`` of its positives
    and at least ``max(k, 1)`` of its samples, on top of the counts above. F1, F-beta and
    precision grow with k along ``pp = above + k``, so the bound is their value at
    ``k = group_tp``; recall is at most ``(above_tp + group_tp) / P``.
    """
    tp = above_tp + group_tp
    pp = np.maximum(above_pp + group_tp, above_pp + 1)
    if spec.objective in ("f1", "fbeta"):
        values, _ = objective_values(tp, pp, positives, spec)
        return values
    precision, recall = tp / pp, tp / positives
    if spec.objective == "recall_at_precision":
        return np.where(precision >= spec.target, recall, -np.inf)
    return np.where(recall >= spec.target, precision, -np.inf)


def status_codes(n_samples: Any, positives: Any, reachable: Any, spec: TuningSpec) -> np.ndarray:
    """The status ladder, as indices into :data:`STATUSES` (broadcasting numpy arrays).

    The first that applies: "no_positives", "no_negatives" (every sample
    positive), "too_few_positives" (fewer than ``min_positives``),
    "target_unreachable" (no candidate meets a constraint), else "ok".
    """
    positives = np.asarray(positives)
    unreachable = ~np.asarray(reachable, dtype=bool) if spec.constrained else False
    return np.select(
        [positives == 0, positives == n_samples, positives < spec.min_positives, unreachable],
        [0, 1, 2, 3],
        default=OK,
    )


def label_statuses(
    n_samples: int, positives: np.ndarray, reachable: np.ndarray, spec: TuningSpec
) -> list[str]:
    """:func:`status_codes` as names, one per label."""
    codes = status_codes(n_samples, positives, reachable, spec)
    return [STATUSES[code] for code in np.atleast_1d(codes).tolist()]


def midpoint_thresholds(
    upper: np.ndarray, lower: np.ndarray, has_lower: np.ndarray, score_dtype: torch.dtype
) -> np.ndarray:
    """Thresholds halfway between the chosen cut's two neighbouring scores.

    ``upper`` (L,): lowest score predicted positive; ``lower`` (L,): highest
    score predicted negative, used where ``has_lower``; where nothing is
    predicted negative the midpoint is taken between ``upper`` and 0. The
    midpoint is rounded to the scores' own dtype, so comparing in that dtype
    or in float64 gives the same answer; if rounding lands outside
    ``(lower, upper]`` (adjacent floats), ``upper`` itself is used. Either way
    ``score >= threshold`` reproduces the chosen operating point exactly.
    Returns float64 (L,).
    """
    below = np.where(has_lower, lower, 0.0)
    with np.errstate(under="ignore"):  # halving a subnormal score is harmless
        midpoint = (upper + below) / 2.0
    rounded = torch.from_numpy(midpoint).to(score_dtype).to(torch.float64).numpy()
    outside = (rounded > upper) | (has_lower & (rounded <= lower))
    return np.where(outside, upper, rounded)


# Sorted positions per chunk of the bounded search.
_CHUNK_POSITIONS = 1024


def _best_bounded(candidates: _sorted.Candidates, spec: TuningSpec) -> int:
    """Sorted position where the best F1/F-beta cut starts, read chunk by chunk.

    Exact without evaluating every candidate: in a chunk of sorted positions
    ``[a, b)`` every candidate has ``tp <= tp(a)`` and ``pp >= n - (b - 1)``,
    and F1/F-beta grow with tp and fall with pp (also in rounded float64), so
    ``objective(tp(a), n - (b - 1))`` bounds the chunk. Any chunk whose bound
    reaches the best value seen at a chunk start may hold a maximum; only those
    chunks are searched exactly, and :func:`last_maximum` over their candidates
    is the last maximum over all.
    """
    keys, n, positives = candidates.keys, candidates.n_samples, float(candidates.positives)
    first = np.arange(0, n, _CHUNK_POSITIONS, dtype=np.int64)
    last = np.minimum(first + _CHUNK_POSITIONS, n) - 1
    tp_first = positives - candidates.positives_before(first)
    bound, _ = objective_values(tp_first, (n - last).astype(np.float64), positives, spec)
    starts_value = np.ones(len(first), dtype=bool)  # does a distinct score start at `first`?
    starts_value[1:] = (keys[first[1:]] >> 1) != (keys[first[1:] - 1] >> 1)
    at_first, _ = objective_values(tp_first, (n - first).astype(np.float64), positives, spec)
    lower = float(at_first[starts_value].max())  # position 0 always starts a value
    chosen = np.flatnonzero(bound >= lower)
    positions = np.concatenate([np.arange(first[c], last[c] + 1) for c in chosen.tolist()])
    is_start = positions == 0
    inner = ~is_start
    is_start[inner] = (keys[positions[inner]] >> 1) != (keys[positions[inner] - 1] >> 1)
    positions = positions[is_start]
    tp = positives - candidates.positives_before(positions)
    values, _ = objective_values(tp, (n - positions).astype(np.float64), positives, spec)
    index, _ = last_maximum(values)
    return int(positions[int(index)])


def choose_label(
    candidates: _sorted.Candidates, spec: TuningSpec, score_dtype: torch.dtype
) -> LabelOutcomes:
    """Tune one label from its candidates: its own optimum, status and counts (CPU).

    F1 and F-beta use the bounded search of :func:`_best_bounded`; the
    constrained objectives evaluate every candidate.
    """
    positives = candidates.positives
    upper = lower = None
    reachable = False
    if 0 < positives < candidates.n_samples:
        if spec.constrained:
            values, feasible = objective_values(
                candidates.true_positives, candidates.predicted_positives, float(positives), spec
            )
            index, reachable = last_maximum(values, feasible)
            best = int(index)
            upper = candidates.value(best)
            lower = candidates.value(best - 1) if best > 0 else None
        else:
            position = _best_bounded(candidates, spec)
            reachable = True
            upper = candidates.score_at(position)
            # The score just below the cut: the last one of the previous distinct value.
            lower = candidates.score_at(position - 1) if position > 0 else None
    [status] = label_statuses(
        candidates.n_samples, np.array([positives]), np.array([bool(reachable)]), spec
    )
    threshold = spec.fallback
    if status == "ok":
        assert upper is not None
        [threshold] = midpoint_thresholds(
            np.array([upper]),
            np.array([0.0 if lower is None else lower]),
            np.array([lower is not None]),
            score_dtype,
        )
    return label_outcome(candidates, float(threshold), status)


def label_outcome(candidates: _sorted.Candidates, threshold: float, status: str) -> LabelOutcomes:
    """One label's :class:`LabelOutcomes` at ``threshold``: counts there and at 0.5."""
    tp, pp = candidates.counts_at(threshold)
    default_tp, default_pp = candidates.counts_at(DEFAULT_THRESHOLD)
    return LabelOutcomes(
        thresholds=np.array([threshold], dtype=np.float64),
        statuses=[status],
        positives=np.array([candidates.positives]),
        true_positives=np.array([tp]),
        predicted_positives=np.array([pp]),
        default_true_positives=np.array([default_tp]),
        default_predicted_positives=np.array([default_pp]),
    )


def tune_labels_cpu(scores: torch.Tensor, targets: torch.Tensor, spec: TuningSpec) -> LabelOutcomes:
    """Each label's own optimum of validated ``(n, L)`` inputs, on the CPU threads."""
    sorted_labels = _sorted.SortedLabels(scores, targets)
    return LabelOutcomes.concatenate(
        sorted_labels.walk(lambda _label, found: choose_label(found, spec, scores.dtype))
    )


# ---------------------------------------------------------------------------
# The same search as tensor ops, for CUDA (and tested against the CPU on the CPU).

# Scores per block; the block's working tensors take about 60 bytes per score.
_TORCH_BLOCK_ELEMENTS = 1 << 24
_TORCH_FLOAT = {np.float32: torch.float32, np.float64: torch.float64}
_TORCH_INT = {np.int32: torch.int32, np.int64: torch.int64}


def _tune_block_torch(
    scores: torch.Tensor, targets: torch.Tensor, spec: TuningSpec, device: torch.device
) -> LabelOutcomes:
    """Tune the ``C`` labels of ``(n, C)`` inputs on ``device``, as ``(C, n)`` tensors.

    Every sorted position carries its counts; positions that do not start a
    distinct score are masked out of the tie rule.
    """
    float_np, int_np = _sorted.work_dtypes(scores.dtype)
    float_dtype, int_dtype = _TORCH_FLOAT[float_np], _TORCH_INT[int_np]
    n_samples = scores.shape[0]
    values = scores.to(device).t().to(float_dtype).contiguous()
    keys = _sorted.pack_keys_torch(values, targets.to(device).t())
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
    best, reachable = last_maximum(objective, is_start if feasible is None else is_start & feasible)
    del objective, is_start

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
    query_keys = torch.from_numpy(_sorted.query_bits(queries, float_np)).to(device) << 1
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
    """Each label's own optimum of validated ``(n, L)`` inputs, with torch on ``device``."""
    n_samples, n_labels = scores.shape
    block_labels = max(1, min(n_labels, _TORCH_BLOCK_ELEMENTS // n_samples))
    parts = [
        _tune_block_torch(
            scores[:, start : start + block_labels],
            targets[:, start : start + block_labels],
            spec,
            device,
        )
        for start in range(0, n_labels, block_labels)
    ]
    return LabelOutcomes.concatenate(parts)
