"""Default model on CUDA against the CPU, and 100k rows timed: python -m labelcut.models.gpu_check.

Prints the max abs difference of CUDA vs CPU probabilities (float32; the target is
<= 1e-5) and the time to score ``--rows`` rows (yeast test rows repeated) on each
device, after one untimed pass. Without CUDA it times the CPU only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch

from labelcut.models.paths import YEAST_TEST
from labelcut.models.runtime import load_model


def _timed(model, x: np.ndarray, repeats: int) -> tuple[np.ndarray, float]:
    model.predict_proba(x)  # untimed: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        start = time.perf_counter()
        out = model.predict_proba(x)
        best = min(best, time.perf_counter() - start)
    return out, best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelcut.models.gpu_check")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with np.load(YEAST_TEST, allow_pickle=False) as data:
        base = data["X"]
    x = np.resize(base, (args.rows, base.shape[1])).astype(np.float32)
    cpu_out, cpu_s = _timed(load_model(device="cpu"), x, args.repeats)
    print(f"cpu  : {args.rows} rows in {cpu_s * 1e3:8.1f} ms ({args.rows / cpu_s:,.0f} rows/s)")
    if not torch.cuda.is_available():
        print("cuda : not available on this machine")
        return 0
    gpu = load_model(device="cuda")
    print(f"gpu  : {torch.cuda.get_device_name(gpu.device)}")
    gpu_out, gpu_s = _timed(gpu, x, args.repeats)
    print(f"cuda : {args.rows} rows in {gpu_s * 1e3:8.1f} ms ({args.rows / gpu_s:,.0f} rows/s)")
    print(f"max abs difference cuda vs cpu (float32): {np.abs(gpu_out - cpu_out).max():.3g}")
    for dtype in ("float16", "bfloat16"):
        half_out, half_s = _timed(load_model(device="cuda", dtype=dtype), x, args.repeats)
        diff = np.abs(half_out - cpu_out).max()
        print(f"{dtype:9s}: {half_s * 1e3:8.1f} ms, max abs difference vs cpu {diff:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
