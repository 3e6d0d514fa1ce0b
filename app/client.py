"""labelcut.Client and labelcut.AsyncClient: the HTTP API from Python, on httpx.

    from labelcut import Client
    with Client("http://127.0.0.1:8000", admin_key="...") as lc:
        report = lc.tune("validation.npz", objective="f1")
        result = lc.predict(X)            # result.proba (n, L), result.labels per row
        lc.evaluate(report["threshold_set"]["id"], (X_test, Y_test))

Both clients build the same requests (`_Call`) and read the same answers; only the
sending differs. Every failure, an HTTP error or no connection, raises
`LabelcutError` with `status_code` (None without an answer) and the server's `detail`.
Importing this module loads neither torch nor FastAPI.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

NPY = "application/x-npy"
DEFAULT_TIMEOUT = 120.0  # seconds; tuning a large file takes a while
_FILE_TYPES = {
    ".npz": "application/x-npz",
    ".csv": "text/csv",
    ".parquet": "application/vnd.apache.parquet",
    ".pq": "application/vnd.apache.parquet",
}


class LabelcutError(Exception):
    """A request failed. `status_code`: the HTTP status, None when no answer came;
    `detail`: the server's `detail` (a sentence, or FastAPI's list of errors)."""

    def __init__(self, status_code: int | None, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        where = "no answer" if status_code is None else f"HTTP {status_code}"
        super().__init__(f"{where}: {detail}")


class JobError(LabelcutError):
    """A tune job ended without a result: `state` is "failed" or "cancelled", `job` the
    job as `GET /jobs/{id}` answered it, `detail` its error. `status_code` is None (the
    requests themselves succeeded)."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        self.job = dict(job)
        self.state = str(job.get("state"))
        reason = job.get("error") or self.state
        super().__init__(None, f"Job {job.get('id')} {self.state}: {reason}")


#: States in which a job is done (GET /jobs/{id}).
FINISHED_JOB_STATES = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_POLL_S = 0.5


@dataclass(frozen=True)
class _Accepted:
    """A 202 answer: the tune runs as the job `job` (GET /jobs/{id})."""

    job: dict[str, Any]


@dataclass(frozen=True)
class PredictResult:
    """One /predict answer. `proba`: (n, L) float32 in `label_names` order; `labels[i]`:
    the labels predicted for row i; `threshold_set_id`: the set used (None: 0.5)."""

    proba: np.ndarray
    labels: list[list[str]]
    label_names: list[str]
    threshold_set_id: int | None
    model: str
    decision_rule: str = "threshold"
    logits: np.ndarray | None = None
    # The abstain band: `uncertain[i]` lists row i's labels sent to review (None: no band).
    uncertain: list[list[str]] | None = None
    # A softmax model's confidence threshold as applied (None for multi-label models).
    threshold: float | None = None
    # True when `proba` are the active set's calibrated probabilities.
    calibrated: bool = False


@dataclass(frozen=True)
class _Call:
    """One request, ready for either client: what to send and how to read the answer."""

    method: str
    path: str
    key: str | None = None  # "api" or "admin": which bearer key goes with it
    kwargs: dict[str, Any] = field(default_factory=dict)
    read: Callable[[httpx.Response], Any] = lambda response: response.json()


# --- encoding ----------------------------------------------------------------------------


def _is_dataframe(x: Any) -> bool:
    return hasattr(x, "columns") and hasattr(x, "to_numpy") and hasattr(x, "iloc")


