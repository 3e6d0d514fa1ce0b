"""The parts of a tune from statistics that are not thresholds: arguments, diagnosis, estimate.

- :func:`check_tune_kwargs`: ``tune_thresholds``' keyword arguments, checked
  exactly as it checks them (same defaults, same ``ValueError`` messages).
- :func:`diagnosis_from_counts`: :func:`tuning.diagnose` of the targets from
  the counts the statistics carry (rows with 0, 1, 2+ labels, positives per
  label, which label pairs co-occur): the same dict, value for value.
- :func:`estimate_unavailable`: the cross-fitted estimate (issue 20) needs
  each row's fold, which statistics do not keep; its fields are nulls with
  that reason.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

import numpy as np

from labelcut.tuning import _checks, estimate, objectives
from labelcut.tuning.diagnosis import MAX_PAIRS, MULTICLASS_SHARE, _messages

#: Why a tune from statistics carries no cross-fitted estimate.
ESTIMATE_REASON = (
    "not computed from statistics: the cross-fitted estimate needs each row's fold, "
    "and tuning from merged statistics does not keep rows"
)
_SPEC_ARGUMENTS = (
    "objective", "beta", "target", "min_positives", "fallback", "strategy", "shrinkage",
    "n_bootstrap", "seed", "confidence", "cost_fp", "cost_fn", "decision_rule", "npv_target",
    "wilson_confidence", "estimate",
)  # fmt: skip


def tune_defaults() -> dict[str, Any]:
    """``tune_thresholds``' keyword arguments and their defaults (read from its signature)."""
    from labelcut.tuning.tune import tune_thresholds  # late: tune imports much of tuning

    parameters = inspect.signature(tune_thresholds).parameters
    return {name: p.default for name, p in parameters.items() if name not in ("scores", "targets")}


def check_tune_kwargs(
    n_labels: int, **tune_kwargs: Any
) -> tuple[_checks.TuningSpec, bool, list[str] | None]:
    """(spec, return_curves, label names) from ``tune_thresholds``' keyword arguments.

    Raises ``ValueError`` for an unknown argument or a bad value, as it does.
    """
    defaults = tune_defaults()
    unknown = sorted(set(tune_kwargs) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown tuning argument(s) {', '.join(unknown)}; "
            f"tune_thresholds accepts {', '.join(sorted(defaults))}."
        )
    arguments = {**defaults, **tune_kwargs}
    spec = _checks.check_spec(**{name: arguments[name] for name in _SPEC_ARGUMENTS})
    if spec.strategy == "adaptive" and spec.objective == "f1" and not objectives.handles(spec):
        # "adaptive" chooses on the rows' folds, which statistics do not keep: it runs as
        # "shrunk" (its other half), and the result's strategy says "shrunk". (With other
        # objectives "adaptive" is "shrunk" in tune_thresholds too, and keeps its name.)
        spec = replace(spec, strategy="shrunk")
    _checks.resolve_device(arguments["device"])  # checked; statistics are tuned on the CPU
    return_curves = arguments["return_curves"]
    if not isinstance(return_curves, bool):
        raise ValueError(f"return_curves must be True or False, but got {return_curves!r}.")
    names = _checks.check_label_names(arguments["label_names"], n_labels)
    return spec, return_curves, names


def diagnosis_from_counts(
    n_samples: int, rows_by_labels: np.ndarray, support: np.ndarray, together: np.ndarray
) -> dict[str, Any]:
    """:func:`tuning.diagnose`'s report from counts.

    ``rows_by_labels`` (3,): rows with 0, 1 and 2+ positive labels; ``support``
    (L,) positives per label; ``together`` (L, L) bool: pairs seen in one row.
    """
    n_labels = len(support)
    support = np.asarray(support, dtype=np.int64)
    share = [float(count / n_samples) for count in np.asarray(rows_by_labels).tolist()]
    present = support > 0
    upper = np.triu(np.ones((n_labels, n_labels), dtype=bool), k=1)
    never = upper & ~together & present[:, None] & present[None, :]
    first, second = np.nonzero(never)
    pairs = [
        [str(a), str(b)]
        for a, b in zip(first[:MAX_PAIRS].tolist(), second[:MAX_PAIRS].tolist(), strict=True)
    ]
    report = {
        "n_samples": int(n_samples),
        "n_labels": int(n_labels),
        "label_cardinality": float(int(support.sum()) / n_samples),
        "rows_with_0_labels": share[0],
        "rows_with_1_label": share[1],
        "rows_with_2_or_more_labels": share[2],
        "prevalence": (support / n_samples).astype(float).tolist(),
        "labels_without_positives": [str(j) for j in np.flatnonzero(~present).tolist()],
        "never_cooccur": pairs,
        "never_cooccur_count": len(first),
        "never_cooccur_truncated": bool(len(first) > MAX_PAIRS),
        "looks_multiclass": bool(n_labels >= 2 and share[1] >= MULTICLASS_SHARE),
    }
    report["messages"] = _messages(report)
    return report


def estimate_unavailable(n_labels: int) -> dict[str, Any]:
    """The estimate's fields as nulls with :data:`ESTIMATE_REASON`."""
    found = estimate.unavailable(n_labels)
    for key in ("macro_f1", "micro_f1"):
        found[key]["expected_reason"] = ESTIMATE_REASON
    found["expected_f1_reason"] = [ESTIMATE_REASON] * n_labels
    return found
