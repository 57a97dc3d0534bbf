"""LM runtime benchmark: per-forecast cost of a full prefill vs the streaming KV cache, batched throughput, and
the cost of feeding new seconds to many patients' caches, batched vs one patient per call.

Backbone: Gemma 3 270M (dequantised from the Q4_K_M GGUF), float32, on whatever device ``--device`` picks (CPU by
default). Window: 5 minutes x 2 leads = 600 ECG tokens plus the prompt text. The ECG adapter is untrained and the
lead-second embeddings are random normal: cost does not depend on their values. Evidence text is the measurement
module's output on a synthetic sinus scenario (seed 1) when that module is present, else a fixed line of the same
format. Timings are medians over the stated repetitions; every number here is from this machine only.

Every patient of the batched sections has a cache of its own, primed from its own random window, and the windows
differ in length by up to 7 s (as live patients' caches do), so that a padded batch pays for its padding.

Run: ``python bench/llm_bench.py`` (writes bench/results/llm.json); ``--sections feed`` times only the feeding,
``--backbone tiny-random`` runs every section on the test backbone in seconds (a check of the bench, not a figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine_info import cpu_description  # the sibling module

from core.config import DEFAULT_CONFIG_PATH
from core.errors import EcgcastError
from llm_runtime.engine import ForecastEngine
from llm_runtime.runner import ModelRunner, NewSeconds, ScoreRequest
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


def probe_costs(engine: ForecastEngine, window: torch.Tensor, repeats: int, chunk_s: int) -> dict[str, object]:
    """The shipped probe forecaster's read path: a forecast on the streamed cache (what the agent runs every cadence)
    vs the same forecast on a fresh prefill of the same window (what it would cost without the cache); the window is
    fed in ``chunk_s``-second chunks, as the agent feeds it, and stays within window + slack, so the two must agree
    to float error."""
    from evaluation.lm import window_evidence
    from simulators.scenarios import generate_scenario

    runner, n = engine.runner, window.shape[0]
    rec = generate_scenario("sinus_stable", seed=1, minutes=n / 60, leads=("II", "V1"))
    evidence = window_evidence(rec.p_signal[-round(n * rec.fs) :], rec.fs, ["II", "V1"])
    request = [ScoreRequest("p0", evidence.text, evidence.trends)]

    def fresh() -> object:
        runner.prime("p0", window, first_second=0)
        return engine.forecast(request)[0]

    fresh_forecast = fresh()
    prefill = timed(fresh, repeats)
    runner.finish(["p0"])
    for first in range(0, n, chunk_s):
        runner.extend_seconds("p0", window[first : first + chunk_s], first)
    cached = timed(lambda: engine.forecast(request), repeats)
    streamed = engine.forecast(request)[0]
    diff = max(
        abs(getattr(streamed, kind)[h][c] - getattr(fresh_forecast, kind)[h][c])
        for kind in ("rhythm_probs", "onset_probs")
        for h in getattr(fresh_forecast, kind)
        for c in getattr(fresh_forecast, kind)[h]
    )
    cached_row, _, _, _ = runner._row_start("p0", prefill=False)
    fresh_row, _, _, _ = runner._row_start("p0", prefill=True)
    context = len(runner.prompts.context(n, evidence.text))
    runner.finish(["p0"])
    return {
        "forecast_cached": summary(cached),
        "forecast_full_prefill": summary(prefill),
        "speedup_forecast_time": round(statistics.median(prefill) / statistics.median(cached), 2),
        "max_abs_prob_diff_streamed_vs_fresh": diff,
        "tokens_full_prefill": len(fresh_row) + context,
        "tokens_run_at_forecast_time": len(cached_row) + context,
        "evidence_tokens_of_those": len(runner.prompts.ids(evidence.text)),
        "feed_chunk_s": chunk_s,
    }


def shipped_probe_costs(args: argparse.Namespace) -> dict[str, object]:
    """:func:`probe_costs` on the model ``--config`` ships (its adapter, leads and read-out), as the agent loads it."""
    from agent.settings import load_settings

    shipped = load_settings(args.config).llm
    update = {"window_s": args.window_s, "num_threads": args.threads, "dtype": args.dtype}
    settings = shipped.model_copy(update=update)
    engine = ForecastEngine.load(settings)
    if not engine.runner.prompts.probe:
        raise SystemExit(f"{args.config}: its model has no probe read-out (llm.adapter_dir)")
    window = torch.randn(args.window_s, len(settings.leads), 64, generator=torch.Generator().manual_seed(0))
    with engine.runner:
        out = probe_costs(engine, window, args.repeats, args.feed_seconds)
    return {"model_id": engine.model_id, "model_version": engine.model_version, "leads": list(settings.leads), **out}


def _score_one_by_one(runner: ModelRunner, requests: list[ScoreRequest]) -> None:
    for request in requests:
        runner.score([request])


def prime_patients(runner: ModelRunner, prefix: str, n: int, window_s: int) -> list[str]:
    """``n`` patients, each primed (one prefill) from its own random window of ``window_s - i % 8`` seconds."""
    n_leads = len(runner.prompts.leads)
    pids = []
    for i in range(n):
        seconds = window_s - i % 8
        window = torch.randn(seconds, n_leads, 64, generator=torch.Generator().manual_seed(1000 + i))
        runner.prime(f"{prefix}{i}", window, first_second=0)
        pids.append(f"{prefix}{i}")
    return pids


def batched_throughput(
    runner: ModelRunner, window_s: int, evidence: str, sizes: list[int], repeats: int
) -> dict[str, object]:
    """Forecasts per second when B patients, each with its own cache, are scored in one padded batch; and the same
    B patients scored one call each, for comparison."""
    out: dict[str, object] = {}
    for b in sizes:
        pids = prime_patients(runner, f"b{b}_", b, window_s)
        requests = [ScoreRequest(pid, evidence) for pid in pids]
        ms = timed(partial(runner.score, requests), repeats)
        loop = timed(partial(_score_one_by_one, runner, requests), 1)
        runner.finish(pids)
        out[str(b)] = {
            **summary(ms),
            "forecasts_per_s": round(b / (statistics.median(ms) / 1000), 2),
            "per_patient_loop_forecasts_per_s": round(b / (loop[0] / 1000), 2),
        }
    return out


def _next_feeds(runner: ModelRunner, pids: list[str], n_seconds: int, seed: int) -> list[NewSeconds]:
    """The next ``n_seconds`` random seconds of every patient."""
    n_leads = len(runner.prompts.leads)
    gen = torch.Generator().manual_seed(seed)
    feeds = []
    for pid in pids:
        first = runner.window_span(pid)[0] + 1
        feeds.append(NewSeconds(pid, torch.randn(n_seconds, n_leads, 64, generator=gen), first))
    return feeds


def _feed_one_by_one(runner: ModelRunner, feeds: list[NewSeconds]) -> None:
    for feed in feeds:
        runner.extend_seconds(feed.patient_id, feed.seconds, feed.first_t)


def feeding_costs(
    runner: ModelRunner, patients: int, new_seconds: int, prime_s: int, repeats: int
) -> dict[str, object]:
    """Cost per patient-second of appending ``new_seconds`` to each of ``patients`` caches: one ``extend_seconds``
    per patient vs one ``extend_batch`` (``feed_batch`` patients per forward). Rounds alternate between the two so
    that both see the same machine load; every round appends to the same patients' own caches."""
    headroom = runner.config.window_s + runner.config.slack_s - 2 * repeats * new_seconds
    if prime_s > headroom:
        raise SystemExit(f"--feed-prime-s {prime_s}: at most {headroom}, or the timed feeds would slide the window")
    pids = prime_patients(runner, "f", patients, prime_s)
    one_ms: list[float] = []
    batch_ms: list[float] = []
    for r in range(repeats):
        one_ms += timed(partial(_feed_one_by_one, runner, _next_feeds(runner, pids, new_seconds, 2 * r)), 1)
        batch_ms += timed(partial(runner.extend_batch, _next_feeds(runner, pids, new_seconds, 2 * r + 1)), 1)
    cached = [runner.cached_seconds(pid) for pid in pids]
    runner.finish(pids)
    patient_seconds = patients * new_seconds

    def per_patient_second(ms: list[float]) -> dict[str, float | int]:
        return summary([m / patient_seconds for m in ms])

    return {
        "patients": patients,
        "new_seconds_per_patient": new_seconds,
        "cached_seconds_after": [min(cached), max(cached)],
        "feed_batch": runner.config.feed_batch,
        "one_at_a_time_per_patient_second": per_patient_second(one_ms),
        "batched_per_patient_second": per_patient_second(batch_ms),
        "speedup_batched": round(statistics.median(one_ms) / statistics.median(batch_ms), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gemma3-270m")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--window-s", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each single-patient timing")
    parser.add_argument("--batch-repeats", type=int, default=2, help="repetitions of each batched timing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared 2-core box)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="the LM's dtype")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument(
        "--sections",
        default="single,batched,feed",
        help="any of single, batched, feed (the generative read-out, untrained adapter) and probe (the shipped "
        "forecaster of --config)",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="the probe section's model")
    parser.add_argument("--feed-patients", type=int, default=32, help="patients fed per round in the feed section")
    parser.add_argument("--feed-seconds", type=int, default=10, help="new seconds per patient per round")
    parser.add_argument("--feed-prime-s", type=int, default=240, help="seconds in each patient's cache at start")
    parser.add_argument("--feed-repeats", type=int, default=3, help="rounds of each feeding mode (alternating)")
    parser.add_argument("--feed-batch", type=int, default=0, help="patients per batched forward (0: the runner's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    settings = LlmSettings(
        backbone=args.backbone,
        device=args.device,
        window_s=args.window_s,
        slack_s=60,
        horizons_s=(300,),
        num_threads=args.threads,
        dtype=args.dtype,
    )
    start = time.perf_counter()
    engine = ForecastEngine.load(settings, slide="rebuild")
    load_s = time.perf_counter() - start
    runner = engine.runner
    if args.feed_batch:
        runner.config = dataclasses.replace(runner.config, feed_batch=args.feed_batch)
    n_leads = len(settings.leads)
    window = torch.randn(args.window_s, n_leads, 64, generator=torch.Generator().manual_seed(0))
    evidence, evidence_source = evidence_text()
    sections = set(args.sections.split(","))
    load_at_start = os.getloadavg()
    measured: dict[str, object] = {}
    if "probe" in sections:
        measured["probe"] = shipped_probe_costs(args)
    with runner:
        if "single" in sections:
            measured["single_patient"] = streaming_costs(runner, window, evidence, args.repeats)
            row = runner._score_row(ScoreRequest("p0", evidence), prefill=True)[0]
            cached_row = runner._score_row(ScoreRequest("p0", evidence), prefill=False)[0]
            measured["tokens_full_sequence"] = row.new.length
            measured["tokens_cached_prefix"] = cached_row.prefix_meta.length
            measured["tokens_run_at_forecast_time"] = cached_row.new.length
            runner.finish(["p0"])
        if "batched" in sections:
            sizes = [int(size) for size in args.batch_sizes.split(",")]
            measured["batched"] = batched_throughput(runner, args.window_s, evidence, sizes, args.batch_repeats)
            measured["batching"] = "patients padded into one batch: cached KV left-padded, question part right-padded"
        if "feed" in sections:
            measured["feeding"] = feeding_costs(
                runner, args.feed_patients, args.feed_seconds, args.feed_prime_s, args.feed_repeats
            )
    result = {
        "what": "LM runtime: forecast cost, full prefill vs streaming KV cache; batched forecasts/s; batched feeding",
        "backbone": engine.model_id,
        "model_version": engine.model_version,
        "device": str(next(runner.model.parameters()).device),
        "dtype": settings.dtype,
        "torch_threads": torch.get_num_threads(),
        "machine": cpu_description(),
        "torch": torch.__version__,
        "window_s": args.window_s,
        "leads": list(settings.leads),
        "horizons_s": list(settings.horizons_s),
        "questions": len(runner.prompts.questions),
        "embeddings": "random normal (cost does not depend on values); adapter untrained",
        "evidence_source": evidence_source,
        "repeats": args.repeats,
        "batch_repeats": args.batch_repeats,
        "load_average_at_start": load_at_start[0],
        "load_average_1_5_15_at_start": [round(x, 2) for x in load_at_start],
        "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        "update_timed_seconds": args.repeats * 4,
        "model_load_s": round(load_s, 1),
        "sections": sorted(sections),
        **measured,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
