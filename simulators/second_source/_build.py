"""Render one second-source record (ECGSYN beats at planned times, atrial activity, neurokit2 noise) and write a
folder of them with a manifest.

Labels are exact by construction: each beat annotation is the sample where that beat's template has its main QRS
deflection, and each rhythm change sits on the first beat of the new rhythm (MIT-BIH convention).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Final

import neurokit2 as nk
import numpy as np
import numpy.typing as npt
import structlog
from scipy.signal import butter, sosfiltfilt
from scipy.signal.windows import tukey

from core.errors import SignalError
from simulators.records import AnnotatedRecord, BeatAnnotations, RhythmSegment
from simulators.second_source._plan import KINDS, Kind, Plan, draw_plan
from simulators.second_source._rhythm import Sequence, sequence_beats
from simulators.second_source._templates import TemplateBank, draw_morphology

log = structlog.get_logger(__name__)

LABEL: Final = (
    "SYNTHETIC: made by third-party generators (neurokit2 ECGSYN beats and noise) with the second-source rhythm "
    "model; not clinical data, not made by simulators.scenarios"
)
MANIFEST: Final = "manifest.json"
_LEAD: Final = "II"


@dataclass(frozen=True)
class SecondSourceRecord:
    """A rendered record, the noise-free signal behind it and its atrial (f/F-wave) part, and its plan.

    Tests check the beat labels on ``clean_mv - atrial_mv``, the ventricular activity the labels describe.
    """

    record: AnnotatedRecord
    clean_mv: npt.NDArray[np.float64]
    atrial_mv: npt.NDArray[np.float64]
    plan: Plan


def _atrial_activity(
    seq: Sequence, plan: Plan, bank: TemplateBank, rng: np.random.Generator, n: int
) -> npt.NDArray[np.float64]:
    """AF f-waves (4-9 Hz band-limited noise, waxing and waning) and flutter F-wave trains, (n,) mV."""
    fs = bank.fs
    out = np.zeros(n)
    sos = butter(2, [4.0, 9.0], btype="bandpass", fs=fs, output="sos")
    for start_s, end_s in seq.fibrillation:
        lo, hi = max(0, round(start_s * fs)), min(n, round(end_s * fs))
        if plan.fwave_mv <= 0 or hi - lo < round(fs):
            continue
        noise = sosfiltfilt(sos, rng.standard_normal(hi - lo))
        t = np.arange(hi - lo) / fs
        swell = 1.0 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(5.0, 20.0) + rng.uniform(0, 2 * np.pi))
        out[lo:hi] += tukey(hi - lo, min(1.0, 2 * fs / (hi - lo))) * swell * noise * plan.fwave_mv / noise.std()
    for first_s, end_s, period_s in seq.flutter:
        lo, hi = round(first_s * fs), min(n, round(end_s * fs))
        period = round(period_s * fs)
        cycle = bank.flutter_wave(period, plan.flutter_mv)
        reps = -(-(hi - lo) // period)
        out[lo:hi] += np.tile(cycle, reps)[: hi - lo]
    return out


def _rhythms(changes: list[tuple[float, str]], fs: float, n: int) -> list[RhythmSegment]:
    """Contiguous segments from (time, aux) changes; a later change on the same sample wins."""
    starts: dict[int, str] = {}
    for t_s, aux in changes:
        if (sample := round(t_s * fs)) < n:
            starts[sample] = aux
    merged: list[tuple[int, str]] = []
    for sample, aux in sorted(starts.items()):
        if not merged or aux != merged[-1][1]:
            merged.append((sample, aux))
    ends = [s for s, _ in merged[1:]] + [n]
    return [RhythmSegment(s, e, aux) for (s, aux), e in zip(merged, ends, strict=True) if e > s]


def make_record(name: str, kind: Kind, seed: np.random.SeedSequence, minutes: float, fs: float) -> SecondSourceRecord:
    """One patient's record of ``kind``: deterministic in ``seed`` (a SeedSequence), ``minutes`` and ``fs``."""
    if not 128.0 <= fs <= 1000.0 or fs != round(fs):
        raise SignalError(f"fs must be a whole number of Hz in 128-1000 (ECGSYN needs it), got {fs}")
    plan_rng, morph_rng, beat_rng, noise_rng = (np.random.default_rng(s) for s in seed.spawn(4))
    duration = minutes * 60.0
    n = round(duration * fs)
    plan = draw_plan(plan_rng, kind, duration)
    morph = draw_morphology(morph_rng)
    bank = TemplateBank(morph, fs, int(morph_rng.integers(2**31)))
    seq = sequence_beats(plan, beat_rng, fs)
    atrial = _atrial_activity(seq, plan, bank, noise_rng, n)
    clean = atrial.copy()
    samples, symbols = [], []
    for beat in seq.beats:
        r = round(beat.time_s * fs)
        if r >= n:
            break
        tpl = bank.beat(beat.kind, beat.rr_s)
        lo = r - tpl.r_index
        a, b = max(lo, 0), min(lo + tpl.wave.size, n)
        clean[a:b] += tpl.wave[a - lo : b - lo]
        samples.append(r)
        symbols.append(beat.symbol)
    noisy = nk.signal_distort(
        clean,
        sampling_rate=round(fs),
        noise_shape="laplace",
        noise_amplitude=[float(noise_rng.uniform(0.03, 0.15)), float(noise_rng.uniform(0.005, 0.03))],
        noise_frequency=[0.3, 40.0],
        powerline_amplitude=float(noise_rng.uniform(0.0, 0.01)),
        powerline_frequency=50.0,
        random_state=int(noise_rng.integers(2**31)),
        silent=True,
    )
    onsets = {k: round(round(v * fs) / fs, 4) for k, v in seq.onsets.items() if round(v * fs) < n}
    meta = {
        "source": "second_source",
        "label": LABEL,
        "kind": kind,
        "precursor": plan.precursor,
        "precursor_s": round(plan.precursor_s, 1),
        "base_hr_bpm": round(plan.base_hr, 1),
        "episodes": [asdict(e) | {"end_s": min(e.end_s, duration)} for e in plan.episodes],
    }
    record = AnnotatedRecord(
        record_name=name,
        fs=fs,
        sig_name=[_LEAD],
        p_signal=np.asarray(noisy, dtype=np.float32)[:, None],
        beats=BeatAnnotations(np.asarray(samples, dtype=np.int64), np.asarray(symbols, dtype="<U1")),
        rhythms=_rhythms(seq.changes, fs, n),
        unusable=np.zeros(n, dtype=bool),
        onsets=onsets,
        meta=meta,
    )
    return SecondSourceRecord(record, clean, atrial, plan)


