"""The one annotated-record type shared by synthetic scenarios and WFDB records read from disk.

Why one type: the encoder trainer, the benchmark builder and the replay publisher must not care whether a record
came from the generator or from PhysioNet, so both paths produce an :class:`AnnotatedRecord`.
Rhythm labels follow MIT-BIH aux-note conventions ("(N", "(AFIB", "(AFL", "(VT", ...); beat symbols follow
MIT-BIH beat codes ('N' normal, 'A' atrial premature, 'V' ventricular premature).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from core.errors import SignalError

__all__ = [
    "BEAT_SYMBOLS",
    "RHYTHM_CLASSES",
    "RHYTHM_LABELS",
    "AnnotatedRecord",
    "BeatAnnotations",
    "RhythmSegment",
    "rhythm_class",
]

BEAT_SYMBOLS: Final[dict[str, str]] = {"N": "normal", "A": "atrial premature", "V": "ventricular premature"}

RHYTHM_LABELS: Final[dict[str, str]] = {
    "(N": "normal sinus rhythm",
    "(SBR": "sinus bradycardia",
    "(ST": "sinus tachycardia (not an MIT-BIH code; MIT-BIH files it under (N)",
    "(SVTA": "supraventricular tachyarrhythmia (atrial run)",
    "(B": "ventricular bigeminy",
    "(T": "ventricular trigeminy",
    "(AFIB": "atrial fibrillation",
    "(AFL": "atrial flutter",
    "(VT": "ventricular tachycardia",
}
"""Aux notes the generator writes; readers accept any other aux note and map it with :func:`rhythm_class`."""

RHYTHM_CLASSES: Final[tuple[str, ...]] = ("sinus", "af", "flutter", "vt")
"""Forecasting classes: ECGForecastBench's sinus / AF / flutter plus ventricular tachycardia (our extension)."""

_CLASS_OF_AUX: Final[dict[str, str]] = {"(AFIB": "af", "(AF": "af", "(AFL": "flutter", "(VT": "vt", "(VFL": "vt"}


def rhythm_class(aux: str) -> str:
    """Forecasting class of an aux note: "(AFIB" -> "af", "(AFL" -> "flutter", "(VT" -> "vt", else "sinus".

    Everything that is not AF, flutter or VT is supraventricular-sinus-like for ECGForecastBench ("(N", "(SBR",
    bigeminy, atrial runs, pacing, ...); Icentia11k's rhythm codes are mapped the same way.
    """
    return _CLASS_OF_AUX.get(aux.strip().rstrip("\x00"), "sinus")


@dataclass(frozen=True)
class RhythmSegment:
    """A half-open stretch ``[start_sample, end_sample)`` with one rhythm aux note, e.g. "(AFIB"."""

    start_sample: int
    end_sample: int
    aux: str


@dataclass(frozen=True, eq=False)
class BeatAnnotations:
    """Beat fiducials (R peak or main QRS deflection) and their MIT-BIH symbols."""

    sample: npt.NDArray[np.int64]  # (n_beats,) sample indices, increasing
    symbol: npt.NDArray[np.str_]  # (n_beats,) 'N', 'A', 'V', ...

    def __len__(self) -> int:
        return int(self.sample.shape[0])

    def count(self, symbol: str) -> int:
        return int(np.count_nonzero(self.symbol == symbol))


@dataclass(eq=False)
class AnnotatedRecord:
    """A multi-lead ECG with beat and rhythm annotations, signal-quality labels and scripted onsets.

    ``p_signal`` is (sig_len, n_sig) float32 in mV, as wfdb's ``Record.p_signal``. ``rhythms`` cover the
    record contiguously from sample 0. ``onsets`` maps an arrhythmia ("AF", "AFL", "VT") to the scripted onset
    time in seconds (synthetic records; empty for real ones unless derived). ``unusable`` marks noise, lead-off
    and saturation stretches. ``missing`` (sig_len, n_sig), when not None, marks samples the source recorded as
    invalid (WFDB's invalid sample value): ``p_signal`` holds 0 mV there so training and the benchmark read finite
    numbers, and replay sends them as invalid samples, never as a flat line.
    """

    record_name: str
    fs: float
    sig_name: list[str]
    p_signal: npt.NDArray[np.float32]
    beats: BeatAnnotations
    rhythms: list[RhythmSegment]
    unusable: npt.NDArray[np.bool_]
    onsets: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    missing: npt.NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        if self.p_signal.ndim != 2 or self.p_signal.shape[1] != len(self.sig_name):
            raise SignalError(f"p_signal shape {self.p_signal.shape} does not match sig_name {self.sig_name}")
        if self.unusable.shape != (self.sig_len,):
            raise SignalError(f"unusable has shape {self.unusable.shape}, expected ({self.sig_len},)")
        if self.missing is not None and self.missing.shape != self.p_signal.shape:
            raise SignalError(f"missing has shape {self.missing.shape}, expected {self.p_signal.shape}")
        self._rhythm_starts = np.array([seg.start_sample for seg in self.rhythms], dtype=np.int64)

    @property
    def sig_len(self) -> int:
        return int(self.p_signal.shape[0])

    @property
    def n_sig(self) -> int:
        return int(self.p_signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.sig_len / self.fs

    def rhythm_at(self, sample: int) -> str:
        """Rhythm aux note in force at ``sample`` ("" before the first rhythm annotation of a real record)."""
        index = int(np.searchsorted(self._rhythm_starts, sample, side="right")) - 1
        return self.rhythms[index].aux if index >= 0 else ""

    def rhythm_labels(self, samples: npt.NDArray[np.int64]) -> list[str]:
        """Vectorised :meth:`rhythm_at` for many sample indices."""
        index = np.searchsorted(self._rhythm_starts, samples, side="right") - 1
        return [self.rhythms[i].aux if i >= 0 else "" for i in index]

    def class_at(self, sample: int) -> str:
        """Forecasting class (see :data:`RHYTHM_CLASSES`) at ``sample``."""
        return rhythm_class(self.rhythm_at(sample))

    def lead(self, name: str) -> npt.NDArray[np.float32]:
        """One lead's samples by name, (sig_len,)."""
        if name not in self.sig_name:
            raise SignalError(f"lead {name!r} not in record {self.record_name!r} (has {self.sig_name})")
        return self.p_signal[:, self.sig_name.index(name)]
