"""Present-rhythm alerts ("AF now", "VT now") on synthetic records: delay after onset, misses and false alerts.

``python bench/present_rhythm_bench.py [--window 20 --every 5 --minutes 4 --noise low --seeds 20 --decoy-seeds 8]
[--scenarios af_onset,sinus_stable] [--out PATH]``
replays each record through the agent's own measurement path off-line (the last ``--window`` seconds every
``--every`` seconds: ``analyse_best_lead``, ``rhythm_spans``, ``build_evidence``) into ``AlertPolicy`` with the unit
defaults and a quiet forecast, prints one line per record (onset, episode length, alerts with their stream time and
delay) and a summary, and writes ``bench/results/present_rhythm_<window>s_<noise>.json``. docs/ALERTS.md §13 quotes
the defaults (low noise), ``--noise high --scenarios sinus_stable,sinus_ectopy,sinus_tachy_exertion`` and
``--window 300 --every 60 --minutes 12 --noise medium --seeds 6 --decoy-seeds 4``.

``python bench/present_rhythm_bench.py --data runs/bench/synthetic-v2-yardstick --data runs/second-source
[--split test] [--limit N] [--out docs/present_rhythm.json]`` scores instead the test records of built benchmarks
(a built benchmark dir, a spec name or a WFDB dir, opened as ``eval transfer`` opens it, so the split is the same)
with the agent's own settings from config/default.yaml (300-s window every 60 s, the quality gate):
per arrhythmia, episodes detected (Wilson 95 % CI), false detections per hour of the time not in it (exact Poisson
95 % CI) and the delay after onset (``evaluation.present_rhythm`` states the rules). Sources already in ``--out``
and not scored this run are kept, so each source can be scored by its own run; ``--rescore`` recomputes the stored
summaries from the stored per-record events (no replay). docs/EVALUATION.md quotes it.

Everything here is SYNTHETIC: the scenarios' rhythms are scripted, so the numbers say how the detector reads the
generator's AF and VT, not how it performs on patients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.alerts import AlertPolicy, AlertSettings, ForecastSeen, PatientAlerts, build_evidence
from core.measurements import analyse_best_lead, rhythm_spans
from evaluation.data import EvalData, open_benchmark, record_truth
from evaluation.present_rhythm import (
    RULES,
    Episode,
    PresentConfig,
    PresentEvent,
    RecordScore,
    agent_config,
    quiet_forecast,
    record_kind,
    score_record,
    summarise,
)
from simulators.records import AnnotatedRecord
from simulators.scenarios import generate_scenario

ONSET_SCENARIOS = ("af_onset", "vt_onset", "flutter_onset")
DECOY_SCENARIOS = ("sinus_stable", "sinus_ectopy", "sinus_tachy_exertion")
RESULTS = Path(__file__).resolve().parent / "results"
BENCH_DIR = Path("runs/bench")  # where ``eval transfer`` builds a WFDB dir's benchmark (its default --bench-dir)
DOCS_JSON = Path(__file__).resolve().parents[1] / "docs" / "present_rhythm.json"


@dataclass(frozen=True)
class RecordResult:
    scenario: str
    seed: int
    onset_s: float | None  # the scripted onset (AF, AFL or VT), None for a decoy
    episode_s: float | None  # how long the scripted VT lasts (AF and flutter last to the record's end)
    alerts: list[tuple[str, str, float]]  # (event type, arrhythmia, stream time of the measurement)

    def delays(self) -> list[float]:
        """Seconds from the onset to each present-rhythm alert raised."""
        if self.onset_s is None:
            return []
        return [round(t - self.onset_s, 1) for kind, _, t in self.alerts if kind == "new"]


def replay(record: AnnotatedRecord, window_s: int, every_s: int) -> list[tuple[str, str, float]]:
    """Every present-rhythm lifecycle event of one record, measured as the agent measures."""
    policy, state = AlertPolicy(AlertSettings.model_validate({})), PatientAlerts("bench")
    events: list[tuple[str, str, float]] = []
    n = round(window_s * record.fs)
    for t_end in range(window_s, int(record.duration_s) + 1, every_s):
        end = round(t_end * record.fs)
        analysis = analyse_best_lead(record.p_signal[end - n : end], record.fs, record.sig_name)
        quality = dict.fromkeys(record.sig_name, "good")
        evidence = build_evidence(
            analysis.measurements, None, quality, float(window_s), t_end_s=float(t_end), rhythm=rhythm_spans(analysis)
        )
        state, new = policy.decide(state, ForecastSeen(float(t_end), quiet_forecast(t_end), evidence))
        events += [(e.type, e.after.arrhythmia or "", float(t_end)) for e in new if e.after.kind == "present_rhythm"]
    return events


def run(args: argparse.Namespace) -> list[RecordResult]:
    results = []
    plan = [(s, args.seeds) for s in ONSET_SCENARIOS] + [(s, args.decoy_seeds) for s in DECOY_SCENARIOS]
    plan = [(s, n) for s, n in plan if not args.scenarios or s in args.scenarios.split(",")]
    for scenario, seeds in plan:
        for seed in range(seeds):
            record = generate_scenario(
                scenario, seed=seed, minutes=args.minutes, fs=250.0, leads=("II", "V1"), noise=args.noise
            )
            onset = next(iter(record.onsets.values()), None)
            episode = record.meta.get("vt_duration_s")
            result = RecordResult(
                scenario,
                seed,
                None if onset is None else round(float(onset), 1),
                None if episode is None else round(float(episode), 1),
                replay(record, args.window, args.every),
            )
            print(f"{scenario:22s} {seed:3d} onset {result.onset_s} episode {result.episode_s} "
                  f"alerts {result.alerts} delays {result.delays()}", flush=True)  # fmt: skip
            results.append(result)
    return results


def summary(results: list[RecordResult]) -> dict[str, Any]:
    """Per scenario: records, records with a raised alert, and the range of delays after onset."""
    out: dict[str, Any] = {}
    for scenario in (*ONSET_SCENARIOS, *DECOY_SCENARIOS):
        rows = [r for r in results if r.scenario == scenario]
        if not rows:
            continue
        delays = [d for r in rows for d in r.delays()]
        raised = sum(1 for r in rows if any(kind == "new" for kind, _, _ in r.alerts))
        out[scenario] = {
            "records": len(rows),
            "raised": raised,
            "delay_s": [min(delays), max(delays)] if delays else None,
        }
    return out


def score_source(data_arg: str, split: str, limit: int, config: PresentConfig) -> dict[str, Any]:
    """One benchmark's ``split`` records replayed and scored, opened as ``eval transfer`` opens it (same split)."""
    data = EvalData(open_benchmark(data_arg, BENCH_DIR, workers=1))
    record_ids = data.record_ids(split)[: limit or None]
    scores = []
    started = time.perf_counter()
    for i, record_id in enumerate(record_ids, 1):
        truth = record_truth(data, record_id).changes
        score = score_record(data.record(record_id), truth, config, record_kind(data, record_id))
        scores.append(score)
        print(f"[{i}/{len(record_ids)}] {record_id} {score.group} episodes "
              f"{[(e.cls, round(e.start_s), round(e.duration_s)) for e in score.episodes]} "
              f"events {[(e.kind, e.arrhythmia, e.at_s) for e in score.events]} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    return {
        "data": data_arg,
        "benchmark": str(data.bench.root),
        "origin": data.meta.get("source"),
        "split": split,
        "record_ids": record_ids,
        "summary": summarise(scores, config),
        "records": [
            {"record_id": s.record_id, "group": s.group, "duration_s": s.duration_s}
            | {"episodes": [asdict(e) for e in s.episodes], "events": [asdict(e) for e in s.events]}
            for s in scores
        ],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def rescored(source: dict[str, Any], config: PresentConfig) -> dict[str, Any]:
    """A source's summary again from its stored per-record episodes and events: a change of the scoring rules
    needs no replay (the replay is the costly part, about 10 s of CPU per 40-min record)."""
    scores = [
        RecordScore(
            r["record_id"],
            r["group"],
            r["duration_s"],
            [Episode(**e) for e in r["episodes"]],
            [PresentEvent(**e) for e in r["events"]],
        )
        for r in source["records"]
    ]
    return source | {"summary": summarise(scores, config)}


def run_benchmarks(args: argparse.Namespace) -> int:
    """Score each ``--data`` source and merge it into ``--out`` (other sources already there are kept);
    ``--rescore`` recomputes every stored source's summary instead."""
    config = agent_config()
    out: Path = args.out or DOCS_JSON
    body: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    sources = body.get("sources", {})
    if args.rescore:
        sources = {name: rescored(source, config) for name, source in sources.items()}
    for data_arg in args.data:
        sources[Path(data_arg).name] = score_source(data_arg, args.split, args.limit, config)
        print(json.dumps(_headline(sources[Path(data_arg).name]["summary"]), indent=1), flush=True)
    body = {
        "synthetic": True,
        "what": "present-rhythm alerts replayed as the agent measures, scored per arrhythmia (bench docstring)",
        "config": config.as_dict(),
        "rules": RULES,
        "sources": sources,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=1) + "\n")
    return 0


