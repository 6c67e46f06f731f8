// Painters: how one kind of display draws a unit's frame ({window, rollout,
// dead, mean}, see model.frame) into a cell of a canvas. The logged
// description's `display` picks one from PAINTERS (image_rows here, series
// in series.js, tokens in tokens.js); a display missing from the table is
// one this frontend cannot draw (the app says so instead of drawing).
//
// A painter is {cellSize, paint}:
//   cellSize({L, R, D}, scale) -> {w, h}, CSS px of one cell at `scale` (px per
//     value for image rows; a zoom level for the charts and text of series and tokens);
//   paint(ctx, cells, {L, R, D}, {w, h}, {diverging, shared}) draws cells,
//     [{x, y, frame}] with (x, y) a cell's top-left corner in CSS px, and
//     returns the colour range {lo, hi} they share, or null when each cell
//     has its own (a frame's own `range`, when it has one, else its values').
//
// sideBySide(painter) draws pairs of frames {a, b} (compare mode: a unit at
// A and at B) in cells twice as wide, each pair on a colour scale of its own.

import {DIVERGING, SEQUENTIAL, valueRange} from "../colormaps.js";
import {decorate, paintAtlas} from "./framegrid.js";
import {seriesPainter} from "./series.js";
import {tokensPainter} from "./tokens.js";

const SEPARATOR = 3; // CSS px between window and rollout; a 1px line in the middle

/** image_rows: the L x D window as an image above a separator line, the R x D rollout below. */
const imageRows = {
  cellSize({L, R, D}, scale) {
    const {sx, sy} = pixelScale(L, R, D, scale);
    return {w: D * sx, h: L * sy + (R > 0 ? SEPARATOR + R * sy : 0)};
  },

  paint(ctx, cells, {L, R, D}, {w, h}, {diverging = false, shared = false} = {}) {
    const sy = (h - (R > 0 ? SEPARATOR : 0)) / (L + R);
    const ranges = cells.map(({frame}) => frame.range ?? valueRange([frame.window, frame.rollout], diverging));
    const sharedRange = shared ? merge(ranges, diverging) : null;
    const atlas = paintAtlas(cells.map((c) => c.frame), ranges.map((r) => sharedRange || r), {L, R, D},
      diverging ? DIVERGING : SEQUENTIAL);
    cells.forEach(({x, y}, i) => {
      const ax = (i % atlas.cols) * D;
      const ay = Math.floor(i / atlas.cols) * (L + R);
      ctx.drawImage(atlas.canvas, ax, ay, D, L, x, y, w, L * sy);
      if (R > 0) {
        ctx.fillStyle = "#616161";
        ctx.fillRect(x, y + L * sy + 1, w, 1);
        ctx.drawImage(atlas.canvas, ax, ay + L, D, R, x, y + L * sy + SEPARATOR, w, R * sy);
      }
    });
    return sharedRange;
  },
};

/**
 * The painter of each display. `shape` is {L, R, D} and, for the displays
 * that name things, the description's `vocab` (tokens) and `channels` (series).
 */
export const PAINTERS = {image_rows: imageRows, series: seriesPainter, tokens: tokensPainter};

const PAIR_GAP = 2;  // CSS px between A and B in a cell

/**
 * A painter of pairs {a, b} of `painter`'s frames, A left and B right; a
 * missing half (null: no such unit) is left grey. Each half is decorated
 * (dead, label); the pair's own decorations (poorMatch) are FrameGrid's.
 */
export function sideBySide(painter) {
  return {
    cellSize(shape, scale) {
      const {w, h} = painter.cellSize(shape, scale);
      return {w: 2 * w + PAIR_GAP, h};
    },

    paint(ctx, cells, shape, {w, h}, options) {
      const half = (w - PAIR_GAP) / 2;
      const halves = [];
      for (const {x, y, frame: {a, b}} of cells) {
        // One scale per pair, so that A and B read alike (unless all share one).
        const range = valueRange([a?.window, a?.rollout, b?.window, b?.rollout], options.diverging);
        [a, b].forEach((f, i) => {
          const left = x + i * (half + PAIR_GAP);
          if (f) {
            halves.push({x: left, y, frame: {...f, range}});
          } else {
            ctx.fillStyle = "#eeeeee";
            ctx.fillRect(left, y, half, h);
          }
        });
      }
      const range = painter.paint(ctx, halves, shape, {w: half, h}, options);
      for (const {x, y, frame} of halves) decorate(ctx, x, y, half, h, frame);
      return range;
    },
  };
}

/** The frame B - A (of model.frame), NaN where B is missing; dead when both are. */
export function difference(a, b) {
  const minus = (p, q) => p && Float32Array.from(p, (v, i) => (q ? q[i] - v : NaN));
  return {window: minus(a.window, b?.window), rollout: minus(a.rollout, b?.rollout),
    dead: a.dead && Boolean(b?.dead)};
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

function merge(ranges, diverging) {
  return valueRange([ranges.flatMap((r) => [r.lo, r.hi])], diverging);
}
