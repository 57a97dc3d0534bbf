"""End-to-end in headless Chromium (Debian's package, driven by Selenium): sign in, live strips, an alert with its
explanation, acknowledgement seen on the page and on the MQTT alert topic, the detail view, and 'stale' when the
agent goes offline and when the station itself stops.

Set ``ECGCAST_STATION_SCREENSHOTS=<dir>`` to also write the README screenshots there.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.local_broker import LocalMosquitto
from agent.station import StationServer, StationSettings, hash_password
from core.protocol import Topics
from core.settings import MqttSettings

from .chromium import needs_chromium, wait_for
from .ward import Bed, Ward, fail_updates_once

PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.e2e, needs_chromium]


class AlertTopic:
    """Every lifecycle message on ``ecg/v1/+/alert``, as an alarm system would receive them."""

    def __init__(self, port: int) -> None:
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alarm-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("ecg/v1/+/alert", 1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def states(self, alert_id: str) -> list[str]:
        with self._lock:
            return [m["after"]["state"] for m in self.messages if m["after"]["alert_id"] == alert_id]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _screenshot(driver: object, name: str, settle_s: float = 0.0) -> None:
    """With ECGCAST_STATION_SCREENSHOTS set: a 1920×1080 shot after ``settle_s`` (strips fill), then the old size."""
    target = os.environ.get("ECGCAST_STATION_SCREENSHOTS")
    if not target:
        return
    Path(target).mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()  # type: ignore[attr-defined]
    driver.set_window_size(1920, 1080)  # type: ignore[attr-defined]
    time.sleep(max(settle_s, 1.0))
    driver.save_screenshot(str(Path(target) / name))  # type: ignore[attr-defined]
    driver.set_window_size(size["width"], size["height"])  # type: ignore[attr-defined]


def test_sign_in_live_strips_alert_ack_detail_and_stale(
    broker: LocalMosquitto, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    beds = [
        Bed("P001", "12A", "sinus_stable", 1),
        Bed("P002", "12B", "sinus_ectopy", 2),
        Bed("P003", "14", "af_onset", 3),
        Bed("P004", "15", "sinus_stable", 4, lead_off=True),
    ]
    settings = StationSettings(
        enabled=True,
        port=0,
        users={"nurse.kim": hash_password(PASSWORD)},
        beds={b.patient_id: b.bed for b in beds},
        stale_after_s=3.0,
    )
    ward = Ward(broker.port, tmp_path / "alerts.sqlite3", beds).start()
    alarms = AlertTopic(broker.port)
    station = StationServer(settings, MqttSettings(url=broker.url), Topics("ecg/v1")).start()
    try:
        # Sign-in is required, and a wrong password is refused.
        driver.get(station.url + "/")  # type: ignore[attr-defined]
        wait_for(lambda: "/login" in driver.current_url, what="redirect to sign-in")  # type: ignore[attr-defined]
        _sign_in(driver, "nurse.kim", "wrong")
        wait_for(lambda: driver.find_element(By.ID, "login-error").is_displayed(), what="sign-in error")  # type: ignore[attr-defined]
        _sign_in(driver, "nurse.kim", PASSWORD)
        wait_for(lambda: driver.find_element(By.ID, "conn").text == "Live", what="live stream")  # type: ignore[attr-defined]
        assert "nurse.kim" in driver.find_element(By.ID, "user").text  # type: ignore[attr-defined]

        # Patients appear with moving strips.
        tiles = wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".tile")) == 4, what="four tiles")  # type: ignore[attr-defined]
        assert tiles
        first = _strip_end(driver, "P001")
        wait_for(lambda: _strip_end(driver, "P001") > first + 1.0, what="strip moving")
        wait_for(
            lambda: _done(
                Select(_tile(driver, "P004").find_element(By.CSS_SELECTOR, ".lead-select")).select_by_visible_text("V1")
            ),
            what="lead V1 chosen",
        )
        wait_for(lambda: "lead V1" in _strip_label(driver, "P004"), what="lead V1 drawn")
        ward.backfill_forecasts("P002", vt_from=0.05, vt_to=0.35)
        ward.backfill_forecasts("P003", vt_from=0.02, vt_to=0.06)
        for pid in ("P001", "P002", "P003"):
            ward.publish_forecast(pid, af=0.1 if pid != "P003" else 0.35, vt=0.05)
        wait_for(
            lambda: "Bed 14" in _tile(driver, "P003").text and "35%" in _tile(driver, "P003").text, what="forecast"
        )
        assert "leads off" in _tile(driver, "P004").find_element(By.CSS_SELECTOR, ".quality").text

        # An alert arrives (VT onset probability over threshold twice: persistence 2 of 3) with its explanation.
        ward.publish_forecast("P002", vt=0.62)
        ward.publish_forecast("P002", vt=0.64)
        text, alert_id = wait_for(lambda: _first_alert(driver, "P002"), what="alert")  # type: ignore[misc]
        assert "MEDIUM" in text and "ventricular tachycardia" in text and "Forecast advisory" in text
        assert "Measured on lead" in text and "Unacknowledged" in text
        toast = lambda: driver.find_element(By.ID, "toast").text  # type: ignore[attr-defined]  # noqa: E731
        wait_for(lambda: "New MEDIUM alert" in toast(), what="announcement")
        tiles_in_order = lambda: [  # noqa: E731
            t.get_attribute("data-pid")
            for t in driver.find_elements(By.CSS_SELECTOR, ".tile")  # type: ignore[attr-defined]
        ]
        wait_for(lambda: _alarm_list(driver)[:1] == ["P002"], what="the alarm in the alarm list")
        assert tiles_in_order() == ["P001", "P002", "P003", "P004"]  # fixed beds: an alert moves no tile
        _screenshot(driver, "station.png", settle_s=8.0)

        # Acknowledge from the page: the agent's state machine publishes the update on the MQTT alert topic.
        wait_for(lambda: _done(_tile(driver, "P002").find_element(By.CSS_SELECTOR, "button.ack").click()), what="ack")
        wait_for(lambda: "acknowledged" in alarms.states(alert_id), what="ack on the MQTT alert topic")
        ack_msg = next(m for m in alarms.messages if m["after"]["state"] == "acknowledged")
        assert ack_msg["type"] == "update" and ack_msg["after"]["acknowledged_by"] == "nurse.kim"
        wait_for(lambda: "Acknowledged by nurse.kim" in _tile(driver, "P002").text, what="ack on the page")
        assert not _tile(driver, "P002").find_elements(By.CSS_SELECTOR, "button.ack")
        assert tiles_in_order() == ["P001", "P002", "P003", "P004"]  # nor does an acknowledgement

        # Detail view: long strip with beats, forecast window, alert history; keyboard closes it.
        wait_for(
            lambda: _done(_tile(driver, "P002").find_element(By.CSS_SELECTOR, ".open-detail").click()), what="detail"
        )
        wait_for(lambda: "acknowledged" in driver.find_element(By.ID, "detail-history").text, what="detail history")  # type: ignore[attr-defined]
        label = driver.find_element(By.ID, "detail-strip").get_attribute("aria-label")  # type: ignore[attr-defined]
        assert "beats marked" in label and "forecast window" in label
        _screenshot(driver, "station_detail.png")
        driver.find_element(By.ID, "detail-close").send_keys("\ue00c")  # type: ignore[attr-defined]  # Escape
        wait_for(lambda: not driver.find_element(By.ID, "detail").is_displayed(), what="detail closed")  # type: ignore[attr-defined]

        # The agent goes away: its will says offline, and the page says the data are stale.
        ward.publish_presence("offline")
        stale = wait_for(lambda: driver.find_element(By.ID, "stale").is_displayed(), what="stale banner")  # type: ignore[attr-defined]
        assert stale
        assert "agent offline" in driver.find_element(By.ID, "stale").text  # type: ignore[attr-defined]
        ward.publish_presence("online")
        wait_for(lambda: not driver.find_element(By.ID, "stale").is_displayed(), what="recovered")  # type: ignore[attr-defined]

        # The station (and its stream) stops: the page notices by itself.
        station.close()
        wait_for(lambda: "connection to the station lost" in driver.find_element(By.ID, "stale").text, what="lost")  # type: ignore[attr-defined]
    finally:
        station.close()
        alarms.close()
        ward.stop()


def _sign_in(driver: object, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "username")  # type: ignore[attr-defined]
    field.clear()
    field.send_keys(user)
    secret = driver.find_element(By.ID, "password")  # type: ignore[attr-defined]
    secret.clear()
    secret.send_keys(password)
    driver.find_element(By.ID, "sign-in").click()  # type: ignore[attr-defined]


def _done(_: object) -> bool:
    """For ``wait_for``: an action on an element that a re-render may replace, retried until it goes through."""
    return True


def _first_alert(driver: object, pid: str) -> tuple[str, str] | None:
    """The first alert box's text and id, read together so that a re-render between the two cannot split them."""
    from selenium.webdriver.common.by import By

    boxes = _tile(driver, pid).find_elements(By.CSS_SELECTOR, ".alert")  # type: ignore[attr-defined]
    return (boxes[0].text, str(boxes[0].get_attribute("data-alert-id"))) if boxes else None


