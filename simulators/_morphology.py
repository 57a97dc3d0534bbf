"""Beat morphology: P-QRS-T as Gaussian waves of a cardiac dipole, projected onto lead vectors.

Why a dipole model: one set of wave parameters per beat yields every lead consistently (Einthoven's I + III = II
holds exactly), so per-lead projections cost one dot product, and PVC/VT morphologies are just other dipole
directions. Coordinates: x to the patient's left, y inferior (feet), z anterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from core.errors import SignalError
from core.protocol import canonical_lead

__all__ = ["LEAD_VECTORS", "WAVES", "BeatTemplate", "PatientMorphology", "lead_matrix", "render_waves"]

WAVES: Final[tuple[str, ...]] = ("P", "Q", "R", "S", "T")

_MAX_BATCH_SAMPLES: Final = 2_000_000
_PRECORDIAL_GAIN: Final = 1.6  # chest electrodes sit closer to the heart: larger deflections than limb leads


def _unit(x: float, y: float, z: float, gain: float = 1.0) -> tuple[float, float, float]:
    norm = float(np.sqrt(x * x + y * y + z * z))
    return (gain * x / norm, gain * y / norm, gain * z / norm)


def _precordial(angle_deg: float) -> tuple[float, float, float]:
    """Transverse-plane lead vector; angle measured from the left (V6, 0°) towards anterior (V2, 90°)."""
    rad = np.deg2rad(angle_deg)
    return _unit(float(np.cos(rad)), 0.15, float(np.sin(rad)), _PRECORDIAL_GAIN)


LEAD_VECTORS: Final[dict[str, tuple[float, float, float]]] = {
    "I": (1.0, 0.0, 0.0),
    "II": (0.5, 0.866, 0.0),
    "III": (-0.5, 0.866, 0.0),
    "aVR": (-0.75, -0.433, 0.0),
    "aVL": (0.75, -0.433, 0.0),
    "aVF": (0.0, 0.866, 0.0),
    "V1": _precordial(120.0),
    "V2": _precordial(95.0),
    "V3": _precordial(75.0),
    "V4": _precordial(55.0),
    "V5": _precordial(30.0),
    "V6": _precordial(5.0),
}
"""Hexaxial limb leads (Einthoven/Goldberger) and transverse-plane precordial leads."""


def lead_matrix(leads: tuple[str, ...]) -> npt.NDArray[np.float64]:
    """(n_leads, 3) projection matrix; names are canonicalised ("MLII" -> "II")."""
    rows = []
    for name in leads:
        canon = canonical_lead(name)
        if canon not in LEAD_VECTORS:
            raise SignalError(f"lead {name!r} cannot be simulated; choose from {sorted(LEAD_VECTORS)}")
        rows.append(LEAD_VECTORS[canon])
    return np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class BeatTemplate:
    """One beat type's waves, each row in :data:`WAVES` order.

    ``offset_s`` is relative to the fiducial (R peak); the T offset is the value at RR = 1 s and is scaled by
    sqrt(RR) (Bazett) when rendered. ``amp_mv`` of 0 switches a wave off (no P in PVCs).
    """

    offset_s: npt.NDArray[np.float64]  # (5,)
    sigma_s: npt.NDArray[np.float64]  # (5,)
    amp_mv: npt.NDArray[np.float64]  # (5,)
    direction: npt.NDArray[np.float64]  # (5, 3) unit dipole directions


def _directions(*vectors: tuple[float, float, float]) -> npt.NDArray[np.float64]:
    return np.asarray([_unit(*v) for v in vectors], dtype=np.float64)


def _rotate(direction: npt.NDArray[np.float64], rng: np.random.Generator, spread_rad: float) -> npt.NDArray[np.float64]:
    """Jitter unit vectors by a random rotation of about ``spread_rad``: per-patient axis variation."""
    jittered = direction + rng.normal(0.0, spread_rad, size=direction.shape)
    return np.asarray(jittered / np.linalg.norm(jittered, axis=-1, keepdims=True), dtype=np.float64)


@dataclass(frozen=True)
class PatientMorphology:
    """A patient's sinus, atrial-premature and ventricular (PVC/VT) beat templates plus atrial-wave axes."""

    sinus: BeatTemplate
    pac: BeatTemplate
    pvc: BeatTemplate
    atrial_axis: npt.NDArray[np.float64]  # (3,) direction of fibrillatory waves (largest in V1)
    flutter_axis: npt.NDArray[np.float64]  # (3,) flutter waves: sawtooth largest in II, III, aVF
    qrs_gain: float  # per-patient body-habitus scale of every deflection

    @classmethod
    def random(cls, rng: np.random.Generator) -> PatientMorphology:
        """Draw a plausible adult morphology: PR 120-200 ms, QRS ~80-110 ms, PVC QRS ~130-180 ms."""
        pr_s = rng.uniform(0.13, 0.19)
        qrs_sigma = rng.uniform(0.009, 0.013)
        sinus_dirs = _rotate(
            _directions((0.5, 0.8, 0.1), (-0.5, 0.3, 0.8), (0.7, 0.6, -0.3), (-0.4, -0.7, -0.5), (0.7, 0.6, 0.15)),
            rng,
            0.15,
        )
        sinus = BeatTemplate(
            offset_s=np.array([-pr_s, -2.6 * qrs_sigma, 0.0, 2.6 * qrs_sigma, 0.26]),
            sigma_s=np.array([rng.uniform(0.018, 0.026), 0.7 * qrs_sigma, qrs_sigma, 0.9 * qrs_sigma, 0.045]),
            amp_mv=np.array([rng.uniform(0.1, 0.2), rng.uniform(0.1, 0.2), rng.uniform(0.9, 1.6), 0.3, 0.3]),
            direction=sinus_dirs,
        )
        # Ectopic atrial focus: the P wave points elsewhere (often low atrial: negative in II, III, aVF).
        pac_p = _rotate(_directions((rng.uniform(-0.5, 0.5), rng.choice([-0.7, 0.7]), 0.3)), rng, 0.2)
        pac = BeatTemplate(
            offset_s=sinus.offset_s + np.array([rng.uniform(-0.02, 0.02), 0, 0, 0, 0]),
            sigma_s=sinus.sigma_s,
            amp_mv=sinus.amp_mv * np.array([rng.uniform(0.7, 1.1), 1, 1, 1, 1]),
            direction=np.vstack([pac_p, sinus_dirs[1:]]),
        )
        pvc = _ventricular_template(rng)
        atrial_axis = _rotate(_directions((-0.2, 0.6, 0.75)), rng, 0.2)[0]
        flutter_axis = _rotate(_directions((0.0, -0.9, 0.35)), rng, 0.15)[0]
        return cls(sinus, pac, pvc, atrial_axis, flutter_axis, float(rng.uniform(0.8, 1.25)))


