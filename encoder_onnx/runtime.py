"""The onnxruntime session that encodes completed windows, with clean provider selection.

onnxruntime-gpu lists CUDAExecutionProvider even on a machine without a GPU, and asking for it there logs an
error before falling back. So we ask for CUDA only when ORT offers it AND the driver reports a device AND ORT's
CUDA provider library can be loaded; otherwise we use CPU silently and log the choice once.
"""

from __future__ import annotations

import ctypes
import enum
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import structlog

from core.errors import EncoderError, LifecycleError
from encoder_onnx.export import INPUT_NAME, OUTPUT_NAME
from encoder_onnx.settings import EncoderSettings

__all__ = ["EncoderRuntime", "RuntimeState", "choose_providers", "cuda_device_usable"]

log = structlog.get_logger(__name__)

ProviderChoice = Literal["auto", "cpu", "cuda", "tensorrt"]
CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
_state = ort.capi.onnxruntime_pybind11_state
ORT_ERRORS: tuple[type[BaseException], ...] = (
    _state.Fail,
    _state.InvalidArgument,
    _state.NoSuchFile,
    _state.InvalidProtobuf,
    _state.RuntimeException,
    _state.EPFail,
    RuntimeError,
    ValueError,
)
"""What ORT raises (its pybind classes derive from Exception directly); translated to EncoderError at the edge."""


class RuntimeState(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


def cuda_device_usable() -> tuple[bool, str]:
    """(usable, reason): a CUDA driver with at least one device, and ORT's CUDA provider library loadable."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False, "no CUDA driver (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return False, "CUDA driver reports no usable device"
    provider_lib = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # loads CUDA/cuDNN from the nvidia-* wheels when they are installed
    try:
        ctypes.CDLL(str(provider_lib))
    except OSError as exc:
        return False, f"ORT CUDA provider cannot load: {exc}"
    return True, f"{count.value} CUDA device(s)"


def choose_providers(choice: ProviderChoice, available: list[str], cuda_ok: tuple[bool, str]) -> list[str]:
    """ORT providers in priority order for a config choice; pure, so it is tested without a GPU.

    ``auto`` takes CUDA when ORT offers it and ``cuda_ok`` says a device is usable, else CPU. ``cuda`` and
    ``tensorrt`` are explicit requests: without a usable GPU they raise instead of silently running on CPU.
    """
    usable, reason = cuda_ok
    if choice == "cpu":
        return [CPU]
    if choice == "auto":
        return [CUDA, CPU] if CUDA in available and usable else [CPU]
    wanted = [TRT, CUDA] if choice == "tensorrt" else [CUDA]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise EncoderError(f"encoder.provider={choice!r}: onnxruntime lacks {missing}")
    if not usable:
        raise EncoderError(f"encoder.provider={choice!r} but no usable GPU: {reason}")
    return [*wanted, CPU]


_CUDA_OPTIONS = {"use_tf32": "0"}
"""ORT's default TF32 convolutions put CUDA embeddings 6.8e-3 from CPU on an H200 (1.1e-5 without), past the 1e-4
parity the export promises; the forecaster was trained on fp32 embeddings. TF32's speed was not measured."""


def _with_options(provider: str) -> str | tuple[str, dict[str, str]]:
    return (provider, _CUDA_OPTIONS) if provider == CUDA else provider


class EncoderRuntime:
    """An ORT session over the encoder ONNX model; ``encode`` turns (N, 256) mV windows into (N, 64) embeddings.

    Lifecycle: UNOPENED after construction (usable), OPENED inside ``with``, CLOSED after ``close()``; ``close`` is
    idempotent and a closed runtime cannot be reopened (build a new one).
    """

    def __init__(self, onnx_path: Path, settings: EncoderSettings | None = None) -> None:
        """Create the session and warm it up.

        Warm-up runs one batch at construction because ORT allocates its memory arena and (CUDA/TensorRT)
        selects kernels or builds engines on the first run; doing it here keeps that one-off cost out of the
        first real tick, where it would delay every patient's embeddings.
        """
        self.settings = settings or EncoderSettings(onnx_path=onnx_path)
        self.onnx_path = onnx_path
        self.state = RuntimeState.UNOPENED
        available = ort.get_available_providers()
        cuda_ok = cuda_device_usable() if self.settings.provider != "cpu" else (False, "cpu requested")
        providers = choose_providers(self.settings.provider, available, cuda_ok)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = self.settings.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=[_with_options(p) for p in providers]
            )
        except ORT_ERRORS as exc:
            raise EncoderError(f"cannot open encoder session on {onnx_path}: {exc}") from exc
        self.provider = self._session.get_providers()[0]
        self.window_samples = int(self._session.get_inputs()[0].shape[1])
        self.embedding_dim = int(self._session.get_outputs()[0].shape[1])
        log.info(
            "encoder_provider_chosen",
            provider=self.provider,
            requested=self.settings.provider,
            cuda=cuda_ok[1],
            intra_op_threads=self.settings.intra_op_threads,
            inter_op_threads=self.settings.inter_op_threads,
        )
        self._run(np.zeros((8, self.window_samples), dtype=np.float32))

    def __enter__(self) -> EncoderRuntime:
        if self.state is RuntimeState.CLOSED:
            raise LifecycleError("EncoderRuntime is closed and cannot be reopened; create a new one")
        if self.state is RuntimeState.OPENED:
            raise LifecycleError("EncoderRuntime is already open")
        self.state = RuntimeState.OPENED
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the session; safe to call twice."""
        if self.state is RuntimeState.CLOSED:
            return
        self.state = RuntimeState.CLOSED
        del self._session

    def _run(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        try:
            out = self._session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]
        except ORT_ERRORS as exc:
            raise EncoderError(f"encoder run failed on {windows.shape[0]} windows: {exc}") from exc
        return np.asarray(out, dtype=np.float32)

    def encode(self, windows: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Windows (N, 256) or (N, 1, 256), mV -> embeddings (N, 64) float32; N may be 0."""
        if self.state is RuntimeState.CLOSED:
            raise LifecycleError("EncoderRuntime.encode called after close()")
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim == 3 and x.shape[1] == 1:
            x = x[:, 0, :]  # (N, 1, 256) -> (N, 256)
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise EncoderError(
                f"windows must be (N, {self.window_samples}) or (N, 1, {self.window_samples}), got {x.shape}"
            )
        n, step = x.shape[0], self.settings.max_batch
        if n <= step:  # the common case, kept lean: per-call overhead is most of the cost of a small batch
            return self._run(x) if n else np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate([self._run(x[i : i + step]) for i in range(0, n, step)])
