"""ECGForecastBench-style forecasting samples from rhythm-annotated records (synthetic or real WFDB).

A sample is an input window of ``w`` seconds ending at anchor time T and labels at horizon ``h``: the rhythm class
at T+h (sinus / af / flutter, plus vt as our extension) and, separately, whether an onset of each arrhythmia
occurs in (T, T+h]. Cells: w in WINDOWS_S, h in HORIZONS_S. Splits are by patient, never by window.

Files: ``shards/shard_NNN.npz`` hold whole records (int16 µV signals and the unusable mask), ``index.csv`` has one
row per (record, T, w, h) sample, ``dataset.json`` the spec, version, seed, patients per split and class counts.
A window is ``signal[:, round((T-w)*fs) : round(T*fs)]`` of its record (see :class:`BenchDataset`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from core.errors import SignalError
from simulators.records import RHYTHM_CLASSES, AnnotatedRecord, rhythm_class
from simulators.scenarios import GENERATOR_VERSION, SCENARIO_NAMES, SCENARIO_NAMES_V2, generate_scenario

__all__ = [
    "HORIZONS_S",
    "SPECS",
    "WINDOWS_S",
    "BenchDataset",
    "BenchSpec",
    "assign_splits",
    "build_from_records",
    "build_from_spec",
    "class_changes",
    "label_sample",
    "opaque_patient_id",
    "patient_of",
    "sample_anchors",
]

WINDOWS_S: Final[tuple[int, ...]] = (10, 30, 60, 120, 300, 600)
HORIZONS_S: Final[tuple[int, ...]] = (60, 180, 300, 600)
ONSET_CLASSES: Final[tuple[str, ...]] = ("af", "flutter", "vt")
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")
_ONSET_FRACTIONS: Final = (0.1, 0.5, 0.9)  # onset anchors: the onset falls this far into (T, T+h]
_UV_PER_MV: Final = 1000.0


@dataclass(frozen=True)
class BenchSpec:
    """A versioned, seeded synthetic dataset: what to generate and how to sample anchors from it."""

    name: str
    version: str
    seed: int
    patients_per_scenario: int
    minutes: float
    scenarios: tuple[str, ...] = SCENARIO_NAMES
    fs: float = 250.0  # ECGForecastBench (Icentia11k) rate
    leads: tuple[str, ...] = ("II",)  # single lead, as ECGForecastBench
    noise: str = "low"
    stride_s: float = 60.0  # regular anchor grid
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    records_per_shard: int = 16
    generator: str = GENERATOR_VERSION  # scenario generator ("2": varied precursors and decoys; record ids opaque)


SPECS: Final[dict[str, BenchSpec]] = {
    spec.name: spec
    for spec in (
        BenchSpec("synthetic-v1-small", "1", seed=20261127, patients_per_scenario=6, minutes=30.0),
        BenchSpec("synthetic-v1-train", "1", seed=20261128, patients_per_scenario=100, minutes=60.0, stride_s=30.0),
        # The forecasting yardstick (docs/EVALUATION.md): generator v2, 8 scenarios x 64 patients, split 60/20/20
        # by patient and scenario, so the test split holds 104 patients and 13 onsets of each arrhythmia.
        BenchSpec(
            "synthetic-v2-yardstick",
            "1",
            seed=20261207,
            patients_per_scenario=64,
            minutes=40.0,
            scenarios=SCENARIO_NAMES_V2,
            stride_s=120.0,
            split_fractions=(0.6, 0.2, 0.2),
            generator="2",
        ),
    )
}


def class_changes(record: AnnotatedRecord) -> list[tuple[float, str]]:
    """(time_s, class) at each change of forecasting class; the first entry is at 0 s."""
    changes: list[tuple[float, str]] = []
    for seg in record.rhythms:
        cls = rhythm_class(seg.aux)
        if not changes or changes[-1][1] != cls:
            changes.append((seg.start_sample / record.fs, cls))
    return changes or [(0.0, "sinus")]


def _class_at(changes: list[tuple[float, str]], t_s: float) -> str:
    times = [t for t, _ in changes]
    return changes[max(0, int(np.searchsorted(times, t_s, side="right")) - 1)][1]


def label_sample(changes: list[tuple[float, str]], anchor_s: float, horizon_s: float) -> dict[str, Any]:
    """Labels of the sample anchored at T: class now, class at T+h, and onsets of each class in (T, T+h]."""
    labels: dict[str, Any] = {
        "current_class": _class_at(changes, anchor_s),
        "label_class": _class_at(changes, anchor_s + horizon_s),
    }
    for cls in ONSET_CLASSES:
        labels[f"onset_{cls}"] = int(any(c == cls and anchor_s < t <= anchor_s + horizon_s for t, c in changes[1:]))
    return labels


def sample_anchors(changes: list[tuple[float, str]], duration_s: float, stride_s: float) -> list[tuple[float, str]]:
    """Anchor times with their kind: a regular grid every ``stride_s``, plus for every onset and horizon h the
    anchors T = onset - f·h (f in 0.1, 0.5, 0.9), so each onset is seen early, midway and late in its horizon."""
    anchors = {float(t): "grid" for t in np.arange(stride_s, duration_s + 1e-9, stride_s)}
    for t_onset, cls in changes[1:]:
        if cls not in ONSET_CLASSES:
            continue
        for h in HORIZONS_S:
            for fraction in _ONSET_FRACTIONS:
                anchors.setdefault(round(t_onset - fraction * h, 1), "onset")
    return sorted((t, kind) for t, kind in anchors.items() if 0 < t <= duration_s)


def _rows_for(record: AnnotatedRecord, stride_s: float) -> list[dict[str, Any]]:
    """Every valid (T, w, h) sample of one record: T - w >= 0 and T + h <= duration."""
    changes = class_changes(record)
    rows = []
    for anchor_s, kind in sample_anchors(changes, record.duration_s, stride_s):
        for h in HORIZONS_S:
            if anchor_s + h > record.duration_s:
                continue
            labels = label_sample(changes, anchor_s, h)
            for w in WINDOWS_S:
                if anchor_s - w < 0:
                    continue
                lo, hi = round((anchor_s - w) * record.fs), round(anchor_s * record.fs)
                unusable = float(record.unusable[lo:hi].mean()) if hi > lo else 0.0
                rows.append(
                    {"anchor_s": anchor_s, "anchor_kind": kind, "window_s": w, "horizon_s": h, **labels}
                    | {"unusable_frac": round(unusable, 4)}
                )
    return rows


def patient_of(record_name: str) -> str:
    """Patient id of a record name: Icentia11k "p00042_s03" -> "p00042", afpdb "p01c" -> "p01", else the name."""
    if match := re.fullmatch(r"(p\d{5})_s\d+", record_name):
        return match.group(1)
    if match := re.fullmatch(r"([pn]\d{2})c", record_name):
        return match.group(1)
    return record_name


def assign_splits(groups: dict[str, list[str]], fractions: tuple[float, ...], seed: int) -> dict[str, str]:
    """Patient -> split, stratified by group (scenario), shuffled by ``seed``; a patient is in exactly one split."""
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for group in sorted(groups):
        patients = sorted(set(groups[group]))
        order = rng.permutation(len(patients))
        n_train = round(fractions[0] * len(patients))
        n_val = round(fractions[1] * len(patients))
        if len(patients) >= 3:
            n_train, n_val = min(n_train, len(patients) - 2), max(n_val, 1)
        for rank, index in enumerate(order):
            out[patients[index]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return out


@dataclass
class _Item:
    """One record reduced to what the benchmark stores."""

    record_id: str
    patient_id: str
    group: str
    fs: float
    sig_name: list[str]
    signal_uv: npt.NDArray[np.int16]  # (n_sig, sig_len)
    unusable: npt.NDArray[np.bool_]
    rows: list[dict[str, Any]]
    origin: dict[str, Any]  # how to make the record again (synthetic: scenario, seed, generator); in dataset.json


def _item(
    record: AnnotatedRecord,
    patient_id: str,
    group: str,
    stride_s: float,
    record_id: str | None = None,
    origin: dict[str, Any] | None = None,
) -> _Item:
    scaled = np.clip(np.round(record.p_signal.T * _UV_PER_MV), -32768, 32767).astype(np.int16)  # (n_sig, sig_len)
    rows = _rows_for(record, stride_s)
    record_id = record_id or record.record_name
    return _Item(record_id, patient_id, group, record.fs, record.sig_name, scaled, record.unusable, rows, origin or {})


def opaque_patient_id(spec_name: str, scenario: str, seed: int) -> str:
    """A record id that does not name its scenario (generator v2 specs): a model or a reader of the index cannot
    learn the outcome from the name. Deterministic, so a spec always yields the same ids."""
    return "p" + hashlib.sha256(f"{spec_name}:{scenario}:{seed}".encode()).hexdigest()[:10]


def _synthetic_item(job: tuple[BenchSpec, str, int]) -> _Item:
    spec, scenario, seed = job
    record = generate_scenario(scenario, seed, spec.minutes, spec.fs, spec.leads, spec.noise, generator=spec.generator)
    origin = {"scenario": scenario, "seed": seed, "generator": spec.generator}
    if spec.generator == "1":
        return _item(record, f"{scenario}-{seed}", scenario, spec.stride_s, origin=origin)
    patient_id = opaque_patient_id(spec.name, scenario, seed)
    return _item(record, patient_id, scenario, spec.stride_s, record_id=patient_id, origin=origin)


def _write(items: Iterable[_Item], out: Path, meta: dict[str, Any], seed: int, per_shard: int) -> Path:
    """Shards, index.csv and dataset.json; splits by patient, stratified by group."""
    items = list(items)
    splits = assign_splits(_groups(items), tuple(meta["split_fractions"]), seed)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    fields = ["split", "patient_id", "record_id", "group", "shard", *_row_fields()]
    counts: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    with (out / "index.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for shard_no, start in enumerate(range(0, len(items), per_shard)):
            shard = f"shard_{shard_no:03d}.npz"
            batch = items[start : start + per_shard]
            arrays: dict[str, npt.NDArray[Any]] = {f"{it.record_id}__signal_uv": it.signal_uv for it in batch}
            arrays |= {f"{it.record_id}__unusable": np.packbits(it.unusable) for it in batch}
            np.savez_compressed(out / "shards" / shard, **arrays)  # type: ignore[arg-type]
            for it in batch:
                split = splits[it.patient_id]
                head = {"split": split, "patient_id": it.patient_id, "record_id": it.record_id, "group": it.group}
                for row in it.rows:
                    writer.writerow(head | {"shard": shard} | row)
                    counts[split][f"w{row['window_s']}_h{row['horizon_s']}_{row['label_class']}"] += 1
    meta |= {
        "records": {
            it.record_id: {"fs": it.fs, "sig_name": it.sig_name, "sig_len": int(it.unusable.size)}
            | ({"origin": it.origin} if it.origin else {})
            for it in items
        },
        "patients": {
            split: sorted({it.patient_id for it in items if splits[it.patient_id] == split}) for split in SPLITS
        },
        "class_counts": _count_summary(items, splits),
        "records_with_onset": {
            split: {
                c: sum(1 for it in items if splits[it.patient_id] == split and _has_onset(it, c)) for c in ONSET_CLASSES
            }
            for split in SPLITS
        },
        "cell_class_counts": {split: dict(sorted(c.items())) for split, c in counts.items()},
    }
    meta["index_sha256"] = hashlib.sha256((out / "index.csv").read_bytes()).hexdigest()  # reproducibility check
    (out / "dataset.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return out / "index.csv"


def _has_onset(item: _Item, cls: str) -> bool:
    """Whether an onset of ``cls`` falls inside the record's anchored horizons (every onset has such anchors)."""
    return any(row[f"onset_{cls}"] for row in item.rows)


