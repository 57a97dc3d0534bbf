"""Encoder training and evaluation data: synthetic scenarios cut into windows exactly as the agent cuts them.

Every record comes from ``simulators.scenarios.generate_scenario`` (synthetic, labelled as such everywhere) and is
preprocessed with ``core.windows.preprocess_record``, the offline twin of the streaming path, so training,
evaluation and live streaming see identical windows. Patients are seeds: held-out sets use disjoint seeds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import numpy.typing as npt
import structlog

if TYPE_CHECKING:
    from simulators.records import AnnotatedRecord

__all__ = [
    "DataSpec",
    "Patient",
    "RecordCut",
    "WindowSet",
    "beat_bins_of_windows",
    "beat_class_of_windows",
    "build_window_set",
    "cut_lead_seconds",
    "load_or_build",
    "patient_columns",
    "synthetic_patient",
]

log = structlog.get_logger(__name__)

RecordCut: TypeAlias = Callable[["DataSpec", int], dict[str, npt.NDArray[np.generic]]]
"""Cuts patient ``k`` of a spec into the fields of a :class:`WindowSet` (module-level, so worker processes can run
it)."""


@dataclass(frozen=True)
class DataSpec:
    n_records: int = 600  # patients (= seeds); each is one scenario at one fs, lead pair and noise level
    minutes: float = 4.0  # record length; 600 x 4 min x 2 leads = 288,000 windows
    seed: int = 0  # first patient seed; patient k uses seed + k
    leads: tuple[str, ...] = ("I", "II", "III", "V1", "V5")  # the generator's leads; each record draws two
    fs_choices: tuple[float, ...] = (128.0, 250.0, 360.0, 500.0)  # Holter, Icentia/AFDB, MIT-BIH, 12-lead carts
    noise_levels: tuple[str, ...] = ("none", "low", "medium", "high")
    # Scenario generator versions, patient k uses generators[k % len]: "2" adds v2's morphology families, decoys and
    # precursors (docs/SIMULATORS.md). Seeds from 0 upward never meet a benchmark's (20261127 and up).
    generators: tuple[str, ...] = ("1",)

    def key(self) -> str:
        """Stable short hash naming the cache file of this spec."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True, eq=False)
class WindowSet:
    """Flat arrays over all windows of all records: lead-seconds (:func:`cut_lead_seconds`), or other cuts such as
    the beat-centred windows of ``encoder_onnx.beat_probe``."""

    windows: npt.NDArray[np.float32]  # (N, 256) filtered mV
    valid: npt.NDArray[np.bool_]  # (N,) signal-quality verdict of the agent
    record: npt.NDArray[np.int32]  # (N,) record index (patient)
    lead: npt.NDArray[np.int32]  # (N,) index into DataSpec.leads
    second: npt.NDArray[np.int32]  # (N,) second within the record (beat-centred: the second holding the beat)
    rhythm: npt.NDArray[np.str_]  # (N,) rhythm aux at the window centre, e.g. "(N", "(AFIB"
    beat: npt.NDArray[np.str_]  # (N,) lead-second: "V" if a PVC starts in it, else "A" if a PAC does, else "N";
    # beat-centred: the class of the centred beat
    noise: npt.NDArray[np.str_]  # (N,) record noise level
    scenario: npt.NDArray[np.str_]  # (N,) scenario name
    fs: npt.NDArray[np.float32]  # (N,) record sampling rate
    # (N,) lead-seconds only: bit i set when a beat fiducial falls in sixteenth i of the second (the 16 positions
    # the embedding keeps), so a supervised encoder can learn where beats are, hence RR intervals across seconds
    beat_bins: npt.NDArray[np.uint16] | None = None


def beat_bins_of_windows(beat_samples: npt.NDArray[np.int64], fs: float, n_seconds: int) -> npt.NDArray[np.uint16]:
    """Per-second 16-bit mask of beat positions: bit i for a fiducial in [i/16, (i+1)/16) of the second."""
    out = np.zeros(n_seconds, dtype=np.uint16)
    position = beat_samples / fs
    second = np.floor(position).astype(np.int64)
    inside = (second >= 0) & (second < n_seconds)
    sixteenth = np.minimum((position - second) * 16, 15).astype(np.int64)
    np.bitwise_or.at(out, second[inside], (1 << sixteenth[inside]).astype(np.uint16))
    return out


def beat_class_of_windows(
    beat_samples: npt.NDArray[np.int64], beat_symbols: npt.NDArray[np.str_], fs: float, n_seconds: int
) -> npt.NDArray[np.str_]:
    """Per-second beat class: "V" if any PVC starts in it, else "A" for any PAC, else "N"."""
    out = np.full(n_seconds, "N", dtype="<U1")
    seconds = np.searchsorted(np.ceil(np.arange(1, n_seconds + 1) * fs), beat_samples, side="right")
    for symbol in ("A", "V"):  # V last so that it wins
        hit = seconds[(beat_symbols == symbol) & (seconds < n_seconds)]
        out[hit] = symbol
    return out


