"""The options of a tune, from tuning's one parameter object (issue 13).

`labelcut.tuning.TUNE_PARAMETERS` states every option once: type, default, bounds,
choices, help, and which choices of another option make it required. The form fields of
`/tune-thresholds`, the flags of `labelcut tune` and the checks both share are generated
here from it, so a new option of `tune_thresholds` is added in tuning alone.

What the table cannot say is stated here, once:

* `objective` also takes the multi-class objectives (`MULTICLASS_OBJECTIVES`), and it and
  `decision_rule` default by the model's activation (sigmoid: f1 / threshold; softmax:
  no default objective / exactly_one);
* `cost_fp` and `cost_fn` take a number or a JSON object label -> number (text on the wire);
* integers the table leaves unbounded above are bounded where they enter (`MAX_INT`);
* `calibration` (issue 19) is the service's own option: the calibrator fit beside the
  thresholds (`labelcut.app.calibrate_set`), not an argument of `tune_thresholds`.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Form

from labelcut import tuning
from labelcut.tuning.calibration import METHODS as _CALIBRATION_METHODS

#: Integers past this are refused where they enter (min_positives, k: nothing needs more).
MAX_INT = 2**31 - 1
#: Options sent as text: a number, or a JSON object label -> number ("*" = the rest).
COST_OPTIONS = frozenset({"cost_fp", "cost_fn"})
MAX_COST_TEXT = 1 << 20
SOFTMAX_RULE = "exactly_one"
CALIBRATION_METHODS: tuple[str, ...] = tuple(_CALIBRATION_METHODS)
CALIBRATION_HELP = (
    "Fit a calibrator on the validation rows and serve calibrated probabilities: none | "
    "temperature | platt | isotonic. Thresholds are tuned on the raw scores and mapped "
    "through the calibrator (same decisions). Default: none."
)
CALIBRATION_TUNING = ("mapped", "cross_fit")
CALIBRATION_TUNING_HELP = (
    "With a calibration: mapped (default) tunes the thresholds on the raw scores and maps "
    "them through the calibrator, keeping the raw-tuned decisions; cross_fit tunes them on "
    "out-of-fold calibrated scores (5 folds: each row calibrated by a calibrator that did "
    "not see it)."
)


def objective_choices() -> tuple[str, ...]:
    """Every objective: the multi-label ones of the table, then the multi-class ones."""
    return tuple(dict.fromkeys((*tuning.OBJECTIVES, *tuning.MULTICLASS_OBJECTIVES)))


class OptionError(ValueError):
    """A bad option; `field` names it (a 422 naming the form field, or the CLI flag)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.field = option


@dataclass(frozen=True)
class TuneParams:
    """One tune's options, checked: the objective, the table's options by name (what was
    not sent is absent: `tune_thresholds`' defaults apply), and the /predict rule stored
    with the set."""

    objective: str = "f1"
    options: Mapping[str, Any] = field(default_factory=dict)
    decision_rule: str = "threshold"
    k: int | None = None
    calibration: str = "none"
    calibration_tuning: str = "mapped"

    def get(self, name: str) -> Any:
        """The option `name`, or the table's default when it was not sent."""
        return self.options.get(name, tuning.parameter(name).default)

    @property
    def target(self) -> float | None:
        return self.get("target")


# --- HTTP form ---------------------------------------------------------------------------


def _help(p: tuning.Parameter) -> str:
    allowed = " | ".join(p.choices) if p.choices else p.bounds_text()
    default = "" if p.default is None else f" Default: {p.default}."
    return f"{p.help}{default}" + (f" ({allowed})" if allowed else "")


def _objective_help(p: tuning.Parameter) -> str:
    return (
        f"{p.help} Multi-label (sigmoid) models: {' | '.join(tuning.OBJECTIVES)} (default "
        f"{p.default}); multi-class (softmax): {' | '.join(tuning.MULTICLASS_OBJECTIVES)} "
        "with target."
    )


def _form_field(p: tuning.Parameter) -> tuple[Any, Any]:
    """(annotation, default) of the form field of option `p`."""
    if p.name == "objective":
        help_text = _objective_help(p)
        return Annotated[Literal[objective_choices()] | None, Form(description=help_text)], None
    if p.name == "decision_rule":
        help_text = f"{_help(p)} Softmax models: exactly_one (the default there)."
        return Annotated[Literal[p.choices] | None, Form(description=help_text)], None
    if p.name in COST_OPTIONS:
        help_text = f"{p.help} A number, or a JSON object label -> number. Default: {p.default}."
        return Annotated[str | None, Form(max_length=MAX_COST_TEXT, description=help_text)], None
    if p.choices:
        return Annotated[Literal[p.choices], Form(description=_help(p))], p.default
    if p.kind == "int":
        bounds = {"le": MAX_INT, **p.constraints()}
        return Annotated[int | None, Form(description=_help(p), **bounds)], p.default
    if p.kind == "bool":
        return Annotated[bool | None, Form(description=_help(p))], p.default
    # Floats are checked by `check_bounds`, whose messages name the field and its interval.
    return Annotated[float | None, Form(description=_help(p))], p.default


