"""1-second encoder windows, assembled incrementally as samples arrive.

Each lead is filtered causally (mains notch + baseline high-pass; filter state carries across chunks so chunk
boundaries leave no transient), cut into 1-second windows on the segment's sample clock, judged for signal quality,
and linearly resampled to 256 samples as CAMEL does. A window is produced exactly once, when its last sample
arrives. :func:`preprocess_record` runs the same code over a whole record, so offline (training, evaluation) and
streaming give the same windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from agent.errors import SignalError
from agent.settings import QualitySettings, WindowSettings

__all__ = [
    "LeadWindowAssembler",
    "PreprocessedRecord",
    "Window",
    "assess_window",
    "design_filter",
    "preprocess_record",
    "resample_window",
]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Window:
    """One completed lead-second, ready for the encoder."""

    lead: str
    second: int  # index from the segment origin: covers samples [ceil(second*fs), ceil((second+1)*fs))
    t_start: float  # device time of the window's first sample, Unix seconds
    samples: FloatArray  # (256,) filtered, mV
    valid: bool
    reason: str | None  # why not valid: "gap", "invalid_samples", "leads_off", "saturated", "noisy"


def design_filter(fs: float, settings: WindowSettings) -> npt.NDArray[np.float64] | None:
    """Second-order sections of the causal pre-filter for ``fs``; None when nothing is to be filtered.

    The notch is skipped when mains is too close to Nyquist to be meaningful at this rate.
    """
    sections = []
    if settings.mains_hz is not None and settings.mains_hz < 0.45 * fs:
        b, a = sps.iirnotch(settings.mains_hz, settings.notch_q, fs=fs)
        sections.append(sps.tf2sos(b, a))
    if settings.highpass_hz is not None:
        sections.append(sps.butter(settings.highpass_order, settings.highpass_hz, "highpass", fs=fs, output="sos"))
    return np.vstack(sections) if sections else None


def resample_window(x: npt.NDArray[np.floating], n_out: int = 256) -> FloatArray:
    """Linearly resample one window to ``n_out`` samples, first and last samples kept (CAMEL's tokeniser).

    Examples
    --------
    >>> resample_window(np.array([0.0, 1.0, 2.0]), 5).tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    n = len(x)
    return np.interp(np.linspace(0.0, n - 1, n_out), np.arange(n), x).astype(np.float32)


def assess_window(
    raw_mv: npt.NDArray[np.floating],
    fs: float,
    quality: QualitySettings,
    filtered_mv: npt.NDArray[np.floating] | None = None,
) -> str | None:
    """Signal-quality verdict of one 1-s window: None when usable, else the reason it is not.

    Flat line and saturation are judged on the raw samples (what the electrode delivered); noise on the filtered
    ones when given, so that mains hum the notch removes does not count against the lead.
    """
    ptp = float(np.ptp(raw_mv))
    if ptp < quality.flat_ptp_mv:
        return "leads_off"
    peak = float(np.max(np.abs(raw_mv)))
    if peak >= quality.saturation_mv:
        return "saturated"
    pinned = max(np.count_nonzero(raw_mv == raw_mv.max()), np.count_nonzero(raw_mv == raw_mv.min()))
    if pinned >= quality.saturation_fraction * len(raw_mv) and pinned > 3:
        return "saturated"
    if fs >= 100:
        x = raw_mv if filtered_mv is None else filtered_mv
        spectrum = np.abs(np.fft.rfft(x - x.mean())) ** 2
        freqs = np.fft.rfftfreq(len(x), 1.0 / fs)
        band = spectrum[(freqs >= 0.5) & (freqs < 40)].sum()
        high = spectrum[freqs >= 40].sum()
        if band <= 0 or high / band > quality.noise_ratio:
            return "noisy"
    return None


class LeadWindowAssembler:
    """Streaming pre-filter and 1-s windowing for one lead of one segment.

    ``push`` takes consecutive blocks placed on the segment's sample clock. A jump in ``start_index`` is a gap:
    the partial second before it is emitted as invalid and the filter restarts, so unrelated samples are never
    spliced into one window.
    """

    def __init__(
        self, lead: str, fs: float, t_origin: float, windows: WindowSettings, quality: QualitySettings
    ) -> None:
        self.lead = lead
        self.fs = fs
        self.t_origin = t_origin
        self._n_out = windows.window_samples
        self._quality = quality
        self._sos = design_filter(fs, windows)
        self._zi: npt.NDArray[np.float64] | None = None
        self._next_index = 0
        self._second = 0
        self._raw: list[npt.NDArray[np.float64]] = []
        self._filtered: list[npt.NDArray[np.float64]] = []
        self._defect: str | None = None

    def _bounds(self, second: int) -> tuple[int, int]:
        return math.ceil(second * self.fs), math.ceil((second + 1) * self.fs)

    def _filter(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self._sos is None:
            return x
        if self._zi is None:
            self._zi = sps.sosfilt_zi(self._sos) * x[0]
        y, self._zi = sps.sosfilt(self._sos, x, zi=self._zi)
        return np.asarray(y)

    def _emit(self, complete: bool) -> Window:
        start, _ = self._bounds(self._second)
        raw = np.concatenate(self._raw) if self._raw else np.zeros(0)
        filtered = np.concatenate(self._filtered) if self._filtered else np.zeros(0)
        reason = self._defect if complete else "gap"
        if reason is None:
            reason = assess_window(raw, self.fs, self._quality, filtered)
        samples = resample_window(filtered, self._n_out) if len(filtered) >= 2 else np.zeros(self._n_out, np.float32)
        window = Window(self.lead, self._second, self.t_origin + start / self.fs, samples, reason is None, reason)
        self._raw, self._filtered, self._defect = [], [], None
        return window

    def _gap_to(self, start_index: int) -> list[Window]:
        """Close the partial second before a gap and restart the filter at ``start_index``."""
        out = [self._emit(complete=False)] if self._raw else []
        self._zi = None
        self._second = math.floor(start_index / self.fs)
        while math.ceil(self._second * self.fs) > start_index:
            self._second -= 1
        first, _ = self._bounds(self._second)
        if start_index > first:
            self._defect = "gap"
        self._next_index = start_index
        return out

    def _feed_run(self, x: npt.NDArray[np.float64], bad: npt.NDArray[np.bool_]) -> None:
        """Filter one block, restarting the filter after every run of invalid samples."""
        y = np.zeros_like(x)
        edges = np.flatnonzero(np.diff(bad.astype(np.int8))) + 1
        for part in np.split(np.arange(len(x)), edges):
            if not len(part):
                continue
            if bad[part[0]]:
                self._zi = None
                self._defect = "invalid_samples"
            else:
                y[part] = self._filter(x[part])
        self._raw.append(x)
        self._filtered.append(y)

    def push(
        self, start_index: int, block_mv: npt.NDArray[np.floating], invalid: npt.NDArray[np.bool_]
    ) -> list[Window]:
        """Add samples starting at ``start_index``; return the windows this block completed, in order."""
        out: list[Window] = []
        if start_index != self._next_index:
            if start_index < self._next_index:
                raise SignalError(f"lead {self.lead}: start_index {start_index} < expected {self._next_index}")
            out += self._gap_to(start_index)
        x = np.asarray(block_mv, dtype=np.float64)
        pos = 0
        while pos < len(x):
            _, end = self._bounds(self._second)
            take = min(end - (self._next_index), len(x) - pos)
            if invalid[pos : pos + take].any():
                self._feed_run(x[pos : pos + take], invalid[pos : pos + take])
            else:
                self._raw.append(x[pos : pos + take])
                self._filtered.append(self._filter(x[pos : pos + take]))
            pos += take
            self._next_index += take
            if self._next_index == end:
                out.append(self._emit(complete=True))
                self._second += 1
        return out


@dataclass(frozen=True, eq=False)
class PreprocessedRecord:
    """A whole record cut into encoder windows, exactly as the streaming path would produce them."""

    windows: FloatArray  # (n_sig, n_seconds, 256) filtered mV
    valid: npt.NDArray[np.bool_]  # (n_sig, n_seconds)
    reasons: list[list[str | None]]  # [n_sig][n_seconds]


def preprocess_record(
    p_signal: npt.NDArray[np.floating],
    fs: float,
    windows: WindowSettings | None = None,
    quality: QualitySettings | None = None,
    sig_name: list[str] | None = None,
) -> PreprocessedRecord:
    """Offline twin of the streaming path: ``p_signal`` (sig_len, n_sig) in mV → complete 1-s windows per lead.

    Non-finite samples are treated as invalid, as the agent does. Only complete seconds are returned.

    Examples
    --------
    >>> rec = preprocess_record(np.zeros((500, 2)) + 1.0, fs=250.0)
    >>> rec.windows.shape, rec.reasons[0]
    ((2, 2, 256), ['leads_off', 'leads_off'])
    """
    if p_signal.ndim != 2:
        raise SignalError(f"p_signal must be 2-D (sig_len, n_sig), got shape {p_signal.shape}")
    if not fs > 0:
        raise SignalError(f"fs must be positive, got {fs}")
    windows = windows or WindowSettings()
    quality = quality or QualitySettings()
    names = sig_name or [f"lead{i}" for i in range(p_signal.shape[1])]
    per_lead = []
    for i, name in enumerate(names):
        assembler = LeadWindowAssembler(name, fs, 0.0, windows, quality)
        column = np.asarray(p_signal[:, i], dtype=np.float64)
        per_lead.append(assembler.push(0, column, ~np.isfinite(column)))
    n_seconds = min(len(w) for w in per_lead)
    stacked = np.stack([[w.samples for w in lead[:n_seconds]] for lead in per_lead]).astype(np.float32)
    valid = np.array([[w.valid for w in lead[:n_seconds]] for lead in per_lead], dtype=bool)
    reasons = [[w.reason for w in lead[:n_seconds]] for lead in per_lead]
    return PreprocessedRecord(stacked.reshape(len(names), n_seconds, windows.window_samples), valid, reasons)
