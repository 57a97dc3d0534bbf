"""1-second encoder windows, assembled incrementally as samples arrive.

Each lead is filtered causally (mains notch + baseline high-pass; filter state carries across chunks so chunk
boundaries leave no transient), cut into 1-second windows on the segment's sample clock, judged for signal quality,
and linearly resampled to 256 samples as CAMEL does. A window is produced exactly once, when its last sample
arrives. :func:`preprocess_record` runs the same code over a whole record, so offline (training, evaluation) and
streaming give the same windows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from core.errors import SignalError
from core.settings import QualitySettings, WindowSettings

__all__ = [
    "PreprocessedRecord",
    "Window",
    "WindowAssembler",
    "WindowBatch",
    "assess_window",
    "design_filter",
    "preprocess_record",
    "resample_window",
]

FloatArray = npt.NDArray[np.float32]


@dataclass(eq=False, slots=True)
class Window:
    """One completed lead-second, ready for the encoder. Treat as immutable (slotted for speed, see WaveChunk)."""

    lead: str
    second: int  # index from the segment origin: covers samples [ceil(second*fs), ceil((second+1)*fs))
    t_start: float  # device time of the window's first sample, Unix seconds
    samples: FloatArray  # (256,) filtered, mV
    valid: bool
    reason: str | None  # why not valid: "gap", "invalid_samples", "leads_off", "saturated", "noisy"


@functools.lru_cache(maxsize=64)
def design_filter(fs: float, settings: WindowSettings) -> npt.NDArray[np.float64] | None:
    """Second-order sections of the causal pre-filter for ``fs``; None when nothing is to be filtered.

    The notch is skipped when mains is too close to Nyquist to be meaningful at this rate. Designs are cached:
    every patient at the same rate shares one array, which nothing writes to.
    """
    sections = []
    if settings.mains_hz is not None and settings.mains_hz < 0.45 * fs:
        b, a = sps.iirnotch(settings.mains_hz, settings.notch_q, fs=fs)
        sections.append(sps.tf2sos(b, a))
    if settings.highpass_hz is not None:
        sections.append(sps.butter(settings.highpass_order, settings.highpass_hz, "highpass", fs=fs, output="sos"))
    if not sections:
        return None
    return np.vstack(sections)


@functools.lru_cache(maxsize=64)
def _steady_state(fs: float, settings: WindowSettings) -> npt.NDArray[np.float64]:
    """Filter state per unit input at rest (``sosfilt_zi``), shared like the design it belongs to."""
    sos = design_filter(fs, settings)
    return sps.sosfilt_zi(sos) if sos is not None else np.zeros((0, 2))


def resample_window(x: npt.NDArray[np.floating], n_out: int = 256) -> FloatArray:
    """Linearly resample windows along the last axis to ``n_out`` samples, first and last kept (CAMEL's tokeniser).

    Examples
    --------
    >>> resample_window(np.array([0.0, 1.0, 2.0]), 5).tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    left, right, frac = _interp_plan(x.shape[-1], n_out)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty((len(rows), n_out), np.float32)
    for start in range(0, len(rows), _RESAMPLE_ROWS):  # the same arithmetic as one expression over all rows
        block = rows[start : start + _RESAMPLE_ROWS]
        low = block[:, left].astype(np.float64, copy=False)
        low *= 1.0 - frac
        high = block[:, right].astype(np.float64, copy=False)
        high *= frac
        low += high
        out[start : start + _RESAMPLE_ROWS] = low
    return out.reshape(*x.shape[:-1], n_out)


_RESAMPLE_ROWS = 32
"""Rows per step of :func:`resample_window`. Its float64 temporaries stay at 64 KB, under glibc's mmap threshold:
over a whole stacked batch (1,024 rows) they were MB-sized, mapped and unmapped on every call, and page faults were
two thirds of its time (4.1 ms and 1,242 minor faults per call, against 1.2 ms and 4 in row blocks)."""


@functools.lru_cache(maxsize=256)
def _interp_plan(n: int, n_out: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Neighbour indexes and weights of linear resampling from ``n`` to ``n_out`` points (few distinct n)."""
    pos = np.linspace(0.0, n - 1, n_out)
    left = np.minimum(pos.astype(np.int64), max(n - 2, 0))
    return left, np.minimum(left + 1, n - 1), pos - left


def assess_window(
    raw_mv: npt.NDArray[np.floating],
    fs: float,
    quality: QualitySettings,
    filtered_mv: npt.NDArray[np.floating] | None = None,
) -> list[str | None]:
    """Signal-quality verdict of 1-s windows ``(n_leads, n)``: per lead None when usable, else why not.

    Flat line and saturation are judged on the raw samples (what the electrode delivered); noise on the filtered
    ones when given, so that mains hum the notch removes does not count against the lead.
    """
    raw = np.atleast_2d(raw_mv)
    x = raw if filtered_mv is None else np.atleast_2d(filtered_mv)
    ptp = np.ptp(raw, axis=-1)
    peak = np.max(np.abs(raw), axis=-1)
    pinned = np.maximum(
        np.count_nonzero(raw == raw.max(axis=-1, keepdims=True), axis=-1),
        np.count_nonzero(raw == raw.min(axis=-1, keepdims=True), axis=-1),
    )
    noisy = np.zeros(len(raw), bool)
    if fs >= 100:
        spectrum = np.abs(np.fft.rfft(x, axis=-1)) ** 2  # the DC bin is outside both bands: no need to detrend
        freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / fs)
        band = spectrum[:, (freqs >= 0.5) & (freqs < 40)].sum(axis=-1)
        high = spectrum[:, freqs >= 40].sum(axis=-1)
        noisy = (band <= 0) | (high > quality.noise_ratio * band)
    saturated = (peak >= quality.saturation_mv) | (
        (pinned >= quality.saturation_fraction * raw.shape[-1]) & (pinned > 3)
    )
    reasons: list[str | None] = []
    for i in range(len(raw)):
        if ptp[i] < quality.flat_ptp_mv:
            reasons.append("leads_off")
        elif saturated[i]:
            reasons.append("saturated")
        elif noisy[i]:
            reasons.append("noisy")
        else:
            reasons.append(None)
    return reasons


class WindowAssembler:
    """Streaming pre-filter and 1-s windowing for all leads of one patient's segment (one shared sample clock).

    ``push`` takes consecutive blocks ``(n_leads, n)`` placed on the segment's sample clock. A jump in
    ``start_index`` is a gap: the partial second before it is emitted as invalid and the filters restart, so
    unrelated samples are never spliced into one window. The ingest worker pushes many assemblers through one
    :class:`WindowBatch`; ``push`` is the one-assembler case of the same code.
    """

    def __init__(
        self, leads: tuple[str, ...], fs: float, t_origin: float, windows: WindowSettings, quality: QualitySettings
    ) -> None:
        self.leads = leads
        self.fs = fs
        self.t_origin = t_origin
        self.n_out = windows.window_samples
        self.quality = quality
        self.sos = design_filter(fs, windows)
        n_sections = 0 if self.sos is None else len(self.sos)
        self._zi = np.zeros((n_sections, len(leads), 2))
        self._zi_unit = _steady_state(fs, windows)
        self._needs_init = np.ones(len(leads), bool)
        self._restarting = True  # some lead's filter must start afresh: saves a numpy call per block otherwise
        self._next_index = 0
        self._second = 0
        self._raw: list[npt.NDArray[np.float64]] = []
        self._filtered: list[npt.NDArray[np.float64]] = []
        self._defect: list[str | None] = [None] * len(leads)

    def push(
        self, start_index: int, block_mv: npt.NDArray[np.floating], invalid: npt.NDArray[np.bool_]
    ) -> list[Window]:
        """Add ``(n_leads, n)`` samples starting at ``start_index``; return completed windows (second, then lead)."""
        batch = WindowBatch()
        ticket = batch.add(self, start_index, block_mv, invalid)
        return batch.run()[ticket]

    def _bounds(self, second: int) -> tuple[int, int]:
        return math.ceil(second * self.fs), math.ceil((second + 1) * self.fs)

    def _init_state(self, lead: int, first_sample: float) -> None:
        """Start lead's filter in steady state for its first sample, so a DC offset makes no transient."""
        self._zi[:, lead, :] = self._zi_unit * first_sample
        self._needs_init[lead] = False

    def begin(self, start_index: int) -> list[_Second]:
        """Check where the next block starts; on a gap, close the partial second and restart the filters."""
        if start_index == self._next_index:
            return []
        if start_index < self._next_index:
            raise SignalError(f"start_index {start_index} < expected {self._next_index}")
        out = [self._take_second(complete=False)] if self._raw else []
        self._needs_init[:] = True
        self._restarting = True
        self._second = math.floor(start_index / self.fs)
        while math.ceil(self._second * self.fs) > start_index:
            self._second -= 1
        first, _ = self._bounds(self._second)
        if start_index > first:
            self._defect = ["gap"] * len(self.leads)
        self._next_index = start_index
        return out

    def spans_one_second(self, n: int) -> bool:
        """True when a block of ``n`` samples starting at the next index is exactly the open second, nothing of
        which has arrived yet: the common case of 1-s chunks, which :class:`WindowBatch` windows without cutting."""
        if self._raw or n < 2:
            return False
        first, end = self._bounds(self._second)
        return first == self._next_index and end - first == n and not any(self._defect)

    def advance_second(self) -> tuple[int, float]:
        """Consume the open second whole (see :meth:`spans_one_second`); its index and start time."""
        second = self._second
        first, end = self._bounds(second)
        self._next_index = end
        self._second += 1
        return second, self.t_origin + first / self.fs

    def take_state(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Filter state ``(n_sections, n_leads, 2)`` for block ``x``, initialising leads that (re)start with it."""
        if self._restarting:
            for lead in np.flatnonzero(self._needs_init):
                self._init_state(int(lead), float(x[lead, 0]))
            self._restarting = bool(self._needs_init.any())
        return self._zi

    def put_state(self, zf: npt.NDArray[np.float64]) -> None:
        self._zi = zf

    def filter_lead_runs(self, x: npt.NDArray[np.float64], bad: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """Slow path for blocks with invalid samples: per lead, restart the filter after each invalid run."""
        y = np.zeros_like(x)
        for lead in range(len(x)):
            if not bad[lead].any():
                y[lead] = self._filter_one(lead, x[lead])
                continue
            edges = np.flatnonzero(np.diff(bad[lead].astype(np.int8))) + 1
            for part in np.split(np.arange(x.shape[1]), edges):
                if bad[lead, part[0]]:
                    self._needs_init[lead] = True
                    self._restarting = True
                else:
                    y[lead, part] = self._filter_one(lead, x[lead, part])
        return y

    def _filter_one(self, lead: int, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.sos is None:
            return x
        if self._needs_init[lead]:
            self._init_state(lead, float(x[0]))
        y, self._zi[:, lead, :] = sps.sosfilt(self.sos, x, zi=self._zi[:, lead, :])
        return np.asarray(y)

    def cut(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], bad: npt.NDArray[np.bool_] | None
    ) -> list[_Second]:
        """Append a raw block and its filtered twin to the open second; return the seconds it completed."""
        out: list[_Second] = []
        pos, n = 0, x.shape[1]
        while pos < n:
            _, end = self._bounds(self._second)
            take = min(end - self._next_index, n - pos)
            self._raw.append(x[:, pos : pos + take])
            self._filtered.append(y[:, pos : pos + take])
            if bad is not None:
                for lead in np.flatnonzero(bad[:, pos : pos + take].any(axis=1)):
                    self._defect[lead] = "invalid_samples"
            pos += take
            self._next_index += take
            if self._next_index == end:
                out.append(self._take_second(complete=True))
                self._second += 1
        return out

    def _take_second(self, complete: bool) -> _Second:
        start, _ = self._bounds(self._second)
        raw = self._raw[0] if len(self._raw) == 1 else np.concatenate(self._raw, axis=1)
        filtered = self._filtered[0] if len(self._filtered) == 1 else np.concatenate(self._filtered, axis=1)
        second = _Second(self, self._second, self.t_origin + start / self.fs, raw, filtered, self._defect, complete)
        self._raw, self._filtered, self._defect = [], [], [None] * len(self.leads)
        return second


@dataclass(eq=False, slots=True)
class _Second:
    """The samples of one second of all leads of one assembler, cut and filtered, awaiting its quality verdict."""

    assembler: WindowAssembler
    second: int
    t_start: float
    raw: npt.NDArray[np.float64]  # (n_leads, n)
    filtered: npt.NDArray[np.float64]  # (n_leads, n)
    defects: list[str | None]  # known before assessment: gap, invalid_samples
    complete: bool  # False: cut short by a gap, never assessed


@dataclass(eq=False, slots=True)
class _Block:
    assembler: WindowAssembler
    ticket: int
    x: npt.NDArray[np.floating]  # (n_leads, n) as received; cast to float64 where it is filtered
    bad: npt.NDArray[np.bool_] | None  # None when every sample is valid (the fast path)


_ASSESS_ROWS = 4096  # rows per stacked quality assessment: bounds memory on whole-record pushes


class WindowBatch:
    """Blocks pushed to many assemblers, filtered and assessed together.

    At 1-s chunks the per-call overhead of scipy's ``sosfilt`` and numpy's reductions dwarfs the arithmetic, so one
    call over the stacked leads of every patient in an ingest batch costs about what one patient's call did. The
    result is bit-identical to pushing each assembler alone: ``sosfilt`` runs row by row, sample by sample.
    Usage: ``ticket = batch.add(...)`` for each block, then ``batch.run()[ticket]`` is that block's windows.
    """

    def __init__(self) -> None:
        self._round: dict[int, _Block] = {}  # id(assembler) -> its block awaiting the filter
        self._seconds: list[list[_Second]] = []  # per ticket: seconds cut, awaiting quality and resampling
        self._ready: list[list[Window]] = []  # per ticket: windows of whole-second blocks, already finished

    def add(
        self,
        assembler: WindowAssembler,
        start_index: int,
        block_mv: npt.NDArray[np.floating],
        invalid: npt.NDArray[np.bool_] | None,
    ) -> int:
        """Queue a block; ``invalid`` marks its unusable samples (None or all False: every sample is valid)."""
        if id(assembler) in self._round:
            self._filter_round()  # its previous block first: the filter state chains from block to block
        partial = assembler.begin(start_index)
        ticket = len(self._seconds)
        self._seconds.append(partial)
        self._ready.append([])
        bad = invalid if invalid is not None and invalid.any() else None
        self._round[id(assembler)] = _Block(assembler, ticket, block_mv, bad)
        return ticket

    def run(self) -> list[list[Window]]:
        """Filter what is pending, assess every completed second, and return the windows of each ticket."""
        self._filter_round()
        flat = [second for seconds in self._seconds for second in seconds]
        windows = iter(_finish_seconds(flat))
        return [
            ready + [w for _ in seconds for w in next(windows)]
            for ready, seconds in zip(self._ready, self._seconds, strict=True)
        ]

    def _filter_round(self) -> None:
        blocks = list(self._round.values())
        self._round.clear()
        fast: dict[tuple[int, int, int], list[_Block]] = {}  # (filter id, block length, quality id) -> blocks
        for block in blocks:
            a = block.assembler
            if block.bad is None and a.sos is not None:
                fast.setdefault((id(a.sos), block.x.shape[1], id(a.quality)), []).append(block)
                continue
            x = np.asarray(block.x, dtype=np.float64)
            if block.bad is not None:
                self._seconds[block.ticket] += a.cut(x, a.filter_lead_runs(x, block.bad), block.bad)
            else:
                self._seconds[block.ticket] += a.cut(x, x, None)
        for group in fast.values():
            self._filter_stacked(group)

    def _filter_stacked(self, group: list[_Block]) -> None:
        """One filter call for the group; blocks that are exactly their assembler's open second are then assessed
        and resampled straight from the stacked arrays (the 1-s chunk case), the rest are cut as usual."""
        zi = np.concatenate([b.assembler.take_state(b.x) for b in group], axis=1)
        x = np.concatenate([b.x for b in group], dtype=np.float64)
        y, zf = sps.sosfilt(group[0].assembler.sos, x, axis=-1, zi=zi)
        whole: list[tuple[_Block, slice]] = []
        for b, rows in zip(group, _row_spans(len(b.x) for b in group), strict=True):
            a = b.assembler
            a.put_state(zf[:, rows])  # a view: each assembler owns its rows of zf
            if a.spans_one_second(b.x.shape[1]):
                whole.append((b, rows))
            else:
                self._seconds[b.ticket] += a.cut(x[rows], y[rows], None)
        if whole:
            self._finish_whole_seconds(whole, x, y)

    def _finish_whole_seconds(
        self, whole: list[tuple[_Block, slice]], x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
    ) -> None:
        """Quality verdicts, resampling and windows for whole-second blocks, on their rows of the stacked arrays."""
        if sum(rows.stop - rows.start for _, rows in whole) != len(x):  # some blocks were cut: keep the others
            take = np.concatenate([np.arange(rows.start, rows.stop) for _, rows in whole])
            x, y = x[take], y[take]
        a = whole[0][0].assembler
        resampled = resample_window(y, a.n_out)
        measured = assess_window(x, a.fs, a.quality, y)
        row = 0
        for b, _ in whole:
            assembler = b.assembler
            second, t_start = assembler.advance_second()
            windows = self._ready[b.ticket]
            for lead in assembler.leads:
                reason = measured[row]
                windows.append(Window(lead, second, t_start, resampled[row], reason is None, reason))
                row += 1


def _row_spans(counts: Iterable[int]) -> Iterator[slice]:
    """Row slices of consecutive blocks with these row counts, in an array that stacks them."""
    row = 0
    for n in counts:
        yield slice(row, row + n)
        row += n


def _finish_seconds(seconds: list[_Second]) -> list[list[Window]]:
    """Quality verdicts and 256-sample resampling for many seconds, stacked per group to save calls.

    A second cut short by a gap is not assessed: all its windows are invalid with reason "gap".
    """
    out: list[list[Window]] = [[] for _ in seconds]
    for idx in _groups(seconds):
        first = seconds[idx[0]]
        a = first.assembler
        filtered = np.concatenate([seconds[i].filtered for i in idx]) if len(idx) > 1 else first.filtered
        if filtered.shape[1] >= 2:
            resampled = resample_window(filtered, a.n_out)
        else:
            resampled = np.zeros((len(filtered), a.n_out), np.float32)
        measured: list[str | None] = []  # only complete seconds are assessed
        if first.complete:
            raw = np.concatenate([seconds[i].raw for i in idx]) if len(idx) > 1 else first.raw
            measured = assess_window(raw, a.fs, a.quality, filtered)
        row = 0
        for i in idx:
            s = seconds[i]
            windows = out[i]
            for k, lead in enumerate(s.assembler.leads):
                reason = (s.defects[k] or measured[row]) if s.complete else "gap"
                windows.append(Window(lead, s.second, s.t_start, resampled[row], reason is None, reason))
                row += 1
    return out


def _groups(seconds: list[_Second]) -> Iterator[list[int]]:
    """Indexes of ``seconds`` that can be assessed and resampled in one stack (same completeness, rate, length,
    settings), in chunks of bounded rows."""
    groups: dict[Hashable, list[int]] = {}
    for i, s in enumerate(seconds):
        a = s.assembler
        groups.setdefault((s.complete, a.fs, s.raw.shape[1], id(a.quality), a.n_out), []).append(i)
    for idx in groups.values():
        per_chunk = max(1, _ASSESS_ROWS // len(seconds[idx[0]].defects))
        for k in range(0, len(idx), per_chunk):
            yield idx[k : k + per_chunk]


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
    names = tuple(sig_name or [f"lead{i}" for i in range(p_signal.shape[1])])
    x = np.asarray(p_signal, dtype=np.float64).T  # (sig_len, n_sig) -> (n_sig, sig_len)
    produced = WindowAssembler(names, fs, 0.0, windows, quality).push(0, x, ~np.isfinite(x))
    n_sig, n_seconds = len(names), len(produced) // len(names)
    grid = [[produced[s * n_sig + i] for s in range(n_seconds)] for i in range(n_sig)]  # [lead][second]
    stacked = np.array([[w.samples for w in lead] for lead in grid], dtype=np.float32)
    valid = np.array([[w.valid for w in lead] for lead in grid], dtype=bool)
    reasons = [[w.reason for w in lead] for lead in grid]
    return PreprocessedRecord(stacked.reshape(n_sig, n_seconds, windows.window_samples), valid, reasons)
