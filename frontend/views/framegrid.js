// Cells on one canvas, in rows of `cols`: the unit grid, the detail view's
// large picture and its filmstrip. What is inside a cell is a painter's job
// (painters.js); this draws cell outlines, placeholders for cells whose data
// has not arrived, dead-unit hatching, labels and the highlight, and maps
// the mouse to a cell.
//
// The canvas is sized for every cell, so a scrolling parent has the right
// scroll bar, but `paint` draws only the cells it is given: the grid paints
// the rows on screen.

import {el} from "./dom.js";

// Chromium's canvas limits are 32,767 px a side and 2^28 px in all; stay well inside.
const MAX_SIDE = 32000;
const MAX_AREA = 2 ** 26;

/**
 * Geometry of `count` cells of `painter` at `scale` CSS px per value:
 * {painter, shape, count, cols, rows, cellW, cellH, gap, width, height}.
 * `cols` defaults to a near-square grid. The scale is lowered where the
 * canvas would pass the browser's size limits (a huge layer, zoomed in).
 */
export function gridLayout(painter, shape, {count, scale, cols = Math.ceil(Math.sqrt(count)), gap = 4}) {
  cols = Math.max(1, Math.min(cols, count));
  const dpr = window.devicePixelRatio || 1;
  for (let s = scale; ; s--) {
    const {w: cellW, h: cellH} = painter.cellSize(shape, s);
    const rows = Math.ceil(count / cols);
    const width = cols * (cellW + gap) + gap;
    const height = rows * (cellH + gap) + gap;
    const fits = Math.max(width, height) * dpr <= MAX_SIDE && width * height * dpr * dpr <= MAX_AREA;
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
    this.canvas = el("canvas", {class: className});
    this.canvas.addEventListener("click", (e) => {
      const i = this.indexAt(e);
      if (i >= 0) onPick(i);
    });
    this.canvas.addEventListener("mousemove", (e) => onHover(this.indexAt(e)));
    this.canvas.addEventListener("mouseleave", () => onHover(-1));
  }

  /** Sizes the canvas for `layout` (see gridLayout); resizing clears it, so only on change. */
  setLayout(layout) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.round(layout.width * dpr);
    const height = Math.round(layout.height * dpr);
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.canvas.style.width = `${layout.width}px`;
      this.canvas.style.height = `${layout.height}px`;
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
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = false;
    if (last <= first) return null;
    // Clear the whole rows, gaps included (where outlines and the highlight go).
    const top = this.rect(first - (first % cols)).y - gap;
    const bottom = this.rect(last - 1).y + cellH + gap;
    ctx.clearRect(0, top, width, bottom - top);

    const cells = [];
    for (let i = first; i < last; i++) {
      const {x, y} = this.rect(i);
      // A hairline frame keeps near-white cells (differences near 0) apart from the page.
      ctx.strokeStyle = "#e0e0e0";
      ctx.lineWidth = 1;
      ctx.strokeRect(x - 0.5, y - 0.5, cellW + 1, cellH + 1);
      const frame = frameAt(i);
      if (frame) {
        cells.push({x, y, frame});
      } else {
        ctx.fillStyle = "#f5f5f5";
        ctx.fillRect(x, y, cellW, cellH);
      }
    }
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
  ctx.save();
  ctx.font = `${size}px Roboto, Arial, sans-serif`;
  const width = ctx.measureText(text).width + 4;
  if (width <= w / 2) {
    ctx.textBaseline = "bottom";
    ctx.textAlign = "right";
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fillRect(x + w - width, y + h - size - 2, width, size + 2);
    ctx.fillStyle = "#212121";
    ctx.fillText(text, x + w - 2, y + h);
  }
  ctx.restore();
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
