"""The stage-5 fixes against "always sinus": balanced draws, lead dropout, extra prompt horizons, and a run that
starts from a trained adapter."""

from pathlib import Path

import pytest
import torch
import yaml

from core.errors import CheckpointError, ConfigError
from llm_runtime.checkpoints import save_adapter
from simulators.scenarios import generate_scenario
from tests.training.conftest import write_curriculum
from training.config import load_curriculum
from training.dataset import build_split
from training.loop import BALANCE_SHARE, Trainer, balanced_pool, dropped_leads
from training.model import build_trainable, ecg_rows, sequence_loss
from training.packing import IGNORE, pack_forecast
from training.samples import cut_strip
from training.tasks import ForecastItem, forecast_item


@pytest.fixture(scope="module")
def strip():  # type: ignore[no-untyped-def]
    record = generate_scenario("sinus_stable", seed=2, minutes=2, leads=("II", "V1"), noise="low")
    return cut_strip(record, 40, 8)


def _item(strip, positive: bool) -> ForecastItem:  # type: ignore[no-untyped-def]
    onset = {60: {"af": positive, "flutter": False, "vt": False}}
    return ForecastItem(strip, (0, 1, 1, 1), {60: "sinus"}, onset, horizons=(60,))


def test_balanced_pool_draws_positives_half_the_time(strip) -> None:  # type: ignore[no-untyped-def]
    items = [_item(strip, k in (1, 4)) for k in range(8)]  # 2 positives, 6 negatives
    pool = balanced_pool(items)
    positives = [i for i in pool if items[i].positive]
    assert sorted(set(positives)) == [1, 4] and positives.count(1) == positives.count(4) == 3
    assert len(positives) / len(pool) == BALANCE_SHARE
    assert sorted(i for i in pool if not items[i].positive) == [0, 2, 3, 5, 6, 7]  # every negative once
    assert balanced_pool(items[:1]) == [0]  # one group only: unchanged


def test_lead_dropout_is_a_pure_function_of_the_position() -> None:
    draws = [dropped_leads(0, 0, step, j, 0.3, 2) for step in range(500) for j in range(2)]
    assert set(draws) == {(), (1,)}
    assert 0.25 < draws.count((1,)) / len(draws) < 0.35
    assert draws == [dropped_leads(0, 0, step, j, 0.3, 2) for step in range(500) for j in range(2)]
    assert dropped_leads(0, 0, 3, 0, 1.0, 1) == ()  # a single lead is never dropped
    assert dropped_leads(0, 0, 3, 0, 0.0, 2) == ()


def test_absent_rows_are_zero_and_the_others_unchanged(tmp_path: Path) -> None:
    run, _ = load_curriculum(write_curriculum(tmp_path))
    t = build_trainable(run, torch.device("cpu"))
    windows = torch.randn(2, 5, 256)
    present = torch.ones(2, 5, dtype=torch.bool)
    present[1] = False  # V1 absent
    present[0, 2] = False  # one invalid second of II
    full, masked = ecg_rows(t.encoder, windows, False), ecg_rows(t.encoder, windows, False, present)
    assert masked.shape == full.shape == (10, 64)  # time-major: row 2 * t + lead
    for row in range(10):
        second, lead = divmod(row, 2)
        if lead == 1 or second == 2:
            assert torch.count_nonzero(masked[row]) == 0
        else:
            torch.testing.assert_close(masked[row], full[row])


def test_extra_prompt_horizons_reach_training_items_only(tmp_path: Path) -> None:
    path = write_curriculum(tmp_path, stages=("forecast",))
    data = yaml.safe_load(path.read_text())
    data["prompt_horizon_sets"] = [[30, 60]]
    path.write_text(yaml.safe_dump(data))
    run, (stage,) = load_curriculum(path)
    stage = stage.model_copy(update={"samples_per_patient": 6})
    train = build_split(run, stage, held_out=False)
    assert {item.horizons for item in train} == {(30,), (30, 60)}  # type: ignore[union-attr]
    assert {item.horizons for item in build_split(run, stage, held_out=True)} == {(30,)}  # type: ignore[union-attr]
    t = Trainer(run, [stage], tmp_path / "run", torch.device("cpu"))
    for item, seq in zip(train, t.sequences(train), strict=True):
        n_questions = 4 * len(item.horizons)  # type: ignore[union-attr]
        assert seq.n_answer_tokens >= n_questions or item.explanation is not None  # type: ignore[union-attr]
    path.write_text(yaml.safe_dump({**data, "prompt_horizon_sets": [[60, 60]]}))
    with pytest.raises(ConfigError, match="distinct positive"):
        load_curriculum(path)