_VENTRICULAR_FOCI: Final[tuple[tuple[float, float, float], ...]] = (
    (0.1, 0.9, -0.4),  # right-ventricular outflow tract: LBBB-like, inferior axis
    (-0.3, -0.6, 0.7),  # inferior left-ventricular wall: RBBB-like, superior axis
    (-0.7, 0.5, 0.5),  # lateral left ventricle: RBBB-like, rightward axis
    (0.8, 0.2, -0.6),  # septal/right ventricle: LBBB-like, leftward axis
)
"""Dipole directions of common ectopic ventricular foci; each projects strongly on limb and chest leads."""


def _ventricular_template(rng: np.random.Generator) -> BeatTemplate:
    """A ventricular focus: wide, tall QRS with a discordant T wave and no P wave."""
    focus = _VENTRICULAR_FOCI[int(rng.integers(len(_VENTRICULAR_FOCI)))]
    qrs_dir = _rotate(_directions(focus), rng, 0.15)[0]
    wide = rng.uniform(0.024, 0.034)
    directions = np.vstack([qrs_dir, qrs_dir, qrs_dir, -qrs_dir, -qrs_dir])
    return BeatTemplate(
        offset_s=np.array([0.0, -1.5 * wide, 0.0, 1.6 * wide, 0.30]),
        sigma_s=np.array([0.02, 0.8 * wide, wide, 0.9 * wide, 0.06]),
        amp_mv=np.array([0.0, 0.4, rng.uniform(1.6, 2.4), 0.5, rng.uniform(0.35, 0.6)]),
        direction=directions,
    )


def render_waves(
    sig_len: int,
    fs: float,
    center_s: npt.NDArray[np.float64],
    sigma_s: npt.NDArray[np.float64],
    amp_mv: npt.NDArray[np.float64],
    projection: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Sum Gaussian waves into (sig_len, n_leads) by index arithmetic, with no per-sample Python loop.

    Parameters
    ----------
    sig_len, fs : output length in samples and sampling rate in Hz.
    center_s, sigma_s, amp_mv : (n_waves,) wave centres, widths and amplitudes.
    projection : (n_waves, n_leads) each wave's dipole projected on each lead.

    Examples
    --------
    >>> out = render_waves(100, 100.0, np.array([0.5]), np.array([0.02]), np.array([1.0]), np.ones((1, 1)))
    >>> round(float(out[50, 0]), 3)
    1.0
    """
    n_leads = projection.shape[1]
    out = np.zeros((sig_len, n_leads))
    if center_s.size == 0:
        return out
    half = int(np.ceil(4.0 * float(sigma_s.max()) * fs))
    offsets = np.arange(-half, half + 1)
    batch = max(1, _MAX_BATCH_SAMPLES // offsets.size)  # bounds memory for hours at 1000 Hz
    for lo in range(0, center_s.size, batch):
        part = slice(lo, lo + batch)
        idx = np.rint(center_s[part] * fs).astype(np.int64)[:, None] + offsets[None, :]  # (n, 2*half+1)
        t_rel = idx / fs - center_s[part, None]
        shape = amp_mv[part, None] * np.exp(-0.5 * (t_rel / sigma_s[part, None]) ** 2)
        inside = (idx >= 0) & (idx < sig_len)
        flat_idx = idx[inside]
        for lead in range(n_leads):
            weights = (shape * projection[part, lead : lead + 1])[inside]
            out[:, lead] += np.bincount(flat_idx, weights=weights, minlength=sig_len)
    return out
