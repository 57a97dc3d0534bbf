"""WFDB records in and out, so synthetic and real data take one path (both become :class:`AnnotatedRecord`).

Writing follows MIT-BIH conventions in one ``atr`` annotation file: beat codes at R peaks, rhythm changes as '+'
with aux notes "(N", "(AFIB", ..., and signal-quality changes as '~' (subtype 1 = unusable from here, 0 = clean).
Reading handles the layouts of the PhysioNet databases we target:

- MIT-BIH Arrhythmia (mitdb), Long-Term AF (ltafdb): beats and rhythm in ``atr``.
- MIT-BIH AF (afdb): rhythm only in ``atr``; beats in ``qrsc`` (corrected) or ``qrs``.
- PAF prediction (afpdb): beats in ``qrs``; no rhythm annotations (rhythm_at returns "").
- Icentia11k: ``atr`` with beats and '+' rhythm notes, where ")" ends a rhythm (read as unlabelled "").

Lead names are canonicalised with ``core.protocol.canonical_lead`` ("MLII" -> "II"); unknown names are kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import structlog
import wfdb

from core.errors import ProtocolError, SignalError
from core.protocol import canonical_lead
from simulators.records import AnnotatedRecord, BeatAnnotations, RhythmSegment

__all__ = [
    "ANNOTATOR_PREFERENCE",
    "BEAT_CODES",
    "find_records",
    "read_directory",
    "read_record",
    "read_samples",
    "write_record",
]

log = structlog.get_logger(__name__)

BEAT_CODES: Final = frozenset("NLRBAaJSVrFejnE/fQ?")
"""MIT-BIH annotation codes that mark a beat (everything else is a non-beat annotation)."""

ANNOTATOR_PREFERENCE: Final[tuple[str, ...]] = ("atr", "qrsc", "qrs", "ecg", "ann")
"""Annotation extensions tried in order; beats come from the first that has beats, rhythm from the first with '+'."""

_COMMENT_TAG: Final = "ecgcast "
_ADC_GAIN: Final = 1000.0  # counts per mV: 1 µV resolution, ±32.7 mV range in format 16


def write_record(record: AnnotatedRecord, directory: Path, record_name: str | None = None) -> Path:
    """Write signals (``wrsamp``, format 16, 1 µV per count) and annotations (``wrann``, ``atr``).

    Onsets and meta travel as a JSON header comment, so a synthetic record read back keeps its script facts.
    Returns the record path without extension.
    """
    name = record_name or record.record_name
    directory.mkdir(parents=True, exist_ok=True)
    comment = _COMMENT_TAG + json.dumps({"onsets": record.onsets, "meta": record.meta}, sort_keys=True)
    wfdb.wrsamp(
        name,
        fs=record.fs,
        units=["mV"] * record.n_sig,
        sig_name=list(record.sig_name),
        p_signal=record.p_signal.astype(np.float64),
        fmt=["16"] * record.n_sig,
        adc_gain=[_ADC_GAIN] * record.n_sig,
        baseline=[0] * record.n_sig,
        comments=[comment],
        write_dir=str(directory),
    )
    sample, symbol, subtype, aux = _annotation_rows(record)
    if sample.size:
        wfdb.wrann(
            name,
            "atr",
            sample,
            symbol=symbol,
            subtype=subtype,
            aux_note=aux,
            fs=record.fs,
            write_dir=str(directory),
        )
    return directory / name


def _annotation_rows(
    record: AnnotatedRecord,
) -> tuple[npt.NDArray[np.int64], list[str], npt.NDArray[np.int64], list[str]]:
    """Beats, '+' rhythm changes and '~' quality changes merged in sample order (rhythm first on ties)."""
    rows: list[tuple[int, int, str, int, str]] = []  # (sample, order, symbol, subtype, aux)
    rows += [(seg.start_sample, 0, "+", 0, seg.aux) for seg in record.rhythms if seg.aux]
    edges = np.flatnonzero(np.diff(record.unusable.astype(np.int8), prepend=0))
    rows += [(int(s), 1, "~", int(record.unusable[s]), "") for s in edges]
    rows += [(int(s), 2, str(sym), 0, "") for s, sym in zip(record.beats.sample, record.beats.symbol, strict=True)]
    rows.sort(key=lambda row: (row[0], row[1]))
    sample = np.array([r[0] for r in rows], dtype=np.int64)
    return sample, [r[2] for r in rows], np.array([r[3] for r in rows], dtype=np.int64), [r[4] for r in rows]


def _canonical_names(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        try:
            out.append(canonical_lead(name))
        except ProtocolError:
            log.warning("wfdb_unknown_lead_kept", lead=name)
            out.append(name)
    return out


def read_samples(path: Path | str) -> tuple[npt.NDArray[np.float32], float, list[str]]:
    """Thin convenience, like ``wfdb.rdsamp``: (p_signal (sig_len, n_sig) float32 mV, fs, canonical sig_name).

    Invalid samples (WFDB's -32768 sentinel) come back as NaN.
    """
    base = _record_base(path)
    try:
        rec = wfdb.rdrecord(str(base))
    except (OSError, ValueError) as exc:
        raise SignalError(f"cannot read WFDB record {base}: {exc}") from exc
    if rec.p_signal is None:
        raise SignalError(f"WFDB record {base} has no physical signal")
    units = [str(u).lower() for u in (rec.units or [])]
    scale = np.array([1000.0 if u in ("uv", "µv") else 1.0 for u in units] or [1.0], dtype=np.float64)
    p_signal = rec.p_signal / scale[None, :] if scale.size == rec.n_sig else rec.p_signal
    return p_signal.astype(np.float32), float(rec.fs), _canonical_names(rec.sig_name or [])


def _record_base(path: Path | str) -> Path:
    base = Path(path)
    return base.with_suffix("") if base.suffix in (".hea", ".dat", ".atr") else base


def _read_annotations(base: Path, extension: str) -> wfdb.Annotation | None:
    if not base.with_name(f"{base.name}.{extension}").exists():
        return None
    try:
        return wfdb.rdann(str(base), extension)
    except (OSError, ValueError) as exc:
        raise SignalError(f"cannot read annotations {base}.{extension}: {exc}") from exc


def _beats_of(ann: wfdb.Annotation) -> BeatAnnotations:
    symbols = np.asarray(ann.symbol, dtype="<U1")
    is_beat = np.isin(symbols, list(BEAT_CODES))
    return BeatAnnotations(np.asarray(ann.sample, dtype=np.int64)[is_beat], symbols[is_beat])


def _rhythms_of(ann: wfdb.Annotation, sig_len: int) -> list[RhythmSegment]:
    """'+' annotations to contiguous segments; before the first one the rhythm is unlabelled ("")."""
    changes: list[tuple[int, str]] = []
    for sample, symbol, aux in zip(ann.sample, ann.symbol, ann.aux_note or [""] * len(ann.sample), strict=True):
        if symbol != "+":
            continue
        note = str(aux).strip().rstrip("\x00")
        note = "" if note == ")" else note
        if changes and changes[-1][1] == note:
            continue
        if changes and changes[-1][0] == int(sample):
            changes[-1] = (int(sample), note)
        else:
            changes.append((int(sample), note))
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, ""))
    ends = [s for s, _ in changes[1:]] + [sig_len]
    return [RhythmSegment(s, e, aux) for (s, aux), e in zip(changes, ends, strict=True) if e > s]


def _unusable_of(annotations: list[wfdb.Annotation], sig_len: int) -> npt.NDArray[np.bool_]:
    """'~' quality changes: a non-zero subtype starts an unusable stretch, subtype 0 ends it."""
    mask = np.zeros(sig_len, dtype=bool)
    for ann in annotations:
        subtypes = ann.subtype if ann.subtype is not None else np.zeros(len(ann.sample), dtype=int)
        marks = [(int(s), int(t)) for s, sym, t in zip(ann.sample, ann.symbol, subtypes, strict=True) if sym == "~"]
        ends = [m[0] for m in marks[1:]] + [sig_len]
        for (start, flag), end in zip(marks, ends[: len(marks)], strict=True):
            if flag:
                mask[start:end] = True
    return mask


def read_record(
    path: Path | str, beat_annotator: str | None = None, rhythm_annotator: str | None = None
) -> AnnotatedRecord:
    """Read one WFDB record with its annotations into an :class:`AnnotatedRecord`.

    ``path`` is the record path with or without ``.hea``. Annotators default to :data:`ANNOTATOR_PREFERENCE`.
    Invalid samples read as 0 mV in ``p_signal``, are ``unusable``, and are kept per lead in ``missing`` so that
    replay can send them as invalid samples.
    """
    base = _record_base(path)
    p_signal, fs, sig_name = read_samples(base)
    found = {ext: ann for ext in ANNOTATOR_PREFERENCE if (ann := _read_annotations(base, ext)) is not None}
    for chosen in (beat_annotator, rhythm_annotator):
        if chosen and chosen not in found and (ann := _read_annotations(base, chosen)) is not None:
            found[chosen] = ann
    with_beats = [ext for ext, ann in found.items() if np.isin(ann.symbol, list(BEAT_CODES)).any()]
    with_rhythm = [ext for ext, ann in found.items() if "+" in ann.symbol]
    beat_ext = beat_annotator or (with_beats[0] if with_beats else None)
    rhythm_ext = rhythm_annotator or (with_rhythm[0] if with_rhythm else None)
    empty = BeatAnnotations(np.zeros(0, dtype=np.int64), np.zeros(0, dtype="<U1"))
    sig_len = p_signal.shape[0]
    missing = ~np.isfinite(p_signal)
    p_signal = np.where(missing, np.float32(0.0), p_signal)
    onsets, meta = _header_facts(base)
    meta.setdefault("source", "wfdb")
    meta.update(beat_annotator=beat_ext, rhythm_annotator=rhythm_ext)
    return AnnotatedRecord(
        record_name=base.name,
        fs=fs,
        sig_name=sig_name,
        p_signal=p_signal,
        beats=_beats_of(found[beat_ext]) if beat_ext in found else empty,
        rhythms=_rhythms_of(found[rhythm_ext], sig_len) if rhythm_ext in found else [RhythmSegment(0, sig_len, "")],
        unusable=_unusable_of(list(found.values()), sig_len) | missing.any(axis=1),
        onsets=onsets,
        meta=meta,
        missing=missing if missing.any() else None,
    )


def _header_facts(base: Path) -> tuple[dict[str, float], dict[str, object]]:
    """Onsets and meta from our JSON header comment (synthetic records); empty for other records."""
    header = wfdb.rdheader(str(base))
    for comment in header.comments or []:
        if comment.startswith(_COMMENT_TAG):
            facts = json.loads(comment[len(_COMMENT_TAG) :])
            return {k: float(v) for k, v in facts["onsets"].items()}, dict(facts["meta"])
    return {}, {}


def find_records(directory: Path | str) -> list[Path]:
    """Record paths (no extension) under ``directory``: from its RECORDS file if present, else every ``*.hea``.

    Icentia11k's nested ``pXX/pXXXXX/pXXXXX_sYY`` layout is found by the recursive search.
    """
    root = Path(directory)
    listing = root / "RECORDS"
    if listing.exists():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        return [root / name for name in names]
    return sorted(p.with_suffix("") for p in root.rglob("*.hea"))


def read_directory(directory: Path | str) -> Iterator[AnnotatedRecord]:
    """Every record of a database directory, one at a time (records can be 24 h long)."""
    for path in find_records(directory):
        yield read_record(path)
