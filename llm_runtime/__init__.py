"""llm_runtime: the ECG language model (Gemma 3 backbone reading lead-second tokens) and its streaming runner.

Public surface: the ``llm`` config section, the backbone registry loader, the ECG-LM wrapper, the per-patient
``ModelRunner`` (streaming KV cache, batched option scoring, on-demand rationale), the ``ForecastEngine`` that
composes them, the ``Forecast`` object, checkpoint I/O (ours and CAMEL's) and the ``ForecastScheduler``. Names
resolve lazily from the explicit ``_EXPORTS`` table, so importing the config section or the CLI does not import
torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Backbone": "llm_runtime.backbones",
    "EcgLanguageModel": "llm_runtime.model",
    "EcgLmConfig": "llm_runtime.model",
    "Forecast": "llm_runtime.forecast",
    "ForecastEngine": "llm_runtime.engine",
    "ForecastScheduler": "llm_runtime.scheduler",
    "LlmSettings": "llm_runtime.settings",
    "LoraSpec": "llm_runtime.model",
    "ModelRunner": "llm_runtime.runner",
    "NewSeconds": "llm_runtime.runner",
    "RunnerConfig": "llm_runtime.runner",
    "ScoreRequest": "llm_runtime.runner",
    "ScoreResult": "llm_runtime.runner",
    "load_adapter": "llm_runtime.checkpoints",
    "load_backbone": "llm_runtime.backbones",
    "load_camel_checkpoint": "llm_runtime.checkpoints",
    "save_adapter": "llm_runtime.checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llm_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
