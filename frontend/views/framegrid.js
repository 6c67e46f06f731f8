// Draws many unit pictures ("frames": the L x D window on top, the R x D
// rollout below a separator line) on one canvas. Used for the unit grid, the
// detail view's large picture and its filmstrip.

import {el} from "./dom.js";
import {DIVERGING, SEQUENTIAL} from "../colormaps.js";

const SEPARATOR = 3; // CSS px between window and rollout; a 1px line in the middle
const NAN_RGBA = [189, 189, 189, 255];

export class FrameGrid {
  /**
   * onPick(index) on click, onHover(index or -1) as the pointer moves.
   */
  constructor({onPick = () => {}, onHover = () => {}, gap = 4, className = "frame-grid"} = {}) {
    this.gap = gap;
    this.layout = null;
    this.canvas = el("canvas", {class: className});
    this.canvas.addEventListener("click", (e) => {
      const i = this.indexAt(e);
      if (i >= 0) onPick(i);
    });
    this.canvas.addEventListener("mousemove", (e) => onHover(this.indexAt(e)));
    this.canvas.addEventListener("mouseleave", () => onHover(-1));
  }

  /**
   * frames: [{window, rollout, dead}]; shape: {L, R, D} of one frame;
   * options: cols, scale (CSS px per value), diverging (centre the colours at
   * 0), shared (one colour range for all frames instead of one per frame),
   * highlight (index outlined, or -1).
   *
   * Returns the shared range {lo, hi}, or null when each frame has its own.
   */
  draw(frames, {L, R, D}, {cols, scale, diverging = false, shared = false, highlight = -1}) {
    const {sx, sy} = pixelScale(L, R, D, scale);
    const cellW = D * sx;
    const sep = R > 0 ? SEPARATOR : 0;
    const cellH = L * sy + sep + R * sy;
    const rows = Math.ceil(frames.length / cols);
    const gap = this.gap;
    this.layout = {cols, count: frames.length, cellW, cellH, gap};

    const width = cols * (cellW + gap) + gap;
    const height = rows * (cellH + gap) + gap;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, width, height);

    const ranges = frames.map((f) => valueRange([f.window, f.rollout], diverging));
    const sharedRange = shared ? merge(ranges, diverging) : null;
    const atlas = paintAtlas(frames, ranges.map((r) => sharedRange || r), {L, R, D},
      diverging ? DIVERGING : SEQUENTIAL);

    frames.forEach((f, i) => {
      const {x, y} = this.rect(i);
      // A hairline frame keeps near-white cells (differences near 0) apart from the page.
      ctx.strokeStyle = "#e0e0e0";
      ctx.lineWidth = 1;
      ctx.strokeRect(x - 0.5, y - 0.5, cellW + 1, cellH + 1);
      const ax = (i % atlas.cols) * D;
      const ay = Math.floor(i / atlas.cols) * (L + R);
      ctx.drawImage(atlas.canvas, ax, ay, D, L, x, y, cellW, L * sy);
      if (R > 0) {
        ctx.fillStyle = "#616161";
        ctx.fillRect(x, y + L * sy + 1, cellW, 1);
        ctx.drawImage(atlas.canvas, ax, ay + L, D, R, x, y + L * sy + sep, cellW, R * sy);
      }
      if (f.dead) markDead(ctx, x, y, cellW, cellH);
      if (i === highlight) {
        ctx.strokeStyle = "#f57c00";
        ctx.lineWidth = 2;
        ctx.strokeRect(x - 1.5, y - 1.5, cellW + 3, cellH + 3);
      }
    });
    return sharedRange;
  }

  /** CSS px box {x, y, w, h} of frame i in the canvas, as last drawn. */
  rect(i) {
    const {cols, cellW, cellH, gap} = this.layout;
    return {
      x: gap + (i % cols) * (cellW + gap),
      y: gap + Math.floor(i / cols) * (cellH + gap),
      w: cellW,
      h: cellH,
    };
  }

  /** Frame index under a mouse event, or -1 (also for gaps between frames). */
  indexAt(event) {
    if (!this.layout) return -1;
    const {cols, count, cellW, cellH, gap} = this.layout;
    const box = this.canvas.getBoundingClientRect();
    const x = event.clientX - box.left - gap;
    const y = event.clientY - box.top - gap;
    const col = Math.floor(x / (cellW + gap));
    const row = Math.floor(y / (cellH + gap));
    if (x < 0 || y < 0 || col >= cols || x - col * (cellW + gap) >= cellW
        || y - row * (cellH + gap) >= cellH) return -1;
    const i = row * cols + col;
    return i < count ? i : -1;
  }
}

