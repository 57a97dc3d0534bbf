"""Encoder training and evaluation data: synthetic scenarios cut into windows exactly as the agent cuts them.

Every record comes from ``simulators.scenarios.generate_scenario`` (synthetic, labelled as such everywhere) and is
preprocessed with ``agent.windows.preprocess_record``, the offline twin of the streaming path, so training,
evaluation and live streaming see identical windows. Patients are seeds: held-out sets use disjoint seeds.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

__all__ = ["DataSpec", "WindowSet", "beat_class_of_windows", "build_window_set", "load_or_build"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DataSpec:
    n_records: int = 600  # patients (= seeds); each is one scenario at one fs, lead pair and noise level
    minutes: float = 4.0  # record length; 600 x 4 min x 2 leads = 288,000 windows
    seed: int = 0  # first patient seed; patient k uses seed + k
    leads: tuple[str, ...] = ("I", "II", "III", "V1", "V5")  # the generator's leads; each record draws two
    fs_choices: tuple[float, ...] = (128.0, 250.0, 360.0, 500.0)  # Holter, Icentia/AFDB, MIT-BIH, 12-lead carts
    noise_levels: tuple[str, ...] = ("none", "low", "medium", "high")

    def key(self) -> str:
        """Stable short hash naming the cache file of this spec."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True, eq=False)
class WindowSet:
    """Flat arrays over all lead-seconds of all records."""

    windows: npt.NDArray[np.float32]  # (N, 256) filtered mV
    valid: npt.NDArray[np.bool_]  # (N,) signal-quality verdict of the agent
    record: npt.NDArray[np.int32]  # (N,) record index (patient)
    lead: npt.NDArray[np.int32]  # (N,) index into DataSpec.leads
    second: npt.NDArray[np.int32]  # (N,) second within the record
    rhythm: npt.NDArray[np.str_]  # (N,) rhythm aux at the window centre, e.g. "(N", "(AFIB"
    beat: npt.NDArray[np.str_]  # (N,) "V" if a PVC starts in the window, else "A" if a PAC does, else "N"
    noise: npt.NDArray[np.str_]  # (N,) record noise level
    scenario: npt.NDArray[np.str_]  # (N,) scenario name
    fs: npt.NDArray[np.float32]  # (N,) record sampling rate


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


def _record_windows(spec: DataSpec, k: int) -> dict[str, npt.NDArray[np.generic]]:
    from agent.windows import preprocess_record
    from simulators.scenarios import SCENARIO_NAMES, generate_scenario

    rng = np.random.default_rng([spec.seed, k])
    scenario = SCENARIO_NAMES[k % len(SCENARIO_NAMES)]
    lead_idx = np.sort(rng.choice(len(spec.leads), size=2, replace=False))
    fs = float(rng.choice(spec.fs_choices))
    noise = spec.noise_levels[(k // len(SCENARIO_NAMES)) % len(spec.noise_levels)]
    leads = tuple(spec.leads[i] for i in lead_idx)
    rec = generate_scenario(scenario, seed=spec.seed + k, minutes=spec.minutes, fs=fs, leads=leads, noise=noise)
    pre = preprocess_record(np.asarray(rec.p_signal), rec.fs)
    n_sig, n_sec, n_out = pre.windows.shape
    centres = np.ceil((np.arange(n_sec) + 0.5) * rec.fs).astype(np.int64)
    rhythm = np.array([rec.rhythm_at(int(c)) for c in centres])
    beats = beat_class_of_windows(
        np.asarray(rec.beats.sample, dtype=np.int64), np.asarray(rec.beats.symbol), rec.fs, n_sec
    )
    return {
        "windows": pre.windows.reshape(n_sig * n_sec, n_out),  # (n_sig, n_sec, 256) -> (n_sig*n_sec, 256)
        "valid": pre.valid.reshape(-1),
        "record": np.full(n_sig * n_sec, k, dtype=np.int32),
        "lead": np.repeat(lead_idx.astype(np.int32), n_sec),
        "second": np.tile(np.arange(n_sec, dtype=np.int32), n_sig),
        "rhythm": np.tile(rhythm, n_sig),
        "beat": np.tile(beats, n_sig),
        "noise": np.full(n_sig * n_sec, noise),
        "scenario": np.full(n_sig * n_sec, scenario),
        "fs": np.full(n_sig * n_sec, fs, dtype=np.float32),
    }


def build_window_set(spec: DataSpec, workers: int = 1) -> WindowSet:
    """Generate and preprocess ``spec.n_records`` synthetic records (deterministic from ``spec.seed``)."""
    from tqdm import tqdm

    ks = range(spec.n_records)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(tqdm(pool.map(_record_windows, [spec] * len(ks), ks, chunksize=4), total=len(ks), desc="data"))
    else:
        parts = [_record_windows(spec, k) for k in tqdm(ks, desc="data", disable=len(ks) < 20)]
    fields = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return WindowSet(**fields)


def load_or_build(spec: DataSpec, cache_dir: Path, workers: int = 1) -> WindowSet:
    """The window set for ``spec``, cached as ``cache_dir/windows-<spec key>.npz``."""
    path = cache_dir / f"windows-{spec.key()}.npz"
    if path.exists():
        with np.load(path) as data:
            return WindowSet(**{name: data[name] for name in data.files})
    data_set = build_window_set(spec, workers)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{name: getattr(data_set, name) for name in WindowSet.__dataclass_fields__})
    log.info("window_set_cached", path=str(path), n_windows=len(data_set.windows))
    return data_set
