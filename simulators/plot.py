"""A labelled strip of each rhythm (and of a scripted AF onset) as one PNG, ECG-paper style."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulators._scripts import RHYTHM_PRESETS
from simulators.records import AnnotatedRecord
from simulators.scenarios import generate_rhythm, generate_scenario

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_rhythm_strips"]

_STRIP_S = 8.0


def _draw(ax: Axes, record: AnnotatedRecord, lead: str, start_s: float, title: str) -> None:
    """One strip: signal, beat symbols above each beat, a grid of 0.2 s × 0.5 mV like ECG paper."""
    fs = record.fs
    lo, hi = int(start_s * fs), int((start_s + _STRIP_S) * fs)
    t_s = np.arange(lo, hi) / fs
    ax.plot(t_s, record.lead(lead)[lo:hi], color="black", linewidth=0.8)
    ax.set_xticks(np.arange(t_s[0], t_s[-1], 0.2), minor=True)
    ax.grid(which="both", color="#f2b8b8", linewidth=0.4)
    in_view = (record.beats.sample >= lo) & (record.beats.sample < hi)
    for sample, symbol in zip(record.beats.sample[in_view], record.beats.symbol[in_view], strict=True):
        color = {"N": "#2a7", "A": "#27c", "V": "#c22"}.get(str(symbol), "#555")
        ax.text(
            sample / fs, 1.02, str(symbol), color=color, fontsize=7, ha="center", transform=ax.get_xaxis_transform()
        )
    for seg in record.rhythms:
        if lo < seg.start_sample < hi:
            ax.axvline(seg.start_sample / fs, color="#c22", linestyle="--", linewidth=1.0)
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_ylabel(f"{lead} (mV)", fontsize=8)
    ax.tick_params(labelsize=7)


def plot_rhythm_strips(path: Path, fs: float = 250.0, seed: int = 0) -> Path:
    """Draw every rhythm preset (lead II, ambient noise) plus a scripted sinus-to-AF onset; write ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = list(RHYTHM_PRESETS)
    fig, axes = plt.subplots(len(presets) + 1, 1, figsize=(13, 1.7 * (len(presets) + 1)), constrained_layout=True)
    for ax, name in zip(axes, presets, strict=False):
        record = generate_rhythm(name, seconds=_STRIP_S + 2.0, seed=seed, fs=fs, leads=("II",), noise="ambient")
        _draw(ax, record, "II", 1.0, f"{name}  [{record.rhythm_at(int(fs))}]  synthetic")
    onset_rec = generate_scenario("af_onset", seed=seed, minutes=8.0, fs=fs, leads=("V1",), noise="ambient")
    onset_s = onset_rec.onsets["AF"]
    _draw(axes[-1], onset_rec, "V1", onset_s - 4.0, f"af_onset: sinus -> AF at {onset_s:.1f} s (dashed)  synthetic")
    axes[-1].set_xlabel("time (s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
