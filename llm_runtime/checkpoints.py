"""Checkpoints of the ECG-LM's own parts: CAMEL's released dicts and ours (same layout).

CAMEL's ``camel_*.pt`` files are dicts: ``llava_proj`` (projector state dict), ``ecg_special`` (embedding state
dict), ``lora`` (``state_dict`` as peft saves it and ``config``), optional ``conv`` (encoder state dict, keys
possibly prefixed ``module.``, ``_orig_mod.`` or ``enc.``) and ``extra``. They are loaded on top of a local base
model. Loading never unpickles code: ``torch.load(weights_only=True)``, and any other layout is rejected with a
:class:`~core.errors.CheckpointError` that says what is wrong.

Our adapters (``save_adapter``/``load_adapter``) use the same dict in ``<dir>/ecg_lm.pt`` plus a readable
``<dir>/adapter.json``, so one loader serves both.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from core.errors import CheckpointError
from llm_runtime.model import EcgLanguageModel, EcgLmConfig, LoraSpec

__all__ = [
    "CamelExtras",
    "build_from_checkpoint",
    "load_adapter",
    "load_camel_checkpoint",
    "read_adapter_meta",
    "save_adapter",
]

ADAPTER_FILE = "ecg_lm.pt"
ADAPTER_META = "adapter.json"
_TOP_KEYS = {"llava_proj", "ecg_special", "lora", "conv", "extra"}
_PREFIXES = ("module.", "_orig_mod.", "enc.")


@dataclass(frozen=True)
class CamelExtras:
    """What a checkpoint carries besides the LM parts: the encoder weights (prefixes stripped) and ``extra``."""

    conv: dict[str, torch.Tensor] | None
    extra: dict[str, Any]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such checkpoint") from exc
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: refused: not loadable with weights_only=True (it is not a plain tensor dict, or it would "
            f"execute code while unpickling): {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of parts, got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    missing = {"llava_proj", "ecg_special"} - set(data)
    if unknown or missing:
        raise CheckpointError(
            f"{path}: not a CAMEL-layout checkpoint (unknown keys {sorted(unknown)}, missing {sorted(missing)})"
        )
    return data


def _strip(state: dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what}: expected a state dict of tensors")
    out = {}
    for key, value in state.items():
        stripped = key
        while stripped.startswith(_PREFIXES):
            stripped = stripped.split(".", 1)[1]
        out[stripped] = value
    return out


def _copy_into(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Key copy with per-key shape checks; every key of the module must be present and nothing else."""
    own = module.state_dict()
    if set(own) != set(state):
        raise CheckpointError(f"{what}: keys {sorted(state)} do not match the model's {sorted(own)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{what}.{key}: shape {tuple(value.shape)} does not fit this backbone's {tuple(own[key].shape)}"
            )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def _lora_spec(config: dict[str, Any]) -> LoraSpec:
    names = {f.name for f in fields(LoraSpec)}
    kwargs = {k: v for k, v in config.items() if k in names}
    if "target_modules" in kwargs:
        kwargs["target_modules"] = tuple(kwargs["target_modules"])
    try:
        return LoraSpec(**kwargs)
    except TypeError as exc:
        raise CheckpointError(f"lora.config is not a LoRA config: {exc}") from exc


def _layer_suffix(key: str) -> str:
    """'base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_A.weight' -> 'layers.3.self_attn…'"""
    marker = key.find("layers.")
    if marker < 0:
        raise CheckpointError(f"lora.state_dict: key {key!r} is not inside the decoder layers")
    return key[marker:]


