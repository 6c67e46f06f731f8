// The tokens display (a token probe: each position of a unit's average is a
// distribution over the vocabulary). A grid cell writes the most likely
// token at each position, the window on the first line and "→ rollout" on
// the second, each token highlighted by its probability; the detail draws a
// sequence logo (tokens stacked per position, height by probability, most
// likely on top). Tokens are drawn with canvas fillText or set as DOM text,
// never as HTML; control characters are shown as symbols (⏎ ⇥).

import {joinTokens, mostLikely} from "../model.js";
import {axisPen, inCell, sizeCanvas} from "./dom.js";

export const MONO = "\"DejaVu Sans Mono\", Menlo, Consolas, \"Roboto Mono\", monospace";
const PAD = 3;           // CSS px inside a cell
const LINE = 1.35;       // line height, in ems
const CHAR_W = 0.61;     // advance of a monospace character, in ems (DejaVu Sans Mono: 0.602)
const MAX_CHARS = 24;    // a cell is at most this many characters wide; longer text is cut with "…"

const PICTURES = {"\n": "⏎", "\t": "⇥", "\r": "␍"};

/**
 * A token as it is shown: newline, tab and carriage return as ⏎ ⇥ ␍, other
 * control characters as their Unicode control pictures, the empty token as
 * ∅, and with `space` each space as ␣ (where a blank would not show).
 */
export function visibleToken(token, {space = false} = {}) {
  const s = String(token ?? "");
  if (!s) return "∅";
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f ]/g, (c) => {
    if (c === " ") return space ? "␣" : " ";
    return PICTURES[c] ?? String.fromCharCode(c === "\u007f" ? 0x2421 : 0x2400 + c.charCodeAt(0));
  });
}

/** The vocabulary's token `index` (its number, #index, where the log has no vocabulary). */
export function tokenOf(vocab, index) {
  return vocab && index < vocab.length ? String(vocab[index]) : `#${index}`;
}

/**
 * The most likely token at each position of a picture (positions x V
 * values): [{index, token, value}] (see model.mostLikely).
 */
export function likelyTokens(values, V, vocab) {
  return values ? mostLikely(values, V).map(({index, value}) => ({index, value, token: tokenOf(vocab, index)})) : [];
}

/** The most likely tokens as plain text (model.joinTokens): what `data-window` / `data-rollout` hold. */
export function likelyText(values, V, vocab) {
  return joinTokens(likelyTokens(values, V, vocab).map((t) => t.token));
}

/** The same, as it is shown (control characters as symbols), for labels. */
export function shownText(values, V, vocab) {
  return joinTokens(likelyTokens(values, V, vocab).map((t) => visibleToken(t.token)));
}

/** Font px of a cell's text at grid `scale`: readable from the smallest zoom. */
function fontSize(scale) {
  return Math.max(11, Math.min(16, 10 + scale));
}

/**
 * Characters a cell is wide: the window's tokens (or "→ " and the
 * rollout's, if longer) at the vocabulary's typical (median) token length,
 * at most MAX_CHARS.
 */
function cellChars({L, R, vocab}) {
  const lengths = (vocab ?? []).map((t) => [...visibleToken(t)].length).sort((a, b) => a - b);
  const typical = lengths.length ? lengths[Math.floor(lengths.length / 2)] : 1;
  // Single characters run together; longer tokens take a space each.
  const per = typical <= 1 ? 1 : typical + 1;
  return Math.max(6, Math.min(MAX_CHARS, Math.ceil(Math.max(L, R > 0 ? R + 2 : 0) * per)));
}

/**
 * The tokens painter (see painters.js): cells of text. Each token is
 * highlighted in proportion to its probability (or, with `diverging`, its
 * excess over the probe's mean: red above, blue below) and written darker
 * the more likely it is, so a confident blank shows as a shaded box. Each
 * cell has its own scale of differences unless `shared`; the colour legend
 * of the grid does not apply (the app's key explains the cells).
 */
