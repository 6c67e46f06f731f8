// Cells on one canvas, in rows of `cols`: the unit grid, the detail view's
// large picture and its filmstrip. What is inside a cell is a painter's job
// (painters.js); this draws cell outlines, placeholders for cells whose data
// has not arrived, dead-unit hatching, labels and the highlight, and maps
// the mouse to a cell.
//
// `paint` draws only the cells it is given: the grid paints the rows on
// screen. The canvas covers the whole grid, except for a grid too large for
// that to be cheap (a 4,096-unit layer, zoomed in): given the view (the part
// of the grid on screen), such a canvas covers only the view, and the grid
// keeps it in place (sticky) while its parent scrolls a sizer of the grid's
// size. Allocating and clearing a grid-sized canvas cost more than drawing.

import {el} from "./dom.js";

// Chromium's canvas limits are 32,767 px a side and 2^28 px in all; stay well inside.
const MAX_SIDE = 32000;
const MAX_AREA = 2 ** 26;
// A canvas of more device px than this covers only the view (when there is one): 8 MB.
const WINDOWED_AREA = 2 ** 21;
// A windowed grid's sizer: CSS px a side, well inside Chromium's layout limit (2^25).
const MAX_LAYOUT_SIDE = 2 ** 24;

/**
 * Geometry of `count` cells of `painter` at `scale` CSS px per value:
 * {painter, shape, count, cols, rows, cellW, cellH, gap, width, height}.
 * `cols` defaults to a near-square grid. The scale is lowered where the
 * canvas would pass the browser's size limits (a huge layer, zoomed in);
 * `windowed` (a canvas that may cover only the view, see FrameGrid.setLayout)
 * lowers it only past the browser's layout limits.
 */
export function gridLayout(painter, shape, {count, scale, cols = Math.ceil(Math.sqrt(count)), gap = 4,
  windowed = false}) {
  cols = Math.max(1, Math.min(cols, count));
  const dpr = window.devicePixelRatio || 1;
  for (let s = scale; ; s--) {
    const {w: cellW, h: cellH} = painter.cellSize(shape, s);
    const rows = Math.ceil(count / cols);
    const width = cols * (cellW + gap) + gap;
    const height = rows * (cellH + gap) + gap;
    const fits = windowed ? Math.max(width, height) <= MAX_LAYOUT_SIDE
      : Math.max(width, height) * dpr <= MAX_SIDE && width * height * dpr * dpr <= MAX_AREA;
    if (fits || s <= 1) return {painter, shape, count, cols, rows, cellW, cellH, gap, width, height};
  }
}

/** Cells [first, last) of the rows that cross the band top..bottom (CSS px of the canvas). */
export function cellsInBand({cols, count, cellH, gap}, top, bottom) {
  const pitch = cellH + gap;
  const firstRow = Math.max(0, Math.floor((top - gap) / pitch));
  const lastRow = Math.max(firstRow, Math.ceil((bottom - gap) / pitch));
  return [Math.min(count, firstRow * cols), Math.min(count, lastRow * cols)];
}

export class FrameGrid {
  /**
   * onPick(index) on click, onHover(index or -1) as the pointer moves.
   */
  constructor({onPick = () => {}, onHover = () => {}, className = "frame-grid"} = {}) {
    this.layout = null;
    this.windowed = false;
    this.origin = {x: 0, y: 0};  // CSS px of the grid at the canvas's top-left corner
    this.canvas = el("canvas", {class: className});
    this.canvas.addEventListener("click", (e) => {
      const i = this.indexAt(e);
      if (i >= 0) onPick(i);
    });
    this.canvas.addEventListener("mousemove", (e) => onHover(this.indexAt(e)));
    this.canvas.addEventListener("mouseleave", () => onHover(-1));
  }

