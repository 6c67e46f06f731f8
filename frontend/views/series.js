// The series display (a probe of sensor channels): a unit's average window
// and rollout as line charts, one line per channel, the rollout continuing
// the time axis after a dashed marker, the probe's mean window as a faint
// reference. Grid cells are small charts without axes; the detail's chart
// has axes, the channel names and a readout of the values under the
// pointer; exemplars are snippets of their sequence with the window shaded.

import {axisPen, el, fmt, inCell, sizeCanvas} from "./dom.js";
import {valueRange} from "../colormaps.js";

// Distinct colours for channels (d3's category10); more channels reuse them.
export const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];

/** Colour of channel `c`. */
export function channelColour(c) {
  return PALETTE[c % PALETTE.length];
}

/** The name of channel `c` (its index where the log has no names). */
export function channelName(names, c) {
  return names && c < names.length ? String(names[c]) : `channel ${c}`;
}


/**
 * The lines of a frame: `values` (positions x D, row-major) of channel c
 * at positions 0.. drawn from x(p), y(v); NaN values break the line.
 */
function plotLines(ctx, values, D, x, y, {from = 0, width = 1.5, alpha = 1, dash = []} = {}) {
  if (!values) return;
  const n = values.length / D;
  ctx.save();
  ctx.lineWidth = width;
  ctx.globalAlpha = alpha;
  ctx.setLineDash(dash);
  ctx.lineJoin = "round";
  for (let c = 0; c < D; c++) {
    ctx.strokeStyle = channelColour(c);
    ctx.beginPath();
    let pen = false;
    for (let p = 0; p < n; p++) {
      const v = values[p * D + c];
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      if (pen) ctx.lineTo(x(from + p), y(v));
      else ctx.moveTo(x(from + p), y(v));
      pen = true;
    }
    ctx.stroke();
  }
  ctx.restore();
}

/**
 * A unit's frame as a chart in the box (x, y, w, h) with the value range
 * {lo, hi}: the rollout region shaded after a dashed marker, zero as a
 * hairline, the mean window faint, the unit's lines on top.
 */
