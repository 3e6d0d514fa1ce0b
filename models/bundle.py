"""The model bundle: ``manifest.json`` plus one weights file, and ``save_bundle``.

A bundle is a directory::

    my_bundle/
        manifest.json        # what the model is and how to run it (schema below)
        model.safetensors    # or model.pt2 (torch.export) or model.torchscript

``manifest.json`` (``schema_version`` 1)::

    {"schema_version": 1, "name": "yeast-mlp", "version": "1", "format": "safetensors",
     "labels": ["Class1", ...],            # output order: column j is labels[j]
     "input_shape": [103],                 # one row, without the batch dimension
     "input_dtype": "float32",
     "feature_names": ["Att1", ...],       # optional; only for 1-D input_shape
     "weights": {"file": "model.safetensors", "sha256": "<64 hex>"},
     "standardization": {"mean": [...], "std": [...]},   # optional, x -> (x - mean) / std
     "architecture": {"name": "mlp", "config": {...}},   # safetensors only
     "metrics": {...}, "training": {...}}                # optional, informational
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import nn

from labelcut.models.architectures import ARCHITECTURES, build_architecture
from labelcut.models.errors import BundleError
from labelcut.models.formats import (
    FORMATS,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE_NAMES,
    check_declared_format,
    conversion_hint,
    load_module,
    sniff_weights,
    write_weights,
)

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
_SAVE_CHECK_ATOL = 1e-5


class WeightsSpec(BaseModel):
    """The weights file of a bundle: a plain file name inside the bundle, and its sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", "..") or value == MANIFEST_NAME:
            raise ValueError("must be a plain file name inside the bundle directory")
        return value


class ArchitectureSpec(BaseModel):
    """A built-in architecture (see ``models.architectures.ARCHITECTURES``) and its kwargs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    config: dict[str, Any]

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ARCHITECTURES:
            raise ValueError(f"unknown architecture (known: {', '.join(sorted(ARCHITECTURES))})")
        return value


class Standardization(BaseModel):
    """Per-feature input standardisation ``x -> (x - mean) / std``.

    ``mean`` and ``std`` are (nested) lists whose shape broadcasts to ``input_shape``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: list[Any]
    std: list[Any]


