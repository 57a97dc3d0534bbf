"""Beat-centred 1-second windows, for probing what the encoder codes about beat morphology.

A clock-aligned lead-second holds its beat at an arbitrary position, and the embedding codes shape by position
(4 channels x 16 positions), which a linear probe cannot pool over. So beat type is also probed the standard way:
one window centred on each annotated beat, cut from the signal as the agent filters it (the same causal notch and
high-pass, :class:`core.windows.WindowAssembler`) and resampled to 256 samples over the span of the agent's 1-s
window. Windows that leave the record's complete seconds, or touch a second the agent marks invalid for that lead,
are skipped. Synthetic data only (``simulators.scenarios``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from core.settings import QualitySettings, WindowSettings
from core.windows import WindowAssembler, preprocess_record
from encoder_onnx.data import DataSpec, patient_columns, synthetic_patient

__all__ = [
    "BEAT_CLASSES",
    "BeatWindows",
    "beat_windows",
    "centred_windows",
    "cut_beat_windows",
    "filtered_signal",
    "window_fits",
]

BEAT_CLASSES: Final = {"N": "N", "A": "A", "V": "V"}
"""Beat symbol -> probe class. The generator (version 1) writes only these three MIT-BIH symbols: N for sinus beats
and for beats conducted in AF and flutter, A for PACs and atrial runs, V for PVCs, couplets and every beat of VT.
Any other symbol is skipped, not guessed."""


@dataclass(frozen=True, eq=False)
class BeatWindows:
    """Every annotated beat of one record, windowed on every lead."""

    windows: npt.NDArray[np.float32]  # (n_sig, n_beats, 256) filtered mV, the beat at output position 127.5
    usable: npt.NDArray[np.bool_]  # (n_sig, n_beats) inside the record, valid seconds only, symbol mapped
    label: npt.NDArray[np.str_]  # (n_beats,) probe class from BEAT_CLASSES, "" for unmapped symbols
    second: npt.NDArray[np.int32]  # (n_beats,) the second holding the beat sample


def filtered_signal(
    p_signal: npt.NDArray[np.floating], fs: float, settings: WindowSettings | None = None
) -> npt.NDArray[np.float64]:
    """The agent's causal pre-filter over a whole record: ``p_signal`` (sig_len, n_sig) mV -> (n_sig, sig_len) mV.

    Runs the agent's own code (``WindowAssembler.filter_lead_runs``): each lead starts in steady state at its first
    sample and restarts after every run of non-finite samples, which read 0 here and make their seconds invalid.
    """
    x = np.asarray(p_signal, dtype=np.float64).T  # (sig_len, n_sig) -> (n_sig, sig_len)
    names = tuple(f"lead{i}" for i in range(len(x)))
    windows = settings or WindowSettings.model_validate({})  # the agent's defaults
    assembler = WindowAssembler(names, fs, 0.0, windows, QualitySettings.model_validate({}))  # quality: unused here
    return assembler.filter_lead_runs(x, ~np.isfinite(x))


def _half_span(fs: float) -> float:
    """Half the span of the agent's 1-s window, in samples: it resamples round(fs) samples, i.e. round(fs) - 1
    sample intervals, to 256 points."""
    return (round(fs) - 1) / 2.0


def centred_windows(
    filtered: npt.NDArray[np.float64], fs: float, centres: npt.NDArray[np.int64], n_out: int = 256
) -> npt.NDArray[np.float32]:
    """Linearly resampled windows ``(n_sig, len(centres), n_out)`` of ``filtered`` (n_sig, sig_len), centred on
    samples ``centres``.

    Each window spans what the agent's 1-s window spans (round(fs) - 1 intervals) on the same output grid, shifted so
    that the centre sample lands exactly midway between outputs ``n_out / 2 - 1`` and ``n_out / 2`` (at an odd
    round(fs) this is ``resample_window`` of the round(fs) samples around the centre). Positions outside the signal
    are clamped to its ends; :func:`window_fits` says which windows lie inside.

    Examples
    --------
    >>> ramp = np.arange(11, dtype=np.float64)[None, :]
    >>> w = centred_windows(ramp, fs=5.0, centres=np.array([5]), n_out=5)
    >>> w[0, 0].tolist()
    [3.0, 4.0, 5.0, 6.0, 7.0]
    """
    sig_len = filtered.shape[-1]
    pos = centres[:, None] - _half_span(fs) + np.linspace(0.0, 2 * _half_span(fs), n_out)[None, :]  # (K, n_out)
    pos = np.clip(pos, 0, sig_len - 1)
    left = np.minimum(np.floor(pos).astype(np.int64), max(sig_len - 2, 0))
    frac = pos - left
    right = np.minimum(left + 1, sig_len - 1)
    return (filtered[:, left] * (1.0 - frac) + filtered[:, right] * frac).astype(np.float32)  # (n_sig, K, n_out)


def window_fits(centres: npt.NDArray[np.int64], fs: float, valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Per lead and beat ``(n_sig, K)``: does the window centred on each sample lie inside the complete seconds and
    touch only seconds the agent judged valid? ``valid`` (n_sig, n_sec) is ``preprocess_record``'s verdict; second
    s covers samples [ceil(s fs), ceil((s + 1) fs)), as in the agent."""
    n_sec = valid.shape[1]
    if n_sec == 0:
        return np.zeros((len(valid), len(centres)), dtype=bool)
    first = np.floor(centres - _half_span(fs)).astype(np.int64)  # outermost samples the interpolation reads
    last = np.ceil(centres + _half_span(fs)).astype(np.int64)
    starts = np.ceil(np.arange(n_sec + 1) * fs).astype(np.int64)  # (n_sec + 1,) second boundaries
    inside = (first >= 0) & (last < starts[-1])
    s_first = np.clip(np.searchsorted(starts, first, side="right") - 1, 0, n_sec - 1)
    s_last = np.clip(np.searchsorted(starts, last, side="right") - 1, 0, n_sec - 1)
    invalid_before = np.concatenate([np.zeros((len(valid), 1), np.int64), np.cumsum(~valid, axis=1)], axis=1)
    clean = invalid_before[:, s_last + 1] == invalid_before[:, s_first]  # (n_sig, K) no invalid second in between
    fits: npt.NDArray[np.bool_] = inside[None, :] & clean
    return fits


