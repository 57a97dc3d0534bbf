"""The encoder is CAMEL's: same layers, same output, same parameter names; CAMEL checkpoints load into it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from core.errors import CheckpointError
from encoder_onnx.model import (
    ConvAutoencoder,
    ConvEncoder,
    EncoderConfig,
    ExportEncoder,
    load_camel_encoder_state,
)
from encoder_onnx.weights import load_encoder_weights


def camel_encoder() -> nn.Sequential:
    """CAMEL's definition, written out independently: Conv1d k4 s2 p1, 1->32->64->128->4, ReLU after each."""
    return nn.Sequential(
        nn.Conv1d(1, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv1d(32, 64, 4, 2, 1),
        nn.ReLU(),
        nn.Conv1d(64, 128, 4, 2, 1),
        nn.ReLU(),
        nn.Conv1d(128, 4, 4, 2, 1),
        nn.ReLU(),
    )


def camel_forward(camel: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return camel(x.unsqueeze(1)).flatten(1)  # (B, 256) -> (B, 4, 16) -> (B, 64)


def in_range_windows(n: int) -> torch.Tensor:
    """Windows within +-5 mV, where our clip is the identity, so outputs must equal CAMEL's exactly."""
    return torch.rand(n, 256) * 8.0 - 4.0


def test_layer_list_and_param_count_match_camel() -> None:
    ours, camel = ConvEncoder(), camel_encoder()
    assert [type(m) for m in ours] == [type(m) for m in camel]
    for a, b in zip(ours, camel, strict=True):
        if isinstance(a, nn.Conv1d):
            assert isinstance(b, nn.Conv1d)
            assert (a.in_channels, a.out_channels, a.kernel_size, a.stride, a.padding) == (
                b.in_channels,
                b.out_channels,
                b.kernel_size,
                b.stride,
                b.padding,
            )
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in camel.parameters()) == 43_364
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in camel.state_dict().items()}


def test_output_shape_for_both_input_layouts() -> None:
    enc = ConvEncoder()
    x = in_range_windows(5)
    assert enc(x).shape == (5, 64)
    assert torch.equal(enc(x), enc(x.unsqueeze(1)))
    assert EncoderConfig().embedding_dim == 64


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "enc.", "module.enc.", "_orig_mod.module."])
def test_camel_state_dict_loads_with_each_prefix(prefix: str) -> None:
    torch.manual_seed(1)
    camel = camel_encoder()
    state = {prefix + k: v for k, v in camel.state_dict().items()}
    ours = ConvEncoder()
    load_camel_encoder_state(ours, state)
    x = in_range_windows(7)
    assert torch.equal(ours(x), camel_forward(camel, x))


def test_camel_checkpoint_file_loads(tmp_path: Path) -> None:
    """A checkpoint in CAMEL's release layout (pickled dict with 'conv' among other entries) gives its encoder."""
    torch.manual_seed(2)
    camel = camel_encoder()
    checkpoint = {
        "llava_proj": {"weight": torch.zeros(8, 64), "bias": torch.zeros(8)},
        "conv": {f"_orig_mod.enc.{k}": v for k, v in camel.state_dict().items()},
        "ecg_special": {"weight": torch.zeros(26, 8)},
        "lora": {"state_dict": {}, "config": {"r": 128, "lora_alpha": 256}},
        "extra": {"conv_trainable": True, "projector_name": "linear"},
    }
    path = tmp_path / "camel_forecast.pt"
    torch.save(checkpoint, path)
    ours, meta = load_encoder_weights(path)
    assert meta == {"source": "camel_checkpoint"}
    x = in_range_windows(3)
    assert torch.equal(ours(x), camel_forward(camel, x))


def test_camel_checkpoint_without_encoder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "camel_base.pt"
    torch.save({"llava_proj": {}, "conv": None, "extra": {"conv_trainable": False}}, path)
    with pytest.raises(CheckpointError, match="no encoder"):
        load_encoder_weights(path)


def test_autoencoder_state_skips_decoder_keys() -> None:
    ae = ConvAutoencoder()
    ours = ConvEncoder()
    load_camel_encoder_state(ours, ae.state_dict())
    x = in_range_windows(4)
    assert torch.equal(ours(x), ae.enc(x))


def test_bad_states_raise_naming_the_key() -> None:
    good = camel_encoder().state_dict()
    with pytest.raises(CheckpointError, match="missing keys"):
        load_camel_encoder_state(ConvEncoder(), {k: v for k, v in good.items() if k != "6.bias"})
    with pytest.raises(CheckpointError, match="shape"):
        load_camel_encoder_state(ConvEncoder(), {**good, "0.weight": torch.zeros(16, 1, 4)})
    with pytest.raises(CheckpointError, match="unexpected"):
        load_camel_encoder_state(ConvEncoder(), {**good, "8.weight": torch.zeros(1)})


def test_amplitude_clip_is_inside_the_model() -> None:
    enc = ConvEncoder()
    x = in_range_windows(2)
    spiky = x.clone()
    spiky[:, 100] = 50.0  # an electrode pop far beyond the 5 mV clip
    clipped = x.clone()
    clipped[:, 100] = 5.0
    assert torch.equal(enc(spiky), enc(clipped))


def test_decoder_reconstructs_window_shape() -> None:
    ae = ConvAutoencoder()
    recon, target = ae(in_range_windows(3))
    assert recon.shape == target.shape == (3, 256)


def test_export_form_computes_the_same_function() -> None:
    torch.manual_seed(3)
    enc = ConvEncoder().eval()
    x = torch.randn(9, 256) * 3.0  # includes samples beyond the clip
    with torch.no_grad():
        assert torch.allclose(ExportEncoder(enc)(x), enc(x), atol=1e-6)


def test_beat_bins_mark_the_sixteenth_of_the_second_each_beat_falls_in() -> None:
    import numpy as np

    from encoder_onnx.data import beat_bins_of_windows

    fs = 250.0
    beats = np.array([0, 125, 249, 250 + 16, 1000], dtype=np.int64)  # 0 s, 0.5 s, 0.996 s, 1.064 s, 4 s (outside)
    bins = beat_bins_of_windows(beats, fs, n_seconds=3)
    assert bins.tolist() == [(1 << 0) | (1 << 8) | (1 << 15), 1 << 1, 0]


def test_one_generator_reproduces_the_patients_of_specs_that_predate_the_choice() -> None:
    from encoder_onnx.data import DataSpec, synthetic_patient
    from simulators.scenarios import SCENARIO_NAMES, scenario_names

    spec = DataSpec(n_records=30, minutes=0.1)
    assert spec.generators == ("1",)
    for k in (1, 7, 25):  # the draws before generators existed: scenario k % 6, noise level (k // 6) % 4
        patient = synthetic_patient(spec, k)
        assert patient.scenario == SCENARIO_NAMES[k % 6]
        assert patient.noise == spec.noise_levels[(k // 6) % 4]
    mixed = DataSpec(n_records=30, minutes=0.1, generators=("1", "2"))
    assert synthetic_patient(mixed, 3).scenario in scenario_names("2")  # odd patients: generator 2
    assert synthetic_patient(mixed, 2).scenario == SCENARIO_NAMES[1]  # even patients: generator 1, its own count
