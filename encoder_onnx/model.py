"""CAMEL's 1-second ECG encoder, its autoencoder decoder, and CAMEL checkpoint loading.

The encoder turns one lead-second, linearly resampled to 256 samples, into a 64-d token. Its layers and parameter
names are CAMEL's exactly (``0.*``, ``2.*``, ``4.*``, ``6.*``), so a CAMEL encoder state dict loads by key copy.

Amplitude handling lives in ONE place, :func:`scale_input`, which the encoder's ``forward`` applies first: training
targets, the exported ONNX graph and the streaming runtime therefore all see the same numbers. No I/O here.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import structlog
import torch
from torch import nn

from core.errors import CheckpointError

__all__ = [
    "CAMEL_PREFIXES",
    "ConvAutoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "EncoderConfig",
    "ExportEncoder",
    "load_camel_encoder_state",
    "scale_input",
]

log = structlog.get_logger(__name__)

CAMEL_PREFIXES = ("module.", "_orig_mod.", "enc.")
"""Key prefixes CAMEL checkpoints may carry: DataParallel, torch.compile, and the autoencoder's encoder half."""


@dataclass(frozen=True)
class EncoderConfig:
    # CAMEL resamples every 1-s window to 256 samples whatever the source fs; four stride-2 layers leave 16 positions.
    window_samples: int = 256
    # CAMEL's channel plan. The last layer has only 4 channels so that 4 channels x 16 positions = a 64-d token.
    channels: tuple[int, ...] = (1, 32, 64, 128, 4)
    # kernel 4, stride 2, padding 1 halves the length exactly at every layer: (L + 2*1 - 4) // 2 + 1 = L / 2.
    kernel_size: int = 4
    stride: int = 2
    padding: int = 1
    # Input is filtered ECG in mV. After the high-pass a QRS stays well inside +-5 mV; clipping there keeps an
    # electrode pop or a saturated amplifier (the protocol allows up to +-20 mV) from dominating an embedding.
    clip_mv: float = 5.0
    # Multiplier applied after clipping. 1.0 keeps millivolts: ECG amplitudes are O(1) already, and a fixed scale
    # (unlike per-window standardisation) keeps low voltage and lead-off visible to the model.
    input_scale: float = 1.0

    @property
    def embedding_dim(self) -> int:
        """Channels of the last layer times positions left after the stride-2 layers (CAMEL: 4 x 16 = 64)."""
        n_layers = len(self.channels) - 1
        return int(self.channels[-1] * (self.window_samples // self.stride**n_layers))

    def scaling_spec(self) -> dict[str, object]:
        """The amplitude contract, as stored in the ONNX metadata and the model card."""
        return {"units": "mV", "clip_mv": self.clip_mv, "input_scale": self.input_scale, "formula": "clip(x)*scale"}

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> EncoderConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])  # type: ignore[arg-type]
        return cls(**known)  # type: ignore[arg-type]


def scale_input(x: torch.Tensor, config: EncoderConfig) -> torch.Tensor:
    """The single amplitude transform: mV in, clipped to +-clip_mv, times input_scale. Used by training targets too."""
    return torch.clamp(x, -config.clip_mv, config.clip_mv) * config.input_scale


