"""The ``encoder`` config section: where the weights and ONNX model live and how the ORT session runs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.config import PROJECT_ROOT, StrictModel, project_path

__all__ = ["DEFAULT_ONNX_PATH", "DEFAULT_WEIGHTS_PATH", "EncoderSettings"]

_MODELS_DIR = PROJECT_ROOT / "models" / "encoder"
DEFAULT_WEIGHTS_PATH = _MODELS_DIR / "encoder.pt"
DEFAULT_ONNX_PATH = _MODELS_DIR / "encoder.onnx"


class EncoderSettings(StrictModel):
    weights_path: Path = Field(default=DEFAULT_WEIGHTS_PATH, description="Trained encoder weights (.pt, committed)")
    onnx_path: Path = Field(
        default=DEFAULT_ONNX_PATH, description="ONNX model; exported from weights_path when missing or stale"
    )
    provider: Literal["auto", "cpu", "cuda", "tensorrt"] = Field(
        default="auto",
        description="auto: CUDA when a usable GPU is present, else CPU; cuda/tensorrt fail at start-up without one",
    )
    intra_op_threads: int = Field(default=1, ge=0, le=256, description="ORT threads inside one op; 0 lets ORT decide")
    inter_op_threads: int = Field(default=1, ge=0, le=256, description="ORT threads across ops; 0 lets ORT decide")
    max_batch: int = Field(
        default=4096, ge=1, le=65536, description="Largest number of windows sent to ORT in one run (bounds memory)"
    )

    @field_validator("weights_path", "onnx_path")
    @classmethod
    def _from_project_root(cls, value: Path) -> Path:
        """Relative paths are relative to the project root, not the working directory, like the default config."""
        return project_path(value)
