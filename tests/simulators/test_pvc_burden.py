"""``generate_rhythm(..., pvc_burden=p)``: a fixed rhythm with a known ventricular ectopy burden (issue 22's
acceptance record is one), p / (1 + p) of the beats PVCs."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import SignalError
from simulators import generate_rhythm


def test_pvc_burden_sets_the_share_of_ventricular_beats() -> None:
    rec = generate_rhythm("sinus", 240, seed=5, fs=250.0, leads=("II", "V1"), noise="ambient", pvc_burden=0.25)
    assert np.mean(rec.beats.symbol == "V") == pytest.approx(0.2, abs=0.03)
    assert rec.meta["pvc_burden"] == 0.25
    plain = generate_rhythm("sinus", 240, seed=5, fs=250.0, leads=("II", "V1"), noise="ambient")
    assert not (plain.beats.symbol == "V").any() and "pvc_burden" not in plain.meta


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
def test_a_burden_outside_a_chance_per_beat_is_refused(bad: float) -> None:
    with pytest.raises(SignalError, match="pvc_burden"):
        generate_rhythm("sinus", 60, pvc_burden=bad)
