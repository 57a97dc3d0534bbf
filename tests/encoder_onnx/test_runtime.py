"""ORT runtime: provider choice without error noise on CPU, lifecycle, input layouts and batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from core.errors import EncoderError, LifecycleError
from encoder_onnx.export import random_windows
from encoder_onnx.runtime import CPU, CUDA, TRT, EncoderRuntime, RuntimeState, choose_providers, cuda_device_usable
from encoder_onnx.settings import EncoderSettings

ALL = [TRT, CUDA, CPU]


@pytest.mark.parametrize(
    ("choice", "cuda_ok", "expected"),
    [
        ("auto", (True, "1 device"), [CUDA, CPU]),
        ("auto", (False, "no driver"), [CPU]),
        ("cpu", (True, "1 device"), [CPU]),
        ("cuda", (True, "1 device"), [CUDA, CPU]),
        ("tensorrt", (True, "1 device"), [TRT, CUDA, CPU]),
    ],
)
def test_choose_providers(choice: str, cuda_ok: tuple[bool, str], expected: list[str]) -> None:
    assert choose_providers(choice, ALL, cuda_ok) == expected  # type: ignore[arg-type]


def test_explicit_gpu_request_without_gpu_fails_loudly() -> None:
    with pytest.raises(EncoderError, match="no usable GPU: no driver"):
        choose_providers("cuda", ALL, (False, "no driver"))
    with pytest.raises(EncoderError, match="lacks"):
        choose_providers("tensorrt", [CUDA, CPU], (True, "1 device"))


def test_auto_on_a_cpu_machine_is_silent_and_logs_the_choice_once(
    encoder_files: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    if cuda_device_usable()[0]:
        pytest.skip("this machine has a usable CUDA device")
    settings = EncoderSettings(onnx_path=encoder_files[1], provider="auto", intra_op_threads=2)
    with capture_logs() as logs, EncoderRuntime(encoder_files[1], settings) as rt:
        assert rt.provider == CPU
        rt.encode(random_windows(3))
    chosen = [e for e in logs if e["event"] == "encoder_provider_chosen"]
    assert len(chosen) == 1 and chosen[0]["provider"] == CPU and chosen[0]["intra_op_threads"] == 2
    err = capfd.readouterr().err
    assert "CUDA" not in err and "rror" not in err  # onnxruntime wrote nothing to stderr


def test_encode_accepts_both_layouts_and_splits_large_batches(encoder_files: tuple[Path, Path]) -> None:
    windows = random_windows(50)
    small = EncoderSettings(onnx_path=encoder_files[1], provider="cpu", max_batch=7)
    with EncoderRuntime(encoder_files[1]) as whole, EncoderRuntime(encoder_files[1], small) as split:
        ref = whole.encode(windows)
        assert ref.shape == (50, 64) and ref.dtype == np.float32
        assert np.array_equal(whole.encode(windows[:, None, :]), ref)
        np.testing.assert_allclose(split.encode(windows), ref, atol=1e-6)
        assert whole.encode(np.zeros((0, 256))).shape == (0, 64)
        with pytest.raises(EncoderError, match="windows must be"):
            whole.encode(np.zeros((3, 250)))


def test_lifecycle(encoder_files: tuple[Path, Path]) -> None:
    rt = EncoderRuntime(encoder_files[1])
    assert rt.state is RuntimeState.UNOPENED
    with rt:
        assert rt.state is RuntimeState.OPENED
        with pytest.raises(LifecycleError, match="already open"), rt:
            pass
    assert rt.state is RuntimeState.CLOSED
    rt.close()  # idempotent
    with pytest.raises(LifecycleError, match="cannot be reopened"), rt:
        pass
    with pytest.raises(LifecycleError, match="after close"):
        rt.encode(random_windows(1))


def test_missing_model_is_an_encoder_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="cannot open encoder session"):
        EncoderRuntime(tmp_path / "missing.onnx")
