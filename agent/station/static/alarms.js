// ecgcast central station: the alarm display, after IEC 60601-1-8 (docs/STATION.md, "Alarm display").
// Priority is colour, shape and word; flashing (CSS: high 2 Hz, medium 0.625 Hz, low steady) means unacknowledged,
// and acknowledged is its own cue (an outlined "✓ ACK" indicator, steady), never another priority's style. Tones
// are the standard's burst patterns per priority (Web Audio). The sound choice is remembered per browser; Audio
// pause silences tones for station.audio_pause_s with a visible countdown. Loaded before station.js; it calls
// station.js's helpers (priorityOf, alertHeadline, label, clock, ago, el) only from functions run after load.
"use strict";

// Burst patterns (IEC 60601-1-8 Table 3/4): high 10 pulses (3 + 2, pause, 3 + 2) of 150 ms, 100 ms apart,
// repeated every 10 s; medium 3 pulses of 200 ms, 200 ms apart, every 20 s; low 2 pulses, once. Pitch falls with
// priority; every pulse has four harmonics above its fundamental, as the standard asks (audible through noise).
const TONES = Object.freeze({
  high: { hz: 660, pulseS: 0.15, onsets: [0, 0.25, 0.5, 1.0, 1.25, 2.1, 2.35, 2.6, 3.1, 3.35], repeatS: 10 },
  medium: { hz: 523, pulseS: 0.2, onsets: [0, 0.4, 0.8], repeatS: 20 },
  low: { hz: 440, pulseS: 0.2, onsets: [0, 0.4], repeatS: null },
});
const ALARM_ORDER = { high: 3, medium: 2, low: 1 };
const VOLUME = 0.15;
const SOUND_KEY = "ecgcast.station.sound"; // localStorage: "on" / "off"
const TONES_KEPT = 20;

const audio = {
  offered: false, // station.sound: the switch is shown at all
  on: false,
  ctx: null,
  pauseS: 120,
  pausedUntil: 0, // Date.now() ms; 0: not paused
  lastBurst: {}, // priority -> Date.now() ms of its last burst
  played: [], // the last TONES_KEPT bursts: {priority, at, pulses, state}; what a test or a bug report reads
};

// ---------- indicators ----------
const alarmKey = (priority) => (Object.prototype.hasOwnProperty.call(ALARM_ORDER, priority) ? priority : "unknown");

// The one alarm indicator, used on the tile, in each alert and in the alarm list: its class carries priority and
// acknowledgement apart ("ind-high ind-unacked"), its text says both in words.
function alarmIndicator(node, priority, acknowledged, advisory) {
  const p = priorityOf(priority);
  node.className = `ind ind-${p.key} ${acknowledged ? "ind-acked" : "ind-unacked"}`;
  node.textContent = `${p.shape} ${p.word}${advisory ? " · FORECAST" : ""}${acknowledged ? " · ✓ ACK" : ""}`;
  node.dataset.priority = p.key;
  node.dataset.acknowledged = acknowledged ? "1" : "";
  return node;
}

// The tile's frame: colour and line style of its highest active priority; flashing while that is unacknowledged.
function tileAlarmClass(alarm) {
  if (!alarm || typeof alarm !== "object") return "";
  return `alarm-${alarmKey(alarm.priority)} ${alarm.acknowledged ? "alarm-acked" : "alarm-unacked"}`;
}

// ---------- alarm list ----------
function alarmSortKey(a) {
  return [-(ALARM_ORDER[a.priority] || 0), a.state === "acknowledged" ? 1 : 0, -(Number(a.raised_at) || 0)];
}

function compareAlarms(x, y) {
  const kx = alarmSortKey(x.alert);
  const ky = alarmSortKey(y.alert);
  for (let i = 0; i < kx.length; i += 1) if (kx[i] !== ky[i]) return kx[i] - ky[i];
  return x.who.localeCompare(y.who);
}

// Every active alert of every tile, highest priority first, unacknowledged before acknowledged, newest first.
function renderAlarmList() {
  const rows = [];
  station.tiles.forEach((entry, pid) => {
    const alerts = entry.data && Array.isArray(entry.data.alerts) ? entry.data.alerts : [];
    alerts.forEach((alert) => rows.push({ pid, who: label(entry.data), alert }));
  });
  rows.sort(compareAlarms);
  const items = rows.map((row) => alarmListItem(row));
  const list = document.getElementById("alarm-list-items");
  list.replaceChildren(...items);
  document.getElementById("alarm-list-empty").hidden = items.length > 0;
  document.getElementById("alarm-count").textContent = String(items.length);
}

function alarmListItem({ pid, who, alert }) {
  const li = el("li", "alarm-item");
  try {
    li.dataset.pid = pid;
    li.dataset.alertId = String(alert.alert_id);
    const button = el("button", "alarm-go");
    button.type = "button";
    const acknowledged = alert.state === "acknowledged";
    button.append(
      alarmIndicator(el("span"), alert.priority, acknowledged, alert.kind === "forecast"),
      el("span", "alarm-who", who),
      el("span", "alarm-what", alertHeadline(alert)),
      el("span", "alarm-when", `${clock(alert.raised_at)} (${ago(alert.raised_at)})`),
    );
    button.addEventListener("click", () => focusTile(pid));
    li.appendChild(button);
  } catch (err) {
    console.error("station: an alarm list entry could not be drawn", err);
    li.replaceChildren(el("span", "ind ind-unknown", `? an alert of ${pid} could not be displayed`));
  }
  return li;
}

