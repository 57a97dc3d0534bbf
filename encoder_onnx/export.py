"""ONNX export of the encoder with a torch-vs-ORT parity gate and self-describing metadata.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (the torch.export-based exporter, via onnxscript), pinned
explicitly. Why: since torch 2.9 it is the default and the TorchScript exporter (``dynamo=False``) is deprecated
and announced for removal, so an export that works today keeps working; for four Conv/ReLU layers both produce
the same ops. Opset is fixed at :data:`OPSET`. The batch axis is dynamic; the window axis is fixed at 256.

Model I/O: input ``windows`` float32 [N, 256], filtered ECG in mV; output ``embeddings`` float32 [N, 64].
The amplitude transform (clip, scale) is inside the graph, so callers always pass mV. The graph holds the
convolutions as 2-D convolutions of height 1 (:class:`~encoder_onnx.model.ExportEncoder`, faster in ORT on CPU);
parity is always checked against the original 1-D :class:`~encoder_onnx.model.ConvEncoder`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import structlog

from core.errors import EncoderError
from encoder_onnx.settings import EncoderSettings

__all__ = [
    "EXPORTER",
    "INPUT_NAME",
    "MODEL_VERSION",
    "OPSET",
    "OUTPUT_NAME",
    "PARITY_TOL",
    "ExportReport",
    "ensure_onnx",
    "export_onnx",
    "onnx_metadata",
    "random_windows",
]

log = structlog.get_logger(__name__)

OPSET = 18
EXPORTER = "torch.onnx.export(dynamo=True)"
MODEL_VERSION = "ecgcast.encoder/1"
INPUT_NAME = "windows"
OUTPUT_NAME = "embeddings"
PARITY_TOL = 1e-4
"""Largest |torch - ORT| accepted; float32 convolutions of this size agree to ~1e-6."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    opset: int
    n_random: int
    n_real: int
    max_abs_diff_random: float
    max_abs_diff_real: float | None
    weights_sha256: str


def random_windows(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Gaussian windows (N, 256) in mV with a few samples beyond the clip level, to exercise the Clip op."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.5, size=(n, 256)).astype(np.float32)
    x[:, ::37] *= 6.0  # some |x| > 5 mV
    return x


def onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict (version, opset, input_scaling, weights_sha256, …)."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _torch_export(model: object, path: Path, n_example: int) -> None:
    import torch

    example = torch.from_numpy(random_windows(n_example))
    with warnings.catch_warnings():
        # torch's own pytree code warns through copyreg (module 'copyreg', so pyproject's torch.* filter misses it).
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        torch.onnx.export(
            model,  # type: ignore[arg-type]
            (example,),
            str(path),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}},
            external_data=False,
            verbose=False,
        )


def _max_abs_diff(model: object, session: object, windows: npt.NDArray[np.float32]) -> float:
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(windows)).numpy()  # type: ignore[operator]
    got = session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]  # type: ignore[attr-defined]
    if got.shape != ref.shape:
        raise EncoderError(f"ONNX output shape {got.shape} != torch {ref.shape}")
    return float(np.max(np.abs(got - ref)))


def export_onnx(
    weights_path: Path,
    out_path: Path,
    real_windows: npt.NDArray[np.float32] | None = None,
    n_random: int = 512,
) -> ExportReport:
    """Export the encoder in ``weights_path`` to ``out_path``, check parity, and stamp metadata.

    Parity is checked on ``n_random`` random windows and, when given, on ``real_windows`` (N, 256) mV; a max abs
    difference above :data:`PARITY_TOL` raises :class:`EncoderError` and leaves no file at ``out_path``.
    """
    import onnxruntime as ort

    from encoder_onnx.model import ExportEncoder
    from encoder_onnx.weights import file_sha256, load_encoder_weights

    model, _meta = load_encoder_weights(weights_path)
    sha = file_sha256(weights_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".onnx.tmp")
    _torch_export(ExportEncoder(model).eval(), tmp, n_example=4)
    proto = onnx.load(str(tmp))
    onnx.helper.set_model_props(
        proto,
        {
            "version": MODEL_VERSION,
            "opset": str(OPSET),
            "exporter": EXPORTER,
            "input_scaling": json.dumps(model.config.scaling_spec()),
            "input": f"{INPUT_NAME}: float32 [N, {model.config.window_samples}], filtered ECG in mV",
            "output": f"{OUTPUT_NAME}: float32 [N, {model.config.embedding_dim}]",
            "weights_sha256": sha,
            "weights_file": weights_path.name,
        },
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    diff_random = _max_abs_diff(model, session, random_windows(n_random, seed=1))
    diff_real = None if real_windows is None else _max_abs_diff(model, session, real_windows.astype(np.float32))
    worst = max(diff_random, diff_real or 0.0)
    if not np.isfinite(worst) or worst > PARITY_TOL:
        tmp.unlink(missing_ok=True)
        raise EncoderError(f"ONNX-vs-torch parity failed: max abs diff {worst:.3g} > {PARITY_TOL:g}")
    tmp.replace(out_path)
    report = ExportReport(
        out_path, OPSET, n_random, 0 if real_windows is None else len(real_windows), diff_random, diff_real, sha
    )
    log.info("encoder_exported", path=str(out_path), max_abs_diff_random=diff_random, max_abs_diff_real=diff_real)
    return report


def ensure_onnx(settings: EncoderSettings) -> Path:
    """Return ``settings.onnx_path``, exporting it first if missing or stale (other weights hash or version)."""
    from encoder_onnx.weights import file_sha256

    if not settings.weights_path.exists():
        raise EncoderError(f"encoder weights not found: {settings.weights_path}")
    if settings.onnx_path.exists():
        meta = onnx_metadata(settings.onnx_path)
        sha = file_sha256(settings.weights_path)
        if meta.get("weights_sha256") == sha and meta.get("version") == MODEL_VERSION:
            return settings.onnx_path
        log.info("encoder_onnx_stale", path=str(settings.onnx_path), reason="weights hash or version differ")
    export_onnx(settings.weights_path, settings.onnx_path)
    return settings.onnx_path
