"""Input checks at the edge of the measurement functions, with messages that name the bad parameter."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from core.errors import SignalError

__all__ = ["MAX_FS", "MIN_FS", "check_fs", "check_p_signal", "check_r_peaks", "check_sig"]

MIN_FS = 100.0  # below this the 5–15 Hz QRS band and 10 ms width resolution are lost
MAX_FS = 2000.0  # above any ECG front end we expect; guards against fs passed in the wrong unit


def check_fs(fs: float) -> float:
    """Return ``fs`` as float, or raise :class:`SignalError` naming ``fs`` when it is unusable."""
    if isinstance(fs, bool) or not isinstance(fs, int | float | np.integer | np.floating):
        raise SignalError(f"fs must be a number in Hz, got {type(fs).__name__}")
    value = float(fs)
    if not math.isfinite(value) or value <= 0:
        raise SignalError(f"fs must be a positive finite sampling rate in Hz, got {fs!r}")
    if not MIN_FS <= value <= MAX_FS:
        raise SignalError(f"fs={value:g} Hz is outside the supported range {MIN_FS:g}–{MAX_FS:g} Hz")
    return value


def check_sig(sig_mv: npt.ArrayLike, name: str = "sig_mv") -> npt.NDArray[np.float64]:
    """Return a 1-D float64 copy-free view of a single-lead signal, or raise naming ``name``."""
    arr = np.asarray(sig_mv)
    if arr.ndim != 1:
        raise SignalError(f"{name} must be 1-D (sig_len,), got shape {arr.shape}; pass one lead or use measure_leads")
    if arr.size == 0:
        raise SignalError(f"{name} is empty (sig_len=0)")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise SignalError(f"{name} must be real numbers in mV, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def check_p_signal(p_signal: npt.ArrayLike, sig_name: list[str] | tuple[str, ...]) -> npt.NDArray[np.float64]:
    """Return a 2-D ``(sig_len, n_sig)`` float64 array matching ``sig_name``, or raise naming the parameter."""
    arr = np.asarray(p_signal)
    if arr.ndim != 2:
        raise SignalError(f"p_signal must be 2-D (sig_len, n_sig), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SignalError(f"p_signal is empty, shape {arr.shape}")
    if len(sig_name) != arr.shape[1]:
        raise SignalError(f"sig_name has {len(sig_name)} names but p_signal has n_sig={arr.shape[1]} columns")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise SignalError(f"p_signal must be real numbers in mV, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def check_r_peaks(r_peaks: npt.ArrayLike, sig_len: int) -> npt.NDArray[np.int64]:
    """Return sorted, unique, in-range integer R-peak indices, or raise naming ``r_peaks``."""
    arr = np.asarray(r_peaks)
    if arr.ndim != 1:
        raise SignalError(f"r_peaks must be 1-D sample indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise SignalError(f"r_peaks must be integer sample indices, got dtype {arr.dtype}")
    peaks = arr.astype(np.int64, copy=False)
    if peaks.size and (peaks.min() < 0 or peaks.max() >= sig_len):
        raise SignalError(f"r_peaks must lie in [0, sig_len={sig_len}), got range {peaks.min()}–{peaks.max()}")
    if peaks.size > 1 and np.any(np.diff(peaks) <= 0):
        raise SignalError("r_peaks must be strictly increasing sample indices")
    return peaks
