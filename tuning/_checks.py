"""Argument checks and the one parameter object of ``tune_thresholds``.

Everything here runs once, at the public boundary; the inner numerics trust
what these functions return. Every error is a ``ValueError`` whose message is
a full sentence naming the argument, what was expected and what was received.

:data:`TUNE_PARAMETERS` is the single statement of every tuning option: its
type, default, bounds, choices and help. The checks below read their bounds
from it, and the service derives its form fields, pydantic schema, CLI flags
and README table from :func:`parameter_fields`, so a new option is added here
once. :class:`TuningSpec` is the validated set of values every inner module
receives.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

OBJECTIVES: tuple[str, ...] = (
    "f1",
    "fbeta",
    "recall_at_precision",
    "precision_at_recall",
    "cost",
    "micro_f1",
    "micro_fbeta",
)
CONSTRAINED_OBJECTIVES: frozenset[str] = frozenset({"recall_at_precision", "precision_at_recall"})
#: Objectives tuned by the modules of issue 18 (``costs``, ``micro``) rather than the core search.
JOINT_OBJECTIVES: frozenset[str] = frozenset({"micro_f1", "micro_fbeta"})
STRATEGIES: tuple[str, ...] = ("adaptive", "shrunk", "per_label", "global")
DEFAULT_STRATEGY = "adaptive"
DECISION_RULES: tuple[str, ...] = ("threshold", "at_least_one", "exactly_one", "top_k", "abstain")
#: Positives at which a label's own threshold and the shared one weigh the same ("shrunk").
SHRINKAGE_POSITIVES = 6.0
#: The threshold every result is compared against.
DEFAULT_THRESHOLD = 0.5
#: F-beta uses beta**2; far below where it overflows (about 1.3e154), far above any use.
MAX_BETA = 1e6
MAX_N_BOOTSTRAP = 10_000
MAX_SEED = 2**32 - 1

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Float targets are checked for exact 0/1 in blocks of this many elements so
# the check never allocates a mask of the whole input.
_CHECK_BLOCK = 1 << 22


def as_tensor(array: Any, name: str) -> torch.Tensor:
    """Return ``array`` as a torch tensor without copying numpy or torch input.

    Lists and other array-likes are converted with ``np.asarray``. Read-only
    numpy arrays are shared, not copied: nothing in this package writes to its
    inputs.
    """
    if isinstance(array, torch.Tensor):
        return array.detach()
    try:
        values = np.asarray(array)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be an array of numbers, but it could not be read: {error}."
        ) from None
    if values.dtype == object or not (
        np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_
    ):
        raise ValueError(f"{name} must be an array of numbers, but its dtype is {values.dtype}.")
    if any(stride < 0 for stride in values.strides):
        values = np.ascontiguousarray(values)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(values)


def check_scores(scores: Any) -> torch.Tensor:
    """Check ``scores`` is a non-empty ``(n, L)`` float array of probabilities in [0, 1].

    Returns the scores as a tensor (shared with the input where possible).
    """
    values = as_tensor(scores, "scores")
    if values.ndim != 2:
        raise ValueError(
            "scores must be a 2-D array of shape (n_samples, n_labels), "
            f"but it has {values.ndim} dimension(s) with shape {tuple(values.shape)}."
        )
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(
            "scores must hold at least one sample and one label, "
            f"but its shape is {tuple(values.shape)}."
        )
    if values.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            "scores must have a floating-point dtype (float16, bfloat16, float32 or float64), "
            f"but its dtype is {str(values.dtype).removeprefix('torch.')}."
        )
    # min/max propagate NaN, so one parallel pass finds NaN, inf and out-of-range values.
    low, high = (float(v) for v in torch.aminmax(values))
    if math.isnan(low) or math.isnan(high):
        raise ValueError("scores must not contain NaN, but it does.")
    if math.isinf(low) or math.isinf(high):
        raise ValueError("scores must be finite, but it contains an infinite value.")
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"scores must lie in [0, 1], but they range from {low!r} to {high!r}; "
            "pass probabilities (for example sigmoid outputs), not logits."
        )
    return values


def check_targets(targets: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """Check ``targets`` has the scores' ``shape`` and holds only 0 and 1.

    Any bool, integer or float dtype is accepted. Returns a tensor.
    """
    values = as_tensor(targets, "targets")
    if tuple(values.shape) != tuple(shape):
        raise ValueError(
            f"targets must have the same shape as scores {tuple(shape)}, "
            f"but its shape is {tuple(values.shape)}."
        )
    if values.dtype == torch.bool:
        return values
    if values.is_complex():
        raise ValueError(f"targets must hold 0 and 1, but its dtype is {values.dtype}.")
    if values.is_floating_point():
        flat = values.reshape(-1)
        for start in range(0, flat.numel(), _CHECK_BLOCK):
            block = flat[start : start + _CHECK_BLOCK]
            if not bool(((block == 0) | (block == 1)).all()):
                raise ValueError("targets must hold only 0 and 1, but it holds other values.")
        if values.dtype == torch.bfloat16:
            # numpy has no bfloat16, and every step reads targets through numpy: as bool
            # (half the bytes, the same 0/1).
            return values != 0
        return values
    low, high = (int(v) for v in torch.aminmax(values))
    if low < 0 or high > 1:
        raise ValueError(
            f"targets must hold only 0 and 1, but its values range from {low} to {high}."
        )
    return values


@dataclass(frozen=True)
class Parameter:
    """One option of tuning or of the decision rule, with everything needed to expose it.

    ``kind`` is "str", "float", "int" or "bool"; ``choices`` the allowed
    values of a "str" option; ``minimum``/``maximum`` its bounds, excluded
    where ``exclusive_minimum``/``exclusive_maximum``; ``required_when``
    names the choices of another option that make it required (as
    ``"objective=recall_at_precision"``); ``group`` is "tune" (an argument of
    ``tune_thresholds``) or "decision" (stored with a set for ``/predict``).
    ``default`` None means "not set".
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    required_when: tuple[str, ...] = ()
    group: str = "tune"

    @property
    def python_type(self) -> type:
        """The Python type of a value: str, float, int or bool."""
        return {"str": str, "float": float, "int": int, "bool": bool}[self.kind]

    def constraints(self) -> dict[str, float]:
        """The bounds as pydantic/annotated-types keywords (``gt``/``ge``, ``lt``/``le``)."""
        found: dict[str, float] = {}
        if self.minimum is not None:
            found["gt" if self.exclusive_minimum else "ge"] = self.minimum
        if self.maximum is not None:
            found["lt" if self.exclusive_maximum else "le"] = self.maximum
        return found

    def bounds_text(self) -> str:
        """The bounds as an interval ("(0, 1]", ">= 0", ...), "" when unbounded."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            left = "(" if self.exclusive_minimum else "["
            right = ")" if self.exclusive_maximum else "]"
            return f"{left}{_number(low)}, {_number(high)}{right}"
        if low is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {_number(low)}"
        if high is not None:
            return f"{'<' if self.exclusive_maximum else '<='} {_number(high)}"
        return ""


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_CONSTRAINED_CHOICES = tuple(f"objective={name}" for name in sorted(CONSTRAINED_OBJECTIVES))

#: Every tuning and decision option, in the order of ``tune_thresholds``' arguments.
TUNE_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("objective", "str", "f1", "What each threshold maximises.", choices=OBJECTIVES),
    Parameter(
        "beta",
        "float",
        1.0,
        "F-beta's beta: above 1 favours recall, below 1 precision.",
        minimum=0.0,
        maximum=MAX_BETA,
        exclusive_minimum=True,
    ),
    Parameter(
        "target",
        "float",
        None,
        "The precision or recall floor of the two constrained objectives; with "
        "decision_rule=abstain, the precision of the yes side.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        required_when=(*_CONSTRAINED_CHOICES, "decision_rule=abstain"),
    ),
    Parameter(
        "min_positives",
        "int",
        1,
        "Labels with fewer positives get the fallback.",
        minimum=0,
    ),
    Parameter(
        "fallback",
        "float",
        DEFAULT_THRESHOLD,
        "The threshold of labels that cannot be tuned.",
        minimum=0.0,
        maximum=1.0,
    ),
    Parameter(
        "strategy",
        "str",
        DEFAULT_STRATEGY,
        "adaptive: three base sets (a calibrated plug-in blended with shrunk, the same "
        "without the micro term, each label's observed optimum), each pulled toward 0.5, and "
        "the one whose held-out gain over 0.5 holds beyond one standard error (objective f1; "
        "shrunk otherwise); shrunk: per-label "
        "thresholds pulled toward one shared threshold as a label's positives get fewer; "
        "per_label: each label's own optimum; global: one shared threshold.",
        choices=STRATEGIES,
    ),
    Parameter(
        "shrinkage",
        "float",
        SHRINKAGE_POSITIVES,
        "Positives at which a label's own threshold and the shared one weigh the same.",
        minimum=0.0,
    ),
    Parameter(
        "n_bootstrap",
        "int",
        200,
        "Bootstrap replicates for the intervals; 0 turns them off.",
        minimum=0,
        maximum=MAX_N_BOOTSTRAP,
    ),
    Parameter("seed", "int", 0, "Bootstrap seed.", minimum=0, maximum=MAX_SEED),
    Parameter(
        "confidence",
        "float",
        0.9,
        "Coverage of the bootstrap intervals.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        exclusive_maximum=True,
    ),
    Parameter(
        "cost_fp",
        "float",
        1.0,
        "objective=cost: the cost of one false positive; a number, one per label, or a "
        'map label -> number ("*" = the rest).',
        minimum=0.0,
    ),
    Parameter(
        "cost_fn",
        "float",
        1.0,
        "objective=cost: the cost of one false negative (a missed positive); a number, one "
        'per label, or a map label -> number ("*" = the rest).',
        minimum=0.0,
    ),
    Parameter(
        "npv_target",
        "float",
        None,
        "decision_rule=abstain: the negative predictive value of the no side.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        required_when=("decision_rule=abstain",),
    ),
    Parameter(
        "wilson_confidence",
        "float",
        None,
        "decision_rule=abstain: count a side only when the Wilson lower bound of its "
        "precision or NPV at this confidence meets the target (None: the observed share).",
        minimum=0.5,
        maximum=1.0,
        exclusive_maximum=True,
    ),
    Parameter(
        "estimate",
        "bool",
        True,
        "Also report what to expect on new data: a 5-fold cross-fitted macro-F1, micro-F1 "
        "and per-label F1 (blended with the in-sample ones by the .632+ rule) with 90% "
        "intervals (false turns it off).",
    ),
    Parameter(
        "decision_rule",
        "str",
        "threshold",
        "The /predict rule stored with the set; abstain also tunes a lower threshold per "
        "label (target, npv_target).",
        choices=DECISION_RULES,
        group="decision",
    ),
    Parameter(
        "k",
        "int",
        None,
        "Labels kept by top_k (at most the number of labels).",
        minimum=1,
        required_when=("decision_rule=top_k",),
        group="decision",
    ),
)
_BY_NAME = {parameter.name: parameter for parameter in TUNE_PARAMETERS}


def parameter(name: str) -> Parameter:
    """The :class:`Parameter` called ``name`` (KeyError if there is none)."""
    return _BY_NAME[name]


def parameter_fields(group: str | None = None) -> list[dict[str, Any]]:
    """Every option as a JSON-ready dict (the fields of :class:`Parameter` plus ``bounds``).

    ``group``: "tune", "decision" or None for both. What a pydantic schema,
    a form, a CLI or a README table is generated from: ``constraints`` holds
    the bounds as pydantic keywords (``{"gt": 0, "le": 1e6}``), ``bounds`` as
    text (``"(0, 1e+06]"``).
    """
    return [
        {
            **asdict(p),
            "choices": None if p.choices is None else list(p.choices),
            "required_when": list(p.required_when),
            "bounds": p.bounds_text(),
            "constraints": p.constraints(),
        }
        for p in TUNE_PARAMETERS
        if group is None or p.group == group
    ]


def parameter_table_markdown(group: str | None = None) -> str:
    """The README's table of options (markdown), generated from :data:`TUNE_PARAMETERS`."""
    rows = [
        "| field | type | default | bounds / choices | meaning |",
        "|---|---|---|---|---|",
    ]
    for p in TUNE_PARAMETERS:
        if group is not None and p.group != group:
            continue
        default = "–" if p.default is None else f"`{p.default}`"
        allowed = " \\| ".join(f"`{c}`" for c in p.choices) if p.choices else p.bounds_text()
        required = f" Required when {', '.join(p.required_when)}." if p.required_when else ""
        rows.append(
            f"| `{p.name}` | {p.kind} | {default} | {allowed or '–'} | {p.help}{required} |"
        )
    return "\n".join(rows)


