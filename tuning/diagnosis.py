"""What the targets say about the problem: multi-label or really multi-class?"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labelcut.tuning._checks import as_tensor, check_targets
from labelcut.tuning._products import count_product

#: At most this many never-co-occurring label pairs are listed (the count is always given).
MAX_PAIRS = 50
#: A share of rows with exactly one label at least this high reads as multi-class.
MULTICLASS_SHARE = 0.95
_CHUNK_ELEMENTS = 1 << 22


def _chunk_rows(n_labels: int) -> int:
    """Rows per chunk: at most _CHUNK_ELEMENTS targets, and fewer than 2**24 rows (float32
    sums of 0/1 products, and int32 column sums, are exact)."""
    return min(max(1, _CHUNK_ELEMENTS // n_labels), 1 << 24)


def _chunk(targets: torch.Tensor, start: int, rows: int) -> np.ndarray:
    """Rows ``start:start + rows`` of checked targets (never bfloat16) as numpy."""
    return targets[start : start + rows].cpu().numpy()


def _counts(targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(labels per row int64 (n,), positives per label int64 (L,)), in chunks of rows."""
    n_samples, n_labels = targets.shape
    per_row = np.empty(n_samples, dtype=np.int64)
    support = np.zeros(n_labels, dtype=np.int64)
    rows = _chunk_rows(n_labels)
    # The narrowest sums that are exact (0/1 values): less memory traffic than int64's.
    row_sum = np.uint16 if n_labels < 1 << 16 else np.int64
    for start in range(0, n_samples, rows):
        chunk = _chunk(targets, start, rows)
        per_row[start : start + len(chunk)] = chunk.sum(axis=1, dtype=row_sum)
        support += chunk.sum(axis=0, dtype=np.int32)
    return per_row, support


