// ecgcast central station: ECG paper. Strips are drawn as a nurse reads them on paper, at the standard speed and
// gain (25 mm/s, 10 mm/mV) on the 0.2 s / 0.5 mV grid, so that widths and heights mean the same on every screen.
// A CSS millimetre is 96/25.4 CSS px (the CSS reference pixel), so 25 mm/s is 94.5 CSS px per second whatever the
// device pixel ratio; the page's zoom scales it like everything else. Loaded before station.js; no dependencies.
"use strict";

const PAPER = Object.freeze({
  speedMmS: 25, // paper speed
  gainMmMv: 10, // standard gain
  majorS: 0.2, // large box: 5 mm
  majorMv: 0.5,
  minorS: 0.04, // small box: 1 mm
  minorMv: 0.1,
  pxPerMm: 96 / 25.4,
  grid: "#1f3a28",
  minorGrid: "#12241a",
  trace: "#44ff88",
  label: "#c3cad3",
});
const PAPER_PX_PER_S = PAPER.speedMmS * PAPER.pxPerMm; // 94.49 CSS px per second
const PAPER_PX_PER_MV = PAPER.gainMmMv * PAPER.pxPerMm; // 37.8 CSS px per mV

// Seconds of ECG a canvas shows at paper speed: its CSS width over 94.5 px/s.
const paperSeconds = (canvas) => Math.max(0.2, canvas.clientWidth / PAPER_PX_PER_S);

// A time label: wall-clock time for device times that are Unix seconds, else stream seconds.
const paperTime = (t) =>
  t > 1e9 ? new Date(t * 1000).toLocaleTimeString([], { hour12: false }) : `${t.toFixed(1)} s`;

// The median of the finite values in [from, to): the baseline the trace is centred on (a fixed gain needs an
// offset, and the median ignores the QRS spikes that a mean or a min-max centre would follow).
function paperBaseline(values, from, to) {
  const seen = [];
  const step = Math.max(1, Math.floor((to - from) / 400));
  for (let i = from; i < to; i += step) if (values[i] !== null && Number.isFinite(values[i])) seen.push(values[i]);
  if (!seen.length) return 0;
  seen.sort((a, b) => a - b);
  return seen[Math.floor(seen.length / 2)];
}

// Lines every `step` units from `lo` to `hi` in a coordinate mapped by `at` (device px); aligned on multiples of
// `step`, so the grid stays put as the trace scrolls.
function paperLines(ctx, lo, hi, step, at, vertical, length) {
  ctx.beginPath();
  for (let k = Math.ceil(lo / step); k * step <= hi; k += 1) {
    const p = Math.round(at(k * step)) + 0.5;
    if (vertical) {
      ctx.moveTo(p, 0);
      ctx.lineTo(p, length);
    } else {
      ctx.moveTo(0, p);
      ctx.lineTo(length, p);
    }
  }
  ctx.stroke();
}

// Draws `values` (mV, null for a gap; the last one at device time `tLast`, `fs` per second) on ECG paper, the
// right edge at `viewEnd`. Returns {ctx, xOf, w, h, seconds, ratio}: xOf maps a device time to a canvas x (device
// px). The canvas records its scale (data-px-per-s, CSS px) and span (data-view-start / data-view-end).
function drawPaper(canvas, values, fs, tLast, viewEnd, labels) {
  const ctx = fitCanvas(canvas);
  const { width: w, height: h } = canvas;
  const ratio = w / Math.max(1, canvas.clientWidth);
  const pxPerS = PAPER_PX_PER_S * ratio;
  const pxPerMv = PAPER_PX_PER_MV * ratio;
  const seconds = w / pxPerS;
  const viewStart = viewEnd - seconds;
  const xOf = (t) => w - (viewEnd - t) * pxPerS;
  const n = values.length;
  const indexOf = (t) => n - 1 - (tLast - t) * fs;
  const from = Math.max(0, Math.floor(indexOf(viewStart)));
  const to = Math.min(n, Math.ceil(indexOf(viewEnd)) + 1);
  const labelBand = labels ? Math.round(14 * ratio) : 0;
  const plotH = h - labelBand;
  const mid = plotH / 2;
  const base = paperBaseline(values, from, to);
  const yOf = (mv) => mid - (mv - base) * pxPerMv;
  ctx.clearRect(0, 0, w, h);
  ctx.lineWidth = 1;
  ctx.strokeStyle = PAPER.minorGrid;
  paperLines(ctx, viewStart, viewEnd, PAPER.minorS, xOf, true, plotH);
  const mvSpan = plotH / pxPerMv / 2;
  paperLines(ctx, base - mvSpan, base + mvSpan, PAPER.minorMv, yOf, false, w);
  ctx.strokeStyle = PAPER.grid;
  paperLines(ctx, viewStart, viewEnd, PAPER.majorS, xOf, true, plotH);
  paperLines(ctx, base - mvSpan, base + mvSpan, PAPER.majorMv, yOf, false, w);
  ctx.save();
  ctx.beginPath();
  ctx.rect(0, 0, w, plotH);
  ctx.clip();
  ctx.strokeStyle = PAPER.trace;
  ctx.lineWidth = Math.max(1.5, ratio * 1.5);
  ctx.beginPath();
  let pen = false;
  for (let i = from; i < to; i += 1) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      continue;
    }
    const x = xOf(tLast - (n - 1 - i) / fs);
    if (pen) ctx.lineTo(x, yOf(v));
    else ctx.moveTo(x, yOf(v));
    pen = true;
  }
  ctx.stroke();
  ctx.restore();
  if (labels) paperLabels(ctx, viewStart, viewEnd, xOf, w, h, ratio);
  canvas.dataset.pxPerS = String(PAPER_PX_PER_S);
  canvas.dataset.viewStart = String(viewStart);
  canvas.dataset.viewEnd = String(viewEnd);
  return { ctx, xOf, w, h: plotH, seconds, ratio };
}

// Time labels under the grid, one a second (every fifth large box), and the speed and gain.
function paperLabels(ctx, viewStart, viewEnd, xOf, w, h, ratio) {
  ctx.fillStyle = PAPER.label;
  ctx.font = `${Math.round(11 * ratio)}px system-ui`;
  ctx.textBaseline = "bottom";
  const legend = `${PAPER.speedMmS} mm/s · ${PAPER.gainMmMv} mm/mV`;
  const legendX = w - ctx.measureText(legend).width - 4 * ratio;
  for (let t = Math.ceil(viewStart); t <= viewEnd; t += 1) {
    const x = xOf(t);
    ctx.fillRect(Math.round(x), h - Math.round(14 * ratio), Math.max(1, Math.round(ratio)), Math.round(4 * ratio));
    const text = paperTime(t);
    if (x + 3 * ratio + ctx.measureText(text).width < legendX - 8 * ratio) ctx.fillText(text, x + 3 * ratio, h - 1);
  }
  ctx.fillText(legend, legendX, h - 1);
}

// Sizes the canvas backing store to its CSS box at the device pixel ratio (sharp lines on any screen).
function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  return canvas.getContext("2d");
}
