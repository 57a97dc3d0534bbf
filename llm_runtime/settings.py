"""The ``llm`` config section: which backbone, which layout, which device, and the forecast window."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config import StrictModel, project_path

__all__ = ["LlmSettings"]


class LlmSettings(StrictModel):
    backbone: str = Field("gemma3-270m", min_length=1, description="Entry of the backbone registry")
    backbones_file: Path = Field(Path("config/backbones.yaml"), description="Backbone registry (YAML)")
    cache_dir: Path | None = Field(None, description="Model cache; $ECGCAST_CACHE_DIR or ~/.cache/ecgcast when null")
    layout: Literal["streaming", "camel"] = Field(
        "streaming", description="streaming: time-major + per-patient KV cache; camel: lead-major, CAMEL's mask"
    )
    adapter_dir: Path | None = Field(None, description="Our trained adapter (save_adapter); untrained when null")
    camel_checkpoint: Path | None = Field(None, description="A CAMEL checkpoint dict (.pt); implies layout camel")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights and activations")
    num_threads: int = Field(0, ge=0, le=256, description="torch intra-op threads; 0 keeps torch's default")
    leads: tuple[str, ...] = Field(("ii", "v1"), min_length=1, max_length=12, description="Leads, in token order")
    window_s: int = Field(300, ge=10, le=3600, description="Seconds of ECG a forecast reads")
    slack_s: int = Field(
        60, ge=1, le=3600, description="Cache may exceed the window by this much before its oldest seconds are slid out"
    )
    horizons_s: tuple[int, ...] = Field((60, 300), min_length=1, description="Forecast horizons, seconds")
    explain_max_tokens: int = Field(64, ge=1, le=1024, description="Longest generated rationale, tokens")

    @field_validator("backbones_file", "cache_dir", "adapter_dir", "camel_checkpoint")
    @classmethod
    def _from_project_root(cls, value: Path | None) -> Path | None:
        """Relative to the project root (checkout or installed package), not the working directory (core.config)."""
        return None if value is None else project_path(value)

    @field_validator("leads")
    @classmethod
    def _known_leads(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from llm_runtime.layout import ECG_LEADS

        bad = [lead for lead in value if lead not in ECG_LEADS]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"leads must be distinct names from {ECG_LEADS}, got {value}")
        return value

    @field_validator("horizons_s")
    @classmethod
    def _positive_horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(h <= 0 for h in value) or len(set(value)) != len(value):
            raise ValueError(f"horizons must be distinct positive seconds, got {value}")
        return value

    @model_validator(mode="after")
    def _camel_needs_camel_layout(self) -> LlmSettings:
        if self.camel_checkpoint is not None and self.layout != "camel":
            raise ValueError("llm.camel_checkpoint needs llm.layout: camel (CAMEL was trained lead-major)")
        if self.camel_checkpoint is not None and self.adapter_dir is not None:
            raise ValueError("llm.adapter_dir and llm.camel_checkpoint are exclusive")
        return self