def test_a_run_can_start_from_a_trained_adapter(tmp_path: Path, strip) -> None:  # type: ignore[no-untyped-def]
    run, _ = load_curriculum(write_curriculum(tmp_path))
    first = build_trainable(run, torch.device("cpu"))
    with torch.no_grad():
        first.model.llava_proj.weight.add_(0.5)
    save_adapter(first.model, tmp_path / "adapter", {"version": "x"})
    second = build_trainable(run.model_copy(update={"init_adapter": tmp_path / "adapter"}), torch.device("cpu"))
    a, b = first.named_trainable(), second.named_trainable()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(p.requires_grad for p in b.values())
    other = run.model_copy(update={"init_adapter": tmp_path / "adapter", "lora_r": run.lora_r * 2})
    with pytest.raises(CheckpointError, match="differs from the run"):
        build_trainable(other, torch.device("cpu"))
    item = forecast_item(
        generate_scenario("af_onset", seed=4, minutes=2, leads=("II", "V1"), noise="low"),
        strip,
        second.forecast_book_for((30, 60)).questions,
        explain=False,
    )
    assert item.horizons == (30, 60)


def test_a_checkpoint_exports_as_an_adapter(tmp_path: Path) -> None:
    run, stages = load_curriculum(write_curriculum(tmp_path, steps=3, stages=("forecast",)))
    out = tmp_path / "run"
    assert not Trainer(run, stages, out, torch.device("cpu")).train(resume=False, max_steps=2)
    trainer = Trainer(*Trainer.saved_config(out), out, torch.device("cpu"))
    path = trainer.export_checkpoint(tmp_path / "exported")
    saved = torch.load(out / "ckpt.pt", weights_only=True)["trainable"]
    data = torch.load(path, weights_only=True)
    assert data["extra"]["version"] == "tiny/forecast-step2"
    torch.testing.assert_close(data["llava_proj"]["weight"], saved["ecg_lm.llava_proj.weight"])


def test_positive_answers_weigh_more_in_the_loss(tmp_path: Path) -> None:
    run, _ = load_curriculum(write_curriculum(tmp_path))
    t = build_trainable(run, torch.device("cpu"))
    record = generate_scenario("af_onset", seed=4, minutes=3, leads=("II", "V1"), noise="low")
    at = int(record.onsets["AF"]) - 10  # AF starts within the 30-s horizon: rhythm AF, onset "yes" for AF
    item = forecast_item(record, cut_strip(record, at, 8), t.forecast_book.questions, explain=False)
    plain, weighted = pack_forecast(item, t.forecast_book), pack_forecast(item, t.forecast_book, positive_weight=3.0)
    assert plain.weights is None and weighted.weights is not None
    learned = (weighted.targets != IGNORE).nonzero().squeeze(1)
    heavy = {int(i) for i in learned if float(weighted.weights[i]) == 3.0}
    yes = set(t.forecast_book.ids(" yes"))
    assert heavy and all(int(weighted.targets[i]) not in set(t.forecast_book.ids(" no")) for i in heavy)
    assert any(int(weighted.targets[i]) in yes for i in heavy)
    assert float(weighted.weights.sum()) == weighted.weights.numel() + 2.0 * len(heavy)  # the rest weigh 1
    t.train(False)
    with torch.no_grad():
        base, _ = sequence_loss(t, plain)
        more, _ = sequence_loss(t, weighted)
    assert float(more) > float(base)
