"""The bundle manifest: its schema, reading and writing it, and checking the files it names.

A bundle is a directory::

    my_bundle/
        manifest.json        # what the model is and how to run it (schema below)
        model.safetensors    # or model.pt2 (torch.export) or model.torchscript
        examples.npy         # optional: a few raw input rows, used by the output guard

``manifest.json`` (``schema_version`` 1)::

    {"schema_version": 1, "name": "yeast-mlp", "version": "1", "format": "safetensors",
     "labels": ["Class1", ...],            # output order: column j is labels[j]
     "input_shape": [103],                 # one row, without the batch dimension
     "input_dtype": "float32",
     "activation": "sigmoid",              # or "softmax" (multi-class); default sigmoid
     "outputs": "logits",                  # or "probabilities" (no activation applied)
     "feature_names": ["Att1", ...],       # optional; only for 1-D input_shape
     "weights": {"file": "model.safetensors", "sha256": "<64 hex>"},
     "examples": {"file": "examples.npy", "sha256": "<64 hex>", "rows": 32},  # optional
     "standardization": {"mean": [...], "std": [...]},   # optional, x -> (x - mean) / std
     "architecture": {"name": "mlp", "config": {...}},   # safetensors only
     "metrics": {...}, "training": {...}}                # optional, informational

Manifests written before ``activation`` and ``outputs`` existed read as
``"sigmoid"`` and ``"logits"``: the multi-label contract they were written for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labelcut.models.architectures import ARCHITECTURES
from labelcut.models.errors import BundleError
from labelcut.models.files import dump_json, sha256_file, temp_path
from labelcut.models.formats import (
    FORMATS,
    PICKLE_SUFFIXES,
    check_declared_format,
    conversion_hint,
    sniff_weights,
)

MANIFEST_NAME = "manifest.json"
EXAMPLES_NAME = "examples.npy"
SCHEMA_VERSION = 1
#: Most example rows a bundle may carry (they are loaded whole at every load), and bytes.
MAX_EXAMPLE_ROWS = 256
MAX_EXAMPLE_BYTES = 64 * 1024 * 1024

Activation = Literal["sigmoid", "softmax"]
Outputs = Literal["logits", "probabilities"]
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "softmax")
OUTPUTS: tuple[str, ...] = ("logits", "probabilities")


def _plain_file_name(value: str) -> str:
    if "/" in value or "\\" in value or value in (".", "..") or value == MANIFEST_NAME:
        raise ValueError("must be a plain file name inside the bundle directory")
    return value


class WeightsSpec(BaseModel):
    """The weights file of a bundle: a plain file name inside the bundle, and its sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _plain(cls, value: str) -> str:
        return _plain_file_name(value)


class ExamplesSpec(BaseModel):
    """Optional example input rows: a float32 ``.npy`` of shape ``(rows, *input_shape)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=1, le=MAX_EXAMPLE_ROWS)

    @field_validator("file")
    @classmethod
    def _plain(cls, value: str) -> str:
        return _plain_file_name(value)


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
    activation: Activation = "sigmoid"
    outputs: Outputs = "logits"
    feature_names: list[str] | None = None
    weights: WeightsSpec
    examples: ExamplesSpec | None = None
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
        if self.activation == "softmax" and len(self.labels) < 2:
            raise ValueError(
                "activation 'softmax' needs at least two labels (classes); a single output "
                "is a sigmoid model"
            )
        if self.examples is not None and self.examples.file == self.weights.file:
            raise ValueError("examples and weights must be different files")
        if self.standardization is not None:
            check_standardization(
                self.standardization.mean, self.standardization.std, tuple(self.input_shape)
            )
        return self


def check_standardization(mean: Any, std: Any, input_shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``mean``/``std`` are finite, broadcast to the shape, std > 0."""
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


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
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
    for field, known in (("format", FORMATS), ("activation", ACTIVATIONS), ("outputs", OUTPUTS)):
        if field in raw and raw[field] not in known:
            raise BundleError(
                f"{path}: field {field!r} is {raw[field]!r}, which is not a known {field} "
                f"(known: {', '.join(known)})."
            )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{path}: {describe_validation_error(exc)}") from exc


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


def describe_validation_error(exc: ValidationError) -> str:
    """Up to five pydantic errors as one sentence naming each field and what was found."""
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


def _checked_file(directory: Path, file: str, sha256: str, what: str) -> Path:
    path = Path(directory) / file
    manifest_path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path}: {what} file named in {manifest_path} is missing.")
    found = sha256_file(path)
    if found != sha256:
        raise BundleError(
            f"{path}: sha256 mismatch; {manifest_path.name} expects {sha256} but the file has "
            f"{found}. The file was changed or corrupted after the bundle was written."
        )
    return path


def weights_path(directory: str | os.PathLike[str], manifest: Manifest) -> Path:
    """The weights file of a bundle, after checking it exists, its sha256 and its format."""
    spec = manifest.weights
    path = _checked_file(Path(directory), spec.file, spec.sha256, "weights")
    check_declared_format(path, manifest.format, Path(directory) / MANIFEST_NAME)
    return path


def read_examples(directory: str | os.PathLike[str], manifest: Manifest) -> np.ndarray | None:
    """The bundle's example rows, float32 ``(rows, *input_shape)``, or None when it has none.

    The file's sha256 is checked and it is read with ``allow_pickle=False``.
    """
    spec = manifest.examples
    if spec is None:
        return None
    path = Path(directory) / spec.file
    if path.is_file() and path.stat().st_size > MAX_EXAMPLE_BYTES + 4096:  # + the .npy header
        raise BundleError(
            f"{path}: {path.stat().st_size} bytes; example rows may take at most "
            f"{MAX_EXAMPLE_BYTES} bytes."
        )
    path = _checked_file(Path(directory), spec.file, spec.sha256, "examples")
    try:
        rows = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise BundleError(f"{path}: not a readable .npy file of numbers: {exc}") from exc
    expected = (spec.rows, *manifest.input_shape)
    if not isinstance(rows, np.ndarray) or rows.dtype != np.float32 or rows.shape != expected:
        raise BundleError(
            f"{path}: expected float32 rows of shape {expected}; got "
            f"{getattr(rows, 'dtype', type(rows).__name__)} {getattr(rows, 'shape', '')}."
        )
    if not np.all(np.isfinite(rows)):
        raise BundleError(f"{path}: example rows must be finite numbers.")
    return rows


# --------------------------------------------------------------------------- writing


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``manifest`` to ``directory/manifest.json`` atomically (temp file + rename)."""
    path = Path(directory) / MANIFEST_NAME
    tmp = temp_path(Path(directory), MANIFEST_NAME)
    try:
        text = dump_json(manifest.model_dump(mode="json", exclude_none=True))
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