/**
 * Whole CSS px per value along x and y: `scale` for both, except that a cell
 * is kept within 1:3 aspect so very narrow or very flat windows stay legible.
 */
function pixelScale(L, R, D, scale) {
  const w = D * scale;
  const h = (L + R) * scale;
  return {
    sx: h > 3 * w ? Math.ceil(h / (3 * D)) : scale,
    sy: w > 3 * h ? Math.ceil(w / (3 * (L + R))) : scale,
  };
}

/** {lo, hi} over the finite values of the given arrays; symmetric about 0 when diverging. */
function valueRange(arrays, diverging) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of arrays) {
    if (!values) continue;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo > hi) return {lo: 0, hi: 0};
  if (diverging) {
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    return {lo: -m, hi: m};
  }
  return {lo, hi};
}

function merge(ranges, diverging) {
  return valueRange([ranges.flatMap((r) => [r.lo, r.hi])], diverging);
}

/**
 * Paints every frame at one pixel per value into an offscreen canvas (frames
 * tiled in a near-square block so the canvas stays within size limits);
 * `draw` then scales pieces of it with nearest-neighbour sampling.
 */
function paintAtlas(frames, ranges, {L, R, D}, lut) {
  const cols = Math.max(1, Math.ceil(Math.sqrt(frames.length)));
  const rows = Math.max(1, Math.ceil(frames.length / cols));
  const image = new ImageData(cols * D, rows * (L + R));
  frames.forEach((f, i) => {
    const x0 = (i % cols) * D;
    const y0 = Math.floor(i / cols) * (L + R);
    paint(image, x0, y0, f.window, D, ranges[i], lut);
    if (f.rollout) paint(image, x0, y0 + L, f.rollout, D, ranges[i], lut);
  });
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
  return {canvas, cols};
}

/** Writes a row-major matrix with `width` columns into `image` at (x0, y0) through `lut`. */
function paint(image, x0, y0, values, width, {lo, hi}, lut) {
  const span = hi - lo;
  const out = image.data;
  for (let k = 0; k < values.length; k++) {
    const v = values[k];
    const p = 4 * ((y0 + Math.floor(k / width)) * image.width + x0 + (k % width));
    if (!Number.isFinite(v)) {
      out.set(NAN_RGBA, p);
      continue;
    }
    const c = 4 * (span > 0 ? Math.round((255 * (v - lo)) / span) : 128);
    out[p] = lut[c];
    out[p + 1] = lut[c + 1];
    out[p + 2] = lut[c + 2];
    out[p + 3] = 255;
  }
}

/** Dims a dead unit's cell and hatches it so it reads as "no data" at any zoom. */
function markDead(ctx, x, y, w, h) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(x, y, w, h);
  ctx.clip();
  ctx.fillStyle = "rgba(255, 255, 255, 0.7)";
  ctx.fillRect(x, y, w, h);
  ctx.strokeStyle = "rgba(198, 40, 40, 0.75)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let d = -h; d < w; d += 6) {
    ctx.moveTo(x + d, y + h);
    ctx.lineTo(x + d + h, y);
  }
  ctx.stroke();
  ctx.restore();
}
