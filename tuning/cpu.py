"""CPU backend: split labels into blocks, sort them on threads, tune each label."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

from labelcut.tuning import sortkeys
from labelcut.tuning.candidates import Candidates, Scratch, candidates_from_sorted
from labelcut.tuning.outcome import DEFAULT_THRESHOLD, LabelOutcomes
from labelcut.tuning.select import (
    TuningSpec,
    best_candidate,
    label_statuses,
    midpoint_thresholds,
    objective_values,
)

T = TypeVar("T")

# About this many scores per block: large enough to amortise Python overhead,
# small enough that a block's working arrays stay far below the input's size.
_BLOCK_ELEMENTS = 1 << 23


def block_plan(n_samples: int, n_labels: int) -> tuple[int, int]:
    """(labels per block, worker threads) for an ``(n_samples, n_labels)`` input.

    Threads follow ``torch.get_num_threads()`` (capped by the CPUs this
    process may use), so ``torch.set_num_threads`` also limits tuning.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    threads = max(1, min(torch.get_num_threads(), cpus))
    # At least one block per thread, and no block above _BLOCK_ELEMENTS scores.
    block_labels = max(1, min(-(-n_labels // threads), _BLOCK_ELEMENTS // max(n_samples, 1)))
    n_blocks = -(-n_labels // block_labels)
    return block_labels, min(threads, n_blocks)


def sorted_label_blocks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    block_labels: int,
    workers: int,
    handle_label: Callable[[int, Candidates], T],
) -> list[T]:
    """Call ``handle_label(label_index, candidates)`` for every label; results in label order.

    Labels are processed in blocks of ``block_labels`` on ``workers`` threads.
    Each block is copied out, packed into keys and sorted (numpy releases the
    GIL while sorting, so the threads use separate cores). Only one label's
    candidates per thread are alive at a time.
    """
    float_dtype, _ = sortkeys.work_dtypes(scores.dtype)
    n_labels = scores.shape[1]

    def run(start: int) -> list[T]:
        stop = min(start + block_labels, n_labels)
        values, labels = sortkeys.label_block(scores, targets, start, stop)
        keys = sortkeys.pack_keys(values, labels)
        del values, labels
        keys.sort(axis=1)
        scratch = Scratch(keys.shape[1], keys.dtype)
        return [
            handle_label(start + row, candidates_from_sorted(keys[row], float_dtype, scratch))
            for row in range(stop - start)
        ]

    starts = range(0, n_labels, block_labels)
    if workers <= 1 or len(starts) <= 1:
        blocks = [run(start) for start in starts]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            blocks = list(pool.map(run, starts))
    return [result for block in blocks for result in block]


def tune_label(candidates: Candidates, spec: TuningSpec, score_dtype: torch.dtype) -> LabelOutcomes:
    """Tune one label on the CPU from its candidates (see :mod:`tuning.select`)."""
    float_dtype, _ = sortkeys.work_dtypes(score_dtype)
    positives = candidates.positives
    best = None
    if 0 < positives < candidates.n_samples:
        values, feasible = objective_values(
            candidates.true_positives, candidates.predicted_positives, float(positives), spec
        )
        best = best_candidate(values, feasible)
    [status] = label_statuses(
        candidates.n_samples, np.array([positives]), np.array([best is not None]), spec
    )
    threshold = spec.fallback
    if status == "ok":
        assert best is not None
        [threshold] = midpoint_thresholds(
            np.array([candidates.value(best)]),
            np.array([candidates.value(best - 1) if best > 0 else 0.0]),
            np.array([best > 0]),
            score_dtype,
        )
    query = sortkeys.query_bits(np.array([threshold, DEFAULT_THRESHOLD]), float_dtype)
    tp, pp = candidates.counts_at(query[0])
    default_tp, default_pp = candidates.counts_at(query[1])
    return LabelOutcomes(
        thresholds=np.array([threshold], dtype=np.float64),
        statuses=[status],
        positives=np.array([positives]),
        true_positives=np.array([tp]),
        predicted_positives=np.array([pp]),
        default_true_positives=np.array([default_tp]),
        default_predicted_positives=np.array([default_pp]),
    )


def tune_labels_cpu(scores: torch.Tensor, targets: torch.Tensor, spec: TuningSpec) -> LabelOutcomes:
    """Tune every label of validated ``(n, L)`` inputs on the CPU threads."""
    block_labels, workers = block_plan(*scores.shape)
    parts = sorted_label_blocks(
        scores,
        targets,
        block_labels,
        workers,
        lambda _label, candidates: tune_label(candidates, spec, scores.dtype),
    )
    return LabelOutcomes.concatenate(parts)
