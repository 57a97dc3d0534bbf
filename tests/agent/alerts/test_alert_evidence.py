"""build_evidence on real measurements of a synthetic strip (simulators, seed 1), and its quality gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.alerts import AlertService, AlertSettings, build_evidence, quality_problem
from agent.alerts._explain import evidence_text
from core.measurements import Measurements, measure_leads
from core.protocol import Topics
from simulators import generate_scenario

from .alert_builders import forecast


@pytest.fixture(scope="module")
def two_minutes() -> tuple[Measurements, Measurements]:
    """(earlier, recent) minute of a synthetic sinus-with-ectopy record."""
    record = generate_scenario("sinus_ectopy", seed=1, minutes=2.0)
    n = int(60 * record.fs)
    names = list(record.sig_name)
    return (
        measure_leads(record.p_signal[:n], record.fs, names),
        measure_leads(record.p_signal[n : 2 * n], record.fs, names),
    )


def test_evidence_from_measurements(two_minutes: tuple[Measurements, Measurements]) -> None:
    earlier, recent = two_minutes
    ev = build_evidence(recent, earlier, {"II": "good", "V1": "good"}, 60.0, t_end_s=120.0)
    assert recent.hr_bpm is not None and earlier.hr_bpm is not None
    assert ev.hr_bpm == recent.hr_bpm
    assert ev.hr_change_bpm == pytest.approx(recent.hr_bpm - earlier.hr_bpm)
    usable_min = recent.duration_s * recent.usable_fraction / 60
    assert ev.pvc_per_min == pytest.approx(recent.pvc_count / usable_min)
    assert ev.pac_per_min_before == pytest.approx(
        earlier.pac_count / (earlier.duration_s * earlier.usable_fraction / 60)
    )
    assert ev.lead == recent.lead
    assert build_evidence(recent, None, {}, 300.0).window_s == 60.0  # states what was measured, not what was asked
    assert quality_problem(ev, AlertSettings.model_validate({}).defaults.quality) is None
    assert ev.as_dict()["signal_quality"] == {"II": "good", "V1": "good"}


def test_lead_verdicts_gate_even_with_measurements(two_minutes: tuple[Measurements, Measurements]) -> None:
    _, recent = two_minutes
    gate = AlertSettings.model_validate({"defaults": {"quality": {"min_good_leads": 2}}}).defaults.quality
    ev = build_evidence(recent, None, {"II": "good", "V1": "noisy"}, 60.0)
    assert quality_problem(ev, gate) == "1 assessable lead, 2 needed: II good, V1 noisy"
    assert ev.hr_change_bpm is None and ev.pac_per_min_before is None


def test_flat_leads_give_cannot_assess_not_a_negative(tmp_path: Path) -> None:
    """Leads off (a flat line, as the ingest sees it): measurements find nothing and the service says so."""
    flat = np.zeros((int(60 * 250.0), 2))
    recent = measure_leads(flat, 250.0, ["II", "V1"])
    ev = build_evidence(recent, None, {"II": "leads_off", "V1": "leads_off"}, 60.0, t_end_s=60.0)
    sent: list[dict[str, Any]] = []
    settings = AlertSettings.model_validate({"store_path": str(tmp_path / "a.sqlite3")})
    with AlertService(settings, None, lambda _t, p, _q, _r: sent.append(json.loads(p)), Topics("ecg/v1")) as service:
        service.on_forecast("P001", forecast(af=0.95), ev)
        service.on_forecast("P001", forecast(af=0.95), ev)
    assert [(m["type"], m["after"]["kind"]) for m in sent] == [("new", "cannot_assess")]
    assert sent[0]["after"]["evidence"]["hr_bpm"] is None
    assert "II leads off, V1 leads off" in sent[0]["after"]["explanation"]


def test_numbers_from_a_lead_that_is_off_are_never_quoted(two_minutes: tuple[Measurements, Measurements]) -> None:
    """Issue #21: an explanation said both leads were off, then quoted "HR 51 bpm" measured on one of them."""
    earlier, recent = two_minutes
    off = {str(recent.lead): "leads_off", "other": "leads_off"}
    ev = build_evidence(recent, earlier, off, 60.0, t_end_s=120.0)
    assert (ev.lead, ev.hr_bpm, ev.rr_irregularity, ev.pac_per_min, ev.usable_fraction) == (
        None,
        None,
        None,
        None,
        None,
    )
    text = evidence_text(ev)
    assert "HR not measurable" in text and "bpm" not in text and f"Measured on lead {recent.lead}" not in text
    assert quality_problem(ev, AlertSettings.model_validate({}).defaults.quality) is not None
