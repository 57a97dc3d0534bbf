"""Reading and writing encoder weights: our own ``.pt`` layout, CAMEL checkpoints, and bare state dicts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from core.errors import CheckpointError
from encoder_onnx.model import ConvEncoder, EncoderConfig, load_camel_encoder_state

__all__ = ["WEIGHTS_FORMAT", "file_sha256", "load_encoder_weights", "save_encoder_weights"]

WEIGHTS_FORMAT = "ecgcast.encoder-weights/1"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes: the weights identity stored in the ONNX metadata."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_encoder_weights(path: Path, model: ConvEncoder, meta: dict[str, Any]) -> None:
    """Write the encoder's state dict (CAMEL keys) with its config and provenance ``meta`` (plain types only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": WEIGHTS_FORMAT,
        "encoder_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "encoder_config": model.config.to_dict(),
        "meta": meta,
    }
    torch.save(payload, path)


def load_encoder_weights(path: Path) -> tuple[ConvEncoder, dict[str, Any]]:
    """Load an encoder from our ``.pt``, a CAMEL checkpoint (its ``conv`` entry) or a bare state dict.

    Loading uses ``weights_only=True``: a checkpoint is data, never code.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot load encoder weights from {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(payload).__name__}")
    if payload.get("format") == WEIGHTS_FORMAT:
        config = EncoderConfig.from_dict(payload["encoder_config"])
        state, meta = payload["encoder_state"], dict(payload.get("meta") or {})
    elif "conv" in payload:
        if payload["conv"] is None:
            raise CheckpointError(f"{path}: CAMEL checkpoint has no encoder ('conv' is None): the encoder was frozen")
        config, state, meta = EncoderConfig(), payload["conv"], {"source": "camel_checkpoint"}
    elif payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        config, state, meta = EncoderConfig(), payload, {"source": "state_dict"}
    else:
        raise CheckpointError(f"{path}: not an encoder checkpoint (keys {sorted(payload)[:8]})")
    model = ConvEncoder(config)
    load_camel_encoder_state(model, state)
    return model.eval(), meta
