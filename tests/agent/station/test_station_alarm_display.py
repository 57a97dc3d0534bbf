"""Issue #21 in headless Chromium: the alarm display as a charge nurse expects it (IEC 60601-1-8 colours and flash
rates, acknowledged as its own cue, tones per priority, audio pause), fixed beds, honest staleness and a detail
strip at paper speed. Colours and rates are measured on the page (computed styles sampled every frame), not read
back from the style sheet; the strip's scale is measured from the beat ticks' pixels."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.local_broker import LocalMosquitto
from agent.station import StationServer, StationSettings, hash_password
from core.protocol import Topics
from core.settings import MqttSettings

from .chromium import needs_chromium, wait_for
from .test_station_browser import PASSWORD, _alarm_list, _done, _sign_in, _tile
from .test_station_hostile import forged_alert
from .ward import Bed, Ward

pytestmark = [pytest.mark.e2e, needs_chromium]

RED, YELLOW, CYAN = "rgb(255, 51, 51)", "rgb(255, 213, 0)", "rgb(0, 229, 255)"
COLOUR = {"high": RED, "medium": YELLOW, "low": CYAN}
FLASH_HZ = {"high": (1.4, 2.8), "medium": (0.4, 0.8), "low": None}  # IEC 60601-1-8 Table 1; None: steady
# bed -> (priority, acknowledged): one tile per priority and state, laid out in this order
ALARMS = {
    "A1": ("low", True),
    "A2": ("high", False),
    "A3": ("medium", True),
    "A4": ("low", False),
    "A5": ("high", True),
    "A6": ("medium", False),
}
SAMPLE = """
const [selectors, ms, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const nodes = selectors.map((s) => document.querySelector(s));
const series = nodes.map(() => []);
const t0 = performance.now();
function sample() {
  const t = performance.now() - t0;
  nodes.forEach((n, i) => {
    const cs = getComputedStyle(n);
    series[i].push([t, cs.backgroundColor, cs.borderTopColor, cs.color]);
  });
  if (t < ms) requestAnimationFrame(sample);
  else done(series);
}
requestAnimationFrame(sample);
"""


class Forger:
    """Publishes agent-shaped messages on a private broker, as the tests choose them."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"forger-{uuid.uuid4().hex[:6]}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, body: dict[str, Any], retain: bool = False) -> None:
        self.client.publish(topic, json.dumps(body), qos=1, retain=retain).wait_for_publish(5)

    def alert(self, pid: str, priority: str, acknowledged: bool = False, **changes: Any) -> dict[str, Any]:
        """A new alert (a present-rhythm "VT now" for high, as only it may be; a forecast otherwise), or an
        acknowledged one; returns the message."""
        kind = {"kind": "present_rhythm", "horizon_s": None, "probability": None, "threshold": None}
        fields = {"priority": priority, **(kind if priority == "high" else {}), **changes}
        if acknowledged:
            fields.update(state="acknowledged", acknowledged_by="nurse.kim", acknowledged_at=time.time())
        message = forged_alert(pid, **fields)
        self.publish(f"ecg/v1/{pid}/alert", message)
        return dict(message)

    def acknowledge(self, message: dict[str, Any]) -> None:
        """The agent's ``update``/``acknowledged`` of an alert this forger raised."""
        after = {**message["after"], "state": "acknowledged", "acknowledged_by": "nurse.kim"}
        after["acknowledged_at"] = time.time()
        ack = {**message, "type": "update", "reason": "acknowledged", "after": after}
        self.publish(f"ecg/v1/{after['patient_id']}/alert", ack)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def forger(broker: LocalMosquitto) -> Iterator[Forger]:
    f = Forger(broker.port)
    yield f
    f.close()


def _station(broker: LocalMosquitto, **settings: Any) -> StationServer:
    base = {"enabled": True, "port": 0, "users": {"nurse.kim": hash_password(PASSWORD)}}
    station = StationServer(
        StationSettings.model_validate({**base, **settings}), MqttSettings(url=broker.url), Topics("ecg/v1")
    ).start()
    assert station.feed.connection.wait_connected(10)
    return station


