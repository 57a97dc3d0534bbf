"""How often the shipped model's rationale passes the alert guard, on the windows where alerts would come from.

For the first records by id of six scenario groups of the yardstick's test (or validation) patients (generator v2;
synthetic, not clinical), one 300-s
window ending 2 min before its onset (converting records) or at 60 % of the record (decoys), read as the agent
reads it: the shipped encoder's tokens for the LM's leads, the measured evidence line, a forecast, then the
rationale about the arrhythmia with the highest onset risk (what an alert would carry) and the alert guard
(`agent.alerts.check_rationale`) against the same measurements. Prints a summary and writes JSON.

    python bench/rationale_bench.py --out bench/results/rationale.json      # ~4 min on one core

The worked notes of the prompt (llm_runtime.prompts.RATIONALE_NOTES) were chosen on ``--split val``; the test
split is the measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS = ("af_onset", "flutter_onset", "vt_onset", "precursor_no_onset", "ectopy_rise_fall", "steady_ectopy")


def _windows(data: Any, split: str, per_group: int) -> list[tuple[str, int]]:
    """(record id, window end second) per chosen record: the first ``per_group`` of each group by id."""
    from evaluation.data import ONSETS, record_truth

    chosen = []
    for group in GROUPS:
        ids = [r for r in data.record_ids(split) if data.record(r).group == group][:per_group]
        for record_id in ids:
            rec = data.record(record_id)
            onsets = [t for t, c in record_truth(data, record_id).changes[1:] if c in ONSETS]
            end = int(onsets[0] - 120) if onsets else int(0.6 * rec.p_signal.shape[0] / rec.fs)
            if end >= 300:
                chosen.append((record_id, end))
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic-v2-yardstick", help="spec name or built benchmark dir")
    parser.add_argument("--bench-dir", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--split", default="test", choices=["val", "test"], help="whose records (val: for tuning)")
    parser.add_argument("--per-group", type=int, default=5, help="records per scenario group")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rationale.json")
    args = parser.parse_args()

    import torch

    from agent.alerts import check_rationale
    from agent.settings import load_settings
    from evaluation.data import EvalData, open_benchmark
    from evaluation.embed import Embedder
    from evaluation.replay import measured_evidence, wilson
    from llm_runtime.engine import ForecastEngine
    from llm_runtime.runner import ScoreRequest

    torch.set_num_threads(1)
    settings = load_settings()
    engine = ForecastEngine.load(settings.llm, slide="rebuild")
    data = EvalData(open_benchmark(args.data, args.bench_dir))
    if settings.llm.adapter_dir is None:
        raise SystemExit("llm.adapter_dir is null: no trained adapter to explain")
    embedder = Embedder(settings.llm.adapter_dir / "encoder.pt")
    window_s, leads = int(settings.llm.window_s), tuple(settings.llm.leads)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for record_id, end in _windows(data, args.split, args.per_group):
        record = data.record(record_id)
        emb = embedder(record)
        evidence, measured = measured_evidence(record, emb, end, window_s)
        engine.runner.prime("p", torch.from_numpy(emb.lm_seconds(leads, end - window_s, end)), end - window_s)
        request = ScoreRequest("p", measured.text, measured.trends)
        (forecast,) = engine.forecast([request])
        arrhythmia = max(forecast.peak_risk, key=forecast.peak_risk.__getitem__)
        explained = engine.with_rationale(request, forecast, arrhythmia)
        engine.runner.finish(["p"])
        rationale = explained.explanation
        problem = check_rationale(rationale, arrhythmia, evidence) if rationale else explained.explanation_note
        rows.append(
            {
                "record_id": record_id,
                "group": record.group,
                "window_end_s": end,
                "arrhythmia": arrhythmia,
                "risk": round(forecast.peak_risk[arrhythmia], 3),
                "evidence": measured.text,
                "rationale": rationale,
                "guard": problem,
                "passed": rationale is not None and problem is None,
            }
        )
        verdict = "PASS" if rows[-1]["passed"] else "drop"
        print(f"{record.group:18s} {arrhythmia:7s} {verdict}  {rationale or problem}")
    passed = sum(r["passed"] for r in rows)
    result = {
        "what": f"alert-path rationales that pass the alert guard (synthetic: generator v2, {args.split} patients)",
        "command": f"python bench/rationale_bench.py --split {args.split}",
        "model": engine.model_id,
        "windows": len(rows),
        "passed": passed,
        "passed_ci": wilson(passed, len(rows)),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