export const tokensPainter = {
  cellSize(shape, scale) {
    const font = fontSize(scale);
    const lines = shape.R > 0 ? 2 : 1;
    return {w: Math.ceil(cellChars(shape) * font * CHAR_W + 2 * PAD),
      h: Math.ceil(lines * font * LINE + 2 * PAD)};
  },

  paint(ctx, cells, {R, D: V, vocab}, {w, h}, {diverging = false, shared = false} = {}) {
    const lines = cells.map(({frame}) => ({
      window: likelyTokens(frame.window, V, vocab),
      rollout: likelyTokens(frame.rollout, V, vocab),
    }));
    // Probabilities span 0..1; differences from the mean are scaled per cell unless shared.
    const spans = lines.map(({window, rollout}) => Math.max(1e-9, ...[...window, ...rollout]
      .map((t) => Math.abs(t.value)).filter(Number.isFinite)));
    const sharedSpan = Math.max(1e-9, ...spans);
    const lineH = (h - 2 * PAD) / (R > 0 ? 2 : 1);
    ctx.save();
    ctx.font = `${Math.max(8, Math.floor(lineH / LINE))}px ${MONO}`;
    ctx.textBaseline = "middle";
    cells.forEach(({x, y}, i) => inCell(ctx, x, y, w, h, () => {
      const span = diverging ? (shared ? sharedSpan : spans[i]) : 1;
      drawLine(ctx, lines[i].window, {x: x + PAD, y: y + PAD, w: w - 2 * PAD, h: lineH},
        {span, diverging, end: true, highlight: [245, 124, 0]});
      if (lines[i].rollout.length) {
        drawLine(ctx, lines[i].rollout, {x: x + PAD, y: y + PAD + lineH, w: w - 2 * PAD, h: lineH},
          {span, diverging, prefix: "→", highlight: [25, 118, 210], ink: [13, 71, 161]});
      }
    }));
    ctx.restore();
    return null;
  },
};

/**
 * One line of tokens in `box`: each on a highlight of its strength (value /
 * span), its text from grey (unlikely) to `ink`. `end`: keep the end in
 * view (a window: its last tokens matter most), cutting the start with "…";
 * else cut the end. `prefix` is drawn first, muted.
 */
function drawLine(ctx, tokens, box, {span, diverging, end = false, prefix = "", highlight, ink = [0, 0, 0]}) {
  const pieces = tokens.map((t, k) => {
    const text = visibleToken(t.token);
    const single = [...text].length === 1 && (k === 0 || [...visibleToken(tokens[k - 1].token)].length === 1);
    return {text, gap: k > 0 && !single, value: t.value};
  });
  const space = ctx.measureText(" ").width;
  const widths = pieces.map((p) => ctx.measureText(p.text).width + (p.gap ? space : 0));
  const ellipsis = ctx.measureText("…").width;
  const lead = prefix ? ctx.measureText(`${prefix} `).width : 0;
  let room = box.w - lead;
  let first = 0;
  let last = pieces.length;
  let total = widths.reduce((a, b) => a + b, 0);
  let cut = false;
  while (total > room && last - first > 1) {
    if (!cut) {
      cut = true;
      room -= ellipsis;
    }
    total -= end ? widths[first++] : widths[--last];
  }
  const middle = box.y + box.h / 2;
  let x = box.x;
  ctx.fillStyle = "#9e9e9e";
  if (prefix) {
    ctx.fillText(prefix, x, middle);
    x += lead;
  }
  if (cut && end) {
    ctx.fillText("…", x, middle);
    x += ellipsis;
  }
  for (let k = first; k < last; k++) {
    const strength = Number.isFinite(pieces[k].value) ? pieces[k].value / span : 0;
    const s = Math.max(0, Math.min(1, Math.abs(strength)));
    const gap = pieces[k].gap ? space : 0;
    const tint = diverging ? (strength < 0 ? [33, 102, 172] : [214, 96, 77]) : highlight;
    // Faint below ~0.3 (a base rate), strong towards 1.
    ctx.fillStyle = `rgba(${tint.join(", ")}, ${(0.65 * s ** 1.5).toFixed(3)})`;
    ctx.fillRect(x + gap, box.y + 1, widths[k] - gap, box.h - 2);
    // Grey (#9e9e9e) at 0 to the ink colour from 0.5 up.
    const t = Math.min(1, 2 * s);
    ctx.fillStyle = `rgb(${ink.map((c) => Math.round(158 + t * (c - 158))).join(", ")})`;
    ctx.fillText(pieces[k].text, x + gap, middle);
    x += widths[k];
  }
  if (cut && !end) {
    ctx.fillStyle = "#9e9e9e";
    ctx.fillText("…", x, middle);
  }
}

// ---- The sequence logo of the detail ----

const LOGO_COLUMN = 30;    // CSS px per position
const LOGO_HEIGHT = 160;   // CSS px of probability 1 (or of the largest stack when diverging)
const LOGO_LEFT = 44;      // room for the y axis
const LOGO_BOTTOM = 34;    // room for the position labels
const LOGO_TOP = 18;       // room for the "window" / "rollout" labels
const MIN_GLYPH = 3;       // CSS px: smaller shares are left out of the stack (drawn as "other")

/** Colour of a token by kind: letters, capitals, digits, whitespace, the rest (punctuation, symbols). */
export function tokenColour(token) {
  const s = String(token);
  if (/^\s+$/.test(s)) return "#9e9e9e";
  if (/^[0-9]+$/.test(s)) return "#2e7d32";
  if (/^\p{Lu}+$/u.test(s)) return "#6a1b9a";
  if (/^\p{L}/u.test(s)) return "#1565c0";
  return "#e65100";
}

