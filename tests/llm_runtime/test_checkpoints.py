"""CAMEL-layout checkpoints written here on the tiny backbone: loading, prefixes, and refusals."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError
from llm_runtime.backbones import load_backbone
from llm_runtime.checkpoints import build_from_checkpoint, load_adapter, load_camel_checkpoint, save_adapter
from llm_runtime.model import EcgLanguageModel, LoraSpec

HIDDEN = 64  # tiny-random's hidden size
LORA = LoraSpec(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=("q_proj", "v_proj"))


def camel_dict(as_medgemma: bool = True) -> dict[str, object]:
    """What CAMEL's torch.save writes, with keys as a MedGemma (multimodal) peft model would name them."""
    g = torch.Generator().manual_seed(3)
    lm_prefix = "base_model.model.model.language_model." if as_medgemma else "base_model.model.model."
    lora = {}
    for layer in range(2):  # tiny-random has 2 layers; q: 4 heads x 16, v: 1 kv head x 16
        for proj, out_dim in (("q_proj", 64), ("v_proj", 16)):
            key = f"{lm_prefix}layers.{layer}.self_attn.{proj}"
            lora[f"{key}.lora_A.weight"] = torch.randn(LORA.r, HIDDEN, generator=g)
            lora[f"{key}.lora_B.weight"] = torch.randn(out_dim, LORA.r, generator=g)
    return {
        "llava_proj": {"module.weight": torch.randn(HIDDEN, 64, generator=g), "module.bias": torch.randn(HIDDEN)},
        "conv": {f"_orig_mod.enc.{i}.weight": torch.randn(4, 1, 4) for i in (0, 2, 4, 6)},
        "ecg_special": {"weight": torch.randn(26, HIDDEN, generator=g)},
        "lora": {"state_dict": lora, "config": {**LORA.as_dict(), "task_type": "CAUSAL_LM"}},
        "extra": {"conv_trainable": False, "projector_name": "linear"},
    }


def lora_weight(model: EcgLanguageModel, layer: int, proj: str, part: str) -> torch.Tensor:
    module = getattr(model.lm.model.layers[layer].self_attn, proj)
    return getattr(module, part)["default"].weight  # type: ignore[no-any-return]


def test_camel_checkpoint_loads_onto_local_base(tmp_path: Path) -> None:
    data = camel_dict()
    torch.save(data, tmp_path / "camel_forecast.pt")
    model, extras = load_camel_checkpoint(load_backbone("tiny-random").lm, tmp_path / "camel_forecast.pt")
    assert torch.equal(model.llava_proj.weight, data["llava_proj"]["module.weight"])  # type: ignore[index]
    assert torch.equal(model.ecg_special.weight, data["ecg_special"]["weight"])  # type: ignore[index]
    lora = data["lora"]["state_dict"]  # type: ignore[index]
    key = "base_model.model.model.language_model.layers.1.self_attn.v_proj.lora_B.weight"
    assert torch.equal(lora_weight(model, 1, "v_proj", "lora_B"), lora[key])
    assert model.config.lora == LORA
    assert extras.conv is not None and set(extras.conv) == {"0.weight", "2.weight", "4.weight", "6.weight"}
    assert extras.extra["projector_name"] == "linear"


def test_own_adapter_round_trip(tmp_path: Path) -> None:
    data = camel_dict(as_medgemma=False)
    torch.save(data, tmp_path / "c.pt")
    model, _ = build_from_checkpoint(load_backbone("tiny-random").lm, tmp_path / "c.pt")
    save_adapter(model, tmp_path / "adapter", {"version": "test-1", "backbone": "tiny-random"})
    loaded, meta = load_adapter(load_backbone("tiny-random").lm, tmp_path / "adapter")
    assert meta["version"] == "test-1"
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class NotATensorDict:
    pass


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (NotATensorDict(), "weights_only=True"),
        ([1, 2, 3], "expected a dict"),
        ({"llava_proj": {}, "surprise": 1}, "not a CAMEL-layout checkpoint"),
        ({**camel_dict(), "ecg_special": {"weight": torch.zeros(26, 32)}}, r"ecg_special.weight: shape \(26, 32\)"),
        ({**camel_dict(), "lora": {"state_dict": {}}}, "'state_dict' and 'config'"),
        ({**camel_dict(), "lora": {"state_dict": {}, "config": LORA.as_dict()}}, "adapter weights missing"),
    ],
)
def test_bad_checkpoints_are_refused(tmp_path: Path, payload: object, message: str) -> None:
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message):
        load_camel_checkpoint(load_backbone("tiny-random").lm, tmp_path / "bad.pt")


def test_ordered_dict_state_dicts_are_accepted(tmp_path: Path) -> None:
    data = camel_dict()
    data["ecg_special"] = collections.OrderedDict(data["ecg_special"])  # type: ignore[arg-type]
    torch.save(data, tmp_path / "c.pt")
    model, _ = load_camel_checkpoint(load_backbone("tiny-random").lm, tmp_path / "c.pt")
    assert torch.equal(model.ecg_special.weight, data["ecg_special"]["weight"])  # type: ignore[index]