@dataclass(frozen=True)
class TuningSpec:
    """The validated arguments of ``tune_thresholds``: what every inner module receives."""

    objective: str
    beta: float
    target: float | None
    min_positives: int
    fallback: float
    strategy: str = DEFAULT_STRATEGY
    shrinkage: float = SHRINKAGE_POSITIVES
    n_bootstrap: int = 0
    seed: int = 0
    confidence: float = 0.9
    cost_fp: Any = 1.0
    cost_fn: Any = 1.0
    decision_rule: str = "threshold"
    npv_target: float | None = None
    wilson_confidence: float | None = None
    estimate: bool = True

    @property
    def constrained(self) -> bool:
        """Whether the objective is a per-label promise (a precision or recall target)."""
        return self.objective in CONSTRAINED_OBJECTIVES

    @property
    def abstain(self) -> bool:
        """Whether two thresholds per label are tuned (``decision_rule="abstain"``)."""
        return self.decision_rule == "abstain"

    def params(self) -> dict[str, Any]:
        """The ``params`` of a result: every field but the objective.

        The options of issue 18 appear only where they apply: the costs under
        ``objective="cost"``, the abstain targets under ``decision_rule="abstain"``.
        """
        # estimate changes no threshold: it is not a parameter of the result.
        found = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("objective", "estimate")
        }
        for name in ("cost_fp", "cost_fn"):
            if self.objective != "cost":
                del found[name]
            elif isinstance(found[name], np.ndarray):
                found[name] = found[name].tolist()
        if not self.abstain:
            for name in ("decision_rule", "npv_target", "wilson_confidence"):
                del found[name]
        return found


