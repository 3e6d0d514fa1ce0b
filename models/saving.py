"""``save_bundle``: write a trained module as a bundle (weights, optional examples, manifest)."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from labelcut.models.architectures import ARCHITECTURES, build_architecture
from labelcut.models.errors import BundleError
from labelcut.models.files import sha256_file, temp_path
from labelcut.models.formats import FORMATS, WEIGHTS_FILE_NAMES, load_module, write_weights
from labelcut.models.guard import check_raw_outputs, standard_normal_rows
from labelcut.models.manifest import (
    ACTIVATIONS,
    EXAMPLES_NAME,
    MAX_EXAMPLE_BYTES,
    MAX_EXAMPLE_ROWS,
    OUTPUTS,
    SCHEMA_VERSION,
    ArchitectureSpec,
    ExamplesSpec,
    Manifest,
    Standardization,
    WeightsSpec,
    check_standardization,
    describe_validation_error,
    write_manifest,
)

_SAVE_CHECK_ATOL = 1e-5


def save_bundle(
    module: nn.Module,
    directory: str | os.PathLike[str],
    *,
    labels: Sequence[str],
    input_shape: Sequence[int],
    format: str = "export",
    name: str | None = None,
    version: str = "1",
    feature_names: Sequence[str] | None = None,
    mean: Any = None,
    std: Any = None,
    architecture: Mapping[str, Any] | None = None,
    activation: str = "sigmoid",
    outputs: str = "logits",
    examples: Any = None,
) -> Path:
    """Write ``module`` as a model bundle in ``directory`` and return the directory.

    ``module`` maps a float32 batch ``(n, *input_shape)`` to **logits** ``(n, len(labels))``
    (column ``j`` is ``labels[j]``). ``activation`` says how labelcut turns them
    into probabilities: ``"sigmoid"`` (default; multi-label, ``BCEWithLogitsLoss``,
    each label on its own) or ``"softmax"`` (multi-class, ``CrossEntropyLoss``,
    one class per row, probabilities sum to 1). ``outputs="probabilities"`` declares
    that the module already returns probabilities; then no activation is applied.
    A module whose raw outputs all lie in [0, 1] without that declaration is
    refused (see ``models.guard``).

    The module is copied to the CPU in float32 and eval mode; the caller's module
    is not changed. If ``mean`` and ``std`` are given, the module expects
    standardised inputs ``(x - mean) / std`` and the loaded model applies that step
    itself, so clients send raw features. ``feature_names`` (1-D inputs only) lets
    CSV/Parquet uploads match feature columns by name; without it they are taken
    by position. ``name`` defaults to the directory's name. ``examples`` (optional,
    raw rows ``(k, *input_shape)``, k <= 256) are stored as ``examples.npy`` and
    join the guard's rows at every load.

    ``format``: ``"export"`` (``torch.export`` program with a dynamic batch
    dimension, any architecture), ``"torchscript"`` (``torch.jit.trace``, or the
    module as is when it is already scripted) or ``"safetensors"`` (tensors only;
    ``module`` must be a built-in architecture such as ``models.architectures.MLP``,
    or ``architecture={"name": "mlp", "config": {...}}`` must describe a built-in
    architecture whose state dict ``module`` shares). The export and TorchScript
    formats can run code when loaded: share such bundles only with people who
    trust you, and load only those you trust.

    The written file is reloaded and checked against ``module`` on the guard's
    rows before anything is renamed into place. Files are written to a temporary
    name and renamed, and the manifest is written last. Raises ``ValueError`` for
    bad arguments and ``BundleError`` when the module cannot be saved in the
    requested format, does not reproduce itself or fails the output guard.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} exists and is not a directory.")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}.")
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUTS)}; got {outputs!r}.")
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module; got {type(module).__name__}.")
    shape = _check_input_shape(input_shape)
    labels = _check_names("labels", labels)
    if activation == "softmax" and len(labels) < 2:
        raise ValueError("activation='softmax' needs at least two labels (classes).")
    feature_names = None if feature_names is None else _check_names("feature_names", feature_names)
    standardization = _standardization(mean, std, shape)
    example_rows = _check_examples(examples, shape)

    cpu_module = _cpu_eval_copy(module)
    arch_spec = _architecture_spec(cpu_module, architecture) if format == "safetensors" else None
    if arch_spec is not None:
        cpu_module = _rebuild_builtin(cpu_module, arch_spec)

    batch = _guard_batch(shape, standardization, example_rows)
    with torch.inference_mode():
        expected = _call(cpu_module, batch, "the module")
    _check_output(expected, len(labels), "the module", batch.shape[0])
    check_raw_outputs(expected, activation=activation, outputs=outputs, source="the module")

    directory.mkdir(parents=True, exist_ok=True)
    file_name = WEIGHTS_FILE_NAMES[format]
    final = directory / file_name
    tmp = temp_path(directory, file_name)
    examples_tmp = None if example_rows is None else temp_path(directory, EXAMPLES_NAME)
    try:
        mode = tmp.stat().st_mode  # the umask's mode; some writers recreate the file 0600
        try:
            write_weights(format, cpu_module, tmp, example=batch[:3])
        except Exception as exc:
            raise BundleError(
                f"{final}: cannot save the module in format {format!r}: {type(exc).__name__}: {exc}"
            ) from exc
        _check_reproduces(format, tmp, arch_spec, batch, expected)
        os.chmod(tmp, mode)
        examples_spec = None
        if examples_tmp is not None and example_rows is not None:
            with open(examples_tmp, "wb") as handle:
                np.save(handle, example_rows, allow_pickle=False)
            examples_spec = ExamplesSpec(
                file=EXAMPLES_NAME, sha256=sha256_file(examples_tmp), rows=len(example_rows)
            )
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=name or directory.resolve().name,
            version=str(version),
            format=format,  # type: ignore[arg-type]
            labels=labels,
            input_shape=list(shape),
            activation=activation,  # type: ignore[arg-type]
            outputs=outputs,  # type: ignore[arg-type]
            feature_names=feature_names,
            weights=WeightsSpec(file=file_name, sha256=sha256_file(tmp)),
            examples=examples_spec,
            standardization=standardization,
            architecture=arch_spec,
        )
        os.replace(tmp, final)
        if examples_tmp is not None:
            os.replace(examples_tmp, directory / EXAMPLES_NAME)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from exc
    finally:
        tmp.unlink(missing_ok=True)
        if examples_tmp is not None:
            examples_tmp.unlink(missing_ok=True)
    write_manifest(directory, manifest)
    stale = set(WEIGHTS_FILE_NAMES.values()) - {file_name}
    if example_rows is None:
        stale.add(EXAMPLES_NAME)
    for other in stale:
        (directory / other).unlink(missing_ok=True)
    return directory