def _row_fields() -> list[str]:
    onset = [f"onset_{c}" for c in ONSET_CLASSES]
    return ["anchor_s", "anchor_kind", "window_s", "horizon_s", "current_class", "label_class", *onset, "unusable_frac"]


def _groups(items: list[_Item]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it.patient_id)
    return groups


def _count_summary(items: list[_Item], splits: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per split: samples per label class and per onset flag, over all cells."""
    summary: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for it in items:
        for row in it.rows:
            counter = summary[splits[it.patient_id]]
            counter[f"class_{row['label_class']}"] += 1
            counter.update(f"onset_{c}" for c in ONSET_CLASSES if row[f"onset_{c}"])
    return {split: {k: int(v) for k, v in sorted(c.items())} for split, c in summary.items()}


def build_from_spec(spec: str | BenchSpec, out: Path, workers: int = 2) -> Path:
    """Generate a synthetic spec (a name from :data:`SPECS`, or a spec object) and write it under ``out``."""
    if isinstance(spec, str):
        if spec not in SPECS:
            raise SignalError(f"unknown benchmark spec {spec!r}; choose from {sorted(SPECS)}")
        spec = SPECS[spec]
    jobs = [
        (spec, scenario, spec.seed + 1000 * k + i)
        for k, scenario in enumerate(spec.scenarios)
        for i in range(spec.patients_per_scenario)
    ]
    meta: dict[str, Any] = {"spec": asdict(spec), "generator_version": spec.generator, "source": "synthetic"}
    meta |= {"split_fractions": list(spec.split_fractions), "classes": list(RHYTHM_CLASSES)}
    if workers <= 1:
        return _write(_progress(map(_synthetic_item, jobs), len(jobs)), out, meta, spec.seed, spec.records_per_shard)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        items: Iterator[_Item] = pool.map(_synthetic_item, jobs, chunksize=2)
        return _write(_progress(items, len(jobs)), out, meta, spec.seed, spec.records_per_shard)


def _progress(items: Iterator[_Item], total: int) -> Iterator[_Item]:
    """A progress bar on stderr (tqdm) while records are generated."""
    from tqdm import tqdm

    yield from tqdm(items, total=total, unit="record", desc="generating", mininterval=1.0)


def build_from_records(
    directory: Path,
    out: Path,
    stride_s: float = 60.0,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Path:
    """Build samples from every WFDB record under ``directory`` (patients from :func:`patient_of`).

    Records may have any length: a record too short for a cell (no anchor T with T - w >= 0 and T + h within it)
    simply has no sample there, and ``records_without_samples`` in dataset.json counts such records per cell."""
    from simulators.wfdb_io import read_directory

    items = [_item(rec, patient_of(rec.record_name), "all", stride_s) for rec in read_directory(directory)]
    if not items:
        raise SignalError(f"no WFDB records under {directory}")
    meta: dict[str, Any] = {
        "source": f"wfdb:{directory}",
        "seed": seed,
        "stride_s": stride_s,
        "split_fractions": list(fractions),
        "records_without_samples": _records_without_samples(items),
    }
    meta["classes"] = list(RHYTHM_CLASSES)
    return _write(items, out, meta, seed, per_shard=16)


def _records_without_samples(items: list[_Item]) -> dict[str, int]:
    """Cell "w<w>_h<h>" -> records with no sample in it (too short for it), for the cells that skip any."""
    cells = [{(row["window_s"], row["horizon_s"]) for row in it.rows} for it in items]
    counts = {f"w{w}_h{h}": sum((w, h) not in have for have in cells) for h in HORIZONS_S for w in WINDOWS_S}
    return {cell: n for cell, n in counts.items() if n}


class BenchDataset:
    """Read a built benchmark: ``rows(split, window_s, horizon_s)`` and ``window(row)`` (n_sig, w·fs) float32 mV."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta: dict[str, Any] = json.loads((root / "dataset.json").read_text())
        with (root / "index.csv").open() as handle:
            self.index = list(csv.DictReader(handle))
        self._shards: dict[str, Any] = {}

    def rows(self, split: str, window_s: int, horizon_s: int) -> list[dict[str, str]]:
        return [
            r
            for r in self.index
            if r["split"] == split and int(r["window_s"]) == window_s and int(r["horizon_s"]) == horizon_s
        ]

    def window(self, row: dict[str, str]) -> npt.NDArray[np.float32]:
        shard = self._shards.setdefault(row["shard"], np.load(self.root / "shards" / row["shard"]))
        fs = float(self.meta["records"][row["record_id"]]["fs"])
        anchor, width = float(row["anchor_s"]), float(row["window_s"])
        signal: npt.NDArray[np.int16] = shard[f"{row['record_id']}__signal_uv"]
        return (signal[:, round((anchor - width) * fs) : round(anchor * fs)] / _UV_PER_MV).astype(np.float32)