function focusTile(pid) {
  const entry = station.tiles.get(pid);
  if (!entry) return;
  entry.el.scrollIntoView({ block: "nearest" });
  entry.el.querySelector(".open-detail").focus();
}

// ---------- tones ----------
function audioContext() {
  if (!audio.ctx) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    audio.ctx = new Context();
  }
  return audio.ctx;
}

function pulse(ctx, wave, hz, at, duration) {
  const osc = ctx.createOscillator();
  osc.setPeriodicWave(wave);
  osc.frequency.value = hz;
  const gain = ctx.createGain();
  const edge = duration * 0.15; // rise and fall 10-20 % of the pulse
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(VOLUME, at + edge);
  gain.gain.setValueAtTime(VOLUME, at + duration - edge);
  gain.gain.linearRampToValueAtTime(0, at + duration);
  osc.connect(gain).connect(ctx.destination);
  osc.start(at);
  osc.stop(at + duration + 0.01);
}

const audioPaused = () => audio.pausedUntil > Date.now();

// Plays one burst of a priority's pattern; false when sound is off, paused or impossible in this browser.
function playTone(priority) {
  const tone = TONES[priority];
  if (!tone || !audio.on || audioPaused()) return false;
  const ctx = audioContext();
  if (!ctx) return false;
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  const wave = ctx.createPeriodicWave(new Float32Array([0, 0, 0, 0, 0, 0]), new Float32Array([0, 1, 0.5, 0.35, 0.25, 0.2]));
  const start = ctx.currentTime + 0.05;
  tone.onsets.forEach((onset) => pulse(ctx, wave, tone.hz, start + onset, tone.pulseS));
  audio.lastBurst[priority] = Date.now();
  audio.played.push({ priority, at: Date.now(), pulses: tone.onsets.length, state: ctx.state });
  if (audio.played.length > TONES_KEPT) audio.played.shift();
  return true;
}

// A new (or escalated, or re-notified) alert: its burst now. A new high-priority alarm ends an audio pause.
function soundNewAlarm(priority) {
  if (priority === "high" && audioPaused()) resumeAudio();
  playTone(priority);
}

// Once a second: repeat the burst of the highest unacknowledged priority on its interval (low never repeats).
function alarmSoundTick() {
  let top = null;
  station.tiles.forEach((entry) => {
    const alerts = entry.data && Array.isArray(entry.data.alerts) ? entry.data.alerts : [];
    alerts.forEach((a) => {
      if (a.state === "raised" && (ALARM_ORDER[a.priority] || 0) > (ALARM_ORDER[top] || 0)) top = a.priority;
    });
  });
  const tone = top && TONES[top];
  if (tone && tone.repeatS && Date.now() - (audio.lastBurst[top] || 0) >= tone.repeatS * 1000) playTone(top);
  renderAudioControls();
}

// ---------- sound switch and audio pause ----------
function storedSound() {
  try {
    return window.localStorage.getItem(SOUND_KEY);
  } catch (err) {
    return null; // storage blocked: the choice lasts for this page only
  }
}

function setSound(on) {
  audio.on = on;
  try {
    window.localStorage.setItem(SOUND_KEY, on ? "on" : "off");
  } catch (err) {
    console.warn("station: the sound choice cannot be remembered in this browser", err);
  }
  if (on) {
    const ctx = audioContext();
    if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
  }
  renderAudioControls();
}

function pauseAudio() {
  audio.pausedUntil = Date.now() + audio.pauseS * 1000;
  renderAudioControls();
}

function resumeAudio() {
  audio.pausedUntil = 0;
  renderAudioControls();
}

const countdown = (ms) => {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

function renderAudioControls() {
  const toggle = document.getElementById("sound-toggle");
  const pause = document.getElementById("audio-pause");
  toggle.hidden = !audio.offered;
  pause.hidden = !audio.offered || !audio.on;
  if (!audio.offered) return;
  const blocked = audio.on && audio.ctx && audio.ctx.state === "suspended";
  toggle.setAttribute("aria-pressed", String(audio.on));
  toggle.textContent = `Alarm sound: ${audio.on ? "on" : "off"}${blocked ? " (click anywhere to allow)" : ""}`;
  const paused = audioPaused();
  if (!paused && audio.pausedUntil) audio.pausedUntil = 0; // the pause ran out
  pause.setAttribute("aria-pressed", String(paused));
  pause.classList.toggle("is-paused", paused);
  pause.textContent = paused ? `Audio paused ${countdown(audio.pausedUntil - Date.now())} · resume` : "Audio pause";
  pause.dataset.remainingS = paused ? String(Math.ceil((audio.pausedUntil - Date.now()) / 1000)) : "";
}

// Wires the switch and the pause button; `me` is /api/me ({sound, audio_pause_s}). Sound starts on unless this
// browser chose off; a browser lets audio start only after a user action, so the first click or key allows it.
function setUpAudio(me) {
  audio.offered = me.sound === true;
  audio.pauseS = Number(me.audio_pause_s) > 0 ? Number(me.audio_pause_s) : 120;
  audio.on = audio.offered && storedSound() !== "off";
  document.getElementById("sound-toggle").addEventListener("click", () => {
    setSound(!audio.on);
    if (audio.on) playTone("low"); // let the nurse hear that it works
  });
  document.getElementById("audio-pause").addEventListener("click", () => (audioPaused() ? resumeAudio() : pauseAudio()));
  const allow = () => {
    if (audio.on && audioContext() && audio.ctx.state === "suspended") audio.ctx.resume().then(renderAudioControls, () => {});
  };
  document.addEventListener("pointerdown", allow);
  document.addEventListener("keydown", allow);
  if (audio.on) audioContext();
  renderAudioControls();
}
