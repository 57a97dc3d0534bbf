"""What the best possible forecaster could do on a generator: an oracle told when each scripted precursor began.

Generator v2 (docs/SIMULATORS.md) builds its decoys (``ectopy_rise_fall``, ``precursor_no_onset``) with the same
precursor builders, durations and strengths as the precursors of real onsets, so until a precursor stops nothing
in the ECG tells a decoy from a warning. This module measures what that costs, so the forecaster issue's bars can
be judged against what is possible at all on the yardstick, not only against what a model reached.

The oracle sees more than any model: the second each scripted precursor began and its kind (not its duration, nor
whether it ends in an onset: that is what a forecaster is asked).

- **Alarm**: it raises once, ``delay_s`` after a precursor of a kind it watches began. It is credited with an onset
  when that raise falls at least 2 min before the onset, however early (kinder than the replay's 5-min look-back),
  and charged one false alert for a decoy precursor that lasted at least ``delay_s``; the held or falling stretch
  after a decoy's rise, which a model would also sit through, is never charged (kinder again). Every subset of
  kinds and a grid of delays is tried.
- **Ranking**: for each benchmark sample, the oracle's state at the anchor (kind of the precursor under way, if any,
  and how long it has run) is scored with the frequency of an onset within the horizon in that state on the
  training patients; AUROC on the test patients, as the yardstick tables compute it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Final

import numpy as np

from evaluation.data import EvalData, Sample, frozen_lm_subsample
from evaluation.metrics import auroc
from evaluation.replay import poisson_rate, wilson
from simulators.scenarios import scenario_script

__all__ = [
    "ScriptedPrecursor",
    "alarm_frontier",
    "ceiling_report",
    "precursor_state",
    "ranking_ceiling",
    "scripted_precursors",
]

LEAD_S: Final = 120.0  # an onset counts as warned when the alert came at least this long before it
DELAYS_S: Final[tuple[float, ...]] = (0.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0)
_ELAPSED_BINS_S: Final = np.array([60.0, 120.0, 300.0, 600.0, 1200.0])


@dataclass(frozen=True)
class ScriptedPrecursor:
    """One scripted precursor: before an onset, or a decoy's rise that never converts (``onset_s`` None)."""

    record_id: str
    split: str
    group: str
    kind: str
    start_s: float
    duration_s: float
    onset_s: float | None


@dataclass(frozen=True)
class GeneratorTruth:
    """The scripted precursors of a benchmark's records, and how long its non-converting records run."""

    precursors: list[ScriptedPrecursor]
    onsets_without_precursor: dict[str, int]  # per split
    quiet_days: dict[str, float]  # per split: patient-days of records that never convert


def _record_precursor(
    record_id: str, split: str, info: dict[str, Any], spec: dict[str, Any]
) -> tuple[ScriptedPrecursor | None, bool]:
    """The record's scripted precursor (None: it has none), and whether the record converts."""
    origin = info["origin"]
    script = scenario_script(origin["scenario"], int(origin["seed"]), spec["minutes"], spec["fs"], origin["generator"])
    meta = script.meta
    kind = str(meta.get("precursor_kind") or ("rising ectopy" if meta.get("precursor_strength") else "none"))
    duration = float(meta.get("precursor_duration_s") or 0.0)
    onset = script.onset_s
    if onset is not None:
        if kind == "none" or not duration:
            return None, True
        return ScriptedPrecursor(record_id, split, origin["scenario"], kind, onset - duration, duration, onset), True
    if meta.get("decoy_kind") in ("rise_fall", "no_onset"):
        start = float(meta["precursor_start_s"])
        return ScriptedPrecursor(record_id, split, origin["scenario"], kind, start, duration, None), False
    return None, False


def scripted_precursors(data: EvalData) -> GeneratorTruth:
    """Every record's script, regenerated from the spec (no signal is rendered)."""
    meta = data.meta
    if meta.get("source") != "synthetic":
        raise ValueError("the ceiling reads generator scripts: it needs a synthetic benchmark")
    spec, split_of = meta["spec"], {r["record_id"]: r["split"] for r in data.bench.index}
    precursors: list[ScriptedPrecursor] = []
    without: dict[str, int] = defaultdict(int)
    quiet: dict[str, float] = defaultdict(float)
    for record_id, info in sorted(meta["records"].items()):
        split = split_of[record_id]
        found, converts = _record_precursor(record_id, split, info, spec)
        if found is not None:
            precursors.append(found)
        if converts and found is None:
            without[split] += 1
        if not converts:
            quiet[split] += info["sig_len"] / info["fs"] / 86400.0
    return GeneratorTruth(precursors, dict(without), dict(quiet))


