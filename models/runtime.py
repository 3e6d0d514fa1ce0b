"""``LoadedModel``: a bundle on a device, mapping input rows to probabilities."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from labelcut.models.device import resolve_device, resolve_dtype
from labelcut.models.errors import BundleError
from labelcut.models.formats import load_module
from labelcut.models.guard import activate, check_raw_outputs, standard_normal_rows
from labelcut.models.manifest import (
    MANIFEST_NAME,
    Manifest,
    read_examples,
    read_manifest,
    weights_path,
)
from labelcut.models.paths import DEFAULT_MODEL_DIR

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)

#: Rows per forward pass when ``batch_size`` is None, capped by ``_BATCH_BYTES`` of input.
DEFAULT_BATCH_ROWS = 4096
_BATCH_BYTES = 64 * 1024 * 1024


def load_model(
    directory: str | Path | None = None,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    warmup: bool = True,
) -> LoadedModel:
    """Load the model bundle in ``directory`` (default: ``DEFAULT_MODEL_DIR``).

    Steps: resolve the device and dtype, read and validate ``manifest.json``, check
    the weights file's sha256 and format, load it onto the device (no pickle is
    ever unpickled; export and TorchScript bundles run code and must be trusted),
    and, with ``warmup``, run the guard's rows (16 seeded random rows plus the
    bundle's example rows) and check that the output is ``(rows, len(labels))``
    and honours the manifest's output contract (see ``models.guard``: raw
    outputs all in [0, 1] from a bundle that declares logits are refused).

    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see
    ``resolve_device``). ``dtype``: ``None``/``"float32"``, or ``"float16"``/
    ``"bfloat16"`` on CUDA only; outputs are float32 in every case.

    Raises ``BundleError`` (a ``ValueError``) naming the file and the problem for
    anything wrong with the bundle, and ``ValueError`` for a bad device or dtype.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    bundle_dir = Path(DEFAULT_MODEL_DIR if directory is None else directory)
    manifest = read_manifest(bundle_dir)
    weights = weights_path(bundle_dir, manifest)
    examples = read_examples(bundle_dir, manifest)
    module = load_module(
        manifest.format,
        weights,
        device=torch_device,
        architecture=None if manifest.architecture is None else manifest.architecture.model_dump(),
    )
    if torch_dtype != torch.float32:
        module = module.to(torch_dtype)
    model = LoadedModel(
        module=module,
        manifest=manifest,
        directory=bundle_dir,
        device=torch_device,
        dtype=torch_dtype,
        examples=examples,
    )
    if warmup:
        model.warm_up()
    return model


