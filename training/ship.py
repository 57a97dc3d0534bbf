"""Ship a trained adapter into the repository (``models/forecaster/``): the runtime's ``ecg_lm.pt`` +
``adapter.json`` (what ``llm_runtime.checkpoints.load_adapter`` reads), the same tensors as ``adapter.safetensors``
(a pickle-free copy for other tools), the probe variant's forecast head when it has one, and the encoder the
adapter was trained with."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from llm_runtime.checkpoints import ADAPTER_FILE, ADAPTER_META
from llm_runtime.probe import PROBE_FILE

__all__ = ["flat_tensors", "ship_adapter"]


def flat_tensors(adapter_file: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an ``ecg_lm.pt`` under a flat key: ``llava_proj.weight``, ``lora.<peft key>``, ..."""
    data = torch.load(adapter_file, map_location="cpu", weights_only=True)
    out = {f"{part}.{k}": v.contiguous() for part in ("llava_proj", "ecg_special") for k, v in data[part].items()}
    if data.get("lora") is not None:
        out.update({f"lora.{k}": v.contiguous() for k, v in data["lora"]["state_dict"].items()})
    return out


def ship_adapter(adapter_dir: Path, target: Path, encoder_weights: Path | None = None) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in (ADAPTER_FILE, ADAPTER_META):
        shutil.copyfile(adapter_dir / name, target / name)
    for name in (PROBE_FILE, "probe_head.json"):  # the probe variant's forecast head
        if (adapter_dir / name).exists():
            shutil.copyfile(adapter_dir / name, target / name)
    save_file(flat_tensors(adapter_dir / ADAPTER_FILE), str(target / "adapter.safetensors"))
    encoder = adapter_dir / "encoder.pt" if (adapter_dir / "encoder.pt").exists() else encoder_weights
    if encoder is not None and encoder.resolve() != (target / "encoder.pt").resolve():
        shutil.copyfile(encoder, target / "encoder.pt")
    return target
