"""Cheaper arithmetic for the LM end to end on the shipped forecaster (issue #20 item 4): int8 or bfloat16.

    python bench/forecast_dtype_check.py --dtype int8       # writes bench/results/forecast_dtype_int8.json
    python bench/forecast_dtype_check.py --dtype bfloat16   # writes bench/results/forecast_dtype_bfloat16.json

`bench/linear_dtype_bench.py` times single linear layers; this asks the question that decides: on whole
forecasts of SYNTHETIC 300-s windows (4 scenarios x ``--seeds`` seeds, leads II+V1), how much faster are the
prefill and the forecast, and how far do the forecast probabilities move from float32's? ``int8``:
``torch.ao.quantization.quantize_dynamic`` on the backbone's ``nn.Linear`` layers (the ECG projection and the head
stay float32); ``bfloat16``: the whole ECG-LM in bfloat16, as ``llm.dtype: bfloat16`` loads it (the head reads its
states as float). Whether bfloat16 pays depends on the CPU (AVX-512 BF16 or AMX: the JSON records which units this
one has). One torch thread, the same inputs in the same order for both; medians over the inputs.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine_info import cpu_description  # the sibling module

from agent.settings import Settings, load_settings
from core.config import DEFAULT_CONFIG_PATH
from evaluation.forecast_cli import window_input
from evaluation.lm import WindowEvidence
from llm_runtime.engine import ForecastEngine
from llm_runtime.runner import ScoreRequest
from llm_runtime.settings import LlmSettings
from simulators.scenarios import generate_scenario

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("af_onset", "vt_onset", "flutter_onset", "sinus_stable")
WINDOW_S = 300
Input = tuple[str, torch.Tensor, WindowEvidence, int]


def _cases(seeds: int) -> list[tuple[str, int, int]]:
    """(scenario, seed, window end s): seed 1 ends at 600 s, seed 2 at 500 s, later seeds alternate."""
    return [(s, seed, 600 if seed % 2 else 500) for s in SCENARIOS for seed in range(1, seeds + 1)]


def _inputs(settings: Settings, seeds: int) -> list[Input]:
    out = []
    for name, seed, at in _cases(seeds):
        rec = generate_scenario(name, seed=seed, minutes=(at + 60) / 60, leads=("II", "V1"))
        embeddings, evidence = window_input(settings, rec.p_signal, rec.fs, ["II", "V1"], at, WINDOW_S)
        out.append((f"{name}-{seed}", embeddings, evidence, at))
    return out


def _forecast_all(engine: ForecastEngine, inputs: list[Input]) -> dict[str, Any]:
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


def _compare(fp32: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    diffs, flips = [], []
    for pid, ref in fp32.items():
        for kind in ("rhythm", "onset"):
            for h, classes in ref[kind].items():
                diffs += [abs(p - other[pid][kind][h][k]) for k, p in classes.items()]
        for h, classes in ref["rhythm"].items():
            ours, theirs = max(classes, key=classes.get), max(other[pid]["rhythm"][h], key=other[pid]["rhythm"][h].get)
            if ours != theirs:
                flips.append(f"{pid} h={h}: {ours} -> {theirs}")
    return {
        "max_abs_prob_change": round(max(diffs), 4),
        "median_abs_prob_change": round(statistics.median(diffs), 4),
        "rhythm_argmax_changes": flips,
        "rhythm_argmax_checked": sum(len(r["rhythm"]) for r in fp32.values()),
    }


def _cheaper(engine: ForecastEngine, dtype: str) -> None:
    """Turn the loaded float32 model into the ``dtype`` variant in place."""
    if dtype == "bfloat16":
        engine.runner.model.to(torch.bfloat16)
        return
    with warnings.catch_warnings():  # torch 2.13 deprecates the eager API in favour of torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.ao.quantization.quantize_dynamic(engine.runner.model.lm, {torch.nn.Linear}, torch.qint8, inplace=True)  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["int8", "bfloat16"], default="int8")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per scenario (4 scenarios)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/forecast_dtype_<dtype>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = load_settings(DEFAULT_CONFIG_PATH)
    llm = LlmSettings.model_validate({**settings.llm.model_dump(), "window_s": WINDOW_S, "dtype": "float32"})
    inputs = _inputs(settings, args.seeds)
    engine = ForecastEngine.load(llm, slide="rebuild")
    label = "int8_dynamic" if args.dtype == "int8" else "bfloat16"
    with engine.runner:
        fp32 = _forecast_all(engine, inputs)
        _cheaper(engine, args.dtype)
        other = _forecast_all(engine, inputs)
    result = {
        "data": f"SYNTHETIC: simulators.scenarios (4 scenarios x {args.seeds} seeds, 300 s, II+V1); not clinical",
        "model_id": engine.model_id,
        "machine": cpu_description(),
        "torch": torch.__version__,
        "threads": 1,
        "inputs": len(inputs),
        "prime_s_median": {"float32": round(fp32["prime_s"], 3), label: round(other["prime_s"], 3)},
        "forecast_s_median": {"float32": round(fp32["forecast_s"], 3), label: round(other["forecast_s"], 3)},
        "speedup": {
            "prime": round(fp32["prime_s"] / other["prime_s"], 2),
            "forecast": round(fp32["forecast_s"] / other["forecast_s"], 2),
        },
        "parity": _compare(fp32["probs"], other["probs"]),
    }
    print(json.dumps(result, indent=1))
    out = args.out or RESULTS / f"forecast_dtype_{args.dtype}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