def _signed_in(driver: Any, station: StationServer) -> None:
    driver.get(station.url + "/")
    _sign_in(driver, "nurse.kim", PASSWORD)
    wait_for(lambda: driver.find_element("id", "conn").text == "Live", what="live stream")


def _order(driver: Any) -> list[str]:
    return [t.get_attribute("data-pid") for t in driver.find_elements("css selector", ".tile")]


def _flash(series: list[list[Any]], column: int, on: str) -> tuple[float | None, float, set[str]]:
    """(flash frequency in Hz from the rising edges into ``on``, or None if it never rose twice; share of time on;
    the values seen)."""
    points = [(t, value == on) for t, *values in series for value in [values[column - 1]]]
    rises = [t1 for (_, was), (t1, now) in pairwise(points) if now and not was]
    on_ms = sum(t1 - t0 for (t0, was), (t1, _) in pairwise(points) if was)
    share = on_ms / (points[-1][0] - points[0][0])
    seen = {values[column - 1] for _, *values in series}
    if len(rises) < 2:
        return None, share, seen
    return 1000 * (len(rises) - 1) / (rises[-1] - rises[0]), share, seen


def test_each_priority_has_its_colour_and_flash_rate_acked_and_unacked(
    broker: LocalMosquitto, browser: Any, forger: Forger
) -> None:
    """High red flashing 1.4-2.8 Hz, medium yellow 0.4-0.8 Hz, low cyan steady; acknowledged: steady, the same colour,
    outlined with "✓ ACK" (never another priority's look); fixed beds; the alarm list sorted beside them; the
    order unchanged after a new alert and after its acknowledgement."""
    driver = browser
    station = _station(broker, beds={pid: f"Bed-{pid}" for pid in ALARMS})
    try:
        for pid, (priority, acked) in ALARMS.items():
            forger.alert(pid, priority, acked)
        wait_for(lambda: all(station.state.patients.get(p) and station.state.patients[p].alerts for p in ALARMS))
        _signed_in(driver, station)
        wait_for(lambda: len(driver.find_elements("css selector", ".tile .prio-badge.ind")) == 6, what="6 alarms")
        assert _order(driver) == list(ALARMS)  # the configured layout, whatever the priorities

        badges = [f"#tile-{pid} .prio-badge" for pid in ALARMS]
        tiles = [f"#tile-{pid}" for pid in ALARMS]
        driver.set_script_timeout(30)
        series = driver.execute_async_script(SAMPLE, badges + tiles, 5000)
        for k, (pid, (priority, acked)) in enumerate(ALARMS.items()):
            badge, frame = series[k], series[k + len(ALARMS)]
            text = _tile(driver, pid).find_element("css selector", ".prio-badge").text
            assert priority.upper() in text and ("✓ ACK" in text) == acked, (pid, text)
            colour = COLOUR[priority]
            if acked:  # steady, outlined in the priority's colour: no fill, no flash
                assert {b for _, b, *_ in badge} == {"rgba(0, 0, 0, 0)"}, (pid, "acked badge is not filled")
                assert {c for *_, c in badge} == {colour} and {f for _, _, f, _ in frame} == {colour}, pid
                continue
            hz, share, seen = _flash(badge, 1, colour)
            frame_hz, _, _ = _flash(frame, 2, colour)
            band = FLASH_HZ[priority]
            if band is None:  # low: steady, filled
                assert seen == {colour} and hz is None and frame_hz is None, (pid, seen)
                continue
            assert hz is not None and band[0] <= hz <= band[1], (pid, priority, hz)
            assert frame_hz is not None and band[0] <= frame_hz <= band[1], (pid, "frame", frame_hz)
            assert 0.2 <= share <= 0.6 + 0.05, (pid, "duty cycle", share)  # 20-60 % on (sampling slack)

        # Forecast advisories are labelled as such; the present rhythm ("VT now") is not.
        assert "FORECAST" in _tile(driver, "A6").find_element("css selector", ".prio-badge").text
        assert "FORECAST" not in _tile(driver, "A2").find_element("css selector", ".prio-badge").text
        assert _alarm_list(driver) == ["A2", "A5", "A6", "A3", "A4", "A1"]  # priority, unacknowledged first

        # A new alert, then its acknowledgement: the alarm list changes, the tiles stay where they are.
        new = forger.alert("A1", "high")
        wait_for(lambda: _alarm_list(driver)[:1] == ["A1"], what="the new alert on top of the alarm list")
        assert _order(driver) == list(ALARMS)
        badge = lambda: _tile(driver, "A1").find_element("css selector", ".prio-badge")  # noqa: E731
        assert "HIGH" in badge().text and "ACK" not in badge().text
        forger.acknowledge(new)
        wait_for(lambda: "✓ ACK" in badge().text, what="acknowledged on the tile")
        assert _order(driver) == list(ALARMS)
        assert "ind-acked" in (badge().get_attribute("class") or "")
    finally:
        station.close()


