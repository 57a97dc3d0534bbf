"""encoder_onnx: CAMEL's 1-second ECG encoder — pretraining, ONNX export, and the incremental runtime.

Public surface: the ``encoder`` config section, ``ensure_onnx`` (export when missing or stale), the ORT
``EncoderRuntime``, the per-patient ``EmbeddingRing`` and the agent's ``EncoderStage``. Names resolve lazily from
the explicit ``_EXPORTS`` table, so importing the config section (which ``agent.settings`` does) or the CLI pulls
in neither onnxruntime nor the agent's ingest modules. Torch modules (``model``, ``train``, ``weights``,
``evaluate``) are imported explicitly by those who need them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EmbeddingRing": "encoder_onnx.embedding_ring",
    "EmbeddingWindow": "encoder_onnx.embedding_ring",
    "EncoderRuntime": "encoder_onnx.runtime",
    "EncoderSettings": "encoder_onnx.settings",
    "EncoderStage": "agent.encoder_stage",
    "RuntimeState": "encoder_onnx.runtime",
    "encode_ready": "agent.encoder_stage",
    "ensure_onnx": "encoder_onnx.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'encoder_onnx' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