class ConvEncoder(nn.Sequential):
    """CAMEL's encoder: Conv1d/ReLU x4, flattened. Subclassing Sequential keeps state-dict keys ``0.*`` … ``6.*``."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        config = config or EncoderConfig()
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(config.channels):
            layers += [nn.Conv1d(c_in, c_out, config.kernel_size, config.stride, config.padding), nn.ReLU()]
        super().__init__(*layers)
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows in mV, (B, 256) or (B, 1, 256), to embeddings (B, 64)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, 256) -> (B, 1, 256)
        h = scale_input(x, self.config)
        for layer in self:
            h = layer(h)  # (B, 1, 256) -> ... -> (B, 4, 16)
        return h.flatten(1)  # (B, 4, 16) -> (B, 64)


class ExportEncoder(nn.Module):
    """The same encoder for ONNX export, with each Conv1d written as a Conv2d of height 1.

    Why: onnxruntime's CPU layout optimiser (NCHWc blocked kernels) handles 2-D convolutions only; the 2-D form
    computes the identical function and runs about 30% faster per window on one core. Export checks parity
    against the original :class:`ConvEncoder`, so the rewrite cannot drift.
    """

    def __init__(self, encoder: ConvEncoder) -> None:
        super().__init__()
        self.config = encoder.config
        convs = []
        for layer in encoder:
            if isinstance(layer, nn.Conv1d):
                conv = nn.Conv2d(
                    layer.in_channels,
                    layer.out_channels,
                    (1, self.config.kernel_size),
                    (1, self.config.stride),
                    (0, self.config.padding),
                )
                assert conv.bias is not None and layer.bias is not None
                with torch.no_grad():
                    conv.weight.copy_(layer.weight.unsqueeze(2))  # (C_out, C_in, 4) -> (C_out, C_in, 1, 4)
                    conv.bias.copy_(layer.bias)
                convs.append(conv)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows (B, 256) mV -> embeddings (B, 64)."""
        h = scale_input(x, self.config)[:, None, None, :]  # (B, 256) -> (B, 1, 1, 256)
        for conv in self.convs:
            h = torch.relu(conv(h))  # (B, C, 1, L) -> (B, C', 1, L/2)
        return h.flatten(1)  # (B, 4, 1, 16) -> (B, 64)


class ConvDecoder(nn.Module):
    """Mirror of the encoder with transposed convolutions; only used to pretrain the encoder by reconstruction."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        config = config or EncoderConfig()
        self.config = config
        reverse = config.channels[::-1]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(itertools.pairwise(reverse)):
            layers.append(nn.ConvTranspose1d(c_in, c_out, config.kernel_size, config.stride, config.padding))
            if i < len(reverse) - 2:
                layers.append(nn.ReLU())  # the output layer stays linear: it reconstructs signed mV
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, 64) to reconstructed scaled windows (B, 256)."""
        n_positions = z.shape[1] // self.config.channels[-1]
        h = z.view(z.shape[0], self.config.channels[-1], n_positions)  # (B, 64) -> (B, 4, 16)
        out: torch.Tensor = self.net(h)  # (B, 4, 16) -> (B, 1, 256)
        return out.squeeze(1)  # (B, 1, 256) -> (B, 256)


class ConvAutoencoder(nn.Module):
    """CAMEL stage 1: encoder + decoder, trained with MSE against the *scaled* input. Keys: ``enc.*``, ``dec.*``."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        config = config or EncoderConfig()
        self.enc = ConvEncoder(config)
        self.dec = ConvDecoder(config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (B, 256) mV -> (reconstruction (B, 256), target (B, 256)), both in scaled units."""
        return self.dec(self.enc(x)), scale_input(x, self.enc.config)


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in CAMEL_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def load_camel_encoder_state(model: ConvEncoder, state: Mapping[str, torch.Tensor]) -> None:
    """Copy a CAMEL-layout encoder state dict into ``model``, asserting each key and shape.

    Prefixes ``module.``, ``_orig_mod.`` and ``enc.`` are stripped (in any nesting). Keys of an autoencoder's
    decoder half (``dec.*``) are skipped; any other unknown key, a missing key or a shape mismatch raises
    :class:`CheckpointError` naming the key, so a wrong checkpoint never loads half-way.
    """
    expected = model.state_dict()
    normalised: dict[str, torch.Tensor] = {}
    skipped = 0
    for raw_key, tensor in state.items():
        key = _strip_prefixes(raw_key)
        if key.startswith("dec."):
            skipped += 1
            continue
        if key not in expected:
            raise CheckpointError(f"unexpected encoder key {raw_key!r} (normalised {key!r})")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"encoder key {raw_key!r}: shape {tuple(tensor.shape)} != expected {tuple(expected[key].shape)}"
            )
        normalised[key] = tensor
    missing = sorted(set(expected) - set(normalised))
    if missing:
        raise CheckpointError(f"encoder state is missing keys {missing}")
    with torch.no_grad():
        for key, tensor in normalised.items():
            expected[key].copy_(tensor.to(expected[key].dtype))
    log.debug("camel_encoder_state_loaded", n_keys=len(normalised), skipped_decoder_keys=skipped)
