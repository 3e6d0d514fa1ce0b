"""The /predict codecs: request bodies (JSON or .npy) to validated rows, results to bytes.

Nothing here knows about HTTP routing or the model's forward pass: a decoder takes the
body's bytes and what the model expects (input shape, labels) plus the limits, and
returns a `PredictInput` or raises `HTTPException` (413/415/422) naming the problem;
an encoder takes arrays and returns bytes. Every decoder refuses what it cannot afford
*before* it allocates: the JSON decoder bounds the number of arrays, objects and values
by counting bytes (`[`, `{`, `,`) before it parses, and the .npy decoder reads only the
header until it has checked dtype, shape, row count and the announced size.
"""

from __future__ import annotations

import functools
import io
import json
import math
import string
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from labelcut.app.predict_schemas import MAX_THRESHOLD, PredictRequest

NPY_MEDIA_TYPE = "application/x-npy"
_JSON_KEYS = frozenset({"inputs", "thresholds", "return_logits"})
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
#: Bytes of JSON text one input value may take, whitespace and separator included: a
#: float64 written in full is 24 characters; this leaves room for pretty-printed bodies.
JSON_BYTES_PER_VALUE = 64
#: Slack for whitespace and the keys around the rows (a body never needs more).
JSON_BODY_SLACK = 1 << 20
#: What one JSON number costs once parsed into Python objects (a float and its slot in a
#: list), used to keep a JSON body's parse within LABELCUT_MAX_DATA_MB.
PYTHON_BYTES_PER_VALUE = 32
#: Header values are sent as printable ASCII; anything else is percent-encoded (UTF-8).
_HEADER_SAFE = "".join(c for c in string.printable if c.isprintable() and c != "%")


@dataclass(slots=True)
class PredictInput:
    """A decoded, validated request: rows `(n, *input_shape)` float32 and its options.

    Not frozen (a frozen dataclass costs ~2 us more per request to build); nothing
    changes it after decoding.
    """

    rows: np.ndarray
    thresholds: dict[str, float] | None = None
    return_logits: bool = False
    decision_rule: str | None = None  # None: the active set's rule
    k: int | None = None
    confidence: float | None = None  # the request's `threshold` (softmax); None: the set's


def decode_predict_body(
    content_type: str,
    body: bytes,
    input_shape: tuple[int, ...],
    labels: Sequence[str],
    max_rows: int,
    max_data_bytes: int | None = None,
) -> PredictInput:
    """Dispatch on the media type: `.npy` for application/x-npy, JSON for none, JSON or
    `+json`; 415 for anything else."""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == NPY_MEDIA_TYPE:
        return read_npy_body(body, input_shape, max_rows)
    if media_type in ("", "application/json") or media_type.endswith("+json"):
        return read_json_body(body, input_shape, max_rows, labels, max_data_bytes)
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail=f"Content-Type '{media_type}' is not supported; send application/json or "
        f"{NPY_MEDIA_TYPE}.",
    )


# --- JSON --------------------------------------------------------------------------------


def check_json_budget(
    body: bytes,
    input_shape: tuple[int, ...],
    labels: Sequence[str],
    max_rows: int,
    max_data_bytes: int | None = None,
) -> None:
    """413 before parsing when `body` cannot be a request of at most `max_rows` rows.

    A valid `PredictRequest` of n rows of shape `(d1, ..., dm)` holds exactly
    `1 + n * (1 + d1 + d1*d2 + ... + d1*...*d(m-1))` arrays, at most two objects (the
    body and `thresholds`), and about `n * d1*...*dm` commas (values), plus what the
    model's label names add inside `thresholds`; a body holding more than twice as many
    is refused unparsed. Counting those bytes costs ~1 ms per 10 MB; parsing
    `[[], [], ...]` instead would build millions of Python lists.
    """
    limit, rows_text, checks = _json_budget(
        tuple(input_shape), tuple(labels), max_rows, max_data_bytes
    )
    if len(body) > limit:
        _too_large(
            f"The JSON body is {len(body)} bytes; {rows_text} take at most {limit}. "
            f"Send fewer rows per request, or the rows as {NPY_MEDIA_TYPE}."
        )
    for byte, what, allowed in checks:
        found = body.count(byte)
        if found > allowed:
            _too_large(
                f"The JSON body holds {found} {what}; a request of {rows_text} holds at most "
                f"{allowed}. Send fewer rows per request, with each row of that shape."
            )


