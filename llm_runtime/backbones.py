"""Backbone registry: which language model the ECG-LM sits on, and how to load it offline.

Sources (``config/backbones.yaml``), one loader each, registered in :data:`LOADERS`:

* ``gguf-package``: Gemma 3 270M from the PyPI GGUF packages. The first load assembles the .gguf into the cache,
  dequantises it with transformers (about a minute) and saves a bf16 safetensors copy with config and tokenizer;
  later loads read that copy in seconds.
* ``hf-local``: a local Hugging Face directory (Gemma 3 text or MedGemma).
* ``tiny-random``: a tiny random Gemma 3 text model plus a small tokenizer, for tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import structlog
import torch
import yaml
from pydantic import Field, TypeAdapter, ValidationError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.config import StrictModel
from core.errors import ConfigError, ModelError
from llm_runtime.tiny_tokenizer import build_tiny_tokenizer

__all__ = [
    "DEFAULT_BACKBONES_PATH",
    "Backbone",
    "BackboneSpec",
    "cache_dir",
    "load_backbone",
    "load_registry",
]

log = structlog.get_logger(__name__)

DEFAULT_BACKBONES_PATH = Path(__file__).resolve().parent.parent / "config" / "backbones.yaml"
ENV_CACHE_DIR = "ECGCAST_CACHE_DIR"
ENV_HF_LOCAL_DIR = "ECGCAST_HF_LOCAL_DIR"


class _SpecBase(StrictModel):
    chat: Literal["gemma"] = Field("gemma", description="Chat formatting (turn markers)")
    description: str = Field("", description="Human-readable summary")


class GgufPackageSpec(_SpecBase):
    source: Literal["gguf-package"]
    package: str = Field(description="Importable module exposing assemble(path)")
    gguf_file: str = Field(description="File name of the assembled GGUF inside <cache>/gguf/")


class HfLocalSpec(_SpecBase):
    source: Literal["hf-local"]
    path: Path | None = Field(None, description="Local model directory; ECGCAST_HF_LOCAL_DIR when null")


class TinyRandomSpec(_SpecBase):
    source: Literal["tiny-random"]
    hidden_size: int = Field(64, ge=8, le=1024)
    num_layers: int = Field(2, ge=1, le=8)
    num_heads: int = Field(4, ge=1, le=16)
    num_kv_heads: int = Field(1, ge=1, le=16)
    head_dim: int = Field(16, ge=4, le=256)
    intermediate_size: int = Field(128, ge=8, le=4096)
    sliding_window: int = Field(16, ge=2)
    seed: int = Field(0, ge=0)


BackboneSpec = Annotated[GgufPackageSpec | HfLocalSpec | TinyRandomSpec, Field(discriminator="source")]
_REGISTRY = TypeAdapter(dict[str, BackboneSpec])


@dataclass
class Backbone:
    """A loaded language model, its tokenizer, and an id/version for the forecast object."""

    name: str
    lm: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    model_version: str
    chat: str


def load_registry(path: Path = DEFAULT_BACKBONES_PATH) -> dict[str, BackboneSpec]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return _REGISTRY.validate_python(data.get("backbones", {}))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read backbone registry {path}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid backbone registry: {exc}") from exc


def cache_dir(override: Path | None = None) -> Path:
    """``override``, else $ECGCAST_CACHE_DIR, else ~/.cache/ecgcast."""
    if override is not None:
        return override
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env) if env else Path.home() / ".cache" / "ecgcast"


def _offline() -> None:
    """Nothing in this module may reach a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _load_hf_dir(directory: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a Hugging Face model from {directory}: {exc}") from exc
    if not hasattr(lm, "model") or not hasattr(lm.model, "layers"):
        raise ModelError(f"{directory}: expected a Gemma 3 text model (Gemma3ForCausalLM), got {type(lm).__name__}")
    return lm, tokenizer


def _build_gguf_copy(spec: GgufPackageSpec, root: Path, target: Path) -> str:
    """Assemble the GGUF, dequantise it, and save a bf16 copy in ``target``. Returns the GGUF sha256."""
    import importlib

    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = importlib.import_module(spec.package)
    gguf_path = Path(package.assemble(root / "gguf" / spec.gguf_file, overwrite=False))
    log.info("gguf_assembled", path=str(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)
    gguf_lm = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)
    # save_pretrained refuses a GGUF-loaded model: rebuild from its config and copy the dequantised weights.
    config = gguf_lm.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(gguf_lm)(config)
    fresh.load_state_dict(gguf_lm.state_dict())
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")  # two processes may build at once
    shutil.rmtree(staging, ignore_errors=True)
    fresh.to(torch.bfloat16).save_pretrained(staging)  # type: ignore[arg-type]  # transformers' .to stub
    tokenizer.save_pretrained(staging)
    sha = str(package.EXPECTED_SHA256)
    (staging / "GGUF_SHA256").write_text(sha + "\n", encoding="utf-8")
    try:
        staging.rename(target)
    except OSError:  # another process finished its copy first: the same bytes, keep theirs
        if not (target / "GGUF_SHA256").exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    log.info("gguf_copy_saved", path=str(target))
    return sha


def _load_gguf(name: str, spec: GgufPackageSpec, root: Path, dtype: torch.dtype) -> Backbone:
    _offline()
    target = root / name
    if not (target / "GGUF_SHA256").exists():
        _build_gguf_copy(spec, root, target)
    sha = (target / "GGUF_SHA256").read_text(encoding="utf-8").strip()
    lm, tokenizer = _load_hf_dir(target, dtype)
    return Backbone(name, lm, tokenizer, f"{name} (Q4_K_M GGUF, dequantised)", f"gguf-sha256:{sha[:12]}", spec.chat)


def _load_hf_local(name: str, spec: HfLocalSpec, root: Path, dtype: torch.dtype) -> Backbone:
    directory = spec.path or (Path(os.environ[ENV_HF_LOCAL_DIR]) if os.environ.get(ENV_HF_LOCAL_DIR) else None)
    if directory is None or not directory.is_dir():
        raise ConfigError(
            f"backbone {name!r}: path is not set or not a directory ({directory}); set {ENV_HF_LOCAL_DIR}"
        )
    lm, tokenizer = _load_hf_dir(directory, dtype)
    return Backbone(name, lm, tokenizer, f"{name} ({directory.name})", "local", spec.chat)


def _load_tiny(name: str, spec: TinyRandomSpec, root: Path, dtype: torch.dtype) -> Backbone:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = build_tiny_tokenizer()
    n_layers = spec.num_layers
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=n_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        sliding_window=spec.sliding_window,
        layer_types=["sliding_attention"] * (n_layers - 1) + ["full_attention"],
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        query_pre_attn_scalar=spec.head_dim,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(spec.seed)  # weights are a function of the seed, whatever ran before
        lm = Gemma3ForCausalLM(config).to(dtype)  # type: ignore[arg-type]  # transformers' .to stub
    finally:
        torch.random.set_rng_state(generator_state)
    return Backbone(name, lm, tokenizer, f"{name} (random init)", f"seed-{spec.seed}", spec.chat)


LOADERS: dict[str, Callable[[str, object, Path, torch.dtype], Backbone]] = {
    "gguf-package": _load_gguf,  # type: ignore[dict-item]
    "hf-local": _load_hf_local,  # type: ignore[dict-item]
    "tiny-random": _load_tiny,  # type: ignore[dict-item]
}


def load_backbone(
    name: str,
    registry_path: Path = DEFAULT_BACKBONES_PATH,
    cache: Path | None = None,
    dtype: torch.dtype = torch.float32,
) -> Backbone:
    """Load backbone ``name`` from the registry, offline, in ``dtype``, in eval mode."""
    registry = load_registry(registry_path)
    if name not in registry:
        raise ConfigError(f"llm.backbone: unknown backbone {name!r}; registry {registry_path} has {sorted(registry)}")
    spec = registry[name]
    root = cache_dir(cache)
    root.mkdir(parents=True, exist_ok=True)
    backbone = LOADERS[spec.source](name, spec, root, dtype)
    backbone.lm.eval()  # type: ignore[no-untyped-call]
    log.info("backbone_loaded", backbone=name, model_id=backbone.model_id, dtype=str(dtype))
    return backbone