def _guard_batch(
    shape: tuple[int, ...], standardization: Standardization | None, examples: np.ndarray | None
) -> torch.Tensor:
    """The rows the module is checked on, as the module sees them (standardised)."""
    batch = standard_normal_rows(shape)
    if examples is None:
        return batch
    rows = torch.from_numpy(examples)
    if standardization is not None:
        mean = torch.tensor(standardization.mean, dtype=torch.float32)
        std = torch.tensor(standardization.std, dtype=torch.float32)
        rows = (rows - mean) / std
    return torch.cat((batch, rows.float()))


def _check_examples(examples: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if examples is None:
        return None
    if isinstance(examples, torch.Tensor):
        examples = examples.detach().cpu().numpy()
    rows = np.asarray(examples)
    if not (np.issubdtype(rows.dtype, np.integer) or np.issubdtype(rows.dtype, np.floating)):
        raise ValueError(f"examples must hold real numbers; got dtype {rows.dtype}.")
    if rows.shape[1:] != shape or rows.ndim != len(shape) + 1:
        wanted = ", ".join(map(str, shape))
        raise ValueError(f"examples must have shape (k, {wanted}); got {rows.shape}.")
    if not 1 <= rows.shape[0] <= MAX_EXAMPLE_ROWS:
        raise ValueError(f"examples must have 1 to {MAX_EXAMPLE_ROWS} rows; got {rows.shape[0]}.")
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if rows.nbytes > MAX_EXAMPLE_BYTES:
        raise ValueError(
            f"examples take {rows.nbytes} bytes as float32; at most {MAX_EXAMPLE_BYTES} fit."
        )
    if not np.all(np.isfinite(rows)):
        raise ValueError("examples must be finite numbers.")
    return rows


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_shape, int) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or any(
        isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape
    ):
        raise ValueError(
            "input_shape must be a non-empty sequence of positive integers (one row, "
            f"without the batch dimension); got {input_shape!r}."
        )
    return tuple(int(d) for d in shape)