def _never_cooccur(
    targets: torch.Tensor, per_row: np.ndarray, support: np.ndarray
) -> tuple[int, list[tuple[int, int]]]:
    """(how many, the first :data:`MAX_PAIRS` in label order) pairs ``a < b`` of labels that
    both have positives but share no row.

    Label blocks of ``a`` at a time (at most :data:`_CHUNK_ELEMENTS` pairs each, so memory
    stays bounded however many labels): only rows with two or more labels can show a pair,
    and only pairs not seen yet need looking for, so each chunk of rows multiplies just its
    multi-label rows and the labels of the pairs still unseen: on dense data the first
    chunk settles most pairs, and on multi-class data nothing is multiplied at all.
    """
    n_samples, n_labels = targets.shape
    present = support > 0
    rows = _chunk_rows(n_labels)
    block = max(1, min(n_labels, _CHUNK_ELEMENTS // n_labels))
    label_index = np.arange(n_labels)
    count, pairs = 0, []
    for first in range(0, n_labels, block):
        last = min(first + block, n_labels)
        unseen = present[first:last, None] & present[None, :]
        unseen &= label_index[None, :] > label_index[first:last, None]
        for start in range(0, n_samples, rows):
            multi_rows = np.flatnonzero(per_row[start : start + rows] >= 2)
            involved_a = np.flatnonzero(unseen.any(axis=1))
            involved_b = np.flatnonzero(unseen.any(axis=0))
            if len(involved_a) == 0:
                break
            if len(multi_rows) == 0:
                continue
            multi = _chunk(targets, start, rows)[multi_rows]
            left = multi[:, first + involved_a].astype(np.float32)
            right = multi[:, involved_b].astype(np.float32)
            seen = count_product(left.T, right) > 0  # sums of 0/1 products: > 0 iff any
            unseen[np.ix_(involved_a, involved_b)] &= ~seen
        a, b = np.nonzero(unseen)
        count += len(a)
        wanted = MAX_PAIRS - len(pairs)
        pairs += list(zip((a[:wanted] + first).tolist(), b[:wanted].tolist(), strict=True))
    return count, pairs


def diagnose(targets: Any, label_names: Any = None) -> dict[str, Any]:
    """Describe ``(n, L)`` 0/1 ``targets`` (numpy or torch, any bool/int/float dtype).

    Returns a JSON-ready dict:

    - ``n_samples``, ``n_labels``; ``label_cardinality``: mean labels per row;
    - ``rows_with_0_labels``, ``rows_with_1_label``, ``rows_with_2_or_more_labels``:
      shares of rows (floats in [0, 1]);
    - ``prevalence``: share of rows with each label (list of L floats, in label order);
    - ``labels_without_positives``: labels with no positive row;
    - ``never_cooccur``: pairs ``[a, b]`` (a before b) of labels that both have
      positives but never share a row, at most :data:`MAX_PAIRS` of them in label
      order; ``never_cooccur_count`` (all of them) and ``never_cooccur_truncated``;
    - ``looks_multiclass``: at least :data:`MULTICLASS_SHARE` of rows have exactly
      one label (and there are 2+ labels);
    - ``messages``: plain-English findings.

    Labels are named by ``label_names`` or "0".."L-1".
    """
    values = as_tensor(targets, "targets")
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(
            "targets must be a non-empty 2-D array of shape (n_samples, n_labels), "
            f"but its shape is {tuple(values.shape)}."
        )
    values = check_targets(values, tuple(values.shape))
    n_samples, n_labels = values.shape
    names = (
        [str(j) for j in range(n_labels)] if label_names is None else [str(x) for x in label_names]
    )
    if len(names) != n_labels:
        raise ValueError(
            f"label_names must have one name per label ({n_labels}), but it has {len(names)}."
        )
    per_row, support = _counts(values)
    share = [
        float(np.mean(per_row == 0)),
        float(np.mean(per_row == 1)),
        float(np.mean(per_row >= 2)),
    ]
    present = support > 0
    never_count, never_pairs = _never_cooccur(values, per_row, support)
    pairs = [[names[a], names[b]] for a, b in never_pairs]
    missing = [names[j] for j in np.flatnonzero(~present).tolist()]
    multiclass = n_labels >= 2 and share[1] >= MULTICLASS_SHARE

    report = {
        "n_samples": int(n_samples),
        "n_labels": int(n_labels),
        "label_cardinality": float(per_row.mean()),
        "rows_with_0_labels": share[0],
        "rows_with_1_label": share[1],
        "rows_with_2_or_more_labels": share[2],
        "prevalence": (support / n_samples).astype(float).tolist(),
        "labels_without_positives": missing,
        "never_cooccur": pairs,
        "never_cooccur_count": never_count,
        "never_cooccur_truncated": bool(never_count > MAX_PAIRS),
        "looks_multiclass": bool(multiclass),
    }
    report["messages"] = _messages(report)
    return report


def _messages(report: dict[str, Any]) -> list[str]:
    """The plain-English findings of a diagnosis."""
    share = [report["rows_with_0_labels"], report["rows_with_1_label"]]
    multiclass, missing = report["looks_multiclass"], report["labels_without_positives"]
    messages = []
    if multiclass:
        messages.append(
            f"{share[1]:.0%} of rows have exactly one label: the data looks multi-class, "
            "not multi-label. A softmax model trained with CrossEntropyLoss fits it better "
            "than independent sigmoids; meanwhile the exactly_one decision rule (argmax) "
            "serves it: tune with `decision_rule=exactly_one` meanwhile."
        )
    if share[0] > 0:
        messages.append(f"{share[0]:.1%} of rows have no label at all.")
    if missing:
        messages.append(
            f"{len(missing)} label(s) have no positive row, so their thresholds cannot be "
            f"tuned on this data: {', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}."
        )
    pairs = report["never_cooccur_count"]
    if pairs and not multiclass:
        listed = f" (the first {MAX_PAIRS} are listed)" if report["never_cooccur_truncated"] else ""
        messages.append(
            f"{pairs} pair(s) of labels that both occur never occur together{listed}; if whole "
            "groups of labels exclude each other, a softmax over each group may fit them better."
        )
    return messages


def rename_labels(report: dict[str, Any], label_names: list[str]) -> dict[str, Any]:
    """A copy of a diagnosis made with the default names "0".."L-1", using ``label_names``."""
    renamed = dict(report)
    renamed["labels_without_positives"] = [
        label_names[int(j)] for j in report["labels_without_positives"]
    ]
    renamed["never_cooccur"] = [
        [label_names[int(a)], label_names[int(b)]] for a, b in report["never_cooccur"]
    ]
    renamed["messages"] = _messages(renamed)
    return renamed