function plotFrame(ctx, frame, {L, R, D}, box, range, {lineWidth = 1.5} = {}) {
  const rollout = frame.rollout?.length ? R : 0;
  const n = L + rollout;
  const step = n > 1 ? box.w / (n - 1 + 0.5) : box.w;
  const x = (p) => box.x + step * (p + (p >= L ? 0.5 : 0)) + (n > 1 ? 0 : box.w / 2);
  const y = (v) => box.y + box.h - ((v - range.lo) / (range.hi - range.lo)) * box.h;
  if (rollout) {
    const xm = x(L - 1) + step * 0.75;
    ctx.fillStyle = "#f3f6fb";
    ctx.fillRect(xm, box.y, box.x + box.w - xm, box.h);
    ctx.strokeStyle = "#9e9e9e";
    ctx.lineWidth = 1;
    ctx.setLineDash([2, 2]);
    ctx.beginPath();
    ctx.moveTo(Math.round(xm) + 0.5, box.y);
    ctx.lineTo(Math.round(xm) + 0.5, box.y + box.h);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  if (range.lo < 0 && range.hi > 0) {
    ctx.strokeStyle = "#e0e0e0";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(box.x, Math.round(y(0)) + 0.5);
    ctx.lineTo(box.x + box.w, Math.round(y(0)) + 0.5);
    ctx.stroke();
  }
  if (frame.mean) {
    plotLines(ctx, frame.mean.window, D, x, y, {width: lineWidth, alpha: 0.3, dash: [3, 2]});
    if (rollout) plotLines(ctx, frame.mean.rollout, D, x, y, {from: L, width: lineWidth, alpha: 0.3, dash: [3, 2]});
  }
  plotLines(ctx, frame.window, D, x, y, {width: lineWidth});
  if (rollout) plotLines(ctx, frame.rollout, D, x, y, {from: L, width: lineWidth});
  return {x, y, step};
}

/** The arrays a frame's value range covers: its window, rollout and mean. */
function frameArrays(frame) {
  return [frame.window, frame.rollout, frame.mean?.window, frame.mean?.rollout];
}

/**
 * The series painter (see painters.js): a small chart per cell, about twice
 * as wide as high, each on its own value range unless `shared` (then the
 * returned range is the one they share).
 */
export const seriesPainter = {
  cellSize({L, R}, scale) {
    const w = Math.max(48, Math.min(640, Math.round((L + R) * 2 * scale)));
    return {w, h: Math.max(28, Math.round(w * 0.55))};
  },

  paint(ctx, cells, shape, {w, h}, {diverging = false, shared = false} = {}) {
    const ranges = cells.map(({frame}) => frame.range ?? valueRange(frameArrays(frame), diverging, true));
    const sharedRange = shared ? valueRange([ranges.flatMap((r) => [r.lo, r.hi])], diverging, true) : null;
    const pad = 2;
    ctx.save();
    cells.forEach(({x, y, frame}, i) => inCell(ctx, x, y, w, h, () =>
      plotFrame(ctx, frame, shape, {x: x + pad, y: y + pad, w: w - 2 * pad, h: h - 2 * pad},
        sharedRange ?? ranges[i], {lineWidth: w >= 120 ? 1.5 : 1})));
    ctx.restore();
    return sharedRange;
  },
};

/** About `count` round tick values spanning lo..hi. */
function ticks(lo, hi, count = 5) {
  const span = hi - lo;
  const raw = span / Math.max(1, count - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-6; t += step) out.push(Math.abs(t) < step * 1e-6 ? 0 : t);
  return out;
}

/**
 * The detail's chart of a series unit: axes with values, the position of
 * each step relative to the window's last input (0) and the rollout's
 * (+1..), a legend of the channel names, and the values of every channel at
 * the position under the pointer.
 */
export class SeriesChart {
  constructor() {
    this.canvas = el("canvas", {class: "series-chart", role: "img"});
    this.legend = el("div", {class: "series-legend"});
    this.readout = el("div", {class: "series-readout", "aria-live": "polite"});
    this.element = el("div", {class: "series-detail"}, this.canvas, this.legend, this.readout);
    this.drawn = null;
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => this.say(null));
  }

  /**
   * frame: model.frame's {window, rollout, mean}; shape {L, R, D}; names:
   * channel names; diverging: the frame is a difference from the mean.
   */
  draw(frame, {L, R, D}, {names, diverging = false, width = 560, height = 240, caption = ""} = {}) {
    const ctx = sizeCanvas(this.canvas, width, height);
    ctx.clearRect(0, 0, width, height);
    const box = {x: 52, y: 20, w: width - 64, h: height - 58};
    const range = valueRange(frameArrays(frame), diverging, true);
    const pad = (range.hi - range.lo) * 0.06;
    const padded = {lo: range.lo - pad, hi: range.hi + pad};
    axisPen(ctx, "#eeeeee");
    const yOf = (v) => box.y + box.h - ((v - padded.lo) / (padded.hi - padded.lo)) * box.h;
    for (const t of ticks(padded.lo, padded.hi, 6)) {
      const y = Math.round(yOf(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(box.x, y);
      ctx.lineTo(box.x + box.w, y);
      ctx.stroke();
      ctx.fillText(fmt(t), box.x - 6, y);
    }
    const geometry = plotFrame(ctx, frame, {L, R, D}, box, padded, {lineWidth: 2});
    ctx.strokeStyle = "#9e9e9e";
    ctx.strokeRect(box.x - 0.5, box.y - 0.5, box.w + 1, box.h + 1);
    const positions = L + (frame.rollout?.length ? R : 0);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#616161";
    const every = Math.max(1, Math.ceil(positions / Math.max(1, box.w / 28)));
    for (let p = 0; p < positions; p++) {
      if ((p < L ? L - 1 - p : p - L) % every) continue;
      ctx.fillText(p < L ? (p === L - 1 ? "0" : `−${L - 1 - p}`) : `+${p - L + 1}`, geometry.x(p), box.y + box.h + 4);
    }
    ctx.fillText("position (0: the window's last input; +1…: the rollout)", box.x + box.w / 2, box.y + box.h + 20);
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.fillText(diverging ? "value − probe mean" : "value", box.x, box.y - 6);
    if (positions > L) ctx.fillText("rollout →", geometry.x(L - 1) + geometry.step * 0.75 + 4, box.y - 6);
    this.canvas.setAttribute("aria-label", caption || "the unit's average window and rollout, one line per channel");
    this.drawn = {frame, L, R, D, names, geometry, positions};
    this.legend.replaceChildren(...Array.from({length: D}, (_, c) => {
      const swatch = el("span", {class: "swatch"});
      swatch.style.background = channelColour(c);
      return el("span", {class: "series-key"}, swatch, channelName(names, c));
    }), frame.mean ? el("span", {class: "series-key mean"}, el("span", {class: "swatch dashed"}),
      "probe mean (faint)") : "");
    this.say(null);
  }

  say(p) {
    const d = this.drawn;
    if (!d || p === null) {
      this.readout.textContent = "Point at the chart for the values.";
      return;
    }
    const values = p < d.L ? d.frame.window.subarray(p * d.D, (p + 1) * d.D)
      : d.frame.rollout.subarray((p - d.L) * d.D, (p - d.L + 1) * d.D);
    const where = p < d.L ? `window position ${p === d.L - 1 ? "0" : `−${d.L - 1 - p}`}` : `rollout +${p - d.L + 1}`;
    this.readout.textContent = `${where}: ` +
      Array.from(values, (v, c) => `${channelName(d.names, c)} ${fmt(v)}`).join(" · ");
  }

  hover(event) {
    const d = this.drawn;
    if (!d) return;
    const box = this.canvas.getBoundingClientRect();
    const x = event.clientX - box.left;
    let best = -1;
    let distance = Infinity;
    for (let p = 0; p < d.positions; p++) {
      const gap = Math.abs(d.geometry.x(p) - x);
      if (gap < distance) [best, distance] = [p, gap];
    }
    this.say(distance <= d.geometry.step ? best : null);
  }
}

/**
 * An exemplar of a series probe on `canvas`: its sequence (T x D values)
 * around the window [start, end) (with `context` positions either side),
 * the window shaded, one line per channel on the snippet's own range.
 */
export function drawSnippet(canvas, values, D, {start, end, context, width = 180, height = 56}) {
  const T = values.length / D;
  const from = Math.max(0, start - context);
  const to = Math.min(T, end + context);
  const ctx = sizeCanvas(canvas, width, height);
  const part = values.subarray(from * D, to * D);
  const range = valueRange([part], false, true);
  const pad = 3;
  const n = to - from;
  const x = (p) => pad + ((p - from) / Math.max(1, n - 1)) * (width - 2 * pad);
  const y = (v) => height - pad - ((v - range.lo) / (range.hi - range.lo)) * (height - 2 * pad);
  const half = (width - 2 * pad) / Math.max(1, n - 1) / 2;
  ctx.fillStyle = "#ffe0b2";
  ctx.fillRect(x(start) - half, 0, x(end - 1) - x(start) + 2 * half, height);
  ctx.strokeStyle = "#f57c00";
  ctx.lineWidth = 1;
  ctx.strokeRect(x(start) - half + 0.5, 0.5, x(end - 1) - x(start) + 2 * half - 1, height - 1);
  plotLines(ctx, part, D, (p) => x(from + p), y, {width: 1.25});
}