def check_spec(**arguments: Any) -> TuningSpec:
    """Check every tuning argument (the fields of :class:`TuningSpec`) and return the spec."""
    objective = _check_choice("objective", arguments["objective"])
    n_boot = parameter("n_bootstrap")
    return TuningSpec(
        objective=objective,
        beta=_check_real(
            "beta", arguments["beta"], f"a finite number greater than 0 and at most {MAX_BETA:g}"
        ),
        target=check_target(arguments["target"], objective),
        min_positives=check_min_positives(arguments["min_positives"]),
        fallback=_check_real("fallback", arguments["fallback"], "a threshold in [0, 1]"),
        strategy=_check_choice("strategy", arguments["strategy"]),
        shrinkage=_check_real("shrinkage", arguments["shrinkage"], "a finite number of 0 or more"),
        n_bootstrap=_check_integer(
            "n_bootstrap",
            arguments["n_bootstrap"],
            f"an integer from {n_boot.minimum} to {n_boot.maximum}",
        ),
        seed=_check_integer("seed", arguments["seed"], f"an integer from 0 to {MAX_SEED}"),
        confidence=_check_real("confidence", arguments["confidence"], "a number in (0, 1)"),
        **_check_issue_18(objective, arguments),
    )


def _check_issue_18(objective: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Costs, the abstain rule and its targets (maps of costs are resolved by name later)."""
    found: dict[str, Any] = {}
    for name in ("cost_fp", "cost_fn"):
        value = arguments.get(name, 1.0)
        if _is_real(value) or isinstance(value, bool):
            value = _check_real(name, value, "a finite number of 0 or more")
        elif isinstance(value, str) or not isinstance(value, Mapping | Sequence | np.ndarray):
            raise ValueError(
                f"{name} must be a number, a sequence with one number per label or a map "
                f"from label name to number, but got {value!r}."
            )
        found[name] = value
    rule = arguments.get("decision_rule", "threshold")
    if not isinstance(rule, str) or rule not in DECISION_RULES:
        raise ValueError(
            f"decision_rule must be one of {', '.join(DECISION_RULES)}, but got {rule!r}."
        )
    found["decision_rule"] = rule
    npv_target = arguments.get("npv_target")
    wilson = arguments.get("wilson_confidence")
    # As target for f1: checked when given, but only decision_rule="abstain" uses them.
    if npv_target is not None:
        npv_target = _check_real("npv_target", npv_target, "a number in (0, 1]")
    if wilson is not None:
        wilson = _check_real("wilson_confidence", wilson, "a number in [0.5, 1)")
    if rule == "abstain":
        if objective != "f1":
            raise ValueError(
                "decision_rule='abstain' is tuned from target and npv_target alone; leave "
                f"objective at 'f1', but got objective={objective!r}."
            )
        for name, value in (("target", arguments["target"]), ("npv_target", npv_target)):
            if value is None:
                side = "precision of the yes side" if name == "target" else "NPV of the no side"
                raise ValueError(
                    f"{name} is required for decision_rule='abstain': the {side} "
                    "as a number in (0, 1]."
                )
    found["npv_target"], found["wilson_confidence"] = npv_target, wilson
    estimate = arguments.get("estimate", True)
    if not isinstance(estimate, bool | np.bool_):
        raise ValueError(f"estimate must be True or False, but got {estimate!r}.")
    found["estimate"] = bool(estimate)
    return found


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _within(p: Parameter, value: float) -> bool:
    """Whether ``value`` lies within the bounds :data:`TUNE_PARAMETERS` gives ``p``."""
    low, high = p.minimum, p.maximum
    low_ok = low is None or (value > low if p.exclusive_minimum else value >= low)
    high_ok = high is None or (value < high if p.exclusive_maximum else value <= high)
    return low_ok and high_ok


def _check_choice(name: str, value: Any) -> str:
    choices = _BY_NAME[name].choices or ()
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, but got {value!r}.")
    return value


def _check_real(name: str, value: Any, expected: str) -> float:
    """A finite real within the parameter's bounds; ``expected`` says so in words."""
    if not _is_real(value) or not math.isfinite(value) or not _within(_BY_NAME[name], value):
        raise ValueError(f"{name} must be {expected}, but got {value!r}.")
    return float(value)


def _check_integer(name: str, value: Any, expected: str) -> int:
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or not _within(_BY_NAME[name], value)
    ):
        raise ValueError(f"{name} must be {expected}, but got {value!r}.")
    return int(value)