@dataclass(frozen=True, eq=False)
class Patient:
    """Synthetic patient ``k`` of a spec: its record and the draws that made it."""

    record: AnnotatedRecord
    lead_idx: npt.NDArray[np.int64]  # (2,) sorted indexes into DataSpec.leads, the record's leads in order
    scenario: str
    noise: str


def synthetic_patient(spec: DataSpec, k: int) -> Patient:
    """Patient ``k``: scenario and noise level by ``k``, lead pair and fs drawn from ``[spec.seed, k]``, record seed
    ``spec.seed + k``. Every cut of a spec sees the same patients."""
    from simulators.scenarios import generate_scenario, scenario_names

    rng = np.random.default_rng([spec.seed, k])
    generator = spec.generators[k % len(spec.generators)]
    names = scenario_names(generator)
    j = k // len(spec.generators)  # this generator's own patient count: one generator reproduces the old draws
    scenario = names[j % len(names)]
    lead_idx = np.sort(rng.choice(len(spec.leads), size=2, replace=False))
    fs = float(rng.choice(spec.fs_choices))
    noise = spec.noise_levels[(j // len(names)) % len(spec.noise_levels)]
    leads = tuple(spec.leads[i] for i in lead_idx)
    rec = generate_scenario(
        scenario, seed=spec.seed + k, minutes=spec.minutes, fs=fs, leads=leads, noise=noise, generator=generator
    )
    return Patient(rec, lead_idx, scenario, noise)


def patient_columns(k: int, patient: Patient, lead: npt.NDArray[np.int32]) -> dict[str, npt.NDArray[np.generic]]:
    """The per-patient fields of a :class:`WindowSet` for windows of leads ``lead`` (one DataSpec.leads index per
    window) of patient ``k``."""
    n = len(lead)
    return {
        "record": np.full(n, k, dtype=np.int32),
        "lead": lead.astype(np.int32),
        "noise": np.full(n, patient.noise),
        "scenario": np.full(n, patient.scenario),
        "fs": np.full(n, patient.record.fs, dtype=np.float32),
    }


def cut_lead_seconds(spec: DataSpec, k: int) -> dict[str, npt.NDArray[np.generic]]:
    """Patient ``k`` cut as the agent cuts it: every complete lead-second, with the agent's validity verdict."""
    from core.windows import preprocess_record

    patient = synthetic_patient(spec, k)
    rec = patient.record
    pre = preprocess_record(np.asarray(rec.p_signal), rec.fs)
    n_sig, n_sec, n_out = pre.windows.shape
    centres = np.ceil((np.arange(n_sec) + 0.5) * rec.fs).astype(np.int64)
    rhythm = np.array([rec.rhythm_at(int(c)) for c in centres])
    beat_samples = np.asarray(rec.beats.sample, dtype=np.int64)
    beats = beat_class_of_windows(beat_samples, np.asarray(rec.beats.symbol), rec.fs, n_sec)
    return {
        "windows": pre.windows.reshape(n_sig * n_sec, n_out),  # (n_sig, n_sec, 256) -> (n_sig*n_sec, 256)
        "valid": pre.valid.reshape(-1),
        "second": np.tile(np.arange(n_sec, dtype=np.int32), n_sig),
        "rhythm": np.tile(rhythm, n_sig),
        "beat": np.tile(beats, n_sig),
        "beat_bins": np.tile(beat_bins_of_windows(beat_samples, rec.fs, n_sec), n_sig),
        **patient_columns(k, patient, np.repeat(patient.lead_idx.astype(np.int32), n_sec)),
    }


def build_window_set(spec: DataSpec, workers: int = 1, cut: RecordCut = cut_lead_seconds) -> WindowSet:
    """Generate ``spec.n_records`` synthetic records (deterministic from ``spec.seed``) and cut each with ``cut``."""
    from tqdm import tqdm

    ks = range(spec.n_records)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(tqdm(pool.map(cut, [spec] * len(ks), ks, chunksize=4), total=len(ks), desc="data"))
    else:
        parts = [cut(spec, k) for k in tqdm(ks, desc="data", disable=len(ks) < 20)]
    fields = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return WindowSet(**fields)


def load_or_build(
    spec: DataSpec, cache_dir: Path, workers: int = 1, cut: RecordCut = cut_lead_seconds, stem: str = "windows"
) -> WindowSet:
    """The window set for ``spec`` cut by ``cut``, cached as ``cache_dir/<stem>-<spec key>.npz``.

    ``stem`` names the cut: each cut of the same spec needs its own (the lead-second set is ``windows``).
    """
    path = cache_dir / f"{stem}-{spec.key()}.npz"
    if path.exists():
        with np.load(path) as data:
            return WindowSet(**{name: data[name] for name in data.files})
    data_set = build_window_set(spec, workers, cut)
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(data_set, name) for name in WindowSet.__dataclass_fields__}
    np.savez(path, **{name: value for name, value in arrays.items() if value is not None})
    log.info("window_set_cached", path=str(path), n_windows=len(data_set.windows))
    return data_set