/**
 * Draws the sequence logo of a unit's frame on `canvas`: for each position
 * of the window, then (after a marker) of the rollout, a column as tall as
 * the information the unit's distribution there carries beyond the probe's
 * usual one (`mean`, its mean window and rollout; uniform without it): the
 * relative entropy in bits, so positions the unit does not care about are
 * flat. In it the tokens are stacked by probability, the most likely on top.
 * With `diverging` (the frame is minus the probe's mean) the excess stacks
 * up from a middle line and the deficit down. Returns {columns: [{x,
 * tokens: [{token, value}] most likely first}], positions, L}, for the
 * hover readout.
 */
export function drawLogo(canvas, {window: values, rollout, mean = null, V, vocab, L, R, diverging = false}) {
  const columns = [];
  const positions = L + (rollout?.length ? R : 0);
  const width = LOGO_LEFT + positions * LOGO_COLUMN + (R > 0 && rollout?.length ? 10 : 0) + 8;
  const height = LOGO_TOP + LOGO_HEIGHT + LOGO_BOTTOM;
  const ctx = sizeCanvas(canvas, width, height);
  ctx.clearRect(0, 0, width, height);

  const at = (p) => (p < L ? values.subarray(p * V, (p + 1) * V) : rollout.subarray((p - L) * V, (p - L + 1) * V));
  const usual = (p) => (p < L ? mean?.window?.subarray(p * V, (p + 1) * V)
    : mean?.rollout?.subarray((p - L) * V, (p - L + 1) * V));
  // Column heights: bits of relative entropy from the usual distribution (not when diverging).
  const bits = Array.from({length: positions}, (_, p) => (diverging ? 1 : relativeEntropy(at(p), usual(p))));
  let scale = 1 / Math.max(0.5, ...bits);  // value (probability x bits) -> fraction of LOGO_HEIGHT
  if (diverging) {
    let most = 1e-9;
    for (let p = 0; p < positions; p++) {
      let up = 0;
      let down = 0;
      for (const v of at(p)) if (v > 0) up += v; else if (v < 0) down -= v;
      most = Math.max(most, up, down);
    }
    scale = 0.5 / most;
  }
  const base = LOGO_TOP + (diverging ? LOGO_HEIGHT / 2 : LOGO_HEIGHT);
  const x0 = (p) => LOGO_LEFT + p * LOGO_COLUMN + (p >= L ? 10 : 0);

  // Axes: 0..1 (or −max..+max) on the left, positions below.
  axisPen(ctx, "#bdbdbd");
  const ticks = diverging ? [-0.5 / scale, 0, 0.5 / scale] : [0, 0.5 / scale, 1 / scale];
  for (const t of ticks) {
    const y = base - t * scale * LOGO_HEIGHT;
    ctx.fillText(fmtTick(t), LOGO_LEFT - 8, y);
    ctx.beginPath();
    ctx.moveTo(LOGO_LEFT - 5, Math.round(y) + 0.5);
    ctx.lineTo(LOGO_LEFT - 1, Math.round(y) + 0.5);
    ctx.stroke();
  }
  ctx.beginPath();
  ctx.moveTo(LOGO_LEFT - 1.5, LOGO_TOP);
  ctx.lineTo(LOGO_LEFT - 1.5, LOGO_TOP + LOGO_HEIGHT);
  ctx.stroke();
  ctx.save();
  ctx.translate(10, LOGO_TOP + LOGO_HEIGHT / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(diverging ? "p − probe mean" : "bits", 0, 0);
  ctx.restore();
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let p = 0; p < positions; p++) {
    const label = p < L ? (p === L - 1 ? "0" : `−${L - 1 - p}`) : `+${p - L + 1}`;
    ctx.fillStyle = "#616161";
    ctx.fillText(label, x0(p) + LOGO_COLUMN / 2, LOGO_TOP + LOGO_HEIGHT + 4);
  }
  ctx.textAlign = "left";
  ctx.fillText("window (0: its last input)", LOGO_LEFT, 2);
  if (positions > L) {
    const xm = x0(L) - 5;
    ctx.strokeStyle = "#757575";
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(xm + 0.5, LOGO_TOP);
    ctx.lineTo(xm + 0.5, LOGO_TOP + LOGO_HEIGHT + 16);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillText("rollout →", xm + 4, 2);
  }
  if (diverging) {
    ctx.strokeStyle = "#9e9e9e";
    ctx.beginPath();
    ctx.moveTo(LOGO_LEFT, base + 0.5);
    ctx.lineTo(width - 8, base + 0.5);
    ctx.stroke();
  }

  for (let p = 0; p < positions; p++) {
    const values = at(p);
    const height = bits[p];  // what a probability of 1 stacks to
    const order = Array.from(values.keys()).filter((v) => Number.isFinite(values[v]))
      .sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]));
    columns.push({x: x0(p), tokens: order.slice(0, 5).map((v) => ({token: tokenOf(vocab, v), value: values[v]}))});
    // Stack from the baseline outwards: the smallest first, so the largest ends on top (or at the bottom).
    for (const sign of diverging ? [1, -1] : [1]) {
      const mine = order.filter((v) => sign * values[v] > 0).reverse();
      let edge = base;
      let other = 0;
      for (const v of mine) {
        const px = Math.abs(values[v]) * height * scale * LOGO_HEIGHT;
        if (px < MIN_GLYPH) {
          other += px;
          continue;
        }
        if (other > 0) {  // what is too thin to draw, kept as a grey sliver so the column's height stays true
          edge = sliver(ctx, x0(p), edge, other, sign);
          other = 0;
        }
        const top = sign > 0 ? edge - px : edge;
        const token = tokenOf(vocab, v);
        if (/^\s+$/.test(token)) {
          blank(ctx, visibleToken(token, {space: true}), x0(p) + 1, top, LOGO_COLUMN - 2, px);
        } else {
          glyph(ctx, visibleToken(token), x0(p) + 1, top, LOGO_COLUMN - 2, px, tokenColour(token));
        }
        edge += sign > 0 ? -px : px;
      }
      if (other > 0) sliver(ctx, x0(p), edge, other, sign);
    }
  }
  return {columns, positions, L};
}