def check_target(target: Any, objective: str) -> float | None:
    """Check ``target``: required in (0, 1] for the constrained objectives.

    For "f1" and "fbeta" it may be None; when given it is still checked, and
    recorded, but it does not affect the result.
    """
    if target is None:
        if objective in CONSTRAINED_OBJECTIVES:
            raise ValueError(
                f"target is required for objective {objective!r}: "
                "pass the minimum precision or recall as a number in (0, 1]."
            )
        return None
    return _check_real("target", target, "a number in (0, 1]")


def check_min_positives(min_positives: Any) -> int:
    """Check ``min_positives`` is an integer >= 0 and return it."""
    if not isinstance(min_positives, numbers.Integral) or isinstance(min_positives, bool):
        raise ValueError(f"min_positives must be an integer, but got {min_positives!r}.")
    if min_positives < 0:
        raise ValueError(f"min_positives must be 0 or more, but got {min_positives!r}.")
    return int(min_positives)


def check_label_names(label_names: Any, n_labels: int) -> list[str] | None:
    """Check ``label_names``: None, or ``n_labels`` distinct names (returned as strings)."""
    if label_names is None:
        return None
    if isinstance(label_names, str) or not isinstance(label_names, Sequence | np.ndarray):
        raise ValueError(f"label_names must be a sequence of names, but got {label_names!r}.")
    names = [str(name) for name in label_names]
    if len(names) != n_labels:
        raise ValueError(
            f"label_names must have one name per label ({n_labels}), but it has {len(names)}."
        )
    if len(set(names)) != len(names):
        raise ValueError("label_names must be unique, but some names repeat.")
    return names