def test_values_blanked_when_data_stop_and_the_detail_strip_at_paper_speed(
    broker: LocalMosquitto, browser: Any, tmp_path: Path
) -> None:
    """The detail strip draws 25 mm/s = 94.5 CSS px/s at the page's scale (measured from its beat ticks against a
    25 mm box) and scrolls back through the buffer; when the data stop, HR is blanked and the forecast hidden
    within the stale limit, and the tile says for how long."""
    driver = browser
    stale_s = 3.0
    settings = {"beds": {"P001": "12A"}, "stale_after_s": stale_s}
    ward = Ward(broker.port, tmp_path / "alerts.sqlite3", [Bed("P001", "12A", "sinus_stable", 1)]).start()
    station = _station(broker, **settings)
    try:
        driver.set_window_size(1000, 1000)  # a narrower strip: ~10 s in view, so there is a buffer to scroll
        _signed_in(driver, station)

        def hr() -> str:
            return str(_tile(driver, "P001").find_element("css selector", ".hr").text)

        wait_for(lambda: hr().isdigit(), timeout=30, what="a heart rate")
        ward.publish_forecast("P001", af=0.3)
        wait_for(lambda: "30%" in _tile(driver, "P001").text, what="the forecast")
        strip = _tile(driver, "P001").find_element("css selector", ".strip")
        assert float(strip.get_attribute("data-px-per-s")) == pytest.approx(94.488, abs=0.01)
        time.sleep(max(0.0, 16 - (time.time() - ward.start_time)))  # more buffered than the detail view shows

        wait_for(lambda: _done(_tile(driver, "P001").find_element("css selector", ".open-detail").click()))
        wait_for(
            lambda: "beats marked" in (driver.find_element("id", "detail-strip").get_attribute("aria-label") or "")
        )
        _check_paper_speed(driver)
        _check_scrolling(driver)
        driver.find_element("id", "detail-close").click()

        ward.beds["P001"].silent = True  # the data stop
        stopped = time.monotonic()
        wait_for(lambda: hr() == "–", timeout=stale_s + 5, what="HR blanked")
        assert time.monotonic() - stopped <= stale_s + 1.5  # within the stale limit and one push
        tile = _tile(driver, "P001")
        note = tile.find_element("css selector", ".stale-note")
        assert note.is_displayed() and note.text.startswith("No signal for ")
        assert tile.find_element("css selector", ".quality").text == "no signal"
        assert "30%" not in tile.text and "Forecast hidden" in tile.text
        first = note.text
        wait_for(lambda: note.text != first, timeout=5, what="the age counting up")
    finally:
        station.close()
        ward.stop()


def _check_paper_speed(driver: Any) -> None:
    """Beat ticks' x against their times: the slope is 25 mm per second as this page lays out a millimetre."""
    detail = driver.execute_script(
        """
        const c = document.getElementById('detail-strip');
        const ctx = c.getContext('2d');
        const row = ctx.getImageData(0, 1, c.width, 1).data;
        const xs = [];
        for (let x = 0; x < c.width; x += 1) {
          const white = row[4 * x] > 200 && row[4 * x + 1] > 200 && row[4 * x + 2] > 200;
          if (white && (!xs.length || x - xs[xs.length - 1][1] > 1)) xs.push([x, x]);
          else if (white) xs[xs.length - 1][1] = x;
        }
        const box = document.createElement('div');
        box.style.width = '25mm';
        document.body.appendChild(box);
        const mm25 = box.getBoundingClientRect().width;
        box.remove();
        return {ticks: xs.map(([a, b]) => (a + b + 1) / 2), ratio: c.width / c.clientWidth, mm25,
                start: Number(c.dataset.viewStart), end: Number(c.dataset.viewEnd), beats: station.detailData.beats};
        """
    )
    beats = [t for t in detail["beats"] if detail["start"] + 0.05 < t < detail["end"] - 0.05]  # whole ticks only
    width = driver.find_element("id", "detail-strip").size["width"]
    ticks = [x / detail["ratio"] for x in detail["ticks"] if 0.05 * 94.5 < x / detail["ratio"] < width - 0.05 * 94.5]
    assert len(ticks) == len(beats) >= 4, (ticks, beats)
    slope = statistics.linear_regression(beats, ticks).slope  # CSS px per second
    assert detail["mm25"] == pytest.approx(94.488, rel=0.01)
    assert slope == pytest.approx(detail["mm25"], rel=0.01)


