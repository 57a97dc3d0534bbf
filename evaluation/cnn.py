"""The fully supervised 1-D CNN baseline on the raw window (one lead, resampled to ``fs_hz``).

One network serves every cell: convolutions and global pooling accept any window length, and the head has, per
horizon, 4 rhythm logits and 3 onset logits. Samples that share an input (record, anchor, w) share one forward;
a horizon whose label a sample lacks is masked out of the loss. Trained on the training patients only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import structlog
import torch
from scipy.signal import resample_poly
from torch import nn

from evaluation.data import CLASSES, ONSETS, RecordSource, Sample
from evaluation.features import lead_index
from evaluation.predictions import Predictions

__all__ = ["CnnBaseline", "CnnConfig"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CnnConfig:
    horizons_s: tuple[int, ...] = (60, 180, 300, 600)
    fs_hz: float = 50.0  # R-peak timing to 20 ms and flutter waves (4-6 Hz) survive; 5x less compute than 250 Hz
    channels: tuple[int, ...] = (1, 16, 32, 64, 64)  # four stride-2 blocks: 16x shorter before pooling
    kernel_size: int = 7
    epochs: int = 4  # enough to fit the training patients on 2 cores; more overfits 24 patients
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0


class _Net(nn.Module):
    def __init__(self, config: CnnConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(config.channels):
            pad = config.kernel_size // 2
            blocks += [nn.Conv1d(c_in, c_out, config.kernel_size, 2, pad), nn.BatchNorm1d(c_out), nn.ReLU()]
        self.features = nn.Sequential(*blocks)
        self.n_out = len(CLASSES) + len(ONSETS)
        self.head = nn.Linear(2 * config.channels[-1], len(config.horizons_s) * self.n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n) mV at fs_hz -> (B, n_horizons, 4 + 3) logits."""
        h = self.features(x.unsqueeze(1))  # (B, n) -> (B, 1, n) -> (B, C, n / 16)
        pooled = torch.cat([h.mean(2), h.amax(2)], dim=1)  # (B, 2C)
        logits: torch.Tensor = self.head(pooled)  # (B, H * 7)
        return logits.view(x.shape[0], -1, self.n_out)  # (B, H * 7) -> (B, H, 7)


class CnnBaseline:
    def __init__(self, data: RecordSource, config: CnnConfig | None = None) -> None:
        self.data = data
        self.config = config or CnnConfig()
        self._signals: dict[str, npt.NDArray[np.float32]] = {}
        torch.manual_seed(self.config.seed)
        self.net = _Net(self.config)

    def _signal(self, record_id: str) -> npt.NDArray[np.float32]:
        if record_id not in self._signals:
            rec = self.data.record(record_id)
            ratio = Fraction(self.config.fs_hz / rec.fs).limit_denominator(1000)
            lead = rec.p_signal[:, lead_index(rec)]
            x = resample_poly(lead, ratio.numerator, ratio.denominator).astype(np.float32)
            self._signals[record_id] = np.clip(x, -5.0, 5.0)
        return self._signals[record_id]

    def _inputs(self, keys: Sequence[tuple[str, float, int]]) -> torch.Tensor:
        fs = self.config.fs_hz
        rows = []
        for record_id, anchor_s, window_s in keys:
            x = self._signal(record_id)
            end = round(anchor_s * fs)
            rows.append(x[end - round(window_s * fs) : end])
        return torch.from_numpy(np.stack(rows))

    def _targets(self, samples: Sequence[Sample]) -> tuple[list[tuple[str, float, int]], torch.Tensor, torch.Tensor]:
        """Unique inputs, rhythm targets (N, H) with -1 where absent, onset targets (N, H, 3) with -1 absent."""
        keys = sorted({s.key for s in samples})
        where = {k: i for i, k in enumerate(keys)}
        rhythm = torch.full((len(keys), len(self.config.horizons_s)), -1, dtype=torch.long)
        onset = torch.full((len(keys), len(self.config.horizons_s), len(ONSETS)), -1.0)
        for s in samples:
            if s.horizon_s in self.config.horizons_s:
                i, h = where[s.key], self.config.horizons_s.index(s.horizon_s)
                rhythm[i, h] = CLASSES.index(s.label_class)
                onset[i, h] = torch.tensor([float(s.onset[c]) for c in ONSETS])
        return keys, rhythm, onset

    def fit(self, samples: Sequence[Sample]) -> None:
        keys, rhythm, onset = self._targets(samples)
        counts = torch.bincount(rhythm[rhythm >= 0], minlength=len(CLASSES)).float()
        weight = torch.where(counts > 0, counts.sum() / (len(CLASSES) * counts.clamp(min=1)), torch.zeros(1))
        ce, bce = nn.CrossEntropyLoss(weight=weight, ignore_index=-1), nn.BCEWithLogitsLoss(reduction="none")
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.config.lr, weight_decay=1e-3)
        rng = np.random.default_rng(self.config.seed)
        self.net.train()
        for epoch in range(self.config.epochs):
            total = 0.0
            for batch in self._batches(keys, rng):
                out = self.net(self._inputs([keys[i] for i in batch]))  # (B, H, 7)
                r, o = rhythm[batch], onset[batch]
                loss = ce(out[..., : len(CLASSES)].reshape(-1, len(CLASSES)), r.reshape(-1))
                mask = o >= 0
                loss = loss + (bce(out[..., len(CLASSES) :], o.clamp(min=0)) * mask).sum() / mask.sum().clamp(min=1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
            log.info("cnn_epoch", epoch=epoch, loss=round(total / max(1, len(keys)), 4), inputs=len(keys))

    def _batches(self, keys: Sequence[tuple[str, float, int]], rng: np.random.Generator) -> list[list[int]]:
        """Shuffled batches of one window length each (equal lengths stack without padding)."""
        by_length: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_length.setdefault(key[2], []).append(i)
        batches = []
        for idx in by_length.values():
            order = list(rng.permutation(idx))
            batches += [order[i : i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    @torch.inference_mode()
    def predict(self, samples: Sequence[Sample]) -> Predictions:
        self.net.eval()
        rhythm = np.zeros((len(samples), len(CLASSES)))
        onset = np.zeros((len(samples), len(ONSETS)))
        for start in range(0, len(samples), self.config.batch_size):
            chunk = samples[start : start + self.config.batch_size]
            by_length: dict[int, list[int]] = {}
            for i, s in enumerate(chunk):
                by_length.setdefault(s.window_s, []).append(i)
            for idx in by_length.values():
                out = self.net(self._inputs([chunk[i].key for i in idx]))  # (b, H, 7)
                for row, i in zip(out, idx, strict=True):
                    h = self.config.horizons_s.index(chunk[i].horizon_s)
                    rhythm[start + i] = torch.softmax(row[h, : len(CLASSES)], 0).numpy()
                    onset[start + i] = torch.sigmoid(row[h, len(CLASSES) :]).numpy()
        return Predictions(rhythm, onset)