def _check_names(argument: str, names: Sequence[str]) -> list[str]:
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{argument} must be a list of non-empty strings; got {names!r}.")
    names = list(names)
    if not names:
        raise ValueError(f"{argument} must not be empty.")
    if len(set(names)) != len(names):
        raise ValueError(f"{argument} must be unique; got {names!r}.")
    return names


def _standardization(mean: Any, std: Any, shape: tuple[int, ...]) -> Standardization | None:
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ValueError("mean and std must be given together (or neither).")
    mean_list = _as_float_list(mean)
    std_list = _as_float_list(std)
    try:
        check_standardization(mean_list, std_list, shape)
    except ValueError as exc:
        raise ValueError(f"{exc}.") from exc
    return Standardization(mean=mean_list, std=std_list)


def _as_float_list(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float32)
    return np.atleast_1d(array).tolist()


def _cpu_eval_copy(module: nn.Module) -> nn.Module:
    copied = copy.deepcopy(module)
    if not isinstance(copied, torch.jit.ScriptModule):
        copied = copied.to("cpu", torch.float32)
    return copied.eval()


def _architecture_spec(
    module: nn.Module, architecture: Mapping[str, Any] | None
) -> ArchitectureSpec:
    if architecture is None:
        spec_name = getattr(module, "architecture_name", None)
        if spec_name not in ARCHITECTURES or type(module) is not ARCHITECTURES[spec_name]:
            known = ", ".join(cls.__name__ for cls in ARCHITECTURES.values())
            raise ValueError(
                f"format 'safetensors' needs a built-in architecture ({known} in "
                "models.architectures), or architecture={'name': ..., 'config': {...}} "
                f"that matches the module; got a {type(module).__name__}. Use format='export' "
                "for other architectures."
            )
        return ArchitectureSpec(name=spec_name, config=module.architecture_config())
    try:
        return ArchitectureSpec.model_validate(dict(architecture))
    except (ValidationError, TypeError, ValueError) as exc:
        raise ValueError(f"architecture is not valid: {exc}") from exc


def _rebuild_builtin(module: nn.Module, spec: ArchitectureSpec) -> nn.Module:
    built = build_architecture(spec.name, spec.config, source="save_bundle(architecture=...)")
    try:
        built.load_state_dict(module.state_dict(), strict=True, assign=True)
    except RuntimeError as exc:
        raise ValueError(
            f"the module's state dict does not fit architecture {spec.name!r} with config "
            f"{spec.config!r}: {exc}"
        ) from exc
    return built.eval()


def _call(module: Any, batch: torch.Tensor, what: str) -> torch.Tensor:
    try:
        return module(batch)
    except Exception as exc:
        raise BundleError(f"{what} failed on a batch of shape {tuple(batch.shape)}: {exc}") from exc


def _check_output(output: Any, num_labels: int, what: str, rows: int) -> None:
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (rows, num_labels):
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise BundleError(
            f"{what} returned {got} for a batch of {rows} rows; expected ({rows}, {num_labels}) "
            f"for {num_labels} labels."
        )


def _check_reproduces(
    fmt: str,
    path: Path,
    arch_spec: ArchitectureSpec | None,
    example: torch.Tensor,
    expected: torch.Tensor,
) -> None:
    arch = None if arch_spec is None else arch_spec.model_dump()
    reloaded = load_module(fmt, path, device=torch.device("cpu"), architecture=arch)
    with torch.inference_mode():
        got = _call(reloaded, example, f"the saved {fmt} file {path.name}")
    _check_output(got, expected.shape[1], f"the saved {fmt} file", example.shape[0])
    diff = (got.float() - expected.float()).abs().max().item()
    scale = max(1.0, expected.float().abs().max().item())  # relative for large logits
    if not math.isfinite(diff) or diff > _SAVE_CHECK_ATOL * scale:
        raise BundleError(
            f"the saved {fmt} file does not reproduce the module (max abs difference {diff:.3g} "
            f"on a batch of {example.shape[0]} rows); the module may depend on the batch size "
            "or on Python control flow that tracing cannot capture. Try format='export'."
        )