  /**
   * Sizes the canvas for `layout` (see gridLayout); resizing clears it, so
   * only on change. `view` ({left, top, width, height}: CSS px of the grid
   * on screen), if given, lets a large grid's canvas cover only the view
   * (`windowed`, at `origin` in the grid), which the caller keeps in view.
   */
  setLayout(layout, view = null) {
    const dpr = window.devicePixelRatio || 1;
    this.windowed = Boolean(view) && (layout.width * layout.height * dpr * dpr > WINDOWED_AREA
      || Math.max(layout.width, layout.height) * dpr > MAX_SIDE);
    const cssW = this.windowed ? Math.min(layout.width, Math.max(1, Math.ceil(view.width))) : layout.width;
    const cssH = this.windowed ? Math.min(layout.height, Math.max(1, Math.ceil(view.height))) : layout.height;
    this.origin = this.windowed
      ? {x: clamp(view.left, 0, layout.width - cssW), y: clamp(view.top, 0, layout.height - cssH)}
      : {x: 0, y: 0};
    const width = Math.round(cssW * dpr);
    const height = Math.round(cssH * dpr);
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.canvas.style.width = `${cssW}px`;
      this.canvas.style.height = `${cssH}px`;
    }
    this.layout = layout;
  }

  /**
   * Repaints cells [first, last) of the layout: frameAt(i) gives cell i's
   * frame, or null to draw a placeholder (data not loaded yet). Options:
   * diverging, shared (see painters.js), highlight (index outlined, or -1).
   * Returns the painter's shared range or null.
   */
  paint(first, last, frameAt, {diverging = false, shared = false, highlight = -1} = {}) {
    const {painter, shape, cols, cellW, cellH, gap, width} = this.layout;
    const dpr = window.devicePixelRatio || 1;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, -this.origin.x * dpr, -this.origin.y * dpr);
    ctx.imageSmoothingEnabled = false;
    if (this.windowed) {
      // The view moves over the grid: everything on the canvas is drawn again.
      ctx.clearRect(this.origin.x, this.origin.y, this.canvas.width / dpr, this.canvas.height / dpr);
    }
    if (last <= first) return null;
    if (!this.windowed) {
      // Clear the whole rows, gaps included (where outlines and the highlight go).
      const top = this.rect(first - (first % cols)).y - gap;
      const bottom = this.rect(last - 1).y + cellH + gap;
      ctx.clearRect(0, top, width, bottom - top);
    }

    // A hairline frame keeps near-white cells (differences near 0) apart from the page;
    // frames and placeholders are one path each (a style set per cell costs more than the cell).
    const cells = [];
    const frames = new Path2D();
    const placeholders = new Path2D();
    for (let i = first; i < last; i++) {
      const x = gap + (i % cols) * (cellW + gap);
      const y = gap + Math.floor(i / cols) * (cellH + gap);
      frames.rect(x - 0.5, y - 0.5, cellW + 1, cellH + 1);
      const frame = frameAt(i);
      if (frame) cells.push({x, y, frame});
      else placeholders.rect(x, y, cellW, cellH);
    }
    ctx.strokeStyle = "#e0e0e0";
    ctx.lineWidth = 1;
    ctx.stroke(frames);
    ctx.fillStyle = "#f5f5f5";
    ctx.fill(placeholders);
    const range = painter.paint(ctx, cells, shape, {w: cellW, h: cellH}, {diverging, shared});
    for (const {x, y, frame} of cells) decorate(ctx, x, y, cellW, cellH, frame);
    if (highlight >= first && highlight < last) {
      const {x, y} = this.rect(highlight);
      ctx.strokeStyle = "#f57c00";
      ctx.lineWidth = 2;
      ctx.strokeRect(x - 1.5, y - 1.5, cellW + 3, cellH + 3);
    }
    return range;
  }

  /**
   * Lays out and paints all `frames` with `painter` (the detail's pictures):
   * options cols, scale, gap and those of `paint`.
   */
  draw(frames, painter, shape, {cols, scale, gap, ...options}) {
    this.setLayout(gridLayout(painter, shape, {count: frames.length, scale, cols, gap}));
    return this.paint(0, frames.length, (i) => frames[i], options);
  }

  /** CSS px box {x, y, w, h} of cell i in the canvas. */
  rect(i) {
    const {cols, cellW, cellH, gap} = this.layout;
    return {
      x: gap + (i % cols) * (cellW + gap),
      y: gap + Math.floor(i / cols) * (cellH + gap),
      w: cellW,
      h: cellH,
    };
  }

  /** Cell index under a mouse event, or -1 (also for gaps between cells). */
  indexAt(event) {
    if (!this.layout) return -1;
    const {cols, count, cellW, cellH, gap} = this.layout;
    const box = this.canvas.getBoundingClientRect();
    const x = event.clientX - box.left + this.origin.x - gap;
    const y = event.clientY - box.top + this.origin.y - gap;
    const col = Math.floor(x / (cellW + gap));
    const row = Math.floor(y / (cellH + gap));
    if (x < 0 || y < 0 || col >= cols || x - col * (cellW + gap) >= cellW
        || y - row * (cellH + gap) >= cellH) return -1;
    const i = row * cols + col;
    return i < count ? i : -1;
  }
}

/**
 * What a frame says beyond its picture, drawn over its cell: dead units are
 * hatched, `frame.label` (e.g. the unit's dominant class) is written in the
 * bottom-right corner, `frame.poorMatch` gets a dashed red outline.
 */
export function decorate(ctx, x, y, w, h, frame) {
  if (frame.dead) markDead(ctx, x, y, w, h);
  if (frame.label) drawLabel(ctx, x, y, w, h, frame.label);
  if (frame.poorMatch) {
    ctx.save();
    ctx.strokeStyle = "#c62828";
    ctx.lineWidth = 2;
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(x - 1, y - 1, w + 2, h + 2);
    ctx.restore();
  }
}

/** A small text label on a white chip in the cell's bottom-right corner (none where it does not fit). */
function drawLabel(ctx, x, y, w, h, text) {
  const size = Math.min(11, Math.floor(h / 3));
  if (size < 7) return;
  const chip = labelChip(text, size, window.devicePixelRatio || 1);
  if (chip.width <= w / 2) ctx.drawImage(chip.canvas, x + w - chip.width, y + h - size - 2, chip.width, size + 2);
}