def _load_lora(model: EcgLanguageModel, state: dict[str, torch.Tensor]) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if model.peft is None:
        raise CheckpointError("checkpoint has LoRA weights but the model was built without LoRA")
    own = get_peft_model_state_dict(model.peft)
    by_suffix = {_layer_suffix(k): k for k in own}
    remapped = {}
    for key, value in state.items():
        suffix = _layer_suffix(key)
        if suffix not in by_suffix:
            raise CheckpointError(f"lora.state_dict: {key!r} has no counterpart in this backbone")
        target = by_suffix[suffix]
        if tuple(value.shape) != tuple(own[target].shape):
            raise CheckpointError(f"lora.state_dict: {key!r} shape {tuple(value.shape)} != {tuple(own[target].shape)}")
        remapped[target] = value
    missing = set(own) - set(remapped)
    if missing:
        raise CheckpointError(f"lora.state_dict: {len(missing)} adapter weights missing, e.g. {sorted(missing)[0]!r}")
    set_peft_model_state_dict(model.peft, remapped)


def build_from_checkpoint(lm: PreTrainedModel, path: Path) -> tuple[EcgLanguageModel, CamelExtras]:
    """A new ECG-LM on ``lm`` with the LoRA config, projector, special tokens and adapters of ``path``."""
    data = _read(path)
    lora = data.get("lora")
    if lora is not None and not (isinstance(lora, dict) and {"state_dict", "config"} <= set(lora)):
        raise CheckpointError(f"{path}: 'lora' must hold 'state_dict' and 'config'")
    spec = _lora_spec(lora["config"]) if lora is not None else None
    model = EcgLanguageModel(lm, EcgLmConfig(hidden_size=lm.config.hidden_size, lora=spec))
    _copy_into(model.llava_proj, _strip(data["llava_proj"], "llava_proj"), "llava_proj")
    _copy_into(model.ecg_special, _strip(data["ecg_special"], "ecg_special"), "ecg_special")
    if lora is not None:
        _load_lora(model, lora["state_dict"])
    conv = _strip(data["conv"], "conv") if data.get("conv") is not None else None
    extra = data.get("extra") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: 'extra' must be a dict")
    return model.eval(), CamelExtras(conv, extra)


def load_camel_checkpoint(lm: PreTrainedModel, path: Path) -> tuple[EcgLanguageModel, CamelExtras]:
    """CAMEL's released checkpoint (``camel_forecast.pt`` …) on a local base model; use the ``camel`` layout."""
    return build_from_checkpoint(lm, path)


def save_adapter(model: EcgLanguageModel, directory: Path, meta: dict[str, Any]) -> Path:
    """Write projector, special tokens, LoRA (with config) and ``meta`` (JSON-able) in CAMEL's dict layout."""
    from peft import get_peft_model_state_dict

    directory.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {**model.ecg_state_dict(), "extra": {"format": "ecgcast-adapter/1", **meta}}
    if model.peft is not None and model.config.lora is not None:
        state = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model.peft).items()}
        data["lora"] = {"state_dict": state, "config": model.config.lora.as_dict()}
    torch.save(data, directory / ADAPTER_FILE)
    readable = {"format": "ecgcast-adapter/1", "lora": data.get("lora", {}).get("config"), **meta}
    (directory / ADAPTER_META).write_text(json.dumps(readable, indent=2, default=str) + "\n", encoding="utf-8")
    return directory / ADAPTER_FILE


def read_adapter_meta(directory: Path) -> dict[str, Any]:
    """An adapter's ``adapter.json`` (backbone, leads, prompt, calibration ...); empty when missing or unreadable,
    as :func:`load_adapter` reports the real problem."""
    try:
        meta = json.loads((directory / ADAPTER_META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def load_adapter(lm: PreTrainedModel, directory: Path) -> tuple[EcgLanguageModel, dict[str, Any]]:
    """Our own adapter from ``save_adapter``; returns the model and its ``meta``."""
    model, extras = build_from_checkpoint(lm, directory / ADAPTER_FILE)
    if extras.extra.get("format") != "ecgcast-adapter/1":
        raise CheckpointError(f"{directory}: not an ecgcast adapter (extra.format={extras.extra.get('format')!r})")
    return model, extras.extra
