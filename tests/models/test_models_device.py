"""Device and dtype selection; GPU checks run only where CUDA is available."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelcut.models import DEFAULT_MODEL_DIR, YEAST_TEST, load_model, resolve_device
from labelcut.models.device import resolve_dtype

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")


def test_cpu_spellings():
    for spec in ("cpu", " CPU ", torch.device("cpu")):
        assert resolve_device(spec) == torch.device("cpu")


@no_cuda
def test_auto_falls_back_to_cpu_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")
    assert load_model(device="auto").device == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="requested but CUDA is not available"):
        resolve_device(spec)
    with pytest.raises(ValueError, match="requested but CUDA is not available"):
        load_model(device=spec)


@pytest.mark.parametrize("spec", ["cuda:", "cuda:x", "cuda:-1", "cuda:0:1", "cuda: 0"])
def test_malformed_cuda_index(spec):
    with pytest.raises(ValueError, match="after 'cuda:' a device number"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["tpu", "", "gpu", "mps", "cpu:0"])
def test_unknown_device_strings(spec):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(spec)


def test_non_string_device():
    with pytest.raises(ValueError, match="device must be a string"):
        resolve_device(0)  # type: ignore[arg-type]


def test_dtypes_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype("float32", cpu) == torch.float32
    for half in ("float16", "bfloat16", torch.float16):
        with pytest.raises(ValueError, match="only supported on a CUDA device"):
            resolve_dtype(half, cpu)
    for bad in ("float64", "int8", torch.float64, 3):
        with pytest.raises(ValueError, match="dtype must be None, 'float32'"):
            resolve_dtype(bad, cpu)


def test_half_dtype_refused_when_loading_on_cpu():
    with pytest.raises(ValueError, match="'float16' is only supported on a CUDA device"):
        load_model(device="cpu", dtype="float16")


# ----------------------------------------------------------------------------- GPU


def _yeast_x() -> np.ndarray:
    with np.load(YEAST_TEST, allow_pickle=False) as data:
        return data["X"]


@needs_cuda
@pytest.mark.gpu
def test_cuda_resolution_carries_an_index():
    assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())
    assert resolve_device("auto").type == "cuda"
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"only {count} CUDA device"):
        resolve_device(f"cuda:{count}")


@needs_cuda
@pytest.mark.gpu
def test_default_model_on_cuda_matches_cpu():
    x = _yeast_x()
    cpu = load_model(device="cpu").predict_proba(x)
    gpu_model = load_model(device="cuda")
    assert gpu_model.device.type == "cuda"
    gpu = gpu_model.predict_proba(x)
    assert gpu.dtype == np.float32
    assert np.abs(gpu - cpu).max() <= 1e-5


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_cuda_returns_float32(dtype):
    x = _yeast_x()
    cpu = load_model(device="cpu").predict_proba(x)
    model = load_model(device="cuda", dtype=dtype)
    out = model.predict_proba(torch.from_numpy(x).cuda())
    assert out.dtype == torch.float32 and out.device.type == "cuda"
    assert np.abs(out.cpu().numpy() - cpu).max() < 0.05


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["export", "torchscript", "safetensors"])
def test_every_format_runs_on_cuda(tmp_path, fmt):
    from labelcut.models import MLP, save_bundle

    torch.manual_seed(0)
    module = MLP(6, 3, hidden_sizes=(8,))
    bundle = save_bundle(module, tmp_path / "b", labels=list("abc"), input_shape=(6,), format=fmt)
    x = torch.randn(33, 6)
    cpu = load_model(bundle, device="cpu").predict_proba(x)
    gpu = load_model(bundle, device="cuda").predict_proba(x)  # CPU tensor in, CPU tensor out
    assert gpu.device.type == "cpu"
    assert (gpu - cpu).abs().max().item() <= 1e-5
    gpu_in = load_model(bundle, device="cuda").predict_proba(x.cuda())
    assert gpu_in.device.type == "cuda"


def test_default_model_dir_is_inside_the_package():
    assert (DEFAULT_MODEL_DIR / "manifest.json").is_file()
