"""The output guard: refuse a module that already applies an activation to its outputs.

labelcut applies the activation itself (``sigmoid`` per label, or ``softmax`` over
the labels), so a bundled module must return logits. A module with a sigmoid or
softmax inside would be squashed twice and served wrong without any error, so
saving and loading run the module on a few rows and look at its raw outputs.

The rule: the module is refused when **every** raw output on at least
``MIN_GUARD_ROWS`` rows, for every label, lies in [0, 1]. Logits of a trained
model spread over both signs and beyond 1, so all of, say, 16 rows x 10 labels
landing in [0, 1] by chance is very unlikely, while a sigmoid or softmax output
always does. The rows are ``GUARD_ROWS`` seeded standard-normal rows in the
module's (standardised) input space plus the bundle's example rows when it has
any; real example rows make a false alarm even less likely, because the check
pools all rows. When the outputs also sum to 1 on every row, the message says
"softmax inside the module".

Declaring ``outputs="probabilities"`` is the one way past the guard; the
outputs must then be probabilities (in [0, 1], and summing to 1 per row under
``softmax``) and no activation is applied.
"""

from __future__ import annotations

import torch

from labelcut.models.errors import BundleError

#: Seeded random rows every guard check runs (plus any example rows).
GUARD_ROWS = 16
#: Fewest rows on which "all outputs in [0, 1]" counts as evidence of an activation.
MIN_GUARD_ROWS = 8
_SEED = 20260101


def standard_normal_rows(input_shape: tuple[int, ...], rows: int = GUARD_ROWS) -> torch.Tensor:
    """Seeded float32 standard-normal rows ``(rows, *input_shape)`` on the CPU.

    They are what the module sees (after standardisation); the same rows at save
    and at load, and the global RNG is not touched.
    """
    generator = torch.Generator().manual_seed(_SEED)
    return torch.randn((rows, *input_shape), generator=generator, dtype=torch.float32)


def check_raw_outputs(
    raw: torch.Tensor,
    *,
    activation: str,
    outputs: str,
    source: str,
    sum_tolerance: float = 1e-3,
) -> None:
    """Raise ``BundleError`` when raw outputs ``(n, C)`` break the declared output contract.

    ``activation``: "sigmoid" or "softmax"; ``outputs``: "logits" or "probabilities".
    ``source`` names the file or module in the message. ``sum_tolerance`` is how
    far a row's sum may be from 1 to count as summing to 1 (looser for float16).
    """
    values = raw.detach().float()
    n, width = values.shape
    if not torch.isfinite(values).all():
        raise BundleError(f"{source}: returned non-finite values (nan or inf) on {n} rows.")
    low, high = values.min().item(), values.max().item()
    in_unit = low >= 0.0 and high <= 1.0
    sums_to_one = width >= 2 and bool(((values.sum(dim=1) - 1.0).abs() <= sum_tolerance).all())
    seen = f"its raw outputs on {n} rows x {width} labels all lie in [{low:.3g}, {high:.3g}]"
    if outputs == "probabilities":
        if not in_unit:
            raise BundleError(
                f"{source}: the bundle declares outputs='probabilities' but the module returned "
                f"values in [{low:.3g}, {high:.3g}], outside [0, 1]. If it returns logits, "
                "save it with outputs='logits' (the default)."
            )
        if activation == "softmax" and not sums_to_one:
            worst = (values.sum(dim=1) - 1.0).abs().max().item()
            raise BundleError(
                f"{source}: the bundle declares softmax probabilities but the module's rows "
                f"do not sum to 1 (off by up to {worst:.3g}). Return logits and let labelcut "
                "apply the softmax, or declare activation='sigmoid' for independent labels."
            )
        return
    if n < MIN_GUARD_ROWS or not in_unit:
        return
    if sums_to_one:
        raise BundleError(
            f"{source}: {seen} and every row sums to 1: this looks like a softmax inside the "
            "module. labelcut applies the activation itself and would apply it twice. Fix: "
            "return logits (drop the final softmax; CrossEntropyLoss takes logits) and save "
            "with activation='softmax', or declare the probabilities: "
            "save_bundle(..., activation='softmax', outputs='probabilities')."
        )
    raise BundleError(
        f"{source}: {seen}: this looks like an activation (e.g. a sigmoid) inside the module. "
        f"labelcut applies the {activation} itself and would apply it twice. Fix: return logits "
        "(drop the final sigmoid; BCEWithLogitsLoss takes logits), or declare the "
        f"probabilities: save_bundle(..., activation={activation!r}, outputs='probabilities')."
    )


def activate(raw: torch.Tensor, *, activation: str, outputs: str) -> torch.Tensor:
    """Probabilities from raw outputs ``(n, C)``: sigmoid per label, softmax over labels,
    or the outputs as they are when the bundle declares probabilities."""
    if outputs == "probabilities":
        return raw
    if activation == "softmax":
        return torch.softmax(raw, dim=1)
    return torch.sigmoid(raw)
