"""The ectopy advisory ("PVC burden high", issue 22): raised at low priority once the measured PVC burden has been
high for the configured time, held with hysteresis, cleared once it stayed low, never judged on a window too poor to
count; stored, restored, published and parsed like every other alert. The policy is fed rhythm monitor windows
(``core.measurements.EctopyBurden``) directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.alerts import (
    AlertEvent,
    AlertPolicy,
    AlertService,
    AlertSettings,
    EctopyMeasured,
    MuteRequest,
    MuteRequested,
    PatientAlerts,
    ihe_codes,
)
from agent.station._messages import decode_alert
from core.errors import ConfigError
from core.measurements import EctopyBurden
from core.protocol import Topics

INTERVAL_S = 15.0  # the rhythm monitor's shipped refresh


def window(
    t_end_s: float, burden: float, *, beats: int = 80, quality: str = "good", span_s: float = 60.0
) -> EctopyBurden:
    """One measured window ending at ``t_end_s`` whose beats are ``burden`` PVCs."""
    pvc = round(burden * beats)
    clean = {"good": span_s, "degraded": 0.7 * span_s, "poor": 0.3 * span_s}[quality]
    return EctopyBurden(
        window_s=span_s, t_end_s=t_end_s, covered_s=span_s, clean_s=clean, quality=quality,  # type: ignore[arg-type]
        beats=beats, hr_bpm=80.0, pvc=pvc, pac=1, pvc_burden=pvc / beats if beats else None,
        pac_burden=1 / beats if beats else None, pvc_per_min=pvc * 60.0 / clean, pac_per_min=60.0 / clean,
        couplets=2, ventricular_runs=0, longest_ventricular_run=2,
    )  # fmt: skip


def refresh(t_end_s: float, burden: float, **kw: Any) -> EctopyMeasured:
    """A refresh at wall time = stream time (tests only), with the 60-s window first and a 5-min one after it."""
    return EctopyMeasured(t_end_s, "V1", (window(t_end_s, burden, **kw), window(t_end_s, burden, span_s=300.0)))


class Run:
    """The policy with stable ids, fed refreshes in order; keeps the state and every event."""

    def __init__(self, **defaults: Any) -> None:
        ids = iter(range(1, 1000))
        settings = AlertSettings.model_validate({"defaults": {"ectopy": defaults}} if defaults else {})
        self.policy = AlertPolicy(settings, new_id=lambda: f"a{next(ids)}")
        self.state = PatientAlerts("P001")
        self.events: list[AlertEvent] = []

    def feed(self, *observations: EctopyMeasured | MuteRequested) -> list[AlertEvent]:
        new: list[AlertEvent] = []
        for obs in observations:
            self.state, events = self.policy.decide(self.state, obs)
            new.extend(events)
        self.events.extend(new)
        return new

    def every(self, start_s: float, stop_s: float, burden: float, **kw: Any) -> list[AlertEvent]:
        """Refreshes every INTERVAL_S from ``start_s`` to ``stop_s`` inclusive."""
        times = [start_s + k * INTERVAL_S for k in range(int((stop_s - start_s) / INTERVAL_S) + 1)]
        return self.feed(*(refresh(t, burden, **kw) for t in times))


def test_raised_low_priority_once_high_for_the_minimum_duration() -> None:
    run = Run()
    assert run.every(60, 105, 0.2) == []  # high at 60, 75, 90, 105: 45 s so far
    (event,) = run.every(120, 120, 0.2)
    alert = event.after
    assert (event.type, alert.kind, alert.priority, alert.state, alert.arrhythmia) == (
        "new",
        "ectopy",
        "low",
        "raised",
        None,
    )
    assert alert.to_wire()["ihe"] == {"priority": "PL", "source": "SP"} == ihe_codes("ectopy", "low")
    assert alert.window is not None and (alert.window.start_s, alert.window.end_s) == (0.0, 120.0)
    assert alert.evidence["ectopy"]["lasted_s"] == 60.0 and alert.evidence["pvc_per_min"] == pytest.approx(16.0)
    assert alert.explanation.startswith(
        "PVC burden high (measured, an advisory, not a forecast): 20% of beats were PVCs over the last 60 s "
        "(threshold 10%, high at every refresh for 60 s)"
    )
    assert "PVC burden last 300 s: 20%" in alert.explanation and "Lead V1" in alert.explanation
    assert run.every(135, 300, 0.2) == []  # one alert, refreshed silently


def test_a_dip_restarts_the_run() -> None:
    run = Run()
    run.every(60, 105, 0.2)
    run.feed(refresh(120, 0.05))
    assert run.every(135, 180, 0.2) == []  # 45 s high again
    assert [e.type for e in run.every(195, 195, 0.2)] == ["new"]


def test_held_down_to_clear_below_and_cleared_after_staying_under_it() -> None:
    run = Run()
    run.every(0, 60, 0.2)
    assert run.every(75, 300, 0.08) == []  # under raise_at but over clear_below: held
    assert run.every(315, 360, 0.05) == []  # under clear_below for 45 s
    (end,) = run.every(375, 375, 0.05)
    assert (end.type, end.reason, end.after.state) == ("end", "cleared", "cleared")
    assert end.after.history[-1].reason == "PVC burden under 7% for 60 s"


def test_a_window_that_cannot_be_judged_neither_raises_holds_nor_clears() -> None:
    run = Run()
    run.every(0, 45, 0.2)
    run.every(60, 120, 0.0, quality="poor")  # a noise burst: under half of each window measurable
    run.every(135, 180, 0.0, beats=10)  # too few beats counted
    assert run.events == []
    assert [e.type for e in run.every(195, 195, 0.2)] == ["new"]  # the run that began at 0 s goes on


def test_a_restarted_stream_clock_restarts_the_run() -> None:
    run = Run()
    run.every(600, 645, 0.2)
    assert run.every(15, 60, 0.2) == []  # a new segment: its clock starts again, so does the run
    assert [e.type for e in run.every(75, 75, 0.2)] == ["new"]


def test_threshold_duration_and_priority_are_configurable() -> None:
    run = Run(raise_at=0.3, clear_below=0.2, min_duration_s=0, priority="medium")
    assert run.every(0, 60, 0.25) == []
    (event,) = run.every(75, 75, 0.35)
    assert event.after.priority == "medium"


def test_never_muted_and_disabled_resolves_it() -> None:
    run = Run(min_duration_s=0)
    run.feed(MuteRequested(1.0, MuteRequest("P001", "mute", "nurse.kim", "paced patient", 3600.0)))
    (raised,) = run.every(15, 15, 0.2)
    off = Run(enabled=False)
    off.state = run.state
    (ended,) = off.every(30, 30, 0.2)
    assert (ended.after.alert_id, ended.after.state) == (raised.after.alert_id, "resolved")
    assert ended.after.history[-1].reason == "ectopy advisory disabled"


def test_stored_advisory_continues_after_a_restart_and_parses_at_the_station(tmp_path: Path) -> None:
    published: list[bytes] = []
    now = [1_800_000_000.0]
    settings = AlertSettings.model_validate(
        {"store_path": str(tmp_path / "alerts.sqlite3"), "defaults": {"ectopy": {"min_duration_s": 0}}}
    )

    def open_service() -> AlertService:
        return AlertService(
            settings, None, lambda t, p, q, r: published.append(p), Topics("ecg/v1"), clock=lambda: now[0]
        )

    with open_service() as service:
        service.on_ectopy("P001", refresh(600, 0.2).windows, "V1")
        (alert,) = service.active("P001")
    with open_service() as restarted:
        assert [a.alert_id for a in restarted.active("P001")] == [alert.alert_id]
        assert restarted.on_ectopy("P001", refresh(615, 0.2).windows, "V1") == []
        for t in (630, 645, 660, 675, 690):  # under clear_below from 630 s: cleared 60 s on
            now[0] += 15
            ended = restarted.on_ectopy("P001", refresh(t, 0.0).windows, "V1")
        assert [(e.type, e.after.alert_id) for e in ended] == [("end", alert.alert_id)]
    messages = [decode_alert(payload, "P001") for payload in published]
    assert [(m.type, m.after.kind) for m in messages] == [("new", "ectopy"), ("end", "ectopy")]
    assert json.loads(published[0])["after"]["ihe"] == {"priority": "PL", "source": "SP"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"clear_below": 0.2}, "clear_below 0.2 is not under raise_at"),
        ({"raise_at": 0}, "raise_at"),
        ({"min_beats": 2}, "min_beats"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_bad_ectopy_config_is_refused(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    from agent.settings import load_settings

    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"alerts": {"defaults": {"ectopy": override}}}))
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={})


def test_the_hl7_gateway_codes_it_as_its_own_alert_type() -> None:
    from agent.hospital import alert_type_code

    run = Run(min_duration_s=0)
    (event,) = run.every(15, 15, 0.2)
    code = alert_type_code(event.after)
    assert (code.code, code.text) == ("ECTOPY_PVC_HIGH", "PVC burden high (measured ventricular ectopy)")