class Manifest(BaseModel):
    """The validated contents of ``manifest.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    format: Literal["safetensors", "export", "torchscript"]
    labels: list[str] = Field(min_length=1)
    input_shape: list[int] = Field(min_length=1)
    input_dtype: Literal["float32"] = "float32"
    feature_names: list[str] | None = None
    weights: WeightsSpec
    standardization: Standardization | None = None
    architecture: ArchitectureSpec | None = None
    metrics: dict[str, Any] | None = None
    training: dict[str, Any] | None = None

    @field_validator("labels", "feature_names")
    @classmethod
    def _unique_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if any(not name for name in value):
            raise ValueError("names must be non-empty strings")
        if len(set(value)) != len(value):
            duplicates = sorted({name for name in value if value.count(name) > 1})
            raise ValueError(f"names must be unique; repeated: {duplicates[:5]}")
        return value

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, value: list[int]) -> list[int]:
        if any(dim < 1 for dim in value):
            raise ValueError("every dimension must be a positive integer")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.feature_names is not None and (
            len(self.input_shape) != 1 or len(self.feature_names) != self.input_shape[0]
        ):
            raise ValueError(
                f"feature_names has {len(self.feature_names)} names but input_shape is "
                f"{self.input_shape}; feature names need a 1-D input_shape of the same length"
            )
        if (self.format == "safetensors") != (self.architecture is not None):
            raise ValueError(
                "architecture is required for format 'safetensors' and not allowed otherwise"
            )
        if self.standardization is not None:
            _check_standardization(
                self.standardization.mean, self.standardization.std, tuple(self.input_shape)
            )
        return self


def _check_standardization(mean: Any, std: Any, input_shape: tuple[int, ...]) -> None:
    for key, raw in (("mean", mean), ("std", std)):
        try:
            array = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"standardization {key} must be numbers: {exc}") from exc
        try:
            broadcast = np.broadcast_shapes(array.shape, input_shape)
        except ValueError:
            broadcast = None
        if broadcast != input_shape:
            raise ValueError(
                f"standardization {key} has shape {array.shape}, which does not broadcast "
                f"to input_shape {input_shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"standardization {key} must be finite")
        if key == "std" and not np.all(array > 0):
            raise ValueError("standardization std must be positive")


# --------------------------------------------------------------------------- reading


def read_manifest(directory: Path) -> Manifest:
    """Read and validate ``directory/manifest.json``; raise ``BundleError`` naming the problem."""
    directory = Path(directory)
    _check_is_bundle_directory(directory)
    path = directory / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot be read: {exc}.") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(raw).__name__}.")
    if raw.get("schema_version") not in (None, SCHEMA_VERSION):
        raise BundleError(
            f"{path}: field 'schema_version' is {raw['schema_version']!r}; this labelcut "
            f"reads schema version {SCHEMA_VERSION}."
        )
    if "format" in raw and raw["format"] not in FORMATS:
        raise BundleError(
            f"{path}: field 'format' is {raw['format']!r}, which is not a known format "
            f"(known: {', '.join(FORMATS)})."
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{path}: {_describe_validation_error(exc)}") from exc


def _check_is_bundle_directory(directory: Path) -> None:
    if not directory.exists():
        raise BundleError(f"{directory}: model bundle directory does not exist.")
    if directory.is_file():
        if _looks_pickled(directory):
            raise BundleError(
                f"{directory}: is a pickled checkpoint, not a bundle directory. "
                + conversion_hint(directory)
            )
        raise BundleError(
            f"{directory}: is a file; a model bundle is a directory holding "
            f"{MANIFEST_NAME} and one weights file (see models.save_bundle)."
        )
    if not (directory / MANIFEST_NAME).is_file():
        pickles = sorted(p for p in directory.iterdir() if p.is_file() and _looks_pickled(p))
        if pickles:
            raise BundleError(
                f"{directory / MANIFEST_NAME}: missing, and the directory holds a pickled "
                f"checkpoint {pickles[0].name!r}. " + conversion_hint(pickles[0])
            )
        raise BundleError(
            f"{directory / MANIFEST_NAME}: missing; a model bundle is a directory holding "
            f"{MANIFEST_NAME} and one weights file (create one with models.save_bundle)."
        )


def _looks_pickled(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES or sniff_weights(path) == "pickle"


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        field = ".".join(str(part) for part in error["loc"]) or "(manifest)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            parts.append(f"field {field!r} is missing")
        else:
            shown = repr(error.get("input"))
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            parts.append(f"field {field!r}: {message} (got {shown})")
    more = len(exc.errors()) - len(parts)
    tail = f"; and {more} more problem(s)" if more > 0 else ""
    return "; ".join(parts) + tail + "."


def weights_path(directory: Path, manifest: Manifest) -> Path:
    """The weights file of a bundle, after checking it exists, its sha256 and its format."""
    path = Path(directory) / manifest.weights.file
    manifest_path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path}: weights file named in {manifest_path} is missing.")
    found = sha256_file(path)
    if found != manifest.weights.sha256:
        raise BundleError(
            f"{path}: sha256 mismatch; {manifest_path.name} expects "
            f"{manifest.weights.sha256} but the file has {found}. The file was changed or "
            "corrupted after the bundle was written."
        )
    check_declared_format(path, manifest.format, manifest_path)
    return path


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- writing


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
) -> Path:
    """Write ``module`` as a model bundle in ``directory`` and return the directory.

    ``module`` maps a float32 batch ``(n, *input_shape)`` to logits ``(n, len(labels))``
    (column ``j`` is ``labels[j]``; the probability is ``sigmoid(logit)``). It is
    copied to the CPU in float32 and eval mode; the caller's module is not changed.
    If ``mean`` and ``std`` are given, the module expects standardised inputs
    ``(x - mean) / std`` and the loaded model applies that step itself.

    ``format``: ``"export"`` (``torch.export`` program with a dynamic batch
    dimension, any architecture), ``"torchscript"`` (``torch.jit.trace``, or the
    module as is when it is already scripted) or ``"safetensors"`` (tensors only;
    ``module`` must be a built-in architecture such as ``models.architectures.MLP``,
    or ``architecture={"name": "mlp", "config": {...}}`` must describe a built-in
    architecture whose state dict ``module`` shares). The export and TorchScript
    formats can run code when loaded: share such bundles only with people who
    trust you, and load only those you trust.

    The written file is reloaded and checked against ``module`` on a batch of
    five rows before anything is renamed into place. Files are written to a
    temporary name and renamed, and the manifest is written last. Raises
    ``ValueError`` for bad arguments and ``BundleError`` when the module cannot
    be saved in the requested format or does not reproduce itself.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} exists and is not a directory.")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module; got {type(module).__name__}.")
    shape = _check_input_shape(input_shape)
    labels = _check_names("labels", labels)
    feature_names = None if feature_names is None else _check_names("feature_names", feature_names)
    standardization = _standardization(mean, std, shape)

    cpu_module = _cpu_eval_copy(module)
    arch_spec = _architecture_spec(cpu_module, architecture) if format == "safetensors" else None
    if arch_spec is not None:
        cpu_module = _rebuild_builtin(cpu_module, arch_spec)

    example = torch.randn((5, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = _call(cpu_module, example, "the module")
    _check_output(expected, len(labels), "the module", example.shape[0])

    directory.mkdir(parents=True, exist_ok=True)
    file_name = WEIGHTS_FILE_NAMES[format]
    final = directory / file_name
    tmp = _temp_path(directory, file_name)
    try:
        mode = tmp.stat().st_mode  # the umask's mode; some writers recreate the file 0600
        try:
            write_weights(format, cpu_module, tmp, example=example[:3])
        except Exception as exc:
            raise BundleError(
                f"{final}: cannot save the module in format {format!r}: {type(exc).__name__}: {exc}"
            ) from exc
        _check_reproduces(format, tmp, arch_spec, example, expected)
        os.chmod(tmp, mode)
        digest = sha256_file(tmp)
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=name or directory.resolve().name,
            version=str(version),
            format=format,  # type: ignore[arg-type]
            labels=labels,
            input_shape=list(shape),
            feature_names=feature_names,
            weights=WeightsSpec(file=file_name, sha256=digest),
            standardization=standardization,
            architecture=arch_spec,
        )
        os.replace(tmp, final)
    except ValidationError as exc:
        raise ValueError(_describe_validation_error(exc)) from exc
    finally:
        tmp.unlink(missing_ok=True)
    write_manifest(directory, manifest)
    for other in set(WEIGHTS_FILE_NAMES.values()) - {file_name}:
        (directory / other).unlink(missing_ok=True)
    return directory


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``manifest`` to ``directory/manifest.json`` atomically (temp file + rename)."""
    path = Path(directory) / MANIFEST_NAME
    tmp = _temp_path(Path(directory), MANIFEST_NAME)
    try:
        text = _dump_json(manifest.model_dump(mode="json", exclude_none=True))
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _temp_path(directory: Path, file_name: str) -> Path:
    # Not tempfile.mkstemp: its 0600 mode would survive the rename; open() honours the umask.
    # The real name stays at the end: torch.export.save warns unless it ends in .pt2.
    path = directory / f".tmp-{uuid.uuid4().hex}-{file_name}"
    path.open("xb").close()
    return path


def _dump_json(value: Any, indent: int = 0) -> str:
    """JSON with one key per line but lists of numbers or strings kept on one line."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {_dump_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [pad + _dump_json(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value)


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
        _check_standardization(mean_list, std_list, shape)
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
            raise ValueError(
                "format 'safetensors' needs a built-in architecture: pass a "
                "models.architectures.MLP, or architecture={'name': 'mlp', 'config': {...}} "
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
    if not math.isfinite(diff) or diff > _SAVE_CHECK_ATOL:
        raise BundleError(
            f"the saved {fmt} file does not reproduce the module (max abs difference {diff:.3g} "
            f"on a batch of {example.shape[0]} rows); the module may depend on the batch size "
            "or on Python control flow that tracing cannot capture. Try format='export'."
        )
