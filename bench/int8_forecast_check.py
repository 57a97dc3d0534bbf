"""int8 dynamic quantisation of the LM's linear layers, end to end on the shipped forecaster (issue #20 item 4).

    python bench/int8_forecast_check.py            # ~4 min on one core; writes bench/results/int8_forecast.json

`bench/linear_dtype_bench.py` times single linear layers; this asks the question that decides: on whole forecasts
of SYNTHETIC 300-s windows (4 scenarios x 2 seeds, leads II+V1), how much faster are the prefill and the forecast
with ``torch.ao.quantization.quantize_dynamic`` applied to the backbone's ``nn.Linear`` layers (the ECG projection and
the head stay float32), and how far do the forecast probabilities move from float32's? One torch thread, the same
inputs in the same order for both; medians over the inputs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.settings import load_settings
from core.config import DEFAULT_CONFIG_PATH
from evaluation.forecast_cli import window_embeddings
from evaluation.lm import window_evidence
from llm_runtime.engine import ForecastEngine
from llm_runtime.runner import ScoreRequest
from llm_runtime.settings import LlmSettings
from simulators.scenarios import generate_scenario

RESULTS = Path(__file__).resolve().parent / "results" / "int8_forecast.json"
CASES = [
    (s, seed, at)
    for s in ("af_onset", "vt_onset", "flutter_onset", "sinus_stable")
    for seed, at in ((1, 600), (2, 500))
]
WINDOW_S = 300


def _inputs(settings: Any) -> list[tuple[str, torch.Tensor, Any, int]]:
    out = []
    for name, seed, at in CASES:
        rec = generate_scenario(name, seed=seed, minutes=(at + 60) / 60, leads=("II", "V1"))
        end = round(at * rec.fs)
        segment = rec.p_signal[end - round(WINDOW_S * rec.fs) : end].astype(np.float32)
        embeddings = torch.from_numpy(window_embeddings(settings, segment, rec.fs, ["II", "V1"]))  # (L, T, 64)
        out.append((f"{name}-{seed}", embeddings, window_evidence(segment, rec.fs, ["II", "V1"]), at))
    return out


def _forecast_all(engine: ForecastEngine, inputs: list[tuple[str, torch.Tensor, Any, int]]) -> dict[str, Any]:
    probs, prime_s, forecast_s = {}, [], []
    for pid, embeddings, evidence, at in inputs:
        t0 = time.perf_counter()
        engine.runner.prime(pid, embeddings.permute(1, 0, 2), at - embeddings.shape[1])  # (T, L, 64)
        t1 = time.perf_counter()
        forecast = engine.forecast([ScoreRequest(pid, evidence.text, evidence.trends)])[0]
        forecast_s.append(time.perf_counter() - t1)
        prime_s.append(t1 - t0)
        engine.runner.finish([pid])
        probs[pid] = {"rhythm": forecast.rhythm_probs, "onset": forecast.onset_probs}
    return {"probs": probs, "prime_s": statistics.median(prime_s), "forecast_s": statistics.median(forecast_s)}


def _compare(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    diffs, flips = [], []
    for pid, ref in fp32.items():
        for kind in ("rhythm", "onset"):
            for h, classes in ref[kind].items():
                diffs += [abs(p - int8[pid][kind][h][k]) for k, p in classes.items()]
        for h, classes in ref["rhythm"].items():
            ours, theirs = max(classes, key=classes.get), max(int8[pid]["rhythm"][h], key=int8[pid]["rhythm"][h].get)
            if ours != theirs:
                flips.append(f"{pid} h={h}: {ours} -> {theirs}")
    return {
        "max_abs_prob_change": round(max(diffs), 4),
        "median_abs_prob_change": round(statistics.median(diffs), 4),
        "rhythm_argmax_changes": flips,
        "rhythm_argmax_checked": sum(len(r["rhythm"]) for r in fp32.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = load_settings(DEFAULT_CONFIG_PATH)
    llm = LlmSettings.model_validate({**settings.llm.model_dump(), "window_s": WINDOW_S})
    inputs = _inputs(settings)
    engine = ForecastEngine.load(llm, slide="rebuild")
    with engine.runner:
        fp32 = _forecast_all(engine, inputs)
        with warnings.catch_warnings():  # torch 2.13 deprecates the eager API in favour of torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.ao.quantization.quantize_dynamic(engine.runner.model.lm, {torch.nn.Linear}, torch.qint8, inplace=True)  # type: ignore[no-untyped-call]
        int8 = _forecast_all(engine, inputs)
    result = {
        "data": "SYNTHETIC: simulators.scenarios windows (4 scenarios x 2 seeds, 300 s, II+V1); not clinical",
        "model_id": engine.model_id,
        "torch": torch.__version__,
        "threads": 1,
        "inputs": len(inputs),
        "prime_s_median": {"float32": round(fp32["prime_s"], 3), "int8_dynamic": round(int8["prime_s"], 3)},
        "forecast_s_median": {"float32": round(fp32["forecast_s"], 3), "int8_dynamic": round(int8["forecast_s"], 3)},
        "speedup": {
            "prime": round(fp32["prime_s"] / int8["prime_s"], 2),
            "forecast": round(fp32["forecast_s"] / int8["forecast_s"], 2),
        },
        "parity": _compare(fp32["probs"], int8["probs"]),
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