def _form_signature() -> inspect.Signature:
    parameters = []
    for p in tuning.TUNE_PARAMETERS:
        annotation, default = _form_field(p)
        parameters.append(
            inspect.Parameter(
                p.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    parameters.append(
        inspect.Parameter(
            "calibration",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Literal[CALIBRATION_METHODS] | None, Form(description=CALIBRATION_HELP)
            ],
        )
    )
    parameters.append(
        inspect.Parameter(
            "calibration_tuning",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Literal[CALIBRATION_TUNING] | None, Form(description=CALIBRATION_TUNING_HELP)
            ],
        )
    )
    return inspect.Signature(parameters)


async def tune_form(**values: Any) -> dict[str, Any]:
    """A FastAPI dependency: every tuning option as a form field (its signature is built
    from `TUNE_PARAMETERS`). Returns the values as sent (None: not sent)."""
    return values


tune_form.__signature__ = _form_signature()  # type: ignore[attr-defined]


# --- checks shared by the form and the CLI ----------------------------------------------


def _phrase(p: tuning.Parameter) -> str:
    """The allowed values in words: "in (0, 1]" for probabilities, "> 0 and at most 1e+06"."""
    low, high = p.minimum, p.maximum
    if low is not None and high is not None and low >= 0 and high <= 1:
        return f"in {p.bounds_text()}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if p.exclusive_minimum else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'below' if p.exclusive_maximum else 'at most'} {high:g}")
    return " and ".join(parts) or "a finite number"


def check_bounds(p: tuning.Parameter, value: float) -> None:
    """OptionError naming `p` when `value` is outside its bounds (NaN and inf included)."""
    low, high = p.minimum, p.maximum
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if p.exclusive_minimum else value >= low
    if ok and high is not None:
        ok = value < high if p.exclusive_maximum else value <= high
    if not ok:
        raise OptionError(p.name, f"{p.name} must be {_phrase(p)}; got {value}.")


def parse_cost(name: str, text: str) -> float | dict[str, float] | list[float]:
    """`cost_fp`/`cost_fn` as sent: a number, or JSON (an object label -> number, or a list
    with one number per label). The labels and values are checked by tuning, by name."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        value = json.loads(text)
    except ValueError:
        raise OptionError(
            name,
            f"{name} must be a number or a JSON object label -> number; got {text[:80]!r}.",
        ) from None
    if isinstance(value, bool) or not isinstance(value, int | float | dict | list):
        raise OptionError(
            name, f"{name} must be a number or a JSON object label -> number; got {value!r}."
        )
    if isinstance(value, dict):
        for label, cost in value.items():
            if isinstance(cost, bool) or not isinstance(cost, int | float):
                raise OptionError(
                    name, f"{name} for label '{label}' must be a number; got {cost!r}."
                )
    return value


def _required(p: tuning.Parameter, sent: Mapping[str, Any]) -> str | None:
    """The condition ("objective 'recall_at_precision'") that makes `p` required, if met."""
    for condition in p.required_when:
        other, _, choice = condition.partition("=")
        if sent.get(other) == choice:
            return f"{other} '{choice}'"
    return None


def check_options(values: Mapping[str, Any], *, activation: str, n_labels: int) -> TuneParams:
    """The options as sent (None: not sent) -> `TuneParams`, or `OptionError` naming the
    option. `activation` is the model's ("sigmoid" | "softmax")."""
    sent = {name: value for name, value in values.items() if value is not None}
    objective = sent.get("objective")
    rule = sent.get("decision_rule")
    if activation == "softmax":
        objective, rule = _check_softmax(objective, rule, sent)
    else:
        objective = objective or tuning.parameter("objective").default
        if objective in tuning.MULTICLASS_OBJECTIVES:
            raise OptionError(
                "objective",
                f"objective '{objective}' tunes the confidence threshold of a softmax "
                "(multi-class) model; this model is multi-label (sigmoid): use one of "
                f"{', '.join(tuning.OBJECTIVES)}.",
            )
        rule = rule or tuning.parameter("decision_rule").default
    context = {**sent, "objective": objective, "decision_rule": rule}
    k = sent.get("k")
    if rule == "top_k" and k is None:
        raise OptionError("k", "decision_rule 'top_k' needs the form field 'k' (>= 1).")
    if rule != "top_k" and k is not None:
        raise OptionError("k", "k is only used with decision_rule 'top_k'.")
    if k is not None and k > n_labels:
        raise OptionError("k", f"k must be at most the model's number of labels ({n_labels}).")
    options: dict[str, Any] = {}
    for p in tuning.TUNE_PARAMETERS:
        if p.name in ("objective", "decision_rule", "k"):
            continue
        value = sent.get(p.name)
        if value is None:
            needed_by = _required(p, context)
            if needed_by is not None:
                raise OptionError(p.name, f"{needed_by} needs the form field '{p.name}'.")
            continue
        if p.name in COST_OPTIONS and isinstance(value, str):
            value = parse_cost(p.name, value)
        elif p.kind in ("float", "int"):
            check_bounds(p, float(value))
        options[p.name] = value
    if activation != "softmax" and not _target_applies(objective, rule):
        options.pop("target", None)  # sent with f1: ignored, as always
    calibration = sent.get("calibration") or "none"
    if calibration not in CALIBRATION_METHODS:
        raise OptionError(
            "calibration",
            f"calibration must be one of {', '.join(CALIBRATION_METHODS)}; got {calibration!r}.",
        )
    if activation == "softmax" and calibration != "none":
        raise OptionError(
            "calibration",
            "calibration applies to multi-label (sigmoid) models; a softmax model's "
            "confidence threshold is tuned on its own probabilities.",
        )
    tuning_mode = sent.get("calibration_tuning") or "mapped"
    if tuning_mode not in CALIBRATION_TUNING:
        raise OptionError(
            "calibration_tuning",
            f"calibration_tuning must be one of {', '.join(CALIBRATION_TUNING)}; "
            f"got {tuning_mode!r}.",
        )
    if tuning_mode != "mapped" and calibration == "none":
        raise OptionError(
            "calibration_tuning", "calibration_tuning=cross_fit needs a calibration method."
        )
    return TuneParams(
        objective=objective,
        options=options,
        decision_rule=rule,
        k=k,
        calibration=calibration,
        calibration_tuning=tuning_mode,
    )