def _frame_rows(frame: Any, model: Mapping[str, Any]) -> np.ndarray:
    """A DataFrame's rows in the model's feature order (by name when the model has names)."""
    names = model.get("feature_names")
    if names:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise ValueError(
                f"The DataFrame lacks the model's feature columns {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}; the model's features are named "
                f"{names[0]!r}..{names[-1]!r}."
            )
        frame = frame[list(names)]
    elif frame.shape[1] != int(np.prod(model["input_shape"])):
        raise ValueError(
            f"The DataFrame has {frame.shape[1]} columns; the model takes "
            f"{int(np.prod(model['input_shape']))} features (matched by position)."
        )
    return frame.to_numpy(dtype=np.float32)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _predict_call(
    x: Any,
    model: Mapping[str, Any] | None,
    thresholds: Mapping[str, float] | None,
    decision_rule: str | None,
    k: int | None,
    return_logits: bool,
    threshold: float | None = None,
) -> _Call:
    """Arrays travel as an .npy body; lists, and any request with options, as JSON."""
    if _is_dataframe(x):
        assert model is not None
        x = _frame_rows(x, model)
    options = {
        key: value
        for key, value in (
            ("thresholds", None if thresholds is None else dict(thresholds)),
            ("decision_rule", decision_rule),
            ("k", k),
            ("return_logits", return_logits or None),
            ("threshold", threshold),
        )
        if value is not None
    }
    if isinstance(x, np.ndarray) and not options:
        kwargs: dict[str, Any] = {
            "content": _npy_bytes(x.astype(np.float32, copy=False)),
            "headers": {"content-type": NPY, "accept": "application/json"},
        }
    else:
        rows = x.tolist() if isinstance(x, np.ndarray) else list(x)
        kwargs = {"json": {"inputs": rows, **options}}
    return _Call("POST", "/predict", "api", kwargs, _read_prediction)