def _check_scrolling(driver: Any) -> None:
    """The slider scrolls back through the buffer: the view's end moves back by what it says, and Latest returns."""
    canvas = driver.find_element("id", "detail-strip")
    latest = float(canvas.get_attribute("data-view-end"))
    slider = driver.find_element("id", "detail-scroll")
    assert float(slider.get_attribute("max")) > 2.0
    driver.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'));", slider)
    earliest = float(canvas.get_attribute("data-view-end"))
    assert earliest < latest - 2.0
    assert "following the newest" not in driver.find_element("id", "detail-span").text
    driver.find_element("id", "detail-latest").click()
    wait_for(lambda: float(canvas.get_attribute("data-view-end")) >= latest, what="back to the newest")


def test_tones_per_priority_audio_pause_with_countdown_and_the_sound_choice_remembered(
    broker: LocalMosquitto, browser: Any, forger: Forger
) -> None:
    driver = browser
    station = _station(broker, beds={"T1": "1", "T2": "2", "T3": "3"}, audio_pause_s=10)

    def played() -> list[list[Any]]:
        return list(driver.execute_script("return audio.played.map((p) => [p.priority, p.pulses])"))

    try:
        _signed_in(driver, station)
        toggle = driver.find_element("id", "sound-toggle")
        pause = driver.find_element("id", "audio-pause")
        assert toggle.text.startswith("Alarm sound: on") and pause.is_displayed()  # on unless this browser said off
        toggle.click()
        assert toggle.text == "Alarm sound: off" and not pause.is_displayed()
        driver.refresh()  # the choice is remembered by this browser
        wait_for(lambda: driver.find_element("id", "sound-toggle").text == "Alarm sound: off", what="remembered")
        assert driver.execute_script("return localStorage.getItem('ecgcast.station.sound')") == "off"
        toggle = driver.find_element("id", "sound-toggle")
        pause = driver.find_element("id", "audio-pause")
        toggle.click()
        assert toggle.text.startswith("Alarm sound: on") and played() == [["low", 2]]  # a sample burst

        forger.alert("T1", "medium")
        wait_for(lambda: ["medium", 3] in played(), what="the medium burst")
        pause.click()  # a medium alarm during the pause stays silent, and the countdown runs
        assert pause.text.startswith("Audio paused 0:1") and pause.get_attribute("aria-pressed") == "true"
        before = len(played())
        forger.alert("T2", "medium")
        wait_for(lambda: len(_alarm_list(driver)) == 2, what="the second alarm shown")
        remaining = int(pause.get_attribute("data-remaining-s"))
        wait_for(lambda: int(pause.get_attribute("data-remaining-s") or 99) < remaining, what="the countdown")
        assert len(played()) == before
        wait_for(lambda: pause.text == "Audio pause", timeout=12, what="the pause running out")

        pause.click()  # a new high-priority alarm ends a pause: its burst is heard
        forger.alert("T3", "high")
        wait_for(lambda: ["high", 10] in played(), what="the high burst through the pause")
        assert pause.text == "Audio pause"
        tones = driver.execute_script("return Object.fromEntries(Object.entries(TONES).map(([k, v]) => [k, v]))")
        assert [len(tones[p]["onsets"]) for p in ("high", "medium", "low")] == [10, 3, 2]
        assert tones["high"]["repeatS"] < tones["medium"]["repeatS"] and tones["low"]["repeatS"] is None
    finally:
        station.close()