def _target_applies(objective: str, rule: str) -> bool:
    p = tuning.parameter("target")
    return _required(p, {"objective": objective, "decision_rule": rule}) is not None


def _check_softmax(
    objective: str | None, rule: str | None, sent: Mapping[str, Any]
) -> tuple[str, str]:
    choices = " or ".join(tuning.MULTICLASS_OBJECTIVES)
    if objective not in tuning.MULTICLASS_OBJECTIVES:
        got = "none was sent" if objective is None else f"got '{objective}'"
        raise OptionError(
            "objective",
            f"This model is multi-class (softmax): it answers one class per row and tunes "
            f"one confidence threshold, so objective must be {choices} with a target ({got}).",
        )
    if sent.get("target") is None:
        raise OptionError("target", f"objective '{objective}' needs the form field 'target'.")
    if rule not in (None, SOFTMAX_RULE):
        raise OptionError(
            "decision_rule",
            f"A softmax model predicts exactly one class per row: decision_rule must be "
            f"'{SOFTMAX_RULE}' (or left out); got '{rule}'.",
        )
    return objective, SOFTMAX_RULE


# --- CLI ----------------------------------------------------------------------------------


def _cost_flag(text: str) -> str:
    """A CLI cost: a number, inline JSON, or @file.json (read here)."""
    if text.startswith("@"):
        try:
            return Path(text[1:]).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {text[1:]}: {exc}") from None
    return text


def add_tune_flags(parser: Any) -> None:
    """One `labelcut tune` flag per option of the table (argparse), defaults left to
    `check_options` (None: not given)."""
    for p in tuning.TUNE_PARAMETERS:
        flag = "--" + p.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": p.name, "default": None, "help": _help(p)}
        if p.name == "objective":
            kwargs.update(choices=objective_choices(), help=_objective_help(p))
        elif p.name in COST_OPTIONS:
            kwargs.update(type=_cost_flag, help=f"{p.help} A number, JSON, or @file.json.")
        elif p.choices:
            kwargs.update(choices=list(p.choices))
        elif p.kind == "bool":
            kwargs.update(type=_parse_bool)
        else:
            kwargs.update(type=p.python_type)
        # argparse formats help with %: a literal one ("90% interval") must be doubled.
        kwargs["help"] = kwargs["help"].replace("%", "%%")
        parser.add_argument(flag, **kwargs)
    parser.add_argument(
        "--calibration",
        default=None,
        choices=CALIBRATION_METHODS,
        help=CALIBRATION_HELP.replace("%", "%%"),
    )
    parser.add_argument(
        "--calibration-tuning",
        dest="calibration_tuning",
        default=None,
        choices=CALIBRATION_TUNING,
        help=CALIBRATION_TUNING_HELP.replace("%", "%%"),
    )


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def tune_keywords(params: TuneParams, accepts: Callable[[str], bool]) -> dict[str, Any]:
    """The keyword arguments of `tune_thresholds` for `params`: every option sent that the
    function takes (`accepts(name)`), and the decision rule where it tunes (abstain)."""
    keywords = {name: value for name, value in params.options.items() if accepts(name)}
    if accepts("decision_rule"):
        keywords["decision_rule"] = params.decision_rule
    return keywords
