"""Turn the user's device and dtype choices into torch objects, with clear errors."""

from __future__ import annotations

import torch

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Return the ``torch.device`` named by ``spec``.

    ``spec`` is one of ``"auto"`` (the current CUDA device when CUDA is available,
    else the CPU), ``"cpu"``, ``"cuda"`` (the current CUDA device) or ``"cuda:N"``
    (CUDA device number N). A CUDA result always carries its index, e.g.
    ``device(type='cuda', index=0)``. Raises ``ValueError`` with a full sentence
    when the string cannot be parsed or the device is not present.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ValueError(
            f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0'; got {spec!r}."
        )
    text = spec.strip().lower()
    if text == "auto":
        return _cuda_device(None, spec) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda":
        return _cuda_device(None, spec)
    if text.startswith("cuda:"):
        index_text = text.removeprefix("cuda:")
        if not index_text.isdigit():
            raise ValueError(
                f"device {spec!r} is not valid: after 'cuda:' a device number such as 0 "
                "is expected."
            )
        return _cuda_device(int(index_text), spec)
    raise ValueError(
        f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a device number); got {spec!r}."
    )


def resolve_dtype(spec: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Return the compute dtype named by ``spec`` for a model on ``device``.

    ``None`` and ``"float32"`` mean float32. ``"float16"`` and ``"bfloat16"`` are
    accepted on CUDA devices only (on the CPU they are slower than float32 and
    change the results for no gain). Inputs are cast to this dtype before the
    forward pass; outputs are always returned as float32.
    """
    if spec is None:
        return torch.float32
    if isinstance(spec, torch.dtype):
        dtype = spec
    elif isinstance(spec, str) and spec.strip().lower() in _DTYPES:
        dtype = _DTYPES[spec.strip().lower()]
    else:
        raise ValueError(f"dtype must be None, 'float32', 'float16' or 'bfloat16'; got {spec!r}.")
    if dtype not in _DTYPES.values():
        raise ValueError(f"dtype must be None, 'float32', 'float16' or 'bfloat16'; got {spec!r}.")
    if dtype in _HALF_DTYPES and device.type != "cuda":
        raise ValueError(
            f"dtype {str(dtype).removeprefix('torch.')!r} is only supported on a CUDA "
            f"device, and the model is on {device}; use dtype=None (float32) on the CPU."
        )
    return dtype


def _cuda_device(index: int | None, spec: str) -> torch.device:
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {spec!r} requested but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use device='cpu' or 'auto'."
        )
    count = torch.cuda.device_count()
    if index is None:
        index = torch.cuda.current_device()
    if index >= count:
        raise ValueError(
            f"device {spec!r} requested but only {count} CUDA device(s) are visible "
            f"(valid: cuda:0 to cuda:{count - 1})."
        )
    return torch.device("cuda", index)
