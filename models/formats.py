"""Read and write the weights file of a bundle, in one of three formats.

* ``safetensors``: a state dict (tensors only) for a built-in architecture from
  ``models.architectures``. Loading it cannot run code. This is the safe default.
* ``export``: a ``torch.export`` program (``.pt2``) for any architecture. It is
  loaded with ``torch.export.load``, which can unpickle parts of the archive and
  deserialise custom objects: **only load ``.pt2`` files you trust.** A few
  obviously dangerous layouts are refused before ``torch.export.load`` runs.
* ``torchscript``: a ``torch.jit.save`` archive, loaded with ``torch.jit.load``.
  A TorchScript archive contains code that runs when the model runs: **only load
  TorchScript files you trust.**

A plain pickled checkpoint (``torch.save(model)``, a state dict written with
``torch.save``, any ``.pkl``) is never unpickled: ``sniff_weights`` recognises it
from its first bytes or its zip member names, and loading refuses it with an
error that says how to convert it with ``models.save_bundle``.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from labelcut.models.architectures import build_architecture
from labelcut.models.errors import BundleError

Format = Literal["safetensors", "export", "torchscript"]
FORMATS: tuple[str, ...] = ("safetensors", "export", "torchscript")

#: File name of the weights file that ``save_bundle`` writes for each format.
WEIGHTS_FILE_NAMES: dict[str, str] = {
    "safetensors": "model.safetensors",
    "export": "model.pt2",
    "torchscript": "model.torchscript",
}

#: Suffixes that usually hold a pickle; a directory of only these is a pickled checkpoint.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")

Sniffed = Literal["safetensors", "export", "torchscript", "pickle", "unknown"]

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def conversion_hint(path: Path) -> str:
    """The sentence that tells a user how to turn a pickled checkpoint into a bundle."""
    return (
        f"labelcut never unpickles model files, so {path.name!r} was not loaded. "
        "Convert it once, in a Python session you trust: rebuild the model "
        "(`model = MyModel(...)`; `model.load_state_dict(torch.load(path, weights_only=True))`, "
        "or `torch.load(path, weights_only=False)` only if you made the file yourself), "
        "then call `models.save_bundle(model, 'my_bundle', labels=[...], input_shape=(d,))`, "
        "or run the converter `labelcut export` (`python -m labelcut.models.export --help`), "
        "and load the resulting directory."
    )


def sniff_weights(path: Path) -> Sniffed:
    """Classify a weights file by its bytes, without unpickling or importing anything.

    TorchScript archives are zip files with ``<prefix>/code/`` members;
    ``torch.export`` archives have ``<prefix>/archive_format`` or
    ``<prefix>/models/*.json``; ``torch.save`` archives have ``<prefix>/data.pkl``
    and neither. Raw pickles start with the pickle protocol opcode.
    """
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(_ZIP_MAGIC):
        return _sniff_zip(path)
    # Safetensors first: its 8-byte header length can start with the bytes of a pickle
    # opcode (a 896-byte header is 0x80 0x03 ...), while a real pickle's first 8 bytes
    # read as a length far beyond the limit and its 9th byte is not "{".
    if len(head) >= 9:
        header_size = int.from_bytes(head[:8], "little")
        if 0 < header_size <= _MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    return "unknown"


def _sniff_zip(path: Path) -> Sniffed:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return "unknown"
    inner = {name.split("/", 1)[1] for name in names if "/" in name}
    if any(name.startswith("code/") for name in inner):
        return "torchscript"
    if "archive_format" in inner or any(
        name.startswith("models/") and name.endswith(".json") for name in inner
    ):
        return "export"
    if "data.pkl" in inner:
        return "pickle"
    return "unknown"


def check_declared_format(path: Path, declared: str, manifest_path: Path) -> None:
    """Refuse a weights file whose bytes do not match the format the manifest declares."""
    found = sniff_weights(path)
    if found == "pickle":
        raise BundleError(
            f"{path}: this is a pickled checkpoint (torch.save or pickle), not a "
            f"{declared!r} file as {manifest_path.name} declares. " + conversion_hint(path)
        )
    if found != declared:
        what = "an unrecognised file" if found == "unknown" else f"a {found!r} file"
        raise BundleError(
            f"{path}: {manifest_path.name} declares format {declared!r} but the file is {what}."
        )


# --------------------------------------------------------------------------- loading


def load_module(
    fmt: str,
    path: Path,
    *,
    device: torch.device,
    architecture: Mapping[str, Any] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Load the weights file ``path`` of format ``fmt`` onto ``device``, in eval mode.

    The caller has already checked the sha256 and ``check_declared_format``.
    ``architecture`` (``{"name": ..., "config": {...}}``) is required for safetensors.
    """
    loaders: dict[str, Callable[..., Callable[[torch.Tensor], torch.Tensor]]] = {
        "safetensors": _load_safetensors,
        "export": _load_export,
        "torchscript": _load_torchscript,
    }
    return loaders[fmt](path, device=device, architecture=architecture)


def _load_safetensors(
    path: Path, *, device: torch.device, architecture: Mapping[str, Any] | None
) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if architecture is None:
        raise BundleError(f"{path}: a safetensors bundle needs an architecture in its manifest.")
    module = build_architecture(architecture["name"], architecture["config"], source=str(path))
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable safetensors file: {exc}") from exc
    _check_state_dict(path, module, state)
    module.load_state_dict(state, strict=True, assign=True)
    return module.to(device).eval()


def _check_state_dict(path: Path, module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{key}: file has {tuple(state[key].shape)}, architecture needs {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in state and state[key].shape != tensor.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}")
    if wrong:
        problems.append("wrong shapes (" + "; ".join(wrong[:5]) + ")")
    if problems:
        raise BundleError(
            f"{path}: the state dict does not match the architecture in the manifest: "
            + ", ".join(problems)
            + "."
        )


def _load_export(
    path: Path, *, device: torch.device, architecture: Mapping[str, Any] | None
) -> nn.Module:
    # Trusted files only: torch.export.load can fall back to full unpickling.
    _screen_export_archive(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise BundleError(f"{path}: torch.export.load failed: {exc}") from exc
    if device.type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    return program.module()


def _screen_export_archive(path: Path) -> None:
    """Refuse .pt2 layouts that would run pickles or native code when loaded.

    ``torch.export.load`` unpickles weights stored with ``use_pickle`` and retries
    the sample inputs with ``weights_only=False`` when the safe loader fails; an
    AOTInductor package holds compiled shared libraries. None of these appear in
    what ``torch.export.save`` writes for an ordinary model, so they are refused.
    This narrows the risk; it does not make an untrusted .pt2 safe.
    """
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            inner = member.split("/", 1)[1] if "/" in member else member
            if inner.startswith("data/aotinductor/"):
                raise BundleError(
                    f"{path}: AOTInductor packages contain native code and are not accepted; "
                    "save the program with torch.export.save (or models.save_bundle)."
                )
            if inner.endswith("_config.json") and inner.startswith(
                ("data/weights/", "data/constants/")
            ):
                _refuse_pickled_payloads(path, member, archive.read(member))
            if inner.startswith("data/sample_inputs/"):
                try:
                    torch.load(io.BytesIO(archive.read(member)), weights_only=True)
                except Exception as exc:
                    raise BundleError(
                        f"{path}: the sample inputs in {member!r} cannot be read without "
                        f"unpickling arbitrary objects ({type(exc).__name__}); refusing."
                    ) from exc


def _refuse_pickled_payloads(path: Path, member: str, raw: bytes) -> None:
    try:
        config = json.loads(raw).get("config", {})
    except (ValueError, AttributeError) as exc:
        raise BundleError(f"{path}: {member!r} is not valid JSON.") from exc
    pickled = sorted(
        k for k, meta in config.items() if isinstance(meta, dict) and meta.get("use_pickle")
    )
    if pickled:
        raise BundleError(
            f"{path}: {member!r} stores {pickled[:3]} as pickles; labelcut does not "
            "unpickle model files. Re-save the program with plain tensors."
        )


def _load_torchscript(
    path: Path, *, device: torch.device, architecture: Mapping[str, Any] | None
) -> nn.Module:
    # Trusted files only: a TorchScript archive carries code that runs in forward().
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise BundleError(f"{path}: torch.jit.load failed: {exc}") from exc
    return module.eval()


# --------------------------------------------------------------------------- saving


def write_weights(
    fmt: str,
    module: nn.Module,
    path: Path,
    *,
    example: torch.Tensor,
) -> None:
    """Write ``module`` (on the CPU, float32, eval mode) to ``path`` in format ``fmt``.

    ``example`` is a CPU float32 batch of at least two rows, used to trace the
    module for ``export`` (with a dynamic batch dimension) and ``torchscript``.
    """
    if fmt == "safetensors":
        from safetensors.torch import save_file

        state = {
            key: tensor.detach().to("cpu").contiguous().clone()
            for key, tensor in module.state_dict().items()
        }
        save_file(state, str(path), metadata={"format": "pt"})
    elif fmt == "export":
        batch = torch.export.Dim("batch", min=1)
        dynamic_shapes = ({0: batch},)
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)
        torch.export.save(program, str(path))
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if isinstance(module, torch.jit.ScriptModule):
                scripted = module
            else:
                scripted = torch.jit.trace(module, (example,), check_trace=False)
            torch.jit.save(scripted, str(path))
    else:  # validated by the caller
        raise AssertionError(fmt)