class LoadedModel:
    """A model bundle loaded on a device.

    Attributes: ``labels`` (output column order), ``input_shape`` (one row, without
    the batch dimension), ``feature_names`` (or None), ``device``, ``dtype`` (the
    compute dtype), ``name``, ``version``, ``format`` (``"safetensors"``,
    ``"export"`` or ``"torchscript"``), ``activation`` (``"sigmoid"``: one
    probability per label; ``"softmax"``: one class per row, probabilities sum to
    1), ``outputs`` (``"logits"``, or ``"probabilities"`` when the module returns
    them itself), ``sha256`` (of the weights file), ``directory``, ``manifest``
    (the validated ``Manifest``), ``examples`` (the bundle's example rows or None)
    and ``metrics`` (the manifest's ``metrics`` or None).

    ``predict_logits`` and ``predict_proba`` are safe to call from several
    threads: the forward pass is serialised by a lock.
    """

    def __init__(
        self,
        *,
        module: Callable[[torch.Tensor], torch.Tensor],
        manifest: Manifest,
        directory: Path,
        device: torch.device,
        dtype: torch.dtype,
        examples: np.ndarray | None = None,
    ) -> None:
        self.labels: list[str] = list(manifest.labels)
        self.input_shape: tuple[int, ...] = tuple(manifest.input_shape)
        self.feature_names: list[str] | None = (
            None if manifest.feature_names is None else list(manifest.feature_names)
        )
        self.device = device
        self.dtype = dtype
        self.name = manifest.name
        self.version = manifest.version
        self.format = manifest.format
        self.activation: str = manifest.activation
        self.outputs: str = manifest.outputs
        self.examples = examples
        self.sha256 = manifest.weights.sha256
        self.directory = Path(directory)
        self.manifest = manifest
        self._module = module
        self._lock = threading.Lock()
        self._mean, self._std = self._standardization_tensors(manifest)
        row_bytes = 4 * math.prod(self.input_shape)
        self.default_batch_size = max(1, min(DEFAULT_BATCH_ROWS, _BATCH_BYTES // row_bytes))

    def __repr__(self) -> str:
        return (
            f"LoadedModel(name={self.name!r}, version={self.version!r}, format={self.format!r}, "
            f"labels={len(self.labels)}, activation={self.activation!r}, "
            f"input_shape={self.input_shape}, device={self.device}, "
            f"dtype={self.dtype})"
        )

    @property
    def metrics(self) -> dict[str, Any] | None:
        """Metrics recorded in the manifest at training time, if any."""
        return self.manifest.metrics

    # ------------------------------------------------------------------ public

    def predict_logits(self, x: ArrayOrTensor, batch_size: int | None = None) -> ArrayOrTensor:
        """Raw outputs ``(n, len(labels))`` for ``x`` of shape ``(n, *input_shape)``.

        These are the logits, or the module's own probabilities when the bundle
        declares ``outputs="probabilities"``.

        A NumPy array in gives a float32 NumPy array out; a tensor in gives a float32
        tensor out, on the input's device. Any real dtype is accepted and converted
        to float32; the manifest's standardisation ``(x - mean) / std`` is applied
        here, so pass raw features. A single row needs its batch dimension
        (``x[None]``). The rows go through the model ``batch_size`` at a time
        (default: up to 4096 rows or 64 MiB of input), so only one batch is on the
        device at once; the answer does not depend on ``batch_size`` beyond
        floating-point rounding. Raises ``ValueError`` for a wrong shape or dtype.
        """
        return self._predict(x, batch_size, probabilities=False)

    def predict_proba(self, x: ArrayOrTensor, batch_size: int | None = None) -> ArrayOrTensor:
        """Probabilities in [0, 1], shape ``(n, len(labels))``.

        ``sigmoid(logits)`` per label for ``activation="sigmoid"``; ``softmax(logits)``
        over the labels (each row sums to 1) for ``activation="softmax"``; the raw
        outputs when the bundle declares ``outputs="probabilities"``. Column ``j``
        is the probability of ``labels[j]``. Same input rules and output kinds as
        ``predict_logits``.
        """
        return self._predict(x, batch_size, probabilities=True)

    def warm_up(self) -> None:
        """Run the guard's rows through the model; check the output shape and contract.

        The rows are 16 seeded random rows (standard normal after the manifest's
        standardisation) plus the bundle's example rows. Raises ``BundleError``
        when the model fails on them, returns the wrong shape, or breaks the
        output contract (see ``models.guard.check_raw_outputs``).
        """
        batch = self._guard_inputs()
        try:
            with torch.inference_mode():
                raw = self._forward(batch, probabilities=False)
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(
                f"{self._weights_file}: the model failed on a warm-up batch of shape "
                f"{tuple(batch.shape)} on {self.device} with dtype "
                f"{str(self.dtype).removeprefix('torch.')}: {type(exc).__name__}: {exc}"
            ) from exc
        tolerance = 1e-3 if self.dtype == torch.float32 else 2e-2
        check_raw_outputs(
            raw,
            activation=self.activation,
            outputs=self.outputs,
            source=str(self._weights_file),
            sum_tolerance=tolerance,
        )

    def _guard_inputs(self) -> torch.Tensor:
        rows = standard_normal_rows(self.input_shape).to(self.device)
        if self._mean is not None:
            rows = rows * self._std + self._mean  # raw inputs that standardise to the rows
        if self.examples is not None:
            rows = torch.cat((rows, torch.from_numpy(self.examples).to(self.device)))
        return rows

    # ------------------------------------------------------------------ steps

    def _predict(self, x: Any, batch_size: int | None, *, probabilities: bool) -> Any:
        rows = self._check_input(x)
        size = self._check_batch_size(batch_size)
        n = rows.shape[0]
        num_labels = len(self.labels)
        if isinstance(rows, torch.Tensor):
            out: Any = torch.empty((n, num_labels), dtype=torch.float32, device=rows.device)
        else:
            out = np.empty((n, num_labels), dtype=np.float32)
        for start in range(0, n, size):
            batch = self._to_device(rows[start : start + size])
            with torch.inference_mode():
                result = self._forward(batch, probabilities=probabilities)
            if isinstance(out, torch.Tensor):
                out[start : start + size] = result.to(out.device)
            else:
                out[start : start + size] = result.cpu().numpy()
        return out

    def _check_input(self, x: Any) -> np.ndarray | torch.Tensor:
        if isinstance(x, torch.Tensor):
            if x.is_complex() or x.dtype == torch.bool:
                raise ValueError(f"x must hold real numbers; got a tensor of dtype {x.dtype}.")
            shape = tuple(x.shape)
        else:
            try:
                x = np.asarray(x)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"x must be a NumPy array or a torch tensor: {exc}") from exc
            if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
                raise ValueError(
                    f"x must hold real numbers (integer or float); got dtype {x.dtype}."
                )
            shape = x.shape
        expected = ("n", *self.input_shape)
        if shape[1:] != self.input_shape or len(shape) != len(self.input_shape) + 1:
            hint = ""
            if shape == self.input_shape:
                hint = " For a single row, add the batch dimension (x[None])."
            raise ValueError(
                f"x must have shape {_show_shape(expected)} for model {self.name!r}; "
                f"got {shape}.{hint}"
            )
        return x

    def _check_batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self.default_batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
        return int(batch_size)

    def _to_device(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            return batch.detach().to(device=self.device, dtype=torch.float32)
        return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)

    def _forward(self, batch: torch.Tensor, *, probabilities: bool) -> torch.Tensor:
        if self._mean is not None:
            batch = (batch - self._mean) / self._std
        batch = batch.to(self.dtype)
        with self._lock:
            output = self._module(batch)
        self._check_output(output, batch.shape[0])
        output = output.float()
        if not probabilities:
            return output
        return activate(output, activation=self.activation, outputs=self.outputs)

    def _check_output(self, output: Any, rows: int) -> None:
        expected = (rows, len(self.labels))
        if isinstance(output, torch.Tensor) and tuple(output.shape) == expected:
            return
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        width = output.shape[-1] if isinstance(output, torch.Tensor) and output.ndim == 2 else None
        if width is not None and output.shape[0] == rows:
            raise BundleError(
                f"{self.directory / MANIFEST_NAME}: lists {len(self.labels)} labels but the "
                f"model in {self._weights_file.name} outputs {width} values per row."
            )
        raise BundleError(
            f"{self._weights_file}: the model returned {got} for a batch of {rows} rows; "
            f"expected {expected} (one logit per label)."
        )

    @property
    def _weights_file(self) -> Path:
        return self.directory / self.manifest.weights.file

    def _standardization_tensors(
        self, manifest: Manifest
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if manifest.standardization is None:
            return None, None
        mean = torch.tensor(manifest.standardization.mean, dtype=torch.float32)
        std = torch.tensor(manifest.standardization.std, dtype=torch.float32)
        return mean.to(self.device), std.to(self.device)


def _show_shape(shape: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
