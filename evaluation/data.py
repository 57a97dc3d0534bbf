"""The evaluation's data: a benchmark built by ``simulators.benchmark`` (from a spec name or a WFDB directory),
its records, and the samples of each (w, h) cell, selected the same way for every method.

Every method sees the same test samples; baselines train on the same training patients. Selection is a pure
function of the index and a seed, so a rerun picks identical samples.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from core.errors import SignalError
from simulators.benchmark import SPECS, BenchDataset, build_from_records, build_from_spec

__all__ = [
    "CLASSES",
    "CLASSES_CAMEL",
    "LM_SUBSAMPLE_FILE",
    "ONSETS",
    "YARDSTICK",
    "YARDSTICK_LM_INPUTS_PER_WINDOW",
    "Cell",
    "EvalData",
    "InputKey",
    "Record",
    "RecordSource",
    "RecordTruth",
    "Sample",
    "freeze_lm_subsample",
    "frozen_lm_subsample",
    "open_benchmark",
    "record_truth",
]

log = structlog.get_logger(__name__)

CLASSES: tuple[str, ...] = ("sinus", "af", "flutter", "vt")  # our extension: with VT
CLASSES_CAMEL: tuple[str, ...] = ("sinus", "af", "flutter")  # ECGForecastBench's classes
ONSETS: tuple[str, ...] = ("af", "flutter", "vt")

YARDSTICK = "synthetic-v2-yardstick"
"""The benchmark spec every forecaster is accepted on (docs/EVALUATION.md, "The yardstick")."""
YARDSTICK_LM_INPUTS_PER_WINDOW = 400  # x 6 windows = 2,400 inputs, each scored at every horizon
LM_SUBSAMPLE_FILE = "lm_subsample.csv"


def open_benchmark(data: str, work_dir: Path, workers: int = 2) -> BenchDataset:
    """A built benchmark from ``data``: a directory holding dataset.json, a spec name (built once into
    ``work_dir/<spec>``), or a directory of rhythm-annotated WFDB records (built into ``work_dir/wfdb``)."""
    path = Path(data)
    if (path / "dataset.json").exists():
        return BenchDataset(path)
    if data in SPECS:
        target = work_dir / data
        if not (target / "dataset.json").exists():
            log.info("building_benchmark", spec=data, out=str(target))
            build_from_spec(data, target, workers=workers)
        return BenchDataset(target)
    if path.is_dir():
        target = work_dir / f"wfdb-{path.name}"
        if not (target / "dataset.json").exists():
            log.info("building_benchmark", records=str(path), out=str(target))
            build_from_records(path, target)
        return BenchDataset(target)
    raise SignalError(f"--data {data!r}: not a built benchmark, a spec ({sorted(SPECS)}) or a WFDB directory")


@dataclass(frozen=True)
class Record:
    record_id: str
    patient_id: str
    group: str
    split: str
    fs: float
    sig_name: tuple[str, ...]
    p_signal: npt.NDArray[np.float32]  # (sig_len, n_sig) mV, wfdb orientation


class RecordSource(Protocol):
    """What feature extractors and the CNN need from a benchmark: its records by id (one benchmark, or several)."""

    def record(self, record_id: str) -> Record: ...


@dataclass(frozen=True)
class Sample:
    """One benchmark row: window [T - w, T) of a record, labels at horizon h."""

    record_id: str
    patient_id: str
    group: str
    anchor_s: float
    window_s: int
    horizon_s: int
    label_class: str
    onset: dict[str, int]

    @property
    def key(self) -> InputKey:
        """(record, anchor, window): the input; samples of one key differ only by horizon."""
        return (self.record_id, self.anchor_s, self.window_s)


Cell = tuple[int, int]  # (window_s, horizon_s)
InputKey = tuple[str, float, int]  # (record_id, anchor_s, window_s)
_TIERS = 4  # sampling tiers of a capped selection, see _tier


def _sample(row: dict[str, str]) -> Sample:
    return Sample(
        record_id=row["record_id"],
        patient_id=row["patient_id"],
        group=row["group"],
        anchor_s=float(row["anchor_s"]),
        window_s=int(row["window_s"]),
        horizon_s=int(row["horizon_s"]),
        label_class=row["label_class"],
        onset={c: int(row[f"onset_{c}"]) for c in ONSETS},
    )


class EvalData:
    """Samples per split and cell (optionally capped), and whole records loaded once."""

    def __init__(self, bench: BenchDataset) -> None:
        self.bench = bench
        self._records: dict[str, Record] = {}
        self._by: dict[tuple[str, int, int], list[Sample]] = {}
        for row in bench.index:
            sample = _sample(row)
            self._by.setdefault((row["split"], sample.window_s, sample.horizon_s), []).append(sample)
        self._split_of = {r["record_id"]: r["split"] for r in bench.index}

    @property
    def meta(self) -> dict[str, Any]:
        return self.bench.meta

    def samples(self, split: str, cell: Cell, cap: int | None = None, seed: int = 0) -> list[Sample]:
        """The split's samples of one cell; with ``cap``, at most that many (see :func:`_stratified`)."""
        rows = self._by.get((split, *cell), [])
        if cap is None or len(rows) <= cap:
            return list(rows)
        chosen = _stratified(sorted({s.key for s in rows}), _tiers(rows), cap, seed)
        return [s for s in rows if s.key in chosen]

    def inputs(self, split: str, window_s: int, horizons_s: Sequence[int], cap: int, seed: int) -> set[InputKey]:
        """At most ``cap`` inputs (record, anchor, w) of one window, chosen once for every horizon, so a model
        that forecasts all horizons from one pass (the LM) reads each input once."""
        rows = self._window_rows(split, window_s, horizons_s)
        return _stratified(sorted({s.key for s in rows}), _tiers(rows), cap, seed)

    def input_weights(
        self, split: str, window_s: int, horizons_s: Sequence[int], chosen: set[InputKey]
    ) -> dict[InputKey, float]:
        """Inverse inclusion probability of each chosen input: (inputs of its tier) / (chosen of its tier). The
        stratified draw keeps rare labels first, so a fit on it (a calibration) must re-weight to the split's own
        label frequencies."""
        tier = _tiers(self._window_rows(split, window_s, horizons_s))
        available, picked = Counter(tier.values()), Counter(tier[k] for k in chosen)
        return {k: available[tier[k]] / picked[tier[k]] for k in chosen}

    def _window_rows(self, split: str, window_s: int, horizons_s: Sequence[int]) -> list[Sample]:
        """The split's samples of one window over these horizons (one per input and horizon)."""
        return [s for h in horizons_s for s in self._by.get((split, window_s, h), [])]

    def windows(self) -> list[int]:
        """The benchmark's window lengths w, seconds."""
        return sorted({w for _, w, _ in self._by})

    def record_ids(self, split: str) -> list[str]:
        return sorted(rid for rid, sp in self._split_of.items() if sp == split)

    def record(self, record_id: str) -> Record:
        if record_id not in self._records:
            row = next(r for r in self.bench.index if r["record_id"] == record_id)
            info = self.meta["records"][record_id]
            shard = np.load(self.bench.root / "shards" / row["shard"])
            signal_uv = shard[f"{record_id}__signal_uv"]  # (n_sig, sig_len) int16 µV
            self._records[record_id] = Record(
                record_id,
                row["patient_id"],
                row["group"],
                row["split"],
                float(info["fs"]),
                tuple(info["sig_name"]),
                (signal_uv.T / 1000.0).astype(np.float32),
            )
        return self._records[record_id]


