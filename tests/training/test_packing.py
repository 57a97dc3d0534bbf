"""Answer-only targets, and stage-5 sequences that score exactly as the runtime scores."""

from dataclasses import replace

import pytest
import torch

from llm_runtime.runner import ModelRunner, RunnerConfig, ScoreRequest
from simulators.scenarios import generate_scenario
from training.config import load_curriculum
from training.model import Trainable, build_trainable, ecg_rows
from training.packing import IGNORE, pack_dialogue, pack_forecast
from training.samples import cut_strip
from training.tasks import Dialogue, forecast_item


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Trainable:
    from tests.training.conftest import write_curriculum

    run, _ = load_curriculum(write_curriculum(tmp_path_factory.mktemp("cur")))
    t = build_trainable(run, torch.device("cpu"))
    t.train(False)
    return t


@pytest.fixture(scope="module")
def record():  # type: ignore[no-untyped-def]
    return generate_scenario("af_onset", seed=4, minutes=3, leads=("II", "V1"), noise="low")


def test_targets_are_ignored_outside_answers(tiny: Trainable, record) -> None:  # type: ignore[no-untyped-def]
    strip = cut_strip(record, 60, 8)
    item = Dialogue("converse", strip, (("Summarise.", "Sinus rhythm at 70."), ("Ectopy?", "None.")))
    book = tiny.book_for(strip.leads)
    seq = pack_dialogue(item, book)
    learned = seq.targets[seq.targets != IGNORE]
    end = book.ids("<end_of_turn>")
    assert learned.tolist() == book.ids("Sinus rhythm at 70.") + end + book.ids("None.") + end
    where = (seq.targets != IGNORE).nonzero().squeeze(1)
    ids = seq.packed.ids[0]
    assert torch.equal(ids[where + 1], learned)  # linear dialogue: each target is the next token
    assert int(where.min()) > int((seq.packed.meta.kind[0] == 3).nonzero().max())  # nothing learned before the ECG
    assert seq.n_answer_tokens == learned.numel()


def test_stage5_sequence_scores_like_the_runtime(tiny: Trainable, record) -> None:  # type: ignore[no-untyped-def]
    strip = cut_strip(record, 100, 8)
    item = forecast_item(record, strip, tiny.forecast_book.questions, explain=False)
    seq = pack_forecast(item, tiny.forecast_book)
    rows = ecg_rows(tiny.encoder, seq.windows, False)
    with torch.no_grad():
        packed = replace(seq.packed, ecg=rows)
        hidden = tiny.model.decode(tiny.model.embed(packed), packed.meta, packed.meta, None)
        where = (seq.targets != IGNORE).nonzero().squeeze(1)
        logprobs = torch.log_softmax(tiny.model.logits(hidden[0, where]), dim=-1)
        ours = logprobs[torch.arange(where.numel()), seq.targets[where]]
    with ModelRunner(tiny.model, tiny.forecast_book, RunnerConfig("streaming", 8, 4, "rebuild")) as runner:
        runner.prime("p", rows.reshape(8, 2, -1), strip.at_s - 8)  # (T*L, 64) -> (T, L, 64)
        (result,) = runner.score([ScoreRequest("p", strip.evidence)], prefill=True)
    theirs = torch.cat([result.option_logprobs[q][a] for q, a in enumerate(item.answers)])
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_explanation_sample_learns_the_rationale_only(tiny: Trainable, record) -> None:  # type: ignore[no-untyped-def]
    strip = cut_strip(record, 100, 8)
    item = forecast_item(record, strip, tiny.forecast_book.questions, explain=True)
    seq = pack_forecast(item, tiny.forecast_book)
    learned = seq.targets[seq.targets != IGNORE].tolist()
    assert item.explanation is not None
    assert learned == tiny.forecast_book.ids(item.explanation + "<end_of_turn>")


def test_forecast_leads_must_match_the_prompt_book(tiny: Trainable) -> None:
    rec = generate_scenario("sinus_stable", seed=1, minutes=1, leads=("II",), noise="none")
    item = forecast_item(rec, cut_strip(rec, 20, 8), tiny.forecast_book.questions, explain=False)
    with pytest.raises(ValueError, match="leads"):
        pack_forecast(item, tiny.forecast_book)
