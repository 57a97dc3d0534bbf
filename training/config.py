"""Training configuration: one YAML per stage under ``config/train/`` plus a curriculum file that lists them.

Every section is a :class:`~core.config.StrictModel` (unknown keys are errors). A curriculum names its stage
files and may override stage fields per entry (the short recipe shrinks the default one this way), and
``--set key=value`` overrides reach run-level fields; both are validated, so a typo fails before any training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from core.config import StrictModel
from core.errors import ConfigError

__all__ = ["CurriculumConfig", "StageConfig", "StageName", "apply_overrides", "load_curriculum", "load_stage"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

StageName = Literal["classify", "measure", "converse", "forecast"]


class StageConfig(StrictModel):
    """One curriculum stage: what data, how much, and how it is optimised."""

    stage: StageName = Field(description="Task family: classify (2), measure (3), converse (4), forecast (5)")
    steps: int = Field(ge=1, le=1_000_000, description="Optimizer steps")
    batch_size: int = Field(4, ge=1, le=256, description="Samples per optimizer step (gradient accumulation)")
    lr: float = Field(5e-4, gt=0, le=1.0, description="Peak learning rate (AdamW), cosine decay after warm-up")
    warmup_steps: int = Field(5, ge=0, description="Linear warm-up steps")
    weight_decay: float = Field(0.0, ge=0, le=1.0, description="AdamW weight decay")
    train_patients: int = Field(ge=1, description="Synthetic patients (seeds) in the training split")
    eval_patients: int = Field(ge=1, description="Held-out patients (a disjoint seed range) for evaluation")
    samples_per_patient: int = Field(4, ge=1, le=256, description="Windows cut from each patient's record")
    window_s: tuple[int, ...] = Field((10, 30, 60), min_length=1, description="Window lengths drawn per sample")
    eval_window_s: int | None = Field(None, ge=1, description="Held-out window length; null draws like training")
    leads: tuple[tuple[str, ...], ...] = Field(
        (("ii",), ("v1",), ("ii", "v1")), min_length=1, description="Lead sets drawn per sample (lower-case names)"
    )
    record_minutes: float = Field(12.0, gt=0, le=120, description="Length of each generated scenario record")
    eval_every: int = Field(20, ge=1, description="Held-out loss every this many steps")
    eval_samples: int = Field(32, ge=1, description="Held-out samples used by the periodic loss")
    balance: bool = Field(
        False, description="Stage 5: oversample onset-positive and non-sinus items so 'always sinus' cannot win"
    )
    lead_dropout: float = Field(
        0.0, ge=0, le=1, description="Share of training samples whose second lead reads as absent (zero rows)"
    )
    explain_share: float = Field(0.25, ge=0, le=1, description="Stage 5: share of items training the rationale")
    positive_weight: float = Field(
        1.0, ge=1, le=100, description="Stage 5: loss weight of positive answers (onset yes, non-sinus rhythm)"
    )

    @field_validator("leads")
    @classmethod
    def _known_leads(cls, value: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        from llm_runtime.layout import ECG_LEADS

        for leads in value:
            if not leads or any(lead not in ECG_LEADS for lead in leads) or len(set(leads)) != len(leads):
                raise ValueError(f"each lead set must hold distinct names from {ECG_LEADS}, got {leads}")
        return value


class StageRef(StrictModel):
    config: Path = Field(description="Stage YAML, relative to the project root")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Stage fields replaced for this run")


class CurriculumConfig(StrictModel):
    """A whole run: backbone, adapter shape, seeds, devices, and the ordered stages."""

    name: str = Field("curriculum", min_length=1, description="Run name (default run directory runs/<name>)")
    backbone: str = Field("gemma3-270m", description="Entry of config/backbones.yaml")
    seed: int = Field(0, ge=0, description="Seeds the adapter init, sample order and dropout")
    patient_seed_offset: int = Field(0, ge=0, description="First training patient seed; eval seeds start at 10**6")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank: 8 keeps the adapter a few MB on the 270M")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (alpha / r = 2, CAMEL's ratio)")
    lora_targets: tuple[str, ...] = Field(("q_proj", "v_proj", "o_proj"), min_length=1, description="LoRA modules")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    encoder_weights: Path = Field(
        Path("models/forecaster/encoder.pt"), description="Encoder .pt the adapter is paired with"
    )
    train_encoder: bool = Field(False, description="Fine-tune the encoder too (its weights ship with the adapter)")
    horizons_s: tuple[int, ...] = Field((60, 300), min_length=1, description="Stage-5 horizons = llm.horizons_s")
    prompt_horizon_sets: tuple[tuple[int, ...], ...] = Field(
        (), description="Stage 5: more horizon sets a prompt may ask (drawn per item, besides horizons_s)"
    )
    init_adapter: Path | None = Field(
        None, description="Adapter directory whose weights a fresh run starts from (same LoRA shape)"
    )
    forecast_leads: tuple[str, ...] = Field(("ii", "v1"), min_length=1, description="Stage-5 leads = llm.leads")
    noise: tuple[str, ...] = Field(("none", "low", "low", "medium", "high"), description="Noise levels drawn")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    num_threads: int = Field(
        1, ge=1, le=2, description="torch threads on CPU (1: 2 threads ran 7x slower on a busy box)"
    )
    checkpoint_every_s: float = Field(240.0, gt=0, description="Seconds between resumable checkpoints")
    data_workers: int = Field(1, ge=1, le=64, description="Processes generating scenario records")
    stages: tuple[StageRef, ...] = Field(min_length=1, description="Stage files, in curriculum order")

    @field_validator("encoder_weights", "init_adapter")
    @classmethod
    def _from_root(cls, value: Path | None) -> Path | None:
        return value if value is None or value.is_absolute() else PROJECT_ROOT / value

    @field_validator("prompt_horizon_sets")
    @classmethod
    def _distinct_horizons(cls, value: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
        for horizons in value:
            if not horizons or len(set(horizons)) != len(horizons) or min(horizons) <= 0:
                raise ValueError(f"each horizon set must hold distinct positive seconds, got {horizons}")
        return value

    @property
    def horizon_sets(self) -> tuple[tuple[int, ...], ...]:
        """Every prompt's horizon set: the runtime's first, then the extra ones."""
        return (self.horizons_s, *(h for h in self.prompt_horizon_sets if h != self.horizons_s))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else PROJECT_ROOT / path


def load_stage(ref: StageRef) -> StageConfig:
    """A stage file with the curriculum's per-entry overrides applied and validated."""
    path = _resolve(ref.config)
    data = {**_read_yaml(path), **ref.overrides}
    try:
        return StageConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid stage config: {exc}") from exc


def _coerce(raw: str) -> Any:
    """``--set`` values are YAML scalars or flow collections: 3, 1e-4, true, [60, 300]."""
    return yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key=value`` pairs onto the run-level mapping; unknown keys are rejected by validation afterwards."""
    out = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        if key not in CurriculumConfig.model_fields:
            raise ConfigError(f"override {key!r}: unknown key; known: {sorted(CurriculumConfig.model_fields)}")
        out[key] = _coerce(raw)
    return out


def load_curriculum(path: Path, overrides: list[str] | None = None) -> tuple[CurriculumConfig, list[StageConfig]]:
    """Validated run config and its stages, in order."""
    data = apply_overrides(_read_yaml(_resolve(path)), overrides or [])
    try:
        config = CurriculumConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid curriculum config: {exc}") from exc
    return config, [load_stage(ref) for ref in config.stages]
