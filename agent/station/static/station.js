// ecgcast central station: draws what the server pushes (Server-Sent Events), sends acknowledgements and forecast
// mutes.
// No build step, no dependencies. The server owns every number; this file only lays out, draws and announces.
// Defensive by rule: the server validates every message, but one value this page does not expect must cost at
// most its own tile (try/catch per tile and per alert), and unknown values are shown as such, never thrown on.
"use strict";

const PRIORITY = {
  high: { shape: "▲", word: "HIGH" },
  medium: { shape: "◆", word: "MEDIUM" },
  low: { shape: "●", word: "LOW" },
};
const ARRHYTHMIA = { af: "AF", flutter: "Flutter", vt: "VT" };
const ARRHYTHMIA_WORDS = { af: "atrial fibrillation", flutter: "atrial flutter", vt: "ventricular tachycardia" };
const HEARTBEAT_TIMEOUT_MS = 7000;
const KIND_TAG = { forecast: "FORECAST ADVISORY", present_rhythm: "MEASURED NOW", cannot_assess: "TECHNICAL" };

const station = {
  tiles: new Map(), // patient_id -> {data, el, strip: {fs, tEnd, leads: {name: number[]}}, lead}
  stripS: 10,
  agents: {},
  brokerConnected: null, // from the heartbeat: the station's own MQTT connection
  technical: [], // the station's technical alarms (e.g. its message feed restarted)
  lastFrameAt: 0,
  lastDataAt: null,
  source: null,
  connected: false,
  staleS: 15, // station.stale_after_s, from the snapshot
  clockOffsetMs: 0, // server clock minus this browser's, from the snapshot (ages of server times)
  alarmListDirty: false,
  detailPid: null,
  detailEnd: null, // device time at the detail strip's right edge; null: follow the newest sample
  detailLo: 0, // the earliest right edge the buffered strip allows (the slider's 0)
  detailOpener: null,
  detailData: null,
};

// ---------- formatting ----------
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString([], { hour12: false }) : "–");
function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const HHMM = { hour: "2-digit", minute: "2-digit", hour12: false };
const hhmm = (t) => (isNum(t) ? new Date(t * 1000).toLocaleTimeString([], HHMM) : "–");
const pct = (p) => (isNum(p) ? `${Math.round(p * 100)}%` : "–");
const horizon = (h) => (!isNum(h) ? "an unknown horizon" : h >= 60 ? `${Math.round(h / 60)} min` : `${h} s`);
// A priority this page does not know is shown as unknown (with its text), not thrown on.
function priorityOf(name) {
  if (Object.prototype.hasOwnProperty.call(PRIORITY, name)) return { key: name, ...PRIORITY[name] };
  return { key: "unknown", shape: "?", word: `UNKNOWN PRIORITY (${String(name).slice(0, 20)})` };
}
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const label = (d) => (d.bed ? `Bed ${d.bed} · ${d.patient_id}` : d.patient_id);

// "Forecasts muted until 14:30 (known paroxysmal AF, nurse.kim)"; every part is text, never markup.
function muteText(m) {
  const why = [m.reason, m.by].filter((v) => typeof v === "string" && v).map((v) => v.slice(0, 200));
  return `Forecasts muted until ${hhmm(m.until)}${why.length ? ` (${why.join(", ")})` : ""}`;
}

function alertHeadline(a) {
  if (a.kind === "cannot_assess") return "Cannot assess: signal quality";
  if (a.kind === "ectopy") return ectopyHeadline(a);
  const known = Object.prototype.hasOwnProperty.call(ARRHYTHMIA_WORDS, a.arrhythmia);
  const name = known ? ARRHYTHMIA_WORDS[a.arrhythmia] : `unknown arrhythmia (${String(a.arrhythmia).slice(0, 20)})`;
  // A rhythm measured under way is never worded as a forecast: "AF now", with the measured duration.
  if (a.kind === "present_rhythm") {
    const run = a.evidence && a.evidence.present_rhythm;
    const lasted = run && isNum(run.lasted_s) ? ` for ≥ ${Math.round(run.lasted_s)} s` : "";
    return `${known ? ARRHYTHMIA[a.arrhythmia] : name} now: ${name} under way${lasted} (measured, not a forecast)`;
  }
  if (a.kind !== "forecast") return `Unknown alert kind (${String(a.kind).slice(0, 20)}): ${name}`;
  return `Forecast: ${name} may begin within ${horizon(a.horizon_s)} (p ${pct(a.probability)})`;
}

