"""CUDA provider checks for a machine with a GPU: ``python -m pytest -m gpu`` (deselected by default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from encoder_onnx.export import export_onnx, random_windows
from encoder_onnx.runtime import CPU, CUDA, EncoderRuntime, cuda_device_usable
from encoder_onnx.settings import DEFAULT_WEIGHTS_PATH, EncoderSettings

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    usable, reason = cuda_device_usable()
    if not usable or CUDA not in ort.get_available_providers():
        pytest.skip(f"no usable CUDA provider: {reason}")
    path = tmp_path_factory.mktemp("cuda") / "encoder.onnx"
    export_onnx(DEFAULT_WEIGHTS_PATH, path, n_random=8)
    return path


def test_auto_picks_cuda_and_matches_cpu(onnx_path: Path) -> None:
    windows = random_windows(1000, seed=7)
    auto = EncoderSettings(onnx_path=onnx_path, provider="auto")
    cpu = EncoderSettings(onnx_path=onnx_path, provider="cpu")
    with EncoderRuntime(onnx_path, auto) as on_gpu, EncoderRuntime(onnx_path, cpu) as on_cpu:
        assert on_gpu.provider == CUDA
        assert on_cpu.provider == CPU
        diff = np.abs(on_gpu.encode(windows) - on_cpu.encode(windows)).max()
    assert diff <= 1e-4, f"CUDA embeddings differ from CPU by {diff:.2e}"


def test_cuda_batches_of_every_bench_size(onnx_path: Path) -> None:
    with EncoderRuntime(onnx_path, EncoderSettings(onnx_path=onnx_path, provider="cuda")) as rt:
        for n in (0, 1, 12, 100, 1000):
            assert rt.encode(random_windows(n, seed=n)).shape == (n, 64)
