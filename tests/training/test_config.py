from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError
from training.config import CurriculumConfig, StageRef, load_curriculum, load_stage

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["curriculum.yaml", "curriculum_short.yaml", "curriculum_short_plus.yaml"])
def test_shipped_curricula_validate(name: str) -> None:
    run, stages = load_curriculum(ROOT / "config" / "train" / name)
    assert [s.stage for s in stages][:4] == ["classify", "measure", "converse", "forecast"]
    assert run.forecast_leads == ("ii", "v1") and run.horizons_s == (60, 300)  # the runtime's defaults


def test_unknown_override_key_is_rejected(tiny_curriculum: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_curriculum(tiny_curriculum, ["lora_rank=4"])
    run, _ = load_curriculum(tiny_curriculum, ["lora_r=2", "horizons_s=[30, 60]"])
    assert run.lora_r == 2 and run.horizons_s == (30, 60)


def test_unknown_stage_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"stage": "classify", "steps": 1, "train_patients": 1, "eval_patients": 1}))
    assert load_stage(StageRef(config=path)).steps == 1
    with pytest.raises(ConfigError, match="learning_rate"):
        load_stage(StageRef(config=path, overrides={"learning_rate": 0.1}))


def test_bad_leads_are_rejected() -> None:
    stage2 = ROOT / "config/train/stage2_classify.yaml"
    with pytest.raises(ConfigError, match="lead set"):
        load_stage(StageRef(config=stage2, overrides={"leads": [["ii", "lead9"]]}))
    assert CurriculumConfig.model_validate({"stages": [{"config": str(stage2)}]}).lora_r == 8