// "PVC burden high: 21% of beats over 60 s (measured, an advisory)"; a value this page does not expect is left out.
function ectopyHeadline(a) {
  const e = a.evidence && a.evidence.ectopy;
  const w = e && Array.isArray(e.windows) && e.windows[0] && typeof e.windows[0] === "object" ? e.windows[0] : {};
  const share = isNum(w.pvc_burden) ? ` ${pct(w.pvc_burden)} of beats` : "";
  const span = isNum(w.window_s) ? ` over ${Math.round(w.window_s)} s` : "";
  return `PVC burden high:${share}${span} (measured, an advisory)`;
}

// The agent's own measurements of recent windows, one line each (the server words them); text only.
function measuredRows(lines) {
  const rows = (Array.isArray(lines) ? lines : [])
    .filter((l) => typeof l === "string")
    .map((l) => el("span", "measured-line", l.slice(0, 300)));
  return rows.length ? rows : [el("span", "measured-line", "–")];
}

// ---------- strips ----------
function appendStrip(entry, wave) {
  const s = entry.strip;
  const cap = Math.round(station.stripS * wave.fs);
  if (s.fs !== wave.fs) {
    s.fs = wave.fs;
    s.leads = {};
    s.tEnd = null;
  }
  const names = Object.keys(wave.leads);
  const n = names.length ? wave.leads[names[0]].length : 0;
  if (!n || wave.t0 === null) return;
  let gap = s.tEnd === null ? 0 : Math.round((wave.t0 - s.tEnd) * wave.fs) - 1;
  gap = Math.max(0, Math.min(gap, cap));
  for (const name of names) {
    const buf = s.leads[name] || (s.leads[name] = []);
    for (let i = 0; i < gap; i += 1) buf.push(null);
    for (const v of wave.leads[name]) buf.push(v);
    if (buf.length > cap) buf.splice(0, buf.length - cap);
  }
  s.tEnd = wave.t0 + (n - 1) / wave.fs;
  entry.stripDirty = true;
  entry.lastWaveAt = Date.now();
}

function drawTileStrip(entry) {
  const canvas = entry.el.querySelector(".strip");
  const s = entry.strip;
  const lead = entry.lead && s.leads[entry.lead] ? entry.lead : Object.keys(s.leads)[0];
  if (!lead || s.tEnd === null) return;
  const { seconds } = drawPaper(canvas, s.leads[lead], s.fs, s.tEnd, s.tEnd, false);
  canvas.dataset.tEnd = String(s.tEnd);
  canvas.setAttribute(
    "aria-label",
    `ECG lead ${lead} at 25 mm/s and 10 mm/mV, last ${seconds.toFixed(1)} s up to ${clock(s.tEnd)}`,
  );
}

function drawSparkline(canvas, points, t1, spanS) {
  const ctx = fitCanvas(canvas);
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#3a424d";
  ctx.setLineDash([4, 4]);
  ctx.beginPath();
  ctx.moveTo(0, h / 2);
  ctx.lineTo(w, h / 2);
  ctx.stroke();
  ctx.setLineDash([]);
  if (!points.length) return;
  ctx.strokeStyle = "#ffc14d";
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach(([t, p], i) => {
    const x = w - ((t1 - t) / spanS) * w;
    const y = h - p * h;
    if (i) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
  });
  ctx.stroke();
}

// ---------- tiles ----------
function makeTile(pid) {
  const node = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
  node.dataset.pid = pid;
  node.id = `tile-${pid}`;
  const entry = { data: null, el: node, strip: { fs: null, tEnd: null, leads: {} }, lead: null, stripDirty: false };
  const select = node.querySelector(".lead-select");
  select.id = `lead-${pid}`;
  select.addEventListener("change", () => {
    entry.lead = select.value;
    entry.stripDirty = true;
  });
  node.querySelector(".open-detail").addEventListener("click", (ev) => openDetail(pid, ev.currentTarget));
  node.querySelector(".mute-toggle").addEventListener("click", (ev) => {
    const button = ev.currentTarget;
    if (button.dataset.muted) sendMute(pid, { action: "unmute" }, node.querySelector(".mute-note"));
    else openDetail(pid, button, "mute-reason");
  });
  station.tiles.set(pid, entry);
  document.getElementById("grid").appendChild(node);
  document.getElementById("empty").hidden = true;
  return entry;
}

function renderLeads(entry, leads) {
  const select = entry.el.querySelector(".lead-select");
  const current = Array.from(select.options).map((o) => o.value).join(",");
  if (current === leads.join(",")) return;
  select.replaceChildren(...leads.map((l) => el("option", null, l)));
  if (!leads.includes(entry.lead)) entry.lead = leads[0] || null;
  if (entry.lead) select.value = entry.lead;
}