def beat_windows(
    p_signal: npt.NDArray[np.floating],
    fs: float,
    beat_samples: npt.NDArray[np.int64],
    beat_symbols: npt.NDArray[np.str_],
) -> BeatWindows:
    """Beat-centred windows of a record ``p_signal`` (sig_len, n_sig) mV at ``fs``, with the agent's filtering and
    signal-quality verdicts; ``beat_samples`` are the beats' fiducial samples (R peak or main QRS deflection)."""
    samples = np.asarray(beat_samples, dtype=np.int64)
    label = np.array([BEAT_CLASSES.get(str(s), "") for s in beat_symbols], dtype="<U1")
    valid = preprocess_record(p_signal, fs).valid  # (n_sig, n_sec)
    starts = np.ceil(np.arange(valid.shape[1] + 1) * fs).astype(np.int64)
    return BeatWindows(
        windows=centred_windows(filtered_signal(p_signal, fs), fs, samples),
        usable=window_fits(samples, fs, valid) & (label != "")[None, :],
        label=label,
        second=(np.searchsorted(starts, samples, side="right") - 1).astype(np.int32),
    )


def cut_beat_windows(spec: DataSpec, k: int) -> dict[str, npt.NDArray[np.generic]]:
    """Patient ``k`` of ``spec`` cut into one window per usable (lead, beat): the fields of a ``WindowSet``
    (``beat`` = the centred beat's class, ``rhythm`` = the rhythm at the beat, ``valid`` all true)."""
    patient = synthetic_patient(spec, k)
    rec = patient.record
    beats = beat_windows(np.asarray(rec.p_signal), rec.fs, rec.beats.sample, rec.beats.symbol)
    lead_of, beat_of = np.nonzero(beats.usable)  # lead-major, beats in time order
    return {
        "windows": beats.windows[lead_of, beat_of],  # (n_usable, 256)
        "valid": np.ones(len(beat_of), dtype=bool),
        "second": beats.second[beat_of],
        "rhythm": np.array(rec.rhythm_labels(rec.beats.sample[beat_of]), dtype=str),
        "beat": beats.label[beat_of],
        **patient_columns(k, patient, patient.lead_idx[lead_of].astype(np.int32)),
    }
