"""Generator v2's beat morphologies: several families of QRS-T shape and varied ectopic atrial (PAC) P waves.

Why: generator v1 draws every patient from one family (narrow QRS, upright T, PAC P' of similar size and timing),
so a model can learn that family instead of rhythm. v2 draws a family per patient, as a ward mixes them: normal
conduction, right or left bundle-branch block (wide baseline QRS, which makes "wide = ventricular" wrong), low
voltage, left-ventricular hypertrophy with strain (tall QRS, inverted lateral T) and primary T-wave inversion. Its
PACs have a P' that may be small, large or inverted, an earlier or later PR, and a coupling that may put P' on the
preceding T wave (``pac_coupling`` of the script).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import numpy as np

from simulators._morphology import BeatTemplate, PatientMorphology, _directions, _rotate

__all__ = ["FAMILIES", "varied_morphology"]

FAMILIES: Final[dict[str, float]] = {
    "normal": 0.5,
    "rbbb": 0.12,
    "lbbb": 0.08,
    "low_voltage": 0.12,
    "lvh_strain": 0.1,
    "t_inversion": 0.08,
}
"""Morphology family -> probability per patient."""

_Q, _R, _S, _T = 1, 2, 3, 4  # rows of a BeatTemplate (WAVES order P, Q, R, S, T)


def _bundle_branch_block(sinus: BeatTemplate, rng: np.random.Generator, right: bool) -> BeatTemplate:
    """QRS about 40 ms wider than normal conduction. RBBB: a late, rightward-anterior terminal deflection (rSR' in
    V1, slurred S in I and V6). LBBB: a broad leftward-posterior R and a discordant T."""
    sigma = rng.uniform(0.026, 0.032)
    offset, width, amp, direction = (a.copy() for a in (sinus.offset_s, sinus.sigma_s, sinus.amp_mv, sinus.direction))
    width[_Q:_T] = (0.8 * sigma, sigma, 1.1 * sigma)
    offset[_Q], offset[_S] = -2.2 * sigma, 3.4 * sigma
    if right:
        direction[_S] = _rotate(_directions((-0.6, 0.1, 0.8)), rng, 0.1)[0]
        amp[_S] = rng.uniform(0.4, 0.7)
    else:
        direction[_R] = _rotate(_directions((0.8, 0.3, -0.55)), rng, 0.1)[0]
        direction[_T] = -direction[_R]
        amp[_R], amp[_S] = rng.uniform(1.2, 1.8), 0.15
    return replace(sinus, offset_s=offset, sigma_s=width, amp_mv=amp, direction=direction)


def _family_sinus(family: str, sinus: BeatTemplate, rng: np.random.Generator) -> tuple[BeatTemplate, float]:
    """The family's sinus template and a gain factor on every deflection."""
    if family in ("rbbb", "lbbb"):
        return _bundle_branch_block(sinus, rng, right=family == "rbbb"), 1.0
    if family == "low_voltage":
        return sinus, float(rng.uniform(0.35, 0.6))
    direction, amp = sinus.direction.copy(), sinus.amp_mv.copy()
    if family == "lvh_strain":
        direction[_T] = _rotate(-direction[_R][None, :], rng, 0.1)[0]
        amp[_T] = rng.uniform(0.2, 0.35)
        return replace(sinus, direction=direction, amp_mv=amp), float(rng.uniform(1.5, 2.0))
    if family == "t_inversion":
        direction[_T] = -direction[_T]
        return replace(sinus, direction=direction), 1.0
    return sinus, 1.0


def _varied_pac(sinus: BeatTemplate, base_pac: BeatTemplate, rng: np.random.Generator) -> BeatTemplate:
    """P' scaled 0.3-1.5x, inverted for one patient in three, PR shifted -50..+60 ms; QRS-T as the sinus beat."""
    direction = np.vstack([base_pac.direction[:1] * (-1.0 if rng.random() < 1 / 3 else 1.0), sinus.direction[1:]])
    offset = sinus.offset_s + np.array([rng.uniform(-0.05, 0.06), 0, 0, 0, 0])
    amp = sinus.amp_mv * np.array([rng.uniform(0.3, 1.5), 1, 1, 1, 1])
    return BeatTemplate(offset_s=offset, sigma_s=sinus.sigma_s, amp_mv=amp, direction=direction)


def varied_morphology(rng: np.random.Generator, family: str | None = None) -> tuple[PatientMorphology, str]:
    """A v2 patient: v1's draw, then a family (drawn, or ``family``) and PAC variation on top.

    Returns (morphology, family name)."""
    base = PatientMorphology.random(rng)
    names = list(FAMILIES)
    drawn = names[int(rng.choice(len(names), p=np.array(list(FAMILIES.values()))))]
    family = family or drawn
    sinus, gain = _family_sinus(family, base.sinus, rng)
    pac = _varied_pac(sinus, base.pac, rng)
    return replace(base, sinus=sinus, pac=pac, qrs_gain=base.qrs_gain * gain), family