// `hidden`: why the server withholds the latest forecast (no signal, or forecasts suppressed); old numbers are
// never shown as if current.
function renderForecast(table, forecast, hidden) {
  const thead = table.querySelector("thead");
  const tbody = table.querySelector("tbody");
  table.classList.toggle("is-hidden", Boolean(hidden));
  if (!forecast) {
    thead.replaceChildren();
    tbody.replaceChildren(el("tr", null));
    tbody.firstChild.appendChild(el("td", null, hidden ? `— ${String(hidden).slice(0, 120)}` : "no forecast yet"));
    table.querySelector("caption").textContent = hidden ? "Forecast hidden" : "Forecast: onset probability within";
    return;
  }
  const hs = forecast.horizons_s;
  const head = el("tr");
  head.appendChild(el("th", null, ""));
  hs.forEach((h) => {
    const th = el("th", null, horizon(h));
    th.scope = "col";
    head.appendChild(th);
  });
  thead.replaceChildren(head);
  const rows = Object.keys(ARRHYTHMIA).map((a) => {
    const tr = el("tr");
    const th = el("th", null, ARRHYTHMIA[a]);
    th.scope = "row";
    tr.appendChild(th);
    hs.forEach((h) => {
      const p = (forecast.onset_probs[String(h)] || {})[a];
      tr.appendChild(el("td", p >= 0.5 ? "over" : "", pct(p)));
    });
    return tr;
  });
  tbody.replaceChildren(...rows);
  table.querySelector("caption").textContent = `Forecast at ${clock(forecast.published_at)}: onset probability within`;
}

// One measured value: absent is left out, a number is formatted, anything else is shown as unknown.
function measured(parts, label, v, format) {
  if (v === null || v === undefined) return;
  parts.push(isNum(v) ? `${label} ${format(v)}` : `${label} unknown value`);
}

function evidenceText(e) {
  if (!e || typeof e !== "object") return "";
  const parts = [];
  measured(parts, "HR", e.hr_bpm, (v) => `${Math.round(v)} bpm`);
  measured(parts, "RR irregularity", e.rr_irregularity, (v) => v.toFixed(2));
  measured(parts, "PAC", e.pac_per_min, (v) => `${v.toFixed(1)}/min`);
  measured(parts, "PVC", e.pvc_per_min, (v) => `${v.toFixed(1)}/min`);
  measured(parts, "usable", e.usable_fraction, pct);
  const seconds = isNum(e.window_s) ? Math.round(e.window_s) : "?";
  const head = e.lead ? `Measured on lead ${String(e.lead).slice(0, 20)} over ${seconds} s: ` : "Measured: ";
  return head + (parts.join("; ") || "not measurable");
}

// A box for an alert (or any part of a tile) that could not be drawn: says so, and which one.
function unshowable(what, err) {
  console.error(`station: ${what} could not be displayed`, err);
  const box = el("div", "alert prio-unknown");
  box.setAttribute("role", "group");
  box.appendChild(el("p", "alert-title", `? ${what} could not be displayed; check the alarm system`));
  return box;
}

function renderAlertSafely(pid, a) {
  try {
    return renderAlert(pid, a);
  } catch (err) {
    return unshowable(`An alert (${String(a && a.alert_id).slice(0, 40)})`, err);
  }
}

function renderAlert(pid, a) {
  const p = priorityOf(a.priority);
  const state = ["raised", "acknowledged", "cleared", "resolved"].includes(a.state) ? a.state : "unknown";
  const kind = Object.prototype.hasOwnProperty.call(KIND_TAG, a.kind) ? a.kind : "other";
  const box = el("div", `alert prio-${p.key} state-${state} kind-${kind}`);
  box.setAttribute("role", "group");
  box.dataset.alertId = a.alert_id;
  box.setAttribute("aria-label", `${p.word} priority alert: ${alertHeadline(a)}`);
  const title = el("p", "alert-title");
  const chip = alarmIndicator(el("span"), a.priority, a.state === "acknowledged", false);
  title.append(chip, " ", el("span", "kind-tag", KIND_TAG[kind] || "ALERT"), ` ${alertHeadline(a)}`);
  const when = el("p", "evidence");
  when.append("Raised ", el("time", null, clock(a.raised_at)), " (");
  const rel = el("span", "ago", ago(a.raised_at));
  rel.dataset.t = String(a.raised_at);
  when.append(rel, ")");
  if (a.renotified) when.append(` · re-notified ${a.renotified}×`);
  box.append(title, when, el("p", "explanation", a.explanation || ""), el("p", "evidence", evidenceText(a.evidence)));
  if (a.state === "acknowledged") {
    box.appendChild(el("p", "ack-state", `✓ Acknowledged by ${a.acknowledged_by} at ${clock(a.acknowledged_at)}`));
  } else {
    const button = el("button", "ack", "Acknowledge");
    button.type = "button";
    button.setAttribute("aria-label", `Acknowledge ${p.word} alert for ${pid}: ${alertHeadline(a)}`);
    button.addEventListener("click", () => acknowledge(pid, a.alert_id, button));
    box.appendChild(el("p", "ack-state", "Unacknowledged"));
    box.appendChild(button);
  }
  return box;
}

