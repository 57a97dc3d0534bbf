"""Encoder embeddings of whole records, computed once per record the way the agent computes them live.

``preprocess_record`` is the offline twin of the streaming path (causal filters, 1-s windows resampled to 256);
the frozen encoder turns each valid lead-second into a 64-d token; invalid seconds are zero, as the agent's
embedding ring leaves them. The LM methods, the linear probe and the alert replay all read these.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from core.windows import preprocess_record
from evaluation.data import Record

__all__ = ["EmbeddedRecord", "Embedder", "lead_verdict"]

_BATCH = 4096  # windows per encoder call: bounded memory, few calls


@dataclass(frozen=True)
class EmbeddedRecord:
    sig_name: tuple[str, ...]
    embeddings: npt.NDArray[np.float32]  # (n_sig, n_seconds, 64), zero where invalid
    valid: npt.NDArray[np.bool_]  # (n_sig, n_seconds)
    reasons: list[list[str | None]]  # [n_sig][n_seconds]: why a second is invalid

    def lm_seconds(self, leads: tuple[str, ...], first: int, last: int) -> npt.NDArray[np.float32]:
        """Seconds [first, last) for an LM reading ``leads``: (T, n_leads, 64); a lead the record lacks is zero,
        as the agent feeds a lead the patient lacks."""
        names = [n.lower() for n in self.sig_name]
        out = np.zeros((last - first, len(leads), self.embeddings.shape[2]), np.float32)
        for i, lead in enumerate(leads):
            if lead.lower() in names:
                out[:, i] = self.embeddings[names.index(lead.lower()), first:last]  # (T, 64)
        return out


def lead_verdict(reasons: list[str | None]) -> str:
    """The ingest's per-lead verdict over its last windows: 'good' unless one defect covers half or more."""
    defects = Counter(r for r in reasons if r is not None)
    if defects and sum(defects.values()) * 2 >= len(reasons):
        return defects.most_common(1)[0][0]
    return "good" if reasons else "unknown"


class Embedder:
    """A frozen encoder (our ``.pt`` weights) and a per-record cache."""

    def __init__(self, weights: Path) -> None:
        from encoder_onnx.weights import file_sha256, load_encoder_weights

        self.weights = weights
        self.sha256 = file_sha256(weights)
        self.encoder, _ = load_encoder_weights(weights)
        self.encoder.eval()
        self._cache: dict[str, EmbeddedRecord] = {}

    @torch.inference_mode()
    def __call__(self, record: Record) -> EmbeddedRecord:
        if record.record_id not in self._cache:
            pre = preprocess_record(record.p_signal, record.fs, sig_name=list(record.sig_name))
            n_sig, n_sec, n_win = pre.windows.shape
            flat = torch.from_numpy(pre.windows.reshape(-1, n_win))  # (n_sig, T, 256) -> (n_sig*T, 256)
            parts = [self.encoder(flat[i : i + _BATCH]) for i in range(0, flat.shape[0], _BATCH)]
            emb = torch.cat(parts).numpy().reshape(n_sig, n_sec, -1)  # (n_sig*T, 64) -> (n_sig, T, 64)
            emb[~pre.valid] = 0.0
            self._cache[record.record_id] = EmbeddedRecord(record.sig_name, emb, pre.valid, pre.reasons)
        return self._cache[record.record_id]