def _alarm_list(driver: object) -> list[str]:
    """Patient ids of the alarm list's entries, top first."""
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, "#alarm-list-items li")  # type: ignore[attr-defined]
    return [str(li.get_attribute("data-pid")) for li in items]


def _tile(driver: object, pid: str) -> object:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, f"tile-{pid}")  # type: ignore[attr-defined]


def _strip_end(driver: object, pid: str) -> float:
    from selenium.webdriver.common.by import By

    value = _tile(driver, pid).find_element(By.CSS_SELECTOR, ".strip").get_attribute("data-t-end")  # type: ignore[attr-defined]
    return float(value or 0.0)


def _strip_label(driver: object, pid: str) -> str:
    from selenium.webdriver.common.by import By

    return str(_tile(driver, pid).find_element(By.CSS_SELECTOR, ".strip").get_attribute("aria-label"))  # type: ignore[attr-defined]


def test_one_forged_alert_does_not_blank_the_screen(
    broker: LocalMosquitto, browser: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: ``"evidence": {"rr_irregularity": "x"}`` threw in evidenceText and stopped the snapshot loop, so
    only the forged tile was drawn; an unknown priority threw too. Each tile and alert now renders on its own, and
    the page shows the station's technical alarms and its broker connection."""
    from selenium.webdriver.common.by import By

    from agent.station import _feed as feed_module

    from .test_station_hostile import forged_alert

    monkeypatch.setattr(feed_module, "RESTART_DELAY_S", 0.1)
    driver = browser
    settings = StationSettings(enabled=True, port=0, users={"nurse.kim": hash_password(PASSWORD)})
    station = StationServer(settings, MqttSettings(url=broker.url), Topics("ecg/v1")).start()
    forger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"forger-{uuid.uuid4().hex[:6]}")
    forger.connect("127.0.0.1", broker.port)
    forger.loop_start()
    try:
        assert station.feed.connection.wait_connected(10)
        for pid in ("P001", "P002"):
            body = {"schema": "ecgcast.status/1", "patient_id": pid, "state": "streaming"}
            forger.publish(f"ecg/v1/{pid}/status", json.dumps(body), qos=1, retain=True).wait_for_publish(5)
        presence = {"schema": "ecgcast.presence/1", "agent_id": "a1", "state": "online"}
        forger.publish("ecg/v1/_agents/a1/presence", json.dumps(presence), qos=1, retain=True).wait_for_publish(5)
        alert = forged_alert("P666", evidence={"rr_irregularity": "x", "hr_bpm": "fast", "lead": "II"})
        forger.publish("ecg/v1/P666/alert", json.dumps(alert), qos=1).wait_for_publish(5)
        wait_for(lambda: "P666" in station.state.patients and "P002" in station.state.patients, what="messages in")

        driver.get(station.url + "/")  # type: ignore[attr-defined]
        _sign_in(driver, "nurse.kim", PASSWORD)
        wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".tile")) == 3, what="every tile drawn")  # type: ignore[attr-defined]
        text = _tile(driver, "P666").text  # type: ignore[attr-defined]
        assert "RR irregularity unknown value" in text and "HR unknown value" in text and "MEDIUM" in text

        # An unknown priority and a tile the page cannot draw at all: shown as such, and the others stay.
        tile = driver.execute_script("return station.tiles.get('P001').data")  # type: ignore[attr-defined]
        odd = {**alert["after"], "patient_id": "P001", "priority": "urgent", "probability": "high"}
        drawn = driver.execute_script(  # type: ignore[attr-defined]
            "return [renderTileSafely(arguments[0]), renderTileSafely({patient_id: 'P999', alerts: null})]",
            {**tile, "alerts": [odd], "rank": 9},
        )
        assert drawn == [True, False]
        assert "UNKNOWN PRIORITY (urgent)" in _tile(driver, "P001").text  # type: ignore[attr-defined]
        assert "Patient P999 could not be displayed" in _tile(driver, "P999").text  # type: ignore[attr-defined]
        assert "P002" in _tile(driver, "P002").text  # type: ignore[attr-defined]

        # The station's own faults reach the banner: a restarted feed loop (technical alarm).
        fail_updates_once(station, monkeypatch)
        banner = lambda: driver.find_element(By.ID, "stale")  # type: ignore[attr-defined]  # noqa: E731
        wait_for(lambda: "technical alarm" in banner().text and "restarted" in banner().text, what="alarm banner")
    finally:
        forger.loop_stop()
        forger.disconnect()
        station.close()