function renderTile(d) {
  const entry = station.tiles.get(d.patient_id) || makeTile(d.patient_id);
  entry.data = d;
  const node = entry.el;
  node.className = `tile ${tileAlarmClass(d.alarm)} ${d.stale ? "is-stale" : ""}`;
  node.querySelector(".open-detail").textContent = label(d);
  node.setAttribute("aria-label", `${label(d)}${d.alerts.length ? `, ${d.alerts.length} active alert(s)` : ""}`);
  const badge = node.querySelector(".prio-badge");
  const alarm = d.alarm && typeof d.alarm === "object" ? d.alarm : null;
  if (alarm) alarmIndicator(badge, alarm.priority, alarm.acknowledged === true, alarm.advisory === true);
  else badge.replaceChildren();
  badge.className = alarm ? `prio-badge ${badge.className}` : "prio-badge";
  const q = node.querySelector(".quality");
  q.className = `quality q-${d.quality.replace(/ /g, "-")}`;
  q.textContent = d.quality;
  q.title = Object.entries(d.quality_by_lead).map(([l, v]) => `${l}: ${v}`).join(", ");
  q.setAttribute("aria-label", `Signal quality ${d.quality}${q.title ? ` (${q.title})` : ""}`);
  renderStaleNote(node, d);
  renderLeads(entry, d.leads);
  node.querySelector(".hr").textContent = d.hr_bpm === null ? "–" : `${d.hr_bpm}`;
  node.querySelector(".hr").setAttribute("aria-label", d.hr_bpm === null ? "heart rate not measurable" : `heart rate ${d.hr_bpm} per minute over the strip`);
  node.querySelector(".rhythm").textContent = d.rhythm;
  node.querySelector(".measured").replaceChildren(...measuredRows(d.measured));
  // Rebuild only what changed: a re-rendered button would lose keyboard focus mid-acknowledgement.
  const forecastKey = JSON.stringify([d.forecast, d.forecast_hidden, d.trend.length]);
  if (entry.forecastKey !== forecastKey) {
    entry.forecastKey = forecastKey;
    renderForecast(node.querySelector(".forecast"), d.forecast, d.forecast_hidden);
    drawSparkline(node.querySelector(".trend"), d.trend, Date.now() / 1000, 3600);
  }
  const alertsKey = JSON.stringify(d.alerts);
  if (entry.alertsKey !== alertsKey) {
    entry.alertsKey = alertsKey;
    node.querySelector(".alerts").replaceChildren(...d.alerts.map((a) => renderAlertSafely(d.patient_id, a)));
    station.alarmListDirty = true;
  }
  renderMuteNote(node, d);
}

// "No signal for 23 s (last data 14:02:11)": the age of the newest wave, kept current by refreshAges.
function renderStaleNote(node, d) {
  const note = node.querySelector(".stale-note");
  note.hidden = !d.stale;
  if (!d.stale) return;
  if (!isNum(d.last_wave_at)) {
    note.textContent = d.state === "unknown" && !d.leads.length ? "No signal received yet" : "No signal";
    delete note.dataset.t;
    return;
  }
  note.dataset.t = String(d.last_wave_at);
  note.textContent = staleText(d.last_wave_at);
}

function staleText(t) {
  const age = Math.max(0, (Date.now() + station.clockOffsetMs) / 1000 - t);
  const span = age < 90 ? `${Math.round(age)} s` : age < 5400 ? `${Math.round(age / 60)} min` : `${(age / 3600).toFixed(1)} h`;
  return `No signal for ${span} (last data ${clock(t)}): values blanked`;
}

// Once a second: stale ages, and a tile whose waves stopped reaching this page (a dead stream) greyed here too.
function refreshAges() {
  const now = Date.now();
  station.tiles.forEach((entry) => {
    const note = entry.el.querySelector(".stale-note");
    if (!note.hidden && note.dataset.t) note.textContent = staleText(Number(note.dataset.t));
    const quiet = entry.lastWaveAt !== undefined && now - entry.lastWaveAt > (station.staleS + 2) * 1000;
    entry.el.classList.toggle("is-stale-here", quiet && !(entry.data && entry.data.stale));
  });
}

