"""Synthetic arrhythmia scenarios with exact labels: the public generator API.

>>> rec = generate_scenario("af_onset", seed=1, minutes=1.0, fs=250.0, leads=("II", "V1"), noise="low")
>>> rec.p_signal.shape, rec.sig_name
((15000, 2), ['II', 'V1'])

Everything is deterministic from (name, seed, minutes, fs, leads, noise, generator). Morphology, script, beats,
atrial waves and noise draw from independent child streams of one seed, so e.g. changing the noise level leaves the
beats and labels unchanged.

Two generators: "1" (the default, what the shipped models were trained on; reproducible bit for bit) and "2"
(precursors of several kinds not tied to the outcome, decoys that look like precursors, onsets anywhere, several
beat-morphology families, varied PAC P' waves and noise; docs/SIMULATORS.md). They share the renderer.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import numpy as np

from core.errors import SignalError
from core.protocol import canonical_lead
from simulators._beats import BeatSequence, RateModulator, build_beats
from simulators._families import varied_morphology
from simulators._morphology import PatientMorphology, lead_matrix
from simulators._noise import NOISE_LEVELS, add_noise, varied_profile
from simulators._render import Canvas, render_atrial, render_beats
from simulators._scripts import RHYTHM_PRESETS, SCRIPTS, Script
from simulators._scripts_v2 import PRECURSOR_KINDS, RHYTHM_PRESETS_V2, SCRIPTS_V2
from simulators.records import AnnotatedRecord, BeatAnnotations, RhythmSegment

__all__ = [
    "GENERATOR_VERSION",
    "GENERATOR_VERSIONS",
    "PRECURSOR_KINDS",
    "RHYTHM_PRESETS",
    "RHYTHM_PRESETS_V2",
    "SCENARIO_NAMES",
    "SCENARIO_NAMES_V2",
    "SyntheticRecord",
    "generate_rhythm",
    "generate_scenario",
    "scenario_names",
    "scenario_script",
]

GENERATOR_VERSION: Final = "1"
"""The default generator. A generator's output for given arguments never changes; a change makes a new version."""
GENERATOR_VERSIONS: Final[tuple[str, ...]] = ("1", "2")

SCENARIO_NAMES: Final[tuple[str, ...]] = tuple(SCRIPTS)
SCENARIO_NAMES_V2: Final[tuple[str, ...]] = tuple(SCRIPTS_V2)
_SCRIPTS_BY_GENERATOR: Final = {"1": SCRIPTS, "2": SCRIPTS_V2}


def _scripts(generator: str) -> dict[str, Callable[[np.random.Generator, float], Script]]:
    if generator not in _SCRIPTS_BY_GENERATOR:
        raise SignalError(f"generator {generator!r} unknown; choose from {list(GENERATOR_VERSIONS)}")
    return _SCRIPTS_BY_GENERATOR[generator]


def scenario_names(generator: str = GENERATOR_VERSION) -> tuple[str, ...]:
    """The scenarios generator ``generator`` knows."""
    return tuple(_scripts(generator))


SyntheticRecord = AnnotatedRecord
"""Synthetic and real records share one type, so both take one path through training and replay."""

MIN_FS: Final = 128.0
MAX_FS: Final = 1000.0


def _check_signal_args(minutes: float, fs: float, noise: str, mains_hz: float) -> None:
    if not 0 < minutes <= 24 * 60:
        raise SignalError(f"minutes must be in (0, 1440], got {minutes}")
    if not MIN_FS <= fs <= MAX_FS:
        raise SignalError(f"fs must be in [{MIN_FS}, {MAX_FS}] Hz, got {fs}")
    if noise not in NOISE_LEVELS:
        raise SignalError(f"noise {noise!r} unknown; choose from {list(NOISE_LEVELS)}")
    if mains_hz not in (50.0, 60.0):
        raise SignalError(f"mains_hz must be 50 or 60, got {mains_hz}")


