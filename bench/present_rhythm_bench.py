"""Present-rhythm alerts ("AF now", "VT now") on synthetic scenarios: delay after onset, and alerts on stable records.

``python bench/present_rhythm_bench.py [--window 20 --every 5 --minutes 4 --noise low --seeds 20 --decoy-seeds 8]
[--scenarios af_onset,sinus_stable] [--out PATH]``
replays each record through the agent's own measurement path off-line (the last ``--window`` seconds every
``--every`` seconds: ``analyse_best_lead``, ``rhythm_spans``, ``build_evidence``) into ``AlertPolicy`` with the unit
defaults and a quiet forecast, prints one line per record (onset, episode length, alerts with their stream time and
delay) and a summary, and writes ``bench/results/present_rhythm_<window>s_<noise>.json``. docs/ALERTS.md §13 quotes
the defaults (low noise), ``--noise high --scenarios sinus_stable,sinus_ectopy,sinus_tachy_exertion`` and
``--window 300 --every 60 --minutes 12 --noise medium --seeds 6 --decoy-seeds 4``.

Everything here is SYNTHETIC: the scenarios' rhythms are scripted, so the numbers say how the detector reads the
generator's AF and VT, not how it performs on patients.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.alerts import AlertPolicy, AlertSettings, ForecastSeen, PatientAlerts, build_evidence
from core.measurements import analyse_best_lead, rhythm_spans
from llm_runtime.forecast import Forecast
from simulators.records import AnnotatedRecord
from simulators.scenarios import generate_scenario

ONSET_SCENARIOS = ("af_onset", "vt_onset", "flutter_onset")
DECOY_SCENARIOS = ("sinus_stable", "sinus_ectopy", "sinus_tachy_exertion")
RESULTS = Path(__file__).resolve().parent / "results"


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


def quiet_forecast(patient_id: str, t_end: float) -> Forecast:
    """A forecast that raises nothing: the bench measures present rhythms only."""
    probs = {60: {"af": 0.01, "flutter": 0.01, "vt": 0.01}}
    return Forecast.model_validate(
        {
            "patient_id": patient_id,
            "t_forecast": t_end,
            "window_s": 60,
            "horizons_s": (60,),
            "rhythm_probs": {60: {"sinus": 0.97, "af": 0.01, "flutter": 0.01, "vt": 0.01}},
            "onset_probs": probs,
            "model_id": "bench",
            "model_version": "0",
            "latency_ms": 0.0,
        }
    )


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
        state, new = policy.decide(state, ForecastSeen(float(t_end), quiet_forecast("bench", t_end), evidence))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=int, default=20, help="seconds each measurement reads (llm.window_s)")
    parser.add_argument("--every", type=int, default=5, help="seconds between measurements (forecast.cadence_s)")
    parser.add_argument("--minutes", type=float, default=4.0, help="record length")
    parser.add_argument("--noise", default="low", choices=("none", "low", "medium", "high"))
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 of each onset scenario")
    parser.add_argument("--decoy-seeds", type=int, default=8, help="seeds 0..N-1 of each stable or decoy scenario")
    parser.add_argument("--scenarios", default="", help="comma-separated subset of the scenarios (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default under bench/results/)")
    args = parser.parse_args(argv)
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