function renderMuteNote(node, d) {
  const m = d.mute && typeof d.mute === "object" ? d.mute : null;
  const note = node.querySelector(".mute-note");
  note.hidden = !m;
  note.textContent = m ? muteText(m) : "";
  const button = node.querySelector(".mute-toggle");
  button.dataset.muted = m ? "1" : "";
  button.textContent = m ? "Unmute forecasts" : "Mute forecasts…";
  button.setAttribute("aria-label", `${m ? "Unmute" : "Mute"} forecast alerts for ${label(d)}`);
}

// Renders one tile; a tile that fails shows that it failed, and every other tile is still drawn.
function renderTileSafely(d) {
  try {
    renderTile(d);
    return true;
  } catch (err) {
    const pid = d && typeof d.patient_id === "string" ? d.patient_id : null;
    if (pid === null) {
      console.error("station: a tile without a patient id", err);
      return false;
    }
    const entry = station.tiles.get(pid) || makeTile(pid);
    entry.alertsKey = null;
    entry.forecastKey = null;
    entry.el.className = "tile alarm-unknown alarm-unacked";
    entry.el.querySelector(".open-detail").textContent = pid;
    entry.el.querySelector(".alerts").replaceChildren(unshowable(`Patient ${pid}`, err));
    return false;
  }
}

// The order names every patient the station tracks: a tile it leaves out was removed there (the agent evicted the
// patient, or nothing was heard of it for station.forget_after_s), so it goes from the page too.
function applyOrder(pids) {
  const grid = document.getElementById("grid");
  const focused = document.activeElement;
  const listed = new Set(pids);
  station.tiles.forEach((entry, pid) => {
    if (listed.has(pid)) return;
    entry.el.remove();
    station.tiles.delete(pid);
  });
  document.getElementById("empty").hidden = station.tiles.size > 0;
  station.alarmListDirty = true;
  pids.forEach((pid) => {
    const entry = station.tiles.get(pid);
    if (entry) grid.appendChild(entry.el);
  });
  if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus();
}

// ---------- announcements ----------
function announce(a) {
  const p = priorityOf(a.priority);
  const toast = document.getElementById("toast");
  const entry = station.tiles.get(a.patient_id);
  const who = entry && entry.data ? label(entry.data) : a.patient_id;
  toast.textContent = `${p.shape} New ${p.word} alert · ${who}: ${alertHeadline(a)}`;
  toast.className = `toast toast-${p.key}`;
  toast.hidden = false;
  clearTimeout(station.toastTimer);
  station.toastTimer = setTimeout(() => { toast.hidden = true; }, 15000);
  soundNewAlarm(a.priority); // the tile and the alarm list already flash by priority while unacknowledged
}

// ---------- acknowledgement and mute ----------
// Posts JSON to the station; the reply, or null when the session ended (the page goes to sign-in). Throws the
// server's one-line reason on a refusal.
async function postJson(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status === 401) {
    window.location = "/login";
    return null;
  }
  const reply = await res.json();
  if (!res.ok) throw new Error(reply.error || res.statusText);
  return reply;
}

async function acknowledge(pid, alertId, button) {
  button.disabled = true;
  button.textContent = "Sending…";
  try {
    if (await postJson("/api/ack", { patient_id: pid, alert_id: alertId })) {
      button.textContent = "Sent: waiting for the agent…";
    }
  } catch (err) {
    button.disabled = false;
    button.textContent = `Acknowledge (last try failed: ${err.message})`;
  }
}

// The page shows the mute only once the agent's retained mute state comes back, as with acknowledgements.
async function sendMute(pid, fields, status) {
  status.textContent = "Sending…";
  try {
    if (!(await postJson("/api/mute", { patient_id: pid, ...fields }))) return false;
    status.textContent = "Sent: waiting for the agent…";
    return true;
  } catch (err) {
    status.textContent = `Not sent: ${err.message}`;
    return false;
  }
}

// ---------- connection and staleness ----------
function setConn(state, text) {
  const conn = document.getElementById("conn");
  conn.className = `conn conn-${state}`;
  conn.textContent = text;
}