@functools.lru_cache(maxsize=64)
def _json_budget(
    input_shape: tuple[int, ...], labels: tuple[str, ...], max_rows: int, max_data_bytes: int | None
) -> tuple[int, str, tuple[tuple[bytes, str, int], ...]]:
    """(most body bytes, the limits in words, (byte, its name, most occurrences) to count)."""
    values_per_row = math.prod(input_shape)
    arrays_per_row = 1 + sum(math.prod(input_shape[:i]) for i in range(1, len(input_shape)))
    max_values = max_rows * values_per_row
    if max_data_bytes is not None:
        max_values = min(max_values, max(values_per_row, max_data_bytes // PYTHON_BYTES_PER_VALUE))
    rows_text = f"at most {max_rows} rows (LABELCUT_MAX_BATCH_ROWS) of shape {list(input_shape)}"
    limit = max_values * JSON_BYTES_PER_VALUE + JSON_BODY_SLACK
    names = "".join(labels).encode()  # label names may hold brackets and commas
    # Twice what a valid request holds: a request just over a limit is still parsed, so
    # that its answer names the exact row count or the bad row; a body far over it is not.
    checks = (
        (b"[", "arrays ('[')", 2 * (1 + max_rows * arrays_per_row + names.count(b"[")) + 64),
        (b"{", "objects ('{')", 2 * (2 + names.count(b"{")) + 64),
        (b",", "values (',')", 2 * (max_values + len(labels) + names.count(b",")) + 64),
    )
    return limit, rows_text, checks


def read_json_body(
    body: bytes,
    input_shape: tuple[int, ...],
    max_rows: int,
    labels: Sequence[str] = (),
    max_data_bytes: int | None = None,
) -> PredictInput:
    """Decode a JSON `PredictRequest`; 422 naming the first bad row, 413 over `max_rows`.

    `orjson.loads` plus a check of the common shape is several times cheaper than
    pydantic over a list of rows; anything unusual goes through `PredictRequest`
    so its errors read exactly as FastAPI's. `labels` (the model's) bound `k` and let
    label names through the byte budget (`check_json_budget`).
    """
    check_json_budget(body, input_shape, labels, max_rows, max_data_bytes)
    data = _loads(body)
    simple = (
        type(data) is dict
        and type(data.get("inputs")) is list
        and data.keys() <= _JSON_KEYS
        and data.get("thresholds") is None
        and type(data.get("return_logits", False)) is bool
    )
    rule: str | None = None
    k: int | None = None
    if simple:
        inputs, override, return_logits = data["inputs"], None, data.get("return_logits", False)
    else:
        try:
            request = PredictRequest.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in errors]
            ) from exc
        inputs, override, return_logits = request.inputs, request.thresholds, request.return_logits
        rule, k, confidence = request.decision_rule, request.k, request.threshold
        if k is not None and labels and k > len(labels):
            _unprocessable(f"k is {k}; the model has {len(labels)} labels, so k is at most that.")
        if confidence is not None and not (
            math.isfinite(confidence) and 0.0 <= confidence <= MAX_THRESHOLD
        ):
            _unprocessable(f"threshold is {confidence}; it must be in [0, 1].")
    if not inputs:
        _unprocessable("inputs is empty; send at least one row.")
    _check_row_count(len(inputs), max_rows, "inputs")
    array = rows_to_array(inputs, input_shape)
    if simple:
        return PredictInput(array, None, return_logits)
    return PredictInput(array, override, return_logits, rule, k, confidence)


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            # The standard parser would recurse until RecursionError.
            _invalid_json(exc.pos, "nested deeper than 1024 levels")
        first = exc
    # The standard parser also reads NaN/Infinity (then refused as non-finite by name)
    # and integers past 64 bits, and reports the same errors as FastAPI.
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        _invalid_json(exc.pos, exc.msg)
    except UnicodeDecodeError as exc:
        _invalid_json(exc.start, str(exc))
    except (ValueError, RecursionError) as exc:
        # e.g. an integer of more than 4,300 digits (Python's int conversion limit)
        _invalid_json(first.pos, f"{first.msg} ({exc})")
    raise AssertionError("unreachable")  # pragma: no cover


def _invalid_json(pos: int, msg: str) -> None:
    raise RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body", pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": msg},
            }
        ]
    )