/** A grey block `px` tall from `edge` away from the baseline (sign 1: up); returns the new edge. */
function sliver(ctx, x, edge, px, sign) {
  ctx.fillStyle = "#e0e0e0";
  const top = sign > 0 ? edge - px : edge;
  ctx.fillRect(x + 1, top, LOGO_COLUMN - 2, px);
  return sign > 0 ? edge - px : edge + px;
}

/**
 * A whitespace token in a logo: a grey box (a stretched ␣ would read as a
 * letter U) with its symbol (␣ ⏎ ⇥) at its natural size where it fits.
 */
function blank(ctx, symbol, x, y, w, h) {
  ctx.save();
  ctx.fillStyle = "#cfd8dc";
  ctx.fillRect(x + 1, y + 0.5, w - 2, Math.max(0.5, h - 1));
  const size = Math.min(16, h - 2);
  if (size >= 9) {
    ctx.font = `${size}px ${MONO}`;
    ctx.fillStyle = "#546e7a";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(symbol, x + w / 2, y + h / 2);
  }
  ctx.restore();
}

/** `text` stretched to fill the box (x, y, w, h): a letter of a logo. */
function glyph(ctx, text, x, y, w, h, colour) {
  ctx.save();
  ctx.font = `bold 40px ${MONO}`;
  ctx.textBaseline = "alphabetic";  // before measuring: the bounding box is measured from the baseline
  ctx.textAlign = "left";
  const m = ctx.measureText(text);
  const ascent = m.actualBoundingBoxAscent || 30;
  const descent = m.actualBoundingBoxDescent || 0;
  const left = m.actualBoundingBoxLeft || 0;
  const right = m.actualBoundingBoxRight || m.width;
  const gw = Math.max(1, left + right);
  const gh = Math.max(1, ascent + descent);
  ctx.translate(x, y);
  ctx.scale(w / gw, h / gh);
  ctx.fillStyle = colour;
  ctx.fillText(text, left, ascent);
  ctx.restore();
}

/**
 * Relative entropy (bits) of the distribution `p` from `q` (uniform when
 * absent): how much the unit's preference at a position says beyond the
 * probe's usual. Probabilities are renormalised; q is floored at 1e-6.
 */
export function relativeEntropy(p, q) {
  const V = p.length;
  let sp = 0;
  let sq = 0;
  for (let v = 0; v < V; v++) {
    if (p[v] > 0) sp += p[v];
    if (q && q[v] > 0) sq += q[v];
  }
  if (!(sp > 0)) return 0;
  let kl = 0;
  for (let v = 0; v < V; v++) {
    const pv = p[v] > 0 ? p[v] / sp : 0;
    if (pv <= 0) continue;
    const qv = q ? Math.max(1e-6, (q[v] > 0 ? q[v] : 0) / (sq || 1)) : 1 / V;
    kl += pv * Math.log2(pv / qv);
  }
  return Math.max(0, kl);
}

function fmtTick(t) {
  if (t === 0) return "0";
  const a = Math.abs(t);
  const s = a >= 0.1 ? String(Number(a.toFixed(2))) : a.toPrecision(1);
  return t < 0 ? `−${s}` : s;
}

/**
 * Index of the logo column under CSS px `x` of the canvas, or -1 (see drawLogo's return).
 */
export function logoColumnAt(logo, x) {
  return logo.columns.findIndex((c) => x >= c.x && x < c.x + LOGO_COLUMN);
}