def check_thresholds(thresholds: Any, n_labels: int) -> torch.Tensor:
    """Check ``thresholds`` is a finite ``(L,)`` array; return it as a float64 CPU tensor."""
    values = as_tensor(thresholds, "thresholds")
    if tuple(values.shape) != (n_labels,):
        raise ValueError(
            f"thresholds must have shape ({n_labels},), one per label of scores, "
            f"but its shape is {tuple(values.shape)}."
        )
    values = values.to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError("thresholds must be finite numbers, but it contains NaN or inf.")
    return values


def check_decision_rule(rule: Any, k: Any) -> tuple[str, int | None]:
    """Check a decision ``rule`` and its ``k`` (required, an integer >= 1, for "top_k")."""
    if not isinstance(rule, str) or rule not in DECISION_RULES:
        raise ValueError(f"rule must be one of {', '.join(DECISION_RULES)}, but got {rule!r}.")
    if rule == "top_k":
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an integer of at least 1 for rule 'top_k', but got {k!r}.")
        return rule, int(k)
    if k is not None:
        raise ValueError(f"k is only used with rule 'top_k', but got k={k!r} for rule {rule!r}.")
    return rule, None


def resolve_device(device: Any) -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" (or a torch.device) into a usable device.

    "auto" picks CUDA when it is available, else the CPU.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f'device must be "auto", "cpu", "cuda" or "cuda:N", but got {device!r}.'
        ) from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise ValueError(f'device must be "auto", "cpu", "cuda" or "cuda:N", but got {device!r}.')
    if not torch.cuda.is_available():
        raise ValueError(f"device is {device!r}, but CUDA is not available on this machine.")
    index = resolved.index if resolved.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device is {device!r}, but this machine has {torch.cuda.device_count()} "
            "CUDA device(s)."
        )
    return torch.device("cuda", index)