def rows_to_array(inputs: list[Any], input_shape: tuple[int, ...]) -> np.ndarray:
    """`(n, *input_shape)` float32 from JSON rows; HTTP 422 naming the first bad row."""
    expected = tuple(input_shape)
    try:
        with np.errstate(over="ignore"):  # too large for float32: inf, refused by name below
            array = np.asarray(inputs, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.shape[1:] != expected:
        for i, row in enumerate(inputs):
            try:
                with np.errstate(over="ignore"):
                    shape = np.asarray(row, dtype=np.float32).shape
            except OverflowError:
                _unprocessable(
                    f"inputs[{i}] holds an integer too large for a float32 (past 3.4e38)."
                )
            except (ValueError, TypeError):
                _unprocessable(
                    f"inputs[{i}] is not a nested list of numbers of shape {list(expected)}."
                )
            if shape != expected:
                _unprocessable(
                    f"inputs[{i}] has shape {list(shape)}; the model expects {list(expected)}."
                )
        _unprocessable(f"inputs must be rows of shape {list(expected)}.")
    _check_finite(array, "inputs")
    return array


# --- .npy --------------------------------------------------------------------------------


def read_npy_body(body: bytes, input_shape: tuple[int, ...], max_rows: int) -> PredictInput:
    """Decode an `.npy` body holding `(n, *input_shape)` real numbers, read as float32.

    The header is checked before any data is read (dtype, shape, row count, and
    that the body holds exactly the bytes the header announces), so a forged
    header cannot make the server allocate more than the body's size. Object
    arrays are refused: nothing a client sends is ever unpickled.
    """
    expected = (-1, *input_shape)
    stream = io.BytesIO(body)
    try:
        read_header = _NPY_HEADER_READERS.get(np.lib.format.read_magic(stream))
        if read_header is None:
            raise ValueError("only .npy format versions 1.0 and 2.0 are read")
        shape, _, dtype = read_header(stream)
    except (ValueError, EOFError, SyntaxError, tokenize.TokenError, RecursionError) as exc:
        # numpy tokenizes and literal_evals the header: unbalanced brackets raise
        # TokenError, deep nesting RecursionError.
        _unprocessable(
            f"The body is not a readable .npy file ({type(exc).__name__}: {exc}); send one "
            "array saved with numpy.save."
        )
    if dtype.hasobject or dtype.kind not in "fiu":
        _unprocessable(
            f"The .npy array has dtype {dtype}; send real numbers (float32) of shape "
            f"{_show(expected)}, never Python objects."
        )
    if len(shape) != len(expected) or tuple(shape[1:]) != tuple(input_shape):
        _unprocessable(
            f"The .npy array has shape {_show(shape)}; the model expects {_show(expected)}."
        )
    if shape[0] == 0:
        _unprocessable("The .npy array has no rows; send at least one row.")
    _check_row_count(shape[0], max_rows, "The .npy array")
    data_bytes = math.prod(shape) * dtype.itemsize
    if len(body) - stream.tell() != data_bytes:
        _unprocessable(
            f"The .npy body holds {len(body) - stream.tell()} bytes of data; its header "
            f"announces {data_bytes} ({_show(shape)} of {dtype})."
        )
    stream.seek(0)
    array = np.load(stream, allow_pickle=False).astype(np.float32, copy=False)
    _check_finite(array, "row")
    return PredictInput(np.ascontiguousarray(array))


# --- checks ------------------------------------------------------------------------------


def _check_finite(array: np.ndarray, what: str) -> None:
    if np.isfinite(array).all():
        return
    finite = np.isfinite(array.reshape(len(array), -1))
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        name = f"inputs[{row}]" if what == "inputs" else f"row {row} of the .npy array"
        _unprocessable(f"{name} holds a missing or non-finite value at position {col}.")


def _check_row_count(rows: int, limit: int, what: str) -> None:
    if rows > limit:
        _too_large(
            f"{what} has {rows} rows, over the limit of {limit} rows per "
            "request (LABELCUT_MAX_BATCH_ROWS); split the batch."
        )


def _too_large(detail: str) -> None:
    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=detail)


def _unprocessable(detail: str) -> None:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def _show(shape: tuple[Any, ...]) -> str:
    inner = ", ".join("n" if d == -1 else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


# --- encode ------------------------------------------------------------------------------


def encode_json(
    model_name: str,
    set_id: int | None,
    labels: list[str],
    proba: np.ndarray,
    decisions: np.ndarray,
    logits: np.ndarray | None,
    rule: tuple[str, int | None] = ("threshold", None),
    uncertain: np.ndarray | None = None,
    threshold: float | None = None,
    calibrated: bool = False,
) -> bytes:
    """The `PredictResponse` JSON (`labelcut.app.predict_schemas`), one prediction per row
    of the served scores `proba` `(n, L)`.

    `decisions` `(n, L)` bool selects each row's labels; `logits` `(n, L)` or None;
    `uncertain` `(n, L)` bool (the abstain rule's review band) or None; `threshold`: the
    confidence threshold of a softmax model, else None; `calibrated`: `proba` holds the
    set's calibrated probabilities.
    """
    label_array = _label_array(tuple(labels))
    predictions = []
    for i, row in enumerate(proba.tolist()):
        item: dict[str, Any] = {
            "labels": label_array[decisions[i]].tolist(),
            "scores": dict(zip(labels, row, strict=True)),
        }
        if logits is not None:
            item["logits"] = dict(zip(labels, logits[i].tolist(), strict=True))
        if uncertain is not None:
            item["uncertain"] = label_array[uncertain[i]].tolist()
        predictions.append(item)
    body = {
        "model": model_name,
        "threshold_set_id": set_id,
        "labels": labels,
        "decision_rule": rule[0],
        "k": rule[1],
        "threshold": threshold,
        "calibrated": calibrated,
        "predictions": predictions,
    }
    # Outputs were checked finite before encoding (orjson would write NaN as null).
    return orjson.dumps(body)


@functools.lru_cache(maxsize=16)
def _label_array(labels: tuple[str, ...]) -> np.ndarray:
    return np.array(labels, dtype=object)


def encode_npy(proba: np.ndarray) -> bytes:
    """`proba` as the bytes of one `.npy` file (format 1.0, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, proba, allow_pickle=False)
    return buffer.getvalue()


def header_value(text: str) -> str:
    """`text` as an HTTP header value: printable ASCII as is, anything else (non-ASCII,
    control characters, and '%' itself) percent-encoded from UTF-8, so that
    `urllib.parse.unquote` gives `text` back. Latin-1 alone cannot carry "modèle-名前"."""
    return quote(text, safe=_HEADER_SAFE)