function updateStale() {
  const now = Date.now();
  const problems = [];
  if (!station.connected || now - station.lastFrameAt > HEARTBEAT_TIMEOUT_MS) {
    problems.push("connection to the station lost; reconnecting");
  }
  const agents = Object.entries(station.agents || {});
  if (station.connected && !agents.some(([, s]) => s === "online")) {
    const names = agents.map(([id]) => id).join(", ");
    problems.push(names ? `agent offline (${names}): forecasts and alerts are not updating` : "no agent online");
  }
  if (station.connected && station.brokerConnected === false) {
    problems.push("the station has lost its MQTT broker connection: nothing is updating");
  }
  if (station.connected) {
    (station.technical || []).forEach((t) => problems.push(`technical alarm: ${String(t.detail)}`));
  }
  const banner = document.getElementById("stale");
  if (problems.length) {
    const since = station.lastDataAt ? ` Showing data as of ${clock(station.lastDataAt / 1000)}.` : "";
    banner.textContent = `${problems.join("; ")}.${since}`;
    banner.hidden = false;
    document.body.classList.add("is-stale");
    if (!station.connected) setConn("lost", "Disconnected");
  } else {
    banner.hidden = true;
    document.body.classList.remove("is-stale");
  }
}

function onFrame() {
  station.lastFrameAt = Date.now();
}

function connect() {
  if (station.source) station.source.close();
  const source = new EventSource("/api/events");
  station.source = source;
  source.addEventListener("open", () => {
    station.connected = true;
    onFrame();
    setConn("ok", "Live");
    updateStale();
  });
  source.addEventListener("error", async () => {
    station.connected = false;
    updateStale();
    if (source.readyState === EventSource.CLOSED) {
      const me = await fetch("/api/me").catch(() => null);
      if (me && me.status === 401) window.location = "/login";
      else setTimeout(connect, 3000);
    }
  });
  source.addEventListener("snapshot", (ev) => {
    onFrame();
    const snap = JSON.parse(ev.data);
    station.stripS = snap.strip_s;
    station.staleS = isNum(snap.stale_after_s) ? snap.stale_after_s : station.staleS;
    station.clockOffsetMs = isNum(snap.server_time) ? snap.server_time * 1000 - Date.now() : 0;
    station.agents = snap.agents;
    station.technical = snap.technical || [];
    snap.tiles.forEach((t) => {
      if (!renderTileSafely(t)) return;
      const entry = station.tiles.get(t.patient_id);
      entry.strip = { fs: null, tEnd: null, leads: {} };
      try {
        if (t.strip.t0 !== null) appendStrip(entry, t.strip);
      } catch (err) {
        console.error(`station: strip of ${t.patient_id} could not be drawn`, err);
      }
    });
    applyOrder(snap.tiles.map((t) => t.patient_id));
    station.lastDataAt = Date.now();
    updateStale();
  });
  source.addEventListener("tile", (ev) => {
    onFrame();
    renderTileSafely(JSON.parse(ev.data));
    station.lastDataAt = Date.now();
  });
  source.addEventListener("order", (ev) => applyOrder(JSON.parse(ev.data)));
  source.addEventListener("waves", (ev) => {
    onFrame();
    JSON.parse(ev.data).forEach((w) => {
      const entry = station.tiles.get(w.patient_id);
      if (entry) appendStrip(entry, w);
    });
    station.lastDataAt = Date.now();
  });
  source.addEventListener("new_alert", (ev) => {
    try {
      announce(JSON.parse(ev.data));
    } catch (err) {
      console.error("station: a new alert could not be announced", err);
    }
  });
  source.addEventListener("heartbeat", (ev) => {
    onFrame();
    const beat = JSON.parse(ev.data);
    station.agents = beat.agents;
    station.brokerConnected = beat.broker_connected;
    station.technical = beat.technical || [];
    updateStale();
  });
}

// ---------- detail view ----------
async function loadDetail() {
  const pid = station.detailPid;
  if (!pid) return;
  const res = await fetch(`/api/patient/${encodeURIComponent(pid)}`);
  if (res.status === 401) {
    window.location = "/login";
    return;
  }
  if (!res.ok) return;
  station.detailData = await res.json();
  renderDetail();
}

function renderDetail() {
  const d = station.detailData;
  if (!d) return;
  document.getElementById("detail-title").textContent = label(d);
  const select = document.getElementById("detail-lead");
  const leads = Object.keys(d.strip.leads);
  if (Array.from(select.options).map((o) => o.value).join(",") !== leads.join(",")) {
    select.replaceChildren(...leads.map((l) => el("option", null, l)));
  }
  const lead = select.value || leads[0];
  document.getElementById("detail-summary").textContent =
    `HR ${d.hr_bpm === null ? "–" : d.hr_bpm} · measured rhythm: ${d.rhythm} · signal: ${d.quality} · ` +
    `${d.alerts.length} active alert(s)${d.stale ? " · STALE" : ""}`;
  document.getElementById("detail-measured").replaceChildren(...measuredRows(d.measured));
  drawDetailStrip(d, lead);
  drawTimeline(d.timeline);
  renderHistory(d.history);
  renderMutes(d);
}

