// The unit grid: one frame per hidden unit at the current step, laid out
// near-square, with a colour legend and a one-line readout of the hovered unit.

import {el, fmt} from "./dom.js";
import {FrameGrid} from "./framegrid.js";
import {DIVERGING, SEQUENTIAL, cssGradient} from "../colormaps.js";

export class GridView {
  /** onPick(unit) when a cell is clicked, onHover(unit or -1). */
  constructor({onPick, onHover}) {
    this.frames = new FrameGrid({onPick, onHover});
    this.frames.canvas.dataset.testid = "unit-grid";
    this.frames.canvas.setAttribute("role", "img");
    this.bar = el("span", {class: "colorbar"});
    this.lo = el("span", {class: "legend-value"});
    this.hi = el("span", {class: "legend-value"});
    this.scaleNote = el("span", {class: "legend-note"});
    this.readout = el("span", {class: "readout", "aria-live": "polite"});
    this.note = el("span", {class: "grid-note", role: "status", hidden: true});
    this.element = el("section", {class: "grid-view"},
      el("div", {class: "grid-caption"},
        el("span", {class: "legend"}, this.lo, this.bar, this.hi, this.scaleNote),
        el("span", {class: "legend-dead"}, el("span", {class: "dead-swatch"}), "dead unit"),
        this.note,
        this.readout),
      el("div", {class: "grid-scroll"}, this.frames.canvas));
  }

  /**
   * frames: one per unit (see model.frames); shape {L, R, D}; step: the
   * step shown; options: scale, diverging, shared, highlight.
   */
  draw(frames, shape, step, options) {
    const cols = Math.ceil(Math.sqrt(frames.length));
    const range = this.frames.draw(frames, shape, {...options, cols});
    const canvas = this.frames.canvas;
    canvas.dataset.units = String(frames.length);
    canvas.dataset.step = String(step);
    canvas.setAttribute("aria-label", `${frames.length} hidden units at step ${step}`);

    this.bar.style.background = cssGradient(options.diverging ? DIVERGING : SEQUENTIAL);
    if (range) {
      this.lo.textContent = fmt(range.lo);
      this.hi.textContent = fmt(range.hi);
    } else {
      this.lo.textContent = options.diverging ? "−max" : "min";
      this.hi.textContent = options.diverging ? "+max" : "max";
    }
    this.scaleNote.textContent =
      (options.diverging ? "difference from the probe mean, " : "") +
      (range ? "shared scale" : "scaled per cell");
  }

  /** A short notice above the grid, e.g. that a step lacks the selected weighting ("" clears it). */
  say(text) {
    this.note.textContent = text;
    this.note.hidden = !text;
  }

  /** Text describing the hovered unit ("" clears it). */
  setReadout(text) {
    this.readout.textContent = text;
  }
}