def _alarm_row(
    precursors: Sequence[ScriptedPrecursor], quiet_days: float, kinds: frozenset[str], delay_s: float
) -> dict[str, Any]:
    warned = [p for p in precursors if p.onset_s is not None]
    caught = sum(p.kind in kinds and p.duration_s >= delay_s + LEAD_S for p in warned)
    false = sum(p.kind in kinds and p.duration_s >= delay_s for p in precursors if p.onset_s is None)
    return {
        "kinds": sorted(kinds),
        "delay_s": delay_s,
        "onsets_with_precursor": len(warned),
        "alerted_2min_ahead": caught,
        "sensitivity": caught / len(warned) if warned else None,
        "sensitivity_ci": wilson(caught, len(warned)),
        "false_alerts": false,
        "false_alerts_per_patient_day": false / quiet_days if quiet_days else None,
        "false_alerts_per_patient_day_ci": poisson_rate(false, quiet_days),
    }


def alarm_frontier(truth: GeneratorTruth, splits: Sequence[str]) -> dict[str, Any]:
    """The oracle alarm on these splits: every (kinds, delay), and the two points the replay bar asks about."""
    precursors = [p for p in truth.precursors if p.split in splits]
    quiet_days = sum(truth.quiet_days.get(s, 0.0) for s in splits)
    kinds = sorted({p.kind for p in precursors})
    subsets = [frozenset(c) for n in range(1, len(kinds) + 1) for c in combinations(kinds, n)]
    rows = [_alarm_row(precursors, quiet_days, s, d) for s in subsets for d in DELAYS_S]
    reaching = [r for r in rows if (r["sensitivity"] or 0.0) >= 0.8]
    quiet_enough = [r for r in rows if (r["false_alerts_per_patient_day"] or 0.0) <= 2.0]
    return {
        "splits": list(splits),
        "non_converting_patient_days": round(quiet_days, 3),
        "decoy_precursors": sum(p.onset_s is None for p in precursors),
        "onsets_without_precursor": sum(truth.onsets_without_precursor.get(s, 0) for s in splits),
        "watch_everything": [r for r in rows if len(r["kinds"]) == len(kinds)],
        "fewest_false_at_80pct": min(reaching, key=lambda r: r["false_alerts"]) if reaching else None,
        "most_caught_at_2_per_day": max(quiet_enough, key=lambda r: r["alerted_2min_ahead"]) if quiet_enough else None,
    }


def precursor_state(precursors: Sequence[ScriptedPrecursor], anchor_s: float) -> tuple[str, int]:
    """(kind of the precursor under way at the anchor, elapsed-time bin), or ("none", 0)."""
    for p in precursors:
        if p.start_s <= anchor_s < p.start_s + p.duration_s:
            return p.kind, int(np.searchsorted(_ELAPSED_BINS_S, anchor_s - p.start_s))
    return "none", 0


def ranking_ceiling(
    data: EvalData, truth: GeneratorTruth, arrhythmia: str = "af", horizon_s: int = 300
) -> dict[str, Any]:
    """The oracle's onset AUROC per window: on every test sample, and on the frozen LM subsample."""
    by_record: dict[str, list[ScriptedPrecursor]] = defaultdict(list)
    for p in truth.precursors:
        by_record[p.record_id].append(p)

    def state(s: Sample) -> tuple[str, int]:
        return precursor_state(by_record.get(s.record_id, []), s.anchor_s)

    frozen = frozen_lm_subsample(data.bench) or set()
    out: dict[str, Any] = {"arrhythmia": arrhythmia, "horizon_s": horizon_s, "full": {}, "lm": {}}
    for w in data.windows():
        counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        for s in data.samples("train", (w, horizon_s)):
            seen = counts[state(s)]
            seen[0] += s.onset[arrhythmia]
            seen[1] += 1
        test = data.samples("test", (w, horizon_s))
        scores = [(positives + 0.5) / (n + 1.0) for positives, n in (counts[state(s)] for s in test)]
        labels = [s.onset[arrhythmia] for s in test]
        lm = [i for i, s in enumerate(test) if s.key in frozen]
        out["full"][str(w)] = auroc(labels, scores)
        out["lm"][str(w)] = auroc([labels[i] for i in lm], [scores[i] for i in lm]) if lm else None
    for part in ("full", "lm"):
        values = [v for v in out[part].values() if v is not None]
        out[f"{part}_mean"] = float(np.mean(values)) if values else None
    return out


def ceiling_report(data: EvalData) -> dict[str, Any]:
    """The oracle's alarm frontier (test split, and every split) and its onset ranking at h = 300 s."""
    truth = scripted_precursors(data)
    return {
        "what": "an oracle told when each scripted precursor began and its kind (docs/EVALUATION.md, 'Ceiling')",
        "alarm": {
            "test": alarm_frontier(truth, ["test"]),
            "all": alarm_frontier(truth, ["train", "val", "test"]),
        },
        "ranking": {cls: ranking_ceiling(data, truth, cls) for cls in ("af", "flutter", "vt")},
        "precursors": [asdict(p) for p in truth.precursors],
    }