const MUTE_CHANGE = { muted: "muted", unmuted: "unmuted", expired: "expired" };

function renderMutes(d) {
  const m = d.mute && typeof d.mute === "object" ? d.mute : null;
  document.getElementById("mute-current").textContent = m ? muteText(m) : "Forecast alerts are on.";
  document.getElementById("unmute").hidden = !m;
  const rows = (Array.isArray(d.mutes) ? d.mutes : []).map((c) => {
    const tr = el("tr");
    const change = MUTE_CHANGE[c.action] || "unknown change";
    tr.append(
      el("td", null, clock(c.at)),
      el("td", null, c.action === "muted" ? `${change} until ${hhmm(c.until)}` : change),
      el("td", null, c.by ? String(c.by) : "–"),
      el("td", null, c.reason ? String(c.reason) : "–"),
    );
    return tr;
  });
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", null, "never muted since the station started");
    td.colSpan = 4;
    tr.appendChild(td);
    rows.push(tr);
  }
  document.getElementById("detail-mutes").replaceChildren(...rows);
}

// Where the detail strip's right edge is: the newest sample, unless the nurse scrolled back (then the same moment
// stays in view while the strip refreshes). Sets the slider: 0 is the oldest buffered view, its max the newest.
function detailView(d, values, canvas) {
  const fs = d.strip.fs;
  const tLast = d.strip.t0 + (values.length - 1) / fs;
  const lo = Math.min(tLast, d.strip.t0 + paperSeconds(canvas));
  const end = station.detailEnd === null ? tLast : Math.min(tLast, Math.max(lo, station.detailEnd));
  const slider = document.getElementById("detail-scroll");
  slider.max = (tLast - lo).toFixed(1);
  slider.value = (end - lo).toFixed(1);
  station.detailLo = lo;
  return { fs, tLast, end };
}

function scrollDetail() {
  const slider = document.getElementById("detail-scroll");
  const value = Number(slider.value);
  station.detailEnd = value >= Number(slider.max) - 0.05 ? null : station.detailLo + value;
  renderDetail();
}

function drawDetailStrip(d, lead) {
  const canvas = document.getElementById("detail-strip");
  const values = d.strip.leads[lead] || [];
  if (!values.length || d.strip.t0 === null) return;
  const view = detailView(d, values, canvas);
  const { ctx, xOf, h, seconds } = drawPaper(canvas, values, view.fs, view.tLast, view.end, true);
  const tEnd = view.end;
  const buffered = (view.tLast - d.strip.t0) / 60;
  document.getElementById("detail-span").textContent =
    `Showing ${paperTime(tEnd - seconds)}–${paperTime(tEnd)} (${seconds.toFixed(1)} s) of ${buffered.toFixed(1)} min ` +
    `buffered${station.detailEnd === null ? ", following the newest" : ""}`;
  const win = d.forecast_window;
  if (win) {
    ctx.fillStyle = "rgba(255, 193, 77, 0.16)";
    const x0 = Math.max(0, xOf(win.start));
    ctx.fillRect(x0, 0, Math.max(0, xOf(win.end) - x0), h);
    ctx.fillStyle = "#ffc14d";
    ctx.font = `${Math.round(h / 14)}px system-ui`;
    ctx.fillText("forecast window", x0 + 4, h - 6);
  }
  ctx.fillStyle = "#f2f4f7";
  const shown = d.beats.filter((t) => t >= tEnd - seconds && t <= tEnd);
  shown.forEach((t) => ctx.fillRect(Math.round(xOf(t)) - 1, 0, 2, Math.round(h / 18)));
  canvas.setAttribute("aria-label",
    `ECG lead ${lead} at 25 mm/s and 10 mm/mV, ${seconds.toFixed(1)} s to ${clock(tEnd)}, ${shown.length} beats marked` +
    (win ? `, forecast window ${clock(win.start)} to ${clock(win.end)}` : ""));
}

