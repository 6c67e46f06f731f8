// The detail's exemplars: the probe windows that weigh most in the unit's
// average (/exemplars), shown as the data itself with the window marked:
// image rows as the picture of the whole sequence with the window's rows
// outlined, tokens as the sequence's text with the window highlighted,
// series as a snippet chart with the window shaded; each with its signal.
// Token text is set as DOM text, never HTML.

import {el, fmt, sizeCanvas} from "./dom.js";
import {SEQUENTIAL, valueRange} from "../colormaps.js";
import {paintAtlas} from "./framegrid.js";
import {drawSnippet} from "./series.js";
import {tokenOf, visibleToken} from "./tokens.js";

const CONTEXT_BEFORE = 40;   // tokens of text shown before a window
const CONTEXT_AFTER = 12;    // and after it
const PICTURE = 84;          // CSS px of an image_rows exemplar's longer side

/**
 * Fills `element` with the exemplars of an /exemplars answer (or an Error,
 * or undefined while it loads, or null when the step has none: `missing`
 * says why). vocab: the tokens display's vocabulary.
 */
export function renderExemplars(element, answer, {vocab, missing = "not logged at this step"} = {}) {
  if (answer === undefined) return element.replaceChildren(el("p", {class: "note"}, "loading…"));
  if (answer === null) return element.replaceChildren(el("p", {class: "note"}, missing));
  if (answer instanceof Error) {
    return element.replaceChildren(el("p", {class: "note"}, `could not be loaded: ${answer.message}`));
  }
  const list = answer.exemplars ?? [];
  if (!list.length) return element.replaceChildren(el("p", {class: "note"}, "none: no window has weight"));
  const display = answer.display;
  const items = list.map((x, rank) => {
    const signal = el("span", {class: "exemplar-signal"}, `signal ${fmt(x.signal)}`);
    const where = `sequence ${x.sequence}, inputs ${x.start}–${x.end - 1}`;
    let body;
    if (display === "tokens" && Array.isArray(x.tokens)) {
      body = tokenText(x.tokens, x.start, x.end, vocab);
    } else if (Array.isArray(x.values) && x.values.length) {
      const D = x.values[0].length;
      const values = Float32Array.from(x.values.flat());
      const canvas = el("canvas", {class: "exemplar-picture", role: "img", "aria-label": where});
      if (display === "series") {
        drawSnippet(canvas, values, D, {start: x.start, end: x.end, context: Math.max(2, x.end - x.start)});
      } else {
        drawRows(canvas, values, D, x.start, x.end);
      }
      body = canvas;
    } else {
      body = el("span", {class: "note"}, "no data");
    }
    return el("li", {class: `exemplar exemplar-${display}`, title: where},
      el("span", {class: "exemplar-rank"}, `#${rank + 1}`), body, signal);
  });
  element.replaceChildren(el("ol", {class: `exemplar-list exemplar-list-${display}`}, ...items));
}

/**
 * A token sequence as text: the window [start, end) highlighted (its last
 * token, where the signal is measured, underlined), some context either
 * side, newlines and tabs shown as ⏎ ⇥; single characters run together,
 * longer tokens are set off by spaces (as model.joinTokens).
 */
function tokenText(tokens, start, end, vocab) {
  const from = Math.max(0, start - CONTEXT_BEFORE);
  const to = Math.min(tokens.length, end + CONTEXT_AFTER);
  const shown = tokens.map((t) => visibleToken(tokenOf(vocab, t)));
  const single = (k) => [...shown[k]].length === 1;
  // Each token with the space before it, if any.
  const piece = (k) => (k > from && !(single(k) && single(k - 1)) ? ` ${shown[k]}` : shown[k]);
  const text = (a, b) => Array.from({length: Math.max(0, b - a)}, (_, i) => piece(a + i)).join("");
  const last = piece(end - 1);
  const blank = last.startsWith(" ") ? " " : "";
  return el("span", {class: "exemplar-text"},
    from > 0 ? el("span", {class: "context"}, "…") : "",
    el("span", {class: "context"}, text(from, start)),
    el("mark", {class: "window"}, text(start, end - 1), blank,
      el("span", {class: "last", title: "the window's last input"},
        visibleToken(tokenOf(vocab, tokens[end - 1]), {space: true}))),
    el("span", {class: "context"}, text(end, to)),
    to < tokens.length ? el("span", {class: "context"}, "…") : "");
}

/** An image_rows exemplar: its T x D sequence as rows of pixels, the window's rows outlined. */
function drawRows(canvas, values, D, start, end) {
  const T = values.length / D;
  const px = Math.max(1, Math.floor(PICTURE / Math.max(T, D)));
  const side = 6;  // the bracket left of the rows
  const width = side + D * px;
  const height = T * px;
  const {canvas: tile} = paintAtlas([{window: values, rollout: null}], [valueRange([values], false)],
    {L: T, R: 0, D}, SEQUENTIAL);
  const ctx = sizeCanvas(canvas, width, height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tile, 0, 0, D, T, side, 0, D * px, T * px);  // the atlas is reused: its top-left D x T
  // Darken the rows outside the window (a spotlight on it), outline the window and bracket it.
  ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
  ctx.fillRect(side, 0, D * px, start * px);
  ctx.fillRect(side, end * px, D * px, (T - end) * px);
  ctx.strokeStyle = "#f57c00";
  ctx.lineWidth = 2;
  ctx.strokeRect(side + 1, start * px + 1, D * px - 2, (end - start) * px - 2);
  ctx.fillStyle = "#f57c00";
  ctx.fillRect(0, start * px, 3, (end - start) * px);
}