def test_mute_forecasts_from_the_page_then_unmute(broker: LocalMosquitto, browser: object, tmp_path: Path) -> None:
    """Issue #22: a nurse mutes one patient's forecasts from the tile (reason and duration in the detail view); the
    agent's alert half records it and publishes the retained state; the tile says "Forecasts muted until HH:MM
    (reason, by)", forecasts that would alert do not, and the tile's Unmute lifts it. The reason is shown as text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    settings = StationSettings(enabled=True, port=0, users={"nurse.kim": hash_password(PASSWORD)}, beds={"P001": "7"})
    ward = Ward(broker.port, tmp_path / "alerts.sqlite3", [Bed("P001", "7", "sinus_stable", 1)]).start()
    station = StationServer(settings, MqttSettings(url=broker.url), Topics("ecg/v1")).start()
    reason = "paced <img src=x onerror=alert(1)>"
    try:
        driver.get(station.url + "/")  # type: ignore[attr-defined]
        _sign_in(driver, "nurse.kim", PASSWORD)
        wait_for(lambda: driver.find_elements(By.ID, "tile-P001"), what="tile")  # type: ignore[attr-defined]
        note = lambda: _tile(driver, "P001").find_element(By.CSS_SELECTOR, ".mute-note")  # type: ignore[attr-defined]  # noqa: E731
        toggle = lambda: _tile(driver, "P001").find_element(By.CSS_SELECTOR, ".mute-toggle")  # type: ignore[attr-defined]  # noqa: E731
        assert not note().is_displayed() and toggle().text == "Mute forecasts…"

        wait_for(lambda: _done(toggle().click()), what="open the mute form")
        field = driver.find_element(By.ID, "mute-reason")  # type: ignore[attr-defined]
        wait_for(lambda: driver.switch_to.active_element == field, what="reason field focused")  # type: ignore[attr-defined]
        field.send_keys(reason)
        Select(driver.find_element(By.ID, "mute-duration")).select_by_visible_text("4 h")  # type: ignore[attr-defined]
        driver.find_element(By.CSS_SELECTOR, "#mute-form button[type=submit]").click()  # type: ignore[attr-defined]
        wait_for(lambda: ward.alerts.mute_state("P001") or None, what="the agent applied the mute")
        mute = ward.alerts.mute_state("P001")
        assert mute is not None and (mute.by, mute.reason) == ("nurse.kim", reason)
        assert abs(mute.until - mute.at - 4 * 3600) < 1e-6  # type: ignore[operator]
        wait_for(lambda: "muted until" in driver.find_element(By.ID, "detail-mutes").text, what="mute history")  # type: ignore[attr-defined]
        driver.find_element(By.ID, "detail-close").click()  # type: ignore[attr-defined]
        wait_for(lambda: note().is_displayed(), what="mute note on the tile")
        assert note().text.startswith("Forecasts muted until ") and f"({reason}, nurse.kim)" in note().text
        assert not driver.find_elements(By.CSS_SELECTOR, "img[src=x]")  # type: ignore[attr-defined]

        for _ in range(3):  # forecasts that would raise an AF alert for an unmuted patient
            ward.publish_forecast("P001", af=0.9)
        assert not ward.alerts.active("P001")

        wait_for(lambda: _done(toggle().click()), what="unmute")
        wait_for(lambda: not note().is_displayed(), what="mute lifted on the tile")
        lifted = ward.alerts.mute_state("P001")
        assert lifted is not None and (lifted.action, lifted.by) == ("unmuted", "nurse.kim")
    finally:
        station.close()
        ward.stop()
