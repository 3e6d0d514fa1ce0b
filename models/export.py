"""Convert a trusted PyTorch checkpoint into a bundle (``python -m labelcut.models.export``).

This is the one place in labelcut that reads a pickle-based checkpoint, and it
only does so on explicit request, for a file the user vouches for:

* a **state dict** saved with ``torch.save(model.state_dict(), path)`` is read
  with ``torch.load(weights_only=True)`` (no arbitrary code) into the module
  built by ``--factory package.module:callable`` (with ``--factory-kwargs JSON``);
* a **whole pickled model** (``torch.save(model, path)``) is read with
  ``torch.load(weights_only=False)``, which can run any code in the file, and so
  only with ``--trust-pickle``.

Example::

    python -m labelcut.models.export ckpt.pt my_bundle --labels Class1,Class2,Class3 \\
        --input-shape 103 --factory models.architectures:MLP \\
        --factory-kwargs '{"input_size": 103, "num_labels": 3, "hidden_sizes": [256]}' \\
        --format safetensors
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labelcut.models.saving import save_bundle


def convert_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    labels: Sequence[str],
    input_shape: Sequence[int],
    factory: str | Callable[..., nn.Module] | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    format: str = "export",
    **bundle_kwargs: Any,
) -> Path:
    """Load ``checkpoint`` as described in the module docstring and ``save_bundle`` it.

    ``factory`` (a callable or ``"package.module:callable"``) builds the module that a
    state dict is loaded into; a dict with a ``"state_dict"`` or ``"model_state_dict"``
    entry is unwrapped first. Without ``factory``, ``trust_pickle=True`` is required
    and the file must unpickle to an ``nn.Module``. ``bundle_kwargs`` go to
    ``save_bundle`` (``name``, ``version``, ``feature_names``, ``mean``, ``std``,
    ``architecture``, ``activation``, ``outputs``, ``examples``). Returns the bundle directory.
    """
    checkpoint = Path(checkpoint)
    if factory is not None:
        module = _build(factory, factory_kwargs or {})
        module.load_state_dict(_state_dict(checkpoint), strict=True)
    elif trust_pickle:
        # Runs whatever code the pickle contains: the caller vouched for this file.
        module = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"{checkpoint}: unpickled a {type(module).__name__}, not a torch.nn.Module; "
                "for a state dict pass factory= (--factory) instead."
            )
    else:
        raise ValueError(
            f"{checkpoint}: say how to read it: factory= (--factory) for a state dict, read "
            "safely with torch.load(weights_only=True), or trust_pickle=True (--trust-pickle) "
            "for a whole pickled model from a source you trust."
        )
    return save_bundle(
        module, out_dir, labels=labels, input_shape=input_shape, format=format, **bundle_kwargs
    )


def _build(factory: str | Callable[..., nn.Module], kwargs: Mapping[str, Any]) -> nn.Module:
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        if not module_name or not attribute:
            raise ValueError(f"factory must look like 'package.module:callable'; got {factory!r}.")
        factory = getattr(importlib.import_module(module_name), attribute)
    module = factory(**kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"factory returned a {type(module).__name__}, not a torch.nn.Module.")
    return module


def _state_dict(checkpoint: Path) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{checkpoint}: cannot be read as a state dict with torch.load(weights_only=True) "
            f"({type(exc).__name__}); if it is a whole pickled model you trust, use "
            "trust_pickle=True (--trust-pickle) without a factory."
        ) from exc
    if isinstance(state, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(state.get(key), Mapping):
                return state[key]
        return state
    raise ValueError(f"{checkpoint}: holds a {type(state).__name__}, not a state dict.")


def _labels(text: str) -> list[str]:
    if text.startswith("@"):
        return [line.strip() for line in Path(text[1:]).read_text().splitlines() if line.strip()]
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labelcut.models.export",
        description="Convert a trusted PyTorch checkpoint into a labelcut model bundle.",
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, help="bundle directory to write")
    parser.add_argument("--labels", required=True, help="a,b,c or @file with one per line")
    parser.add_argument("--input-shape", required=True, help="one row's shape, e.g. 103 or 3,32,32")
    parser.add_argument(
        "--format", default="export", choices=["export", "torchscript", "safetensors"]
    )
    parser.add_argument("--factory", help="package.module:callable that builds the model")
    parser.add_argument("--factory-kwargs", default="{}", help="JSON keyword arguments")
    parser.add_argument("--trust-pickle", action="store_true", help="unpickle a whole model")
    parser.add_argument(
        "--activation",
        default="sigmoid",
        choices=["sigmoid", "softmax"],
        help="sigmoid: multi-label (BCEWithLogitsLoss); softmax: multi-class (CrossEntropyLoss)",
    )
    parser.add_argument(
        "--outputs",
        default="logits",
        choices=["logits", "probabilities"],
        help="what the module returns; 'probabilities' means no activation is applied",
    )
    parser.add_argument("--name")
    parser.add_argument("--version", default="1")
    args = parser.parse_args(argv)
    path = convert_checkpoint(
        args.checkpoint,
        args.out,
        labels=_labels(args.labels),
        input_shape=[int(d) for d in args.input_shape.split(",")],
        factory=args.factory,
        factory_kwargs=json.loads(args.factory_kwargs),
        trust_pickle=args.trust_pickle,
        format=args.format,
        name=args.name,
        version=args.version,
        activation=args.activation,
        outputs=args.outputs,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