def _rhythm_segments(seq: BeatSequence, fs: float, sig_len: int) -> list[RhythmSegment]:
    """Rhythm changes (seconds) to contiguous sample segments; the first one is extended back to sample 0."""
    starts = [0] + [round(t * fs) for t, _ in seq.rhythm_changes[1:]]
    auxes = [aux for _, aux in seq.rhythm_changes]
    segments: list[RhythmSegment] = []
    for i, (start, aux) in enumerate(zip(starts, auxes, strict=True)):
        if start >= sig_len:
            break
        end = starts[i + 1] if i + 1 < len(starts) else sig_len
        segments.append(RhythmSegment(start, min(end, sig_len), aux))
    return segments


def _onsets(script: Script, seq: BeatSequence, duration_s: float) -> dict[str, float]:
    if script.onset_kind is None or script.onset_segment is None:
        return {}
    onset_s = seq.segment_starts_s[script.onset_segment]
    return {script.onset_kind: round(onset_s, 6)} if onset_s < duration_s else {}


def generate_scenario(
    name: str,
    seed: int = 0,
    minutes: float = 12.0,
    fs: float = 250.0,
    leads: tuple[str, ...] = ("II", "V1"),
    noise: str = "low",
    mains_hz: float = 50.0,
    generator: str = GENERATOR_VERSION,
) -> AnnotatedRecord:
    """Generate one patient's scenario with exact beat, rhythm, onset and signal-quality labels.

    Parameters
    ----------
    name : one of :data:`SCENARIO_NAMES`.
    seed : patient seed; the same arguments always give the same record.
    minutes, fs : duration and sampling rate (128-1000 Hz).
    leads : any of I, II, III, aVR, aVL, aVF, V1-V6 (synonyms such as "MLII" accepted).
    noise : "none", "low", "medium" or "high".
    mains_hz : powerline frequency of the hum (50 or 60).
    generator : "1" (default) or "2"; see the module docstring.
    """
    _check_signal_args(minutes, fs, noise, mains_hz)
    streams = _streams(name, seed, generator)
    sig_len = round(minutes * 60.0 * fs)
    script = scenario_script(name, seed, minutes, fs, generator)
    meta = {"scenario": name, "seed": seed}
    return _synthesize(f"{name}_{seed:06d}", script, streams, sig_len, fs, leads, noise, mains_hz, meta, generator)


def _streams(name: str, seed: int, generator: str) -> list[np.random.SeedSequence]:
    entropy = [seed, zlib.crc32(name.encode())] + ([] if generator == "1" else [int(generator)])
    return np.random.SeedSequence(entropy).spawn(5)


def scenario_script(
    name: str, seed: int = 0, minutes: float = 12.0, fs: float = 250.0, generator: str = GENERATOR_VERSION
) -> Script:
    """The script :func:`generate_scenario` renders for these arguments (segments, onset, precursor meta), without
    rendering a sample: what a study of the generator itself (``evaluation.ceiling``) needs."""
    scripts = _scripts(generator)
    if name not in scripts:
        raise SignalError(f"scenario {name!r} unknown to generator {generator}; choose from {list(scripts)}")
    sig_len = round(minutes * 60.0 * fs)
    return scripts[name](np.random.default_rng(_streams(name, seed, generator)[1]), sig_len / fs)