def record_kind(index: int) -> Kind:
    """Patient ``index``'s scenario kind: the kinds in rotation, so any five patients in a row cover all."""
    return KINDS[index % len(KINDS)]


def build_second_source(
    out_dir: Path,
    patients: int,
    minutes: float,
    fs: float = 250.0,
    seed: int = 20261207,
    on_record: Callable[[int, int, AnnotatedRecord], None] | None = None,
) -> Path:
    """Write ``patients`` WFDB records (lead II, MIT-BIH annotations) and ``manifest.json`` under ``out_dir``.

    Deterministic in ``seed``: patient ``i`` is drawn from child ``i`` of ``SeedSequence(seed)``, so it does not
    depend on how many patients are built. ``on_record(i, patients, record)`` is called after each record is
    written (the CLI's progress line). Returns the manifest path.
    """
    from simulators.wfdb_io import write_record

    if patients < 1 or minutes <= 0:
        raise SignalError(f"need patients >= 1 and minutes > 0, got {patients} and {minutes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    children = np.random.SeedSequence(seed).spawn(patients)
    entries = []
    for i, child in enumerate(children):
        name = f"ss{i:04d}"
        built = make_record(name, record_kind(i), child, minutes, fs)
        write_record(built.record, out_dir, name)
        rec = built.record
        entries.append(
            {"record": name, "kind": rec.meta["kind"], "onsets_s": rec.onsets, "episodes": rec.meta["episodes"]}
            | {"precursor": built.plan.precursor, "precursor_s": rec.meta["precursor_s"]}
            | {"ectopy_waves": [asdict(w) for w in built.plan.waves], "beats": len(rec.beats)}
        )
        log.info("second_source_record", record=name, kind=rec.meta["kind"], onsets=rec.onsets)
        if on_record is not None:
            on_record(i, patients, rec)
    (out_dir / "RECORDS").write_text("".join(f"{e['record']}\n" for e in entries))
    manifest = {
        "label": LABEL,
        "synthetic": True,
        "generators": {pkg: version(pkg) for pkg in ("neurokit2", "numpy", "scipy", "wfdb")},
        "method": "ECGSYN beat templates (neurokit2.ecg_simulate) placed by the second-source rhythm model",
        "seed": seed,
        "patients": patients,
        "minutes": minutes,
        "fs": fs,
        "lead": _LEAD,
        "records": entries,
    }
    path = out_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return path
