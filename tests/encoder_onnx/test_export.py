"""ONNX export: parity with torch, dynamic batch, metadata, the parity gate, and re-export when stale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.errors import EncoderError
from core.windows import preprocess_record
from encoder_onnx import export as export_mod
from encoder_onnx.export import MODEL_VERSION, OPSET, ensure_onnx, export_onnx, onnx_metadata, random_windows
from encoder_onnx.model import ConvEncoder
from encoder_onnx.settings import EncoderSettings
from encoder_onnx.weights import file_sha256, load_encoder_weights, save_encoder_weights
from simulators.scenarios import generate_scenario


def test_onnx_matches_torch_on_random_and_ecg_windows(encoder_files: tuple[Path, Path]) -> None:
    weights, onnx_path = encoder_files
    model, _ = load_encoder_weights(weights)
    rec = generate_scenario("vt_onset", seed=5, minutes=0.5, fs=360.0, leads=("II", "V5"), noise="medium")
    ecg = preprocess_record(np.asarray(rec.p_signal), rec.fs).windows.reshape(-1, 256)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for windows in (random_windows(300, seed=9), ecg):
        with torch.no_grad():
            ref = model(torch.from_numpy(windows)).numpy()
        got = session.run(["embeddings"], {"windows": windows})[0]
        assert got.shape == (len(windows), 64)
        assert np.max(np.abs(got - ref)) <= 1e-5


@pytest.mark.parametrize("n", [1, 12, 1000])
def test_batch_axis_is_dynamic(encoder_files: tuple[Path, Path], n: int) -> None:
    session = ort.InferenceSession(str(encoder_files[1]), providers=["CPUExecutionProvider"])
    assert session.run(["embeddings"], {"windows": random_windows(n)})[0].shape == (n, 64)


def test_metadata_describes_the_model(encoder_files: tuple[Path, Path]) -> None:
    weights, onnx_path = encoder_files
    meta = onnx_metadata(onnx_path)
    assert meta["version"] == MODEL_VERSION
    assert meta["opset"] == str(OPSET)
    assert meta["weights_sha256"] == file_sha256(weights)
    assert json.loads(meta["input_scaling"]) == {
        "units": "mV",
        "clip_mv": 5.0,
        "input_scale": 1.0,
        "formula": "clip(x)*scale",
    }
    assert "dynamo=True" in meta["exporter"]


def test_parity_gate_refuses_and_leaves_no_file(
    encoder_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights that differ from what the ONNX graph computes fail the gate (the graph is swapped in for speed)."""
    monkeypatch.setattr(
        export_mod, "_torch_export", lambda model, path, n_example: shutil.copyfile(encoder_files[1], path)
    )
    torch.manual_seed(99)
    other = tmp_path / "other.pt"
    save_encoder_weights(other, ConvEncoder(), {"seed": 99})
    out = tmp_path / "refused.onnx"
    with pytest.raises(EncoderError, match="parity failed"):
        export_onnx(other, out, n_random=64)
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp"))
    export_onnx(encoder_files[0], out, n_random=64)  # the matching weights pass the same gate
    assert out.exists()


def test_ensure_onnx_reuses_fresh_and_reexports_stale(
    encoder_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, onnx_path = tmp_path / "encoder.pt", tmp_path / "encoder.onnx"
    shutil.copyfile(encoder_files[0], weights)
    shutil.copyfile(encoder_files[1], onnx_path)
    settings = EncoderSettings(weights_path=weights, onnx_path=onnx_path)
    exports: list[Path] = []
    monkeypatch.setattr(export_mod, "export_onnx", lambda w, o: exports.append(w))
    assert ensure_onnx(settings) == onnx_path
    assert exports == []  # fresh: same weights hash and version
    torch.manual_seed(7)
    save_encoder_weights(weights, ConvEncoder(), {"seed": 7})
    assert ensure_onnx(settings) == onnx_path
    assert exports == [weights]  # stale: re-exported from the new weights
    monkeypatch.undo()
    onnx_path.unlink()
    with pytest.raises(EncoderError, match="not found"):
        ensure_onnx(EncoderSettings(weights_path=tmp_path / "none.pt", onnx_path=onnx_path))