// Label chips drawn once per text, size and pixel ratio: setting a font and
// drawing text for each of thousands of cells took longer than their pictures.
const chips = new Map();

/** {canvas, width}: `text` at `size` px on its white chip, `width` CSS px wide, for a `ratio` px/CSS px canvas. */
function labelChip(text, size, ratio) {
  const key = `${ratio} ${size} ${text}`;
  let chip = chips.get(key);
  if (chip) return chip;
  const font = `${size}px Roboto, Arial, sans-serif`;
  const probe = el("canvas").getContext("2d");
  probe.font = font;
  const width = Math.ceil(probe.measureText(text).width) + 4;
  const canvas = el("canvas");
  canvas.width = Math.max(1, Math.ceil(width * ratio));
  canvas.height = Math.ceil((size + 2) * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(canvas.width / width, canvas.height / (size + 2));
  ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
  ctx.fillRect(0, 0, width, size + 2);
  ctx.font = font;
  ctx.textBaseline = "bottom";
  ctx.textAlign = "right";
  ctx.fillStyle = "#212121";
  ctx.fillText(text, width - 2, size + 2);
  if (chips.size >= 512) chips.clear();
  chip = {canvas, width};
  chips.set(key, chip);
  return chip;
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

function clamp(v, lo, hi) {
  return Math.max(lo, Math.min(hi, v));
}

// The painters' atlas (see paintAtlas): one canvas and its pixels, kept and
// grown, so a redraw allocates nothing; 32-bit colours per lookup table.
const atlas = {canvas: null, image: null, pixels: null};
const colours32 = new WeakMap();
const NAN_COLOUR = new Uint32Array(Uint8ClampedArray.of(189, 189, 189, 255).buffer)[0];

/**
 * Paints `frames` ({window, rollout}: L x D and R x D values, row-major) at
 * one pixel per value, each through `lut` (256 RGBA entries) over its range
 * in `ranges` ({lo, hi}; NaN grey), tiled `cols` to a row, L + R rows
 * each, into a canvas that painters then scale pieces of onto cells:
 * returns {canvas, cols}. The canvas is shared and redrawn by the next
 * call: draw from it at once.
 */
export function paintAtlas(frames, ranges, {L, R, D}, lut) {
  const cols = Math.max(1, Math.ceil(Math.sqrt(frames.length)));
  const rows = Math.max(1, Math.ceil(frames.length / cols));
  const width = Math.max(1, cols * D);
  const height = Math.max(1, rows * (L + R));
  if (!atlas.image || atlas.image.width < width || atlas.image.height < height) {
    atlas.image = new ImageData(Math.max(width, atlas.image?.width ?? 0), Math.max(height, atlas.image?.height ?? 0));
    atlas.pixels = new Uint32Array(atlas.image.data.buffer);
    atlas.canvas = el("canvas");
    atlas.canvas.width = atlas.image.width;
    atlas.canvas.height = atlas.image.height;
  }
  let colours = colours32.get(lut);
  if (!colours) colours32.set(lut, colours = new Uint32Array(Uint8ClampedArray.from(lut).buffer));
  const stride = atlas.image.width;
  frames.forEach((f, i) => {
    const x0 = (i % cols) * D;
    const y0 = Math.floor(i / cols) * (L + R);
    paintMatrix(atlas.pixels, stride, x0, y0, L, D, f.window, ranges[i], colours);
    paintMatrix(atlas.pixels, stride, x0, y0 + L, R, D, f.rollout, ranges[i], colours);
  });
  atlas.canvas.getContext("2d").putImageData(atlas.image, 0, 0, 0, 0, width, height);
  return {canvas: atlas.canvas, cols};
}

/**
 * Writes `rows` x `width` row-major `values` (transparent where missing)
 * into `pixels` at (x0, y0): the colour of round(255 (v - lo) / (hi - lo)),
 * clamped to 0..255; 128 when lo = hi.
 */
function paintMatrix(pixels, stride, x0, y0, rows, width, values, {lo, hi}, colours) {
  const span = hi - lo;
  const scale = span > 0 ? 255 / span : 0;
  const offset = span > 0 ? 0.5 : 128.5;  // rounding by truncation
  const n = values ? Math.min(values.length, rows * width) : 0;
  let k = 0;
  for (let r = 0; r < rows; r++) {
    let p = (y0 + r) * stride + x0;
    const end = p + width;
    for (; p < end && k < n; p++, k++) {
      const x = (values[k] - lo) * scale + offset;
      if (x >= 0 && x < 256) pixels[p] = colours[x | 0];
      else pixels[p] = x - x === 0 ? colours[x < 0 ? 0 : 255] : NAN_COLOUR;  // x - x: NaN unless finite
    }
    for (; p < end; p++) pixels[p] = 0;
  }
}