def _read_prediction(response: httpx.Response) -> PredictResult:
    body = response.json()
    names = list(body["labels"])
    predictions = body["predictions"]
    proba = np.array([[p["scores"][n] for n in names] for p in predictions], dtype=np.float32)
    logits = None
    if predictions and predictions[0].get("logits") is not None:
        logits = np.array([[p["logits"][n] for n in names] for p in predictions], np.float32)
    return PredictResult(
        proba=proba.reshape(len(predictions), len(names)),
        labels=[list(p["labels"]) for p in predictions],
        label_names=names,
        threshold_set_id=body.get("threshold_set_id"),
        model=body.get("model", ""),
        decision_rule=body.get("decision_rule", "threshold"),
        logits=logits,
        uncertain=(
            [list(p.get("uncertain") or []) for p in predictions]
            if any("uncertain" in p for p in predictions)
            else None
        ),
        threshold=body.get("threshold"),
        calibrated=bool(body.get("calibrated", False)),
    )


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def _pair_members(first: Any, targets: Any, model: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """(X, Y) or (scores, Y): which one, from the model's input shape and label count."""
    first, targets = np.asarray(first), np.asarray(targets)
    shape, n_labels = tuple(model["input_shape"]), len(model["labels"])
    is_inputs = first.shape[1:] == shape
    is_scores = first.ndim == 2 and first.shape[1] == n_labels
    if is_inputs and is_scores:
        raise ValueError(
            f"The model takes {shape} inputs and has {n_labels} labels, so the first array "
            "could be either: pass {'X': ..., 'Y': ...} or {'scores': ..., 'Y': ...}."
        )
    if not (is_inputs or is_scores):
        raise ValueError(
            f"The first array has shape {first.shape}: neither inputs (n, {shape}) nor "
            f"scores (n, {n_labels})."
        )
    return {"X" if is_inputs else "scores": first, "Y": targets}


def _file_part(data: Any, model: Mapping[str, Any] | None) -> tuple[str, Any, str]:
    """(file name, content, content type) of the multipart `file` field for `data`.

    `data`: a path to a .npz/.csv/.parquet file; a pair (X, Y) or (scores, Y); a mapping
    of .npz members ({"X"|"scores": ..., "Y": ..., optional names}); or a DataFrame
    (sent as Parquet: label columns, feature or `score:<label>` columns).
    """
    if isinstance(data, str | Path):
        path = Path(data)
        kind = _FILE_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return path.name, path.read_bytes(), kind
    if _is_dataframe(data):
        buffer = io.BytesIO()
        data.to_parquet(buffer, index=False)
        return "data.parquet", buffer.getvalue(), _FILE_TYPES[".parquet"]
    if isinstance(data, Mapping):
        return "data.npz", _npz_bytes(data), _FILE_TYPES[".npz"]
    if isinstance(data, Sequence) and len(data) == 2:
        assert model is not None
        return "data.npz", _npz_bytes(_pair_members(data[0], data[1], model)), _FILE_TYPES[".npz"]
    raise TypeError(
        "data must be a file path, (X, Y) or (scores, Y) arrays, a mapping of .npz members "
        f"or a DataFrame; got {type(data).__name__}."
    )


def _needs_model(data: Any) -> bool:
    return _is_dataframe(data) or (
        isinstance(data, Sequence) and not isinstance(data, str) and len(data) == 2
    )


def _form(params: Mapping[str, Any]) -> dict[str, str]:
    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    return {name: text(value) for name, value in params.items() if value is not None}


def _upload_call(path: str, data: Any, model: Mapping[str, Any] | None, **params: Any) -> _Call:
    name, content, kind = _file_part(data, model)
    kwargs = {"files": {"file": (name, content, kind)}, "data": _form(params)}
    return _Call("POST", path, "admin", kwargs)


def _read_error(response: httpx.Response) -> LabelcutError:
    """The server's `detail` (FastAPI's error shape), else the body's text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail", response.text) if isinstance(body, dict) else response.text
    return LabelcutError(response.status_code, detail)


def _headers(call: _Call, api_key: str | None, admin_key: str | None) -> dict[str, str]:
    key = {"api": api_key, "admin": admin_key}.get(call.key or "")
    headers = dict(call.kwargs.get("headers") or {})
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


def _history_call(limit: int, offset: int, archived: bool) -> _Call:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if archived:  # sent only when asked: servers without archives know no such parameter
        params["archived"] = "true"
    return _Call("GET", "/thresholds/history", kwargs={"params": params}, read=_read_items)


def _push_call(report: Mapping[str, Any], activate: bool) -> _Call:
    params = {"activate": "true" if activate else "false"}
    return _Call("POST", "/thresholds", "admin", {"json": dict(report), "params": params})


def _read_items(response: httpx.Response) -> list[dict[str, Any]]:
    return list(response.json()["items"])


def _read_tune(response: httpx.Response) -> Any:
    body = response.json()
    return _Accepted(body) if response.status_code == 202 else body


def _tune_call(data: Any, model: Mapping[str, Any] | None, params: Mapping[str, Any]) -> _Call:
    """POST /tune-thresholds with a file, or (`data` None) a `source=` dataset's name."""
    if data is None:
        if params.get("source") is None:
            raise TypeError("tune needs data (a file, arrays or a DataFrame) or source=.")
        call = _Call("POST", "/tune-thresholds", "admin", {"data": _form(params)})
    else:
        call = _upload_call("/tune-thresholds", data, model, **params)
    return _Call(call.method, call.path, call.key, call.kwargs, _read_tune)


def _job_path(job_id: str) -> str:
    # Ids are hex; anything else is quoted whole, so it can only ever name /jobs/<one part>.
    return "/jobs/" + quote(str(job_id), safe="")


def _jobs_call(limit: int, offset: int, state: str | None) -> _Call:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if state is not None:
        params["state"] = state
    return _Call("GET", "/jobs", "admin", {"params": params}, _read_items)


def _wait_limit(wait: bool | float) -> float | None:
    """`wait` as a number of seconds (None: no limit); False never gets here."""
    if wait is True:
        return None
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        raise ValueError(f"wait must be True, False or seconds >= 0; got {wait!r}.")
    return float(wait)


def _still_waiting(job: Mapping[str, Any], deadline: float | None, started: float) -> bool:
    """True while `job` runs and the deadline allows; LabelcutError once it has passed."""
    if job.get("state") in FINISHED_JOB_STATES:
        return False
    if deadline is not None and time.monotonic() >= deadline:
        raise LabelcutError(
            None,
            f"Job {job.get('id')} is still {job.get('state')} after "
            f"{time.monotonic() - started:.0f} s of waiting; it goes on (wait_job again).",
        )
    return True


def _tune_result(job: Mapping[str, Any]) -> dict[str, Any]:
    if job.get("state") != "succeeded":
        raise JobError(job)
    return dict(job["result"])


class Client:
    """Synchronous client of one labelcut server.

    `api_key` goes with /predict (LABELCUT_API_KEY), `admin_key` with tuning,
    evaluation, pushing, activation and archiving (LABELCUT_ADMIN_KEY). `timeout` in
    seconds applies to each request. Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._keys = (api_key, admin_key)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._model: dict[str, Any] | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, call: _Call) -> Any:
        kwargs = {**call.kwargs, "headers": _headers(call, *self._keys)}
        try:
            response = self._http.request(call.method, call.path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelcutError(None, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise _read_error(response)
        return call.read(response)

    def model(self) -> dict[str, Any]:
        """GET /model: name, sha256, input_shape, labels, feature_names (cached)."""
        if self._model is None:
            self._model = self._call(_Call("GET", "/model"))
        return self._model

    def predict(
        self,
        x: Any,
        *,
        thresholds: Mapping[str, float] | None = None,
        decision_rule: str | None = None,
        k: int | None = None,
        return_logits: bool = False,
        threshold: float | None = None,
    ) -> PredictResult:
        """Score rows: a numpy array `(n, *input_shape)`, nested lists, or a DataFrame
        (columns by the model's feature names when it has them). `threshold`: a softmax
        model's confidence threshold for this request (rows below it get no label)."""
        model = self.model() if _is_dataframe(x) else None
        call = _predict_call(x, model, thresholds, decision_rule, k, return_logits, threshold)
        return self._call(call)

    def tune(
        self,
        data: Any = None,
        *,
        wait: bool | float = True,
        poll_s: float = DEFAULT_POLL_S,
        **params: Any,
    ) -> dict[str, Any]:
        """POST /tune-thresholds: the report of the new set. `params` are the form fields
        (objective, beta, target, strategy, n_bootstrap, decision_rule, k, activate,
        `job=True` to run as a job, `source="..."` instead of `data` for a dataset under the
        server's LABELCUT_DATA_SOURCES, ...).

        A tune the server runs as a job (202) is waited for (`wait=True`, or at most `wait`
        seconds), polling every `poll_s`; its result is returned, or JobError raised when it
        failed or was cancelled. `wait=False` returns the queued job instead (its `id`
        for `job`, `wait_job`, `cancel_job`); a tune answered at once returns its report.
        """
        limit = None if wait is False else _wait_limit(wait)
        model = self.model() if _needs_model(data) else None
        answer = self._call(_tune_call(data, model, params))
        if not isinstance(answer, _Accepted):
            return answer
        if wait is False:
            return answer.job
        return _tune_result(self.wait_job(answer.job["id"], timeout=limit, poll_s=poll_s))

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}: state, progress, and the result once it succeeded."""
        return self._call(_Call("GET", _job_path(job_id), "admin"))

    def jobs(
        self, *, limit: int = 50, offset: int = 0, state: str | None = None
    ) -> list[dict[str, Any]]:
        """GET /jobs: recent jobs, newest first (without results)."""
        return self._call(_jobs_call(limit, offset, state))

    def wait_job(
        self, job_id: str, *, timeout: float | None = None, poll_s: float = DEFAULT_POLL_S
    ) -> dict[str, Any]:
        """Poll GET /jobs/{id} until the job has ended (any of succeeded, failed,
        cancelled) and return it; LabelcutError after `timeout` seconds (the job goes on)."""
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        job = self.job(job_id)
        while _still_waiting(job, deadline, started):
            time.sleep(poll_s)
            job = self.job(job_id)
        return job

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """DELETE /jobs/{id}: a queued job is cancelled at once, a running one soon after
        (wait_job to see it end); LabelcutError 409 when it had already ended."""
        return self._call(_Call("DELETE", _job_path(job_id), "admin"))

    def evaluate(self, set_id: int, data: Any) -> dict[str, Any]:
        """POST /thresholds/{id}/evaluate: the set scored on labelled `data`; stores nothing."""
        model = self.model() if _needs_model(data) else None
        return self._call(_upload_call(f"/thresholds/{int(set_id)}/evaluate", data, model))

    def active(self) -> dict[str, Any]:
        """GET /thresholds: the active set (`threshold_set` None: 0.5 everywhere)."""
        return self._call(_Call("GET", "/thresholds"))

    def history(
        self, *, limit: int = 100, offset: int = 0, archived: bool = False
    ) -> list[dict[str, Any]]:
        """GET /thresholds/history: this model's sets, newest first (`archived`: all)."""
        return self._call(_history_call(limit, offset, archived))

    def get(self, set_id: int) -> dict[str, Any]:
        """GET /thresholds/{id}: one set with its per-label report."""
        return self._call(_Call("GET", f"/thresholds/{int(set_id)}"))

    def activate(self, set_id: int) -> dict[str, Any]:
        """POST /thresholds/{id}/activate."""
        return self._call(_Call("POST", f"/thresholds/{int(set_id)}/activate", "admin"))

    def archive(self, set_id: int) -> dict[str, Any]:
        """POST /thresholds/{id}/archive: hide a set from the default history."""
        return self._call(_Call("POST", f"/thresholds/{int(set_id)}/archive", "admin"))

    def push(self, report: Mapping[str, Any], *, activate: bool = False) -> dict[str, Any]:
        """POST /thresholds: store an offline report (`labelcut tune --out`) as a set."""
        return self._call(_push_call(report, activate))


class AsyncClient:
    """The same calls as `Client`, awaited: `async with AsyncClient(url) as lc: ...`."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._keys = (api_key, admin_key)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)
        self._model: dict[str, Any] | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, call: _Call) -> Any:
        kwargs = {**call.kwargs, "headers": _headers(call, *self._keys)}
        try:
            response = await self._http.request(call.method, call.path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelcutError(None, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise _read_error(response)
        return call.read(response)

    async def model(self) -> dict[str, Any]:
        if self._model is None:
            self._model = await self._call(_Call("GET", "/model"))
        return self._model

    async def predict(
        self,
        x: Any,
        *,
        thresholds: Mapping[str, float] | None = None,
        decision_rule: str | None = None,
        k: int | None = None,
        return_logits: bool = False,
        threshold: float | None = None,
    ) -> PredictResult:
        model = await self.model() if _is_dataframe(x) else None
        call = _predict_call(x, model, thresholds, decision_rule, k, return_logits, threshold)
        return await self._call(call)

    async def tune(
        self,
        data: Any = None,
        *,
        wait: bool | float = True,
        poll_s: float = DEFAULT_POLL_S,
        **params: Any,
    ) -> dict[str, Any]:
        """As `Client.tune`, awaited (a job is polled with asyncio.sleep)."""
        limit = None if wait is False else _wait_limit(wait)
        model = await self.model() if _needs_model(data) else None
        answer = await self._call(_tune_call(data, model, params))
        if not isinstance(answer, _Accepted):
            return answer
        if wait is False:
            return answer.job
        job = await self.wait_job(answer.job["id"], timeout=limit, poll_s=poll_s)
        return _tune_result(job)

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._call(_Call("GET", _job_path(job_id), "admin"))

    async def jobs(
        self, *, limit: int = 50, offset: int = 0, state: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._call(_jobs_call(limit, offset, state))

    async def wait_job(
        self, job_id: str, *, timeout: float | None = None, poll_s: float = DEFAULT_POLL_S
    ) -> dict[str, Any]:
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        job = await self.job(job_id)
        while _still_waiting(job, deadline, started):
            await asyncio.sleep(poll_s)
            job = await self.job(job_id)
        return job

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._call(_Call("DELETE", _job_path(job_id), "admin"))

    async def evaluate(self, set_id: int, data: Any) -> dict[str, Any]:
        model = await self.model() if _needs_model(data) else None
        return await self._call(_upload_call(f"/thresholds/{int(set_id)}/evaluate", data, model))

    async def active(self) -> dict[str, Any]:
        return await self._call(_Call("GET", "/thresholds"))

    async def history(
        self, *, limit: int = 100, offset: int = 0, archived: bool = False
    ) -> list[dict[str, Any]]:
        return await self._call(_history_call(limit, offset, archived))

    async def get(self, set_id: int) -> dict[str, Any]:
        return await self._call(_Call("GET", f"/thresholds/{int(set_id)}"))

    async def activate(self, set_id: int) -> dict[str, Any]:
        return await self._call(_Call("POST", f"/thresholds/{int(set_id)}/activate", "admin"))

    async def archive(self, set_id: int) -> dict[str, Any]:
        return await self._call(_Call("POST", f"/thresholds/{int(set_id)}/archive", "admin"))

    async def push(self, report: Mapping[str, Any], *, activate: bool = False) -> dict[str, Any]:
        return await self._call(_push_call(report, activate))
