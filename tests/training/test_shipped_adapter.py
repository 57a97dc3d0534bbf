"""The shipped forecaster (models/forecaster) loads as the runtime's default adapter and separates AF from sinus."""

from pathlib import Path

import pytest
import torch

from core.windows import preprocess_record
from encoder_onnx.weights import load_encoder_weights
from llm_runtime.checkpoints import load_adapter
from simulators.scenarios import generate_scenario
from training.ship import flat_tensors

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "forecaster"


def test_safetensors_copy_matches_the_runtime_file() -> None:
    from safetensors.torch import load_file

    ours = load_file(str(SHIPPED / "adapter.safetensors"))
    theirs = flat_tensors(SHIPPED / "ecg_lm.pt")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 20 * 2**20


def test_default_config_points_at_the_shipped_adapter() -> None:
    from agent.settings import load_settings

    assert load_settings().llm.adapter_dir == SHIPPED


@pytest.mark.e2e
def test_af_onset_window_gets_more_af_than_a_sinus_window() -> None:
    from core.measurements import measure_leads
    from llm_runtime.backbones import load_backbone
    from llm_runtime.prompts import CHAT_FORMATS, PromptBook, questions_for
    from llm_runtime.runner import ModelRunner, RunnerConfig, ScoreRequest

    torch.set_num_threads(1)
    backbone = load_backbone("gemma3-270m")
    model, meta = load_adapter(backbone.lm, SHIPPED)
    encoder, _ = load_encoder_weights(SHIPPED / "encoder.pt")
    leads, horizons = tuple(meta["leads"]), tuple(meta["horizons_s"])
    book = PromptBook(backbone.tokenizer, CHAT_FORMATS[backbone.chat], leads, questions_for(horizons))
    af = generate_scenario("af_onset", seed=1_000_000, minutes=12, leads=("II", "V1"), noise="low")
    sinus = generate_scenario("sinus_stable", seed=1_000_003, minutes=12, leads=("II", "V1"), noise="low")
    at_af = int(af.onsets["AF"]) + 30  # the window holds the onset and 30 s of AF
    p_af = {}
    with ModelRunner(model, book, RunnerConfig("streaming", 60, 10, "inline")) as runner:
        for name, rec, at in (("af", af, at_af), ("sinus", sinus, 300)):
            segment = rec.p_signal[int((at - 60) * rec.fs) : int(at * rec.fs)]
            windows = torch.from_numpy(preprocess_record(segment, rec.fs, sig_name=rec.sig_name).windows)
            with torch.no_grad():
                emb = encoder(windows.reshape(-1, 256)).reshape(len(leads), 60, -1)  # (L*T, 64) -> (L, T, 64)
            runner.prime(name, emb.permute(1, 0, 2), at - 60)  # (L, T, 64) -> (T, L, 64)
            evidence = measure_leads(segment, rec.fs, rec.sig_name).as_prompt_text()
            (result,) = runner.score([ScoreRequest(name, evidence)])
            rhythm_q = max(i for i, q in enumerate(book.questions) if q.kind == "rhythm")
            p_af[name] = result.probs[rhythm_q]["af"]
    assert p_af["af"] > p_af["sinus"], p_af