def _headline(value: Any) -> Any:
    """The summary without its per-episode and per-raise lists, for the console."""
    if isinstance(value, dict):
        return {k: _headline(v) for k, v in value.items() if k not in ("outcomes", "raises")}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", action="append", default=[], help="score this benchmark's records instead (repeat)")
    parser.add_argument("--split", default="test", help="with --data: the split scored")
    parser.add_argument("--limit", type=int, default=0, help="with --data: the first N records only (0: all)")
    parser.add_argument("--rescore", action="store_true", help="recompute the summaries stored in --out, no replay")
    parser.add_argument("--window", type=int, default=20, help="seconds each measurement reads (llm.window_s)")
    parser.add_argument("--every", type=int, default=5, help="seconds between measurements (forecast.cadence_s)")
    parser.add_argument("--minutes", type=float, default=4.0, help="record length")
    parser.add_argument("--noise", default="low", choices=("none", "low", "medium", "high"))
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 of each onset scenario")
    parser.add_argument("--decoy-seeds", type=int, default=8, help="seeds 0..N-1 of each stable or decoy scenario")
    parser.add_argument("--scenarios", default="", help="comma-separated subset of the scenarios (default: all)")
    parser.add_argument(
        "--out", type=Path, default=None, help="results JSON (default: bench/results/, with --data docs/)"
    )
    args = parser.parse_args(argv)
    if args.data or args.rescore:
        return run_benchmarks(args)
    results = run(args)
    table = summary(results)
    print(json.dumps(table, indent=2))
    out = args.out or RESULTS / f"present_rhythm_{args.window}s_{args.noise}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {"synthetic": True, "args": vars(args) | {"out": str(out)}, "summary": table}
    out.write_text(json.dumps(body | {"records": [asdict(r) for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