function drawTimeline(timeline) {
  const canvas = document.getElementById("detail-timeline");
  const ctx = fitCanvas(canvas);
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  if (!timeline.length) return;
  const t0 = timeline[0].at;
  const t1 = Math.max(timeline[timeline.length - 1].at, t0 + 60);
  const styles = { af: [[], "#6cc7ff"], flutter: [[8, 4], "#ffc14d"], vt: [[2, 3], "#ff8a8a"] };
  ctx.font = `${Math.round(h / 9)}px system-ui`;
  const legend = ctx.measureText("Flutter ——").width + 8;
  const left = ctx.measureText("100%").width + 8;
  const plotW = w - legend - left;
  ctx.fillStyle = "#c3cad3";
  ctx.fillText("100%", 2, h / 9);
  ctx.fillText("0%", 2, h - 4);
  Object.entries(styles).forEach(([a, [dash, colour]], k) => {
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.setLineDash(dash);
    ctx.lineWidth = 2;
    ctx.beginPath();
    timeline.forEach((pt, i) => {
      const x = left + ((pt.at - t0) / (t1 - t0)) * plotW;
      const y = h - (pt[a] || 0) * h;
      if (i) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
    });
    ctx.stroke();
    const y = (k + 1) * (h / 7);
    ctx.fillText(ARRHYTHMIA[a], left + plotW + 4, y);
    ctx.beginPath();
    ctx.moveTo(left + plotW + 4, y + 6);
    ctx.lineTo(w - 4, y + 6);
    ctx.stroke();
  });
  ctx.setLineDash([]);
  canvas.setAttribute("aria-label", `Forecast timeline from ${clock(t0)} to ${clock(t1)}, ${timeline.length} forecasts`);
}

function renderHistory(history) {
  const rows = history.map((a) => {
    const tr = el("tr");
    const p = priorityOf(a.priority);
    tr.append(
      el("td", null, clock(a.raised_at)),
      el("td", null, `${p.shape} ${p.word}`),
      el("td", null, alertHeadline(a)),
      el("td", null, a.state),
      el("td", null, a.acknowledged_by ? `${a.acknowledged_by} at ${clock(a.acknowledged_at)}` : "–"),
    );
    return tr;
  });
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", null, "no alerts");
    td.colSpan = 5;
    tr.appendChild(td);
    rows.push(tr);
  }
  document.getElementById("detail-history").replaceChildren(...rows);
}

function openDetail(pid, opener, focusId) {
  station.detailPid = pid;
  station.detailEnd = null;
  station.detailOpener = opener;
  document.getElementById("detail").hidden = false;
  document.getElementById(focusId || "detail-close").focus();
  loadDetail();
}

function closeDetail() {
  station.detailPid = null;
  station.detailData = null;
  document.getElementById("detail").hidden = true;
  document.getElementById("mute-result").textContent = "";
  if (station.detailOpener) station.detailOpener.focus();
}

async function submitMute(ev) {
  ev.preventDefault();
  const pid = station.detailPid;
  if (!pid) return;
  const reason = document.getElementById("mute-reason");
  const duration = Number(document.getElementById("mute-duration").value);
  const fields = { action: "mute", reason: reason.value.trim(), duration_s: duration };
  if (await sendMute(pid, fields, document.getElementById("mute-result"))) reason.value = "";
}

// ---------- start ----------
function frame() {
  station.tiles.forEach((entry) => {
    if (entry.stripDirty) {
      entry.stripDirty = false;
      drawTileStrip(entry);
    }
  });
  if (station.alarmListDirty) {
    station.alarmListDirty = false;
    renderAlarmList();
  }
  window.requestAnimationFrame(frame);
}

async function start() {
  const res = await fetch("/api/me");
  if (res.status === 401) {
    window.location = "/login";
    return;
  }
  const me = await res.json();
  document.getElementById("user").textContent = `Signed in: ${me.user}`;
  setUpAudio(me);
  document.getElementById("detail-scroll").addEventListener("input", scrollDetail);
  document.getElementById("detail-latest").addEventListener("click", () => {
    station.detailEnd = null;
    renderDetail();
  });
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  document.getElementById("mute-form").addEventListener("submit", submitMute);
  document.getElementById("unmute").addEventListener("click", () => {
    if (station.detailPid) sendMute(station.detailPid, { action: "unmute" }, document.getElementById("mute-result"));
  });
  document.getElementById("detail-lead").addEventListener("change", renderDetail);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && station.detailPid) closeDetail();
  });
  window.addEventListener("resize", () => {
    station.tiles.forEach((e) => { e.stripDirty = true; });
    renderDetail();
  });
  setInterval(updateStale, 1000);
  setInterval(refreshAges, 1000);
  setInterval(alarmSoundTick, 1000);
  setInterval(loadDetail, 5000);
  setInterval(() => document.querySelectorAll(".ago").forEach((s) => { s.textContent = ago(Number(s.dataset.t)); }), 5000);
  connect();
  window.requestAnimationFrame(frame);
}

start();