def generate_rhythm(
    preset: str,
    seconds: float = 60.0,
    seed: int = 0,
    fs: float = 250.0,
    leads: tuple[str, ...] = ("II",),
    noise: str = "low",
    pvc_burden: float | None = None,
) -> AnnotatedRecord:
    """One fixed rhythm (see ``RHYTHM_PRESETS``: sinus, af, flutter_2to1, vt, ...) for plots and realism checks.

    ``pvc_burden`` replaces the preset's chance per beat of a following PVC (0.25 makes about 20 % of beats
    PVCs: p / (1 + p)), for records with a known ventricular ectopy burden."""
    presets = RHYTHM_PRESETS | RHYTHM_PRESETS_V2
    if preset not in presets:
        raise SignalError(f"rhythm preset {preset!r} unknown; choose from {sorted(presets)}")
    _check_signal_args(seconds / 60.0, fs, noise, 50.0)
    if pvc_burden is not None and not 0.0 <= pvc_burden < 1.0:
        raise SignalError(f"pvc_burden must be a chance per beat in [0, 1), got {pvc_burden!r}")
    spec = presets[preset]
    segment = replace(spec.segment, duration_s=seconds + 5.0)
    if pvc_burden is not None:
        segment = replace(segment, pvc_burden=(pvc_burden, pvc_burden))
    script = Script([segment], spec.hr_bpm)
    streams = np.random.SeedSequence([seed, zlib.crc32(preset.encode())]).spawn(5)
    meta: dict[str, Any] = {"rhythm_preset": preset, "seed": seed}
    if pvc_burden is not None:
        meta["pvc_burden"] = pvc_burden
    return _synthesize(
        f"{preset}_{seed:06d}", script, streams, round(seconds * fs), fs, leads, noise, 50.0, meta, family=spec.family
    )


def _synthesize(
    record_name: str,
    script: Script,
    streams: list[np.random.SeedSequence],
    sig_len: int,
    fs: float,
    leads: tuple[str, ...],
    noise: str,
    mains_hz: float,
    meta: dict[str, Any],
    generator: str = GENERATOR_VERSION,
    family: str | None = None,
) -> AnnotatedRecord:
    """Script -> beats -> waves -> noise -> labelled record; each stage draws from its own child stream.

    Generator "2" draws a morphology family and a noise profile per patient; ``family`` forces a v2 family (the
    fixed rhythm presets of what v2 adds), otherwise v1's single family is used."""
    lead_mat = lead_matrix(leads)
    sig_name = _canonical(leads)
    duration_s = sig_len / fs
    rng_morph, _, rng_beats, rng_render, rng_noise = (np.random.default_rng(s) for s in streams)
    if generator == "1" and family is None:
        morph = PatientMorphology.random(rng_morph)
    else:
        morph, family = varied_morphology(rng_morph, family)
        meta = {**meta, "morphology_family": family}
    profile = varied_profile(noise, rng_noise) if generator != "1" else None
    hrv = RateModulator(rng_beats, duration_s + 60.0)
    seq = build_beats(script.segments, float(rng_beats.uniform(0.2, 0.8)), rng_beats, hrv)

    time_s = np.asarray(seq.time_s)
    keep = time_s * fs < sig_len - 0.5
    kind = np.asarray(seq.kind, dtype=np.int64)
    has_p = np.asarray(seq.has_p, dtype=bool)
    canvas = Canvas(fs, sig_len, lead_mat)
    clean = render_beats(time_s, kind, has_p, morph, canvas, rng_render)
    clean += render_atrial(seq.atrial, morph, canvas, rng_render)
    noisy, unusable = add_noise(clean, fs, noise, rng_noise, mains_hz, profile)

    beats = BeatAnnotations(np.rint(time_s[keep] * fs).astype(np.int64), seq.symbols[keep])
    meta = {
        **meta,
        "generator_version": generator,
        "noise": noise,
        "mains_hz": mains_hz,
        "base_hr_bpm": round(script.base_hr_bpm, 2),
        "precursor_strength": 0.0,
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in script.meta.items()},
    }
    return AnnotatedRecord(
        record_name=record_name,
        fs=float(fs),
        sig_name=sig_name,
        p_signal=noisy.astype(np.float32),
        beats=beats,
        rhythms=_rhythm_segments(seq, fs, sig_len),
        unusable=unusable,
        onsets=_onsets(script, seq, duration_s),
        meta=meta,
    )


def _canonical(leads: tuple[str, ...]) -> list[str]:
    names = [canonical_lead(x) for x in leads]
    if len(set(names)) != len(names):
        raise SignalError(f"duplicate leads in {list(leads)}")
    return names