def _tiers(rows: Sequence[Sample]) -> dict[InputKey, int]:
    """Each input's best tier over its horizons."""
    out: dict[InputKey, int] = {}
    for s in rows:
        out[s.key] = min(out.get(s.key, _TIERS - 1), _tier(s))
    return out


def _tier(sample: Sample) -> int:
    """0: an AF onset within h (AF-onset AUROC needs it), 1: another onset, 2: a non-sinus label (macro-F1
    needs it), 3: the rest."""
    if sample.onset["af"]:
        return 0
    return 1 if any(sample.onset.values()) else 2 if sample.label_class != "sinus" else _TIERS - 1


def _stratified(keys: Sequence[InputKey], tier: dict[InputKey, int], cap: int, seed: int) -> set[InputKey]:
    """``cap`` keys drawn with ``seed``, an equal share from each tier where it has enough (a tier short of its share
    passes the rest on to the next); all keys when there are at most ``cap``."""
    if len(keys) <= cap:
        return set(keys)
    rng = np.random.default_rng(seed)
    pick: list[InputKey] = []
    for t in range(_TIERS):
        pool = [k for k in keys if tier[k] == t]
        want = cap - len(pick) if t == _TIERS - 1 else min(len(pool), (cap - len(pick)) // (_TIERS - t))
        pick += [pool[i] for i in rng.choice(len(pool), size=min(want, len(pool)), replace=False)]
    return set(pick)


@dataclass(frozen=True)
class RecordTruth:
    """What the alert replay scores a record against: its class changes, and the precursor scripted before its
    onset (a generator's kind, "none" for an onset with no warning; None where the source does not say, e.g. WFDB)."""

    changes: list[tuple[float, str]]
    precursor: str | None = None
    precursor_s: float | None = None


def record_truth(data: EvalData, record_id: str) -> RecordTruth:
    """The class changes (time_s, class) of one record, and its scripted precursor.

    The shards keep signals, not annotations, so synthetic records are regenerated from the spec (deterministic
    in the seed) and WFDB records are read again from the source directory.
    """
    from simulators.benchmark import class_changes

    meta, rec = data.meta, data.record(record_id)
    if meta.get("source") == "synthetic":
        from simulators.scenarios import generate_scenario

        spec = meta["spec"]
        origin = meta["records"][record_id].get("origin") or {  # benchmarks built before origins were stored
            "scenario": rec.group,
            "seed": int(rec.patient_id.rsplit("-", 1)[1]),
            "generator": "1",
        }
        annotated = generate_scenario(
            origin["scenario"],
            int(origin["seed"]),
            spec["minutes"],
            spec["fs"],
            tuple(spec["leads"]),
            spec["noise"],
            generator=str(origin["generator"]),
        )
        script = annotated.meta
        kind = script.get("precursor_kind") or ("rising ectopy" if script.get("precursor_strength") else "none")
        return RecordTruth(class_changes(annotated), str(kind), float(script.get("precursor_duration_s") or 0.0))
    from simulators.wfdb_io import read_record

    source = Path(str(meta["source"]).removeprefix("wfdb:"))
    header = next(source.rglob(f"{record_id}.hea"), None)
    if header is None:
        raise SignalError(f"record {record_id} not found under {source}")
    return RecordTruth(class_changes(read_record(header)))


def freeze_lm_subsample(
    data: EvalData, inputs_per_window: int, windows_s: Sequence[int], horizons_s: Sequence[int], seed: int = 0
) -> Path:
    """Draw the LM subsample once and write it next to the benchmark: ``inputs_per_window`` test inputs of each
    window (stratified as :meth:`EvalData.inputs`: AF onsets, other onsets, non-sinus labels, the rest), every one
    scored at every horizon. Every method, the LM included, is compared on exactly these rows. Idempotent: the
    file is written only when missing, so a re-run can never silently move the yardstick."""
    path = data.bench.root / LM_SUBSAMPLE_FILE
    if path.exists():
        return path
    keys = sorted(k for w in windows_s for k in data.inputs("test", w, horizons_s, inputs_per_window, seed))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record_id", "anchor_s", "window_s"])
        writer.writerows(keys)
    log.info("lm_subsample_frozen", inputs=len(keys), path=str(path))
    return path


def frozen_lm_subsample(bench: BenchDataset) -> set[InputKey] | None:
    """The benchmark's frozen LM subsample, or None when it has none."""
    path = bench.root / LM_SUBSAMPLE_FILE
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        return {(r["record_id"], float(r["anchor_s"]), int(r["window_s"])) for r in csv.DictReader(handle)}
