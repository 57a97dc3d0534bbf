"""LM runtime benchmark: per-forecast cost of a full prefill vs the streaming KV cache, and batched throughput.

Backbone: Gemma 3 270M (dequantised from the Q4_K_M GGUF), float32, on whatever device ``--device`` picks (CPU by
default). Window: 5 minutes x 2 leads = 600 ECG tokens plus the prompt text. The ECG adapter is untrained and the
lead-second embeddings are random normal: cost does not depend on their values. Evidence text is the measurement
module's output on a synthetic sinus scenario (seed 1) when that module is present, else a fixed line of the same
format. Timings are medians over the stated repetitions; every number here is from this machine only.

Run: ``python bench/llm_bench.py`` (writes bench/results/llm.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import EcgcastError
from llm_runtime.engine import ForecastEngine
from llm_runtime.runner import ModelRunner, ScoreRequest
from llm_runtime.settings import LlmSettings

RESULTS = Path(__file__).resolve().parent / "results" / "llm.json"
FALLBACK_EVIDENCE = (
    "Lead II, 300 s: HR 74 bpm; RR mean 811 ms, CV 0.05, RMSSD 31 ms, irregularity 0.04; PAC 2, PVC 1, "
    "couplets 0; longest V-run 1; QRS 92 ms; usable 100%"
)


def evidence_text() -> tuple[str, str]:
    """(text, source): real measurements of a synthetic sinus strip when the modules are there."""
    try:
        from core.measurements import measure_leads
        from simulators.scenarios import generate_scenario

        rec = generate_scenario("sinus_stable", seed=1, minutes=5.0)
        return measure_leads(
            rec.p_signal, rec.fs, rec.sig_name
        ).as_prompt_text(), "synthetic sinus_stable scenario, seed 1, 5 min"
    except (ImportError, EcgcastError) as exc:
        return FALLBACK_EVIDENCE, f"fixed text ({type(exc).__name__})"


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float | int]:
    return {"median_ms": round(statistics.median(ms), 2), "min_ms": round(min(ms), 2), "n": len(ms)}


def streaming_costs(runner: ModelRunner, window: torch.Tensor, evidence: str, repeats: int) -> dict[str, object]:
    """Feed the window second by second; time the last seconds' updates and cached forecasts."""
    n = window.shape[0]
    update_ms = []
    for t in range(n):
        start = time.perf_counter()
        runner.extend("p0", window[t], t)
        if t >= n - repeats * 4:
            update_ms.append((time.perf_counter() - start) * 1000)
    request = [ScoreRequest("p0", evidence)]
    cached = timed(lambda: runner.score(request), repeats)
    prefill = timed(lambda: runner.score(request, prefill=True), repeats)
    explain = timed(lambda: runner.explain(request[0], "at +300 s most likely sinus rhythm", 32), 1)
    cached_probs = runner.score(request)[0].option_logprobs
    full_probs = runner.score(request, prefill=True)[0].option_logprobs
    diff = max(
        float((a - b).abs().max())
        for qa, qb in zip(cached_probs, full_probs, strict=True)
        for a, b in zip(qa, qb, strict=True)
    )
    return {
        "update_per_second": summary(update_ms),
        "forecast_cached": summary(cached),
        "forecast_full_prefill": summary(prefill),
        "speedup_forecast_time": round(statistics.median(prefill) / statistics.median(cached), 2),
        "explain_32_tokens": summary(explain),
        "max_abs_logprob_diff_cached_vs_prefill": diff,
    }


def _score_one_by_one(runner: ModelRunner, requests: list[ScoreRequest]) -> None:
    for request in requests:
        runner.score([request])


def batched_throughput(
    runner: ModelRunner, window: torch.Tensor, evidence: str, sizes: list[int], repeats: int
) -> dict[str, object]:
    """Forecasts per second when B patients, each with its own 5-minute cache (primed through the public API), are
    scored in one padded batch; and the same B patients scored one call each, for comparison."""
    out: dict[str, object] = {}
    for b in sizes:
        for i in range(b):
            if f"b{i}" not in runner.patient_ids:
                runner.prime(f"b{i}", window, first_second=0)
        requests = [ScoreRequest(f"b{i}", evidence) for i in range(b)]
        ms = timed(partial(runner.score, requests), repeats)
        loop = timed(partial(_score_one_by_one, runner, requests), 1)
        out[str(b)] = {
            **summary(ms),
            "forecasts_per_s": round(b / (statistics.median(ms) / 1000), 2),
            "per_patient_loop_forecasts_per_s": round(b / (loop[0] / 1000), 2),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gemma3-270m")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--window-s", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each single-patient timing")
    parser.add_argument("--batch-repeats", type=int, default=2, help="repetitions of each batched timing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared 2-core box)")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    settings = LlmSettings(
        backbone=args.backbone,
        device=args.device,
        window_s=args.window_s,
        slack_s=60,
        horizons_s=(300,),
        num_threads=args.threads,
    )
    start = time.perf_counter()
    engine = ForecastEngine.load(settings, rebuild="inline")
    load_s = time.perf_counter() - start
    runner = engine.runner
    n_leads = len(settings.leads)
    window = torch.randn(args.window_s, n_leads, 64, generator=torch.Generator().manual_seed(0))
    evidence, evidence_source = evidence_text()
    with runner:
        single = streaming_costs(runner, window, evidence, args.repeats)
        row = runner._score_row(ScoreRequest("p0", evidence), prefill=True)[0]
        cached_row = runner._score_row(ScoreRequest("p0", evidence), prefill=False)[0]
        batched = batched_throughput(
            runner, window, evidence, [int(s) for s in args.batch_sizes.split(",")], args.batch_repeats
        )
    result = {
        "what": "LM runtime cost per forecast: full prefill vs streaming KV cache; batched forecasts/s",
        "backbone": engine.model_id,
        "model_version": engine.model_version,
        "device": str(next(runner.model.parameters()).device),
        "dtype": settings.dtype,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "window_s": args.window_s,
        "leads": list(settings.leads),
        "horizons_s": list(settings.horizons_s),
        "questions": len(runner.prompts.questions),
        "tokens_full_sequence": row.new.length,
        "tokens_cached_prefix": cached_row.prefix_meta.length,
        "tokens_run_at_forecast_time": cached_row.new.length,
        "embeddings": "random normal (cost does not depend on values); adapter untrained",
        "evidence_source": evidence_source,
        "repeats": args.repeats,
        "batch_repeats": args.batch_repeats,
        "load_average_at_start": os.getloadavg()[0],
        "update_timed_seconds": args.repeats * 4,
        "model_load_s": round(load_s, 1),
        "single_patient": single,
        "batched": batched,
        "batching": "patients padded into one batch: cached KV left-padded, question part right-padded",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
