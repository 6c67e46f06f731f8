// The unit grid: one cell per hidden unit at a step, laid out near-square
// (fewer columns when that would not fit the width), with a colour legend
// and a one-line readout of the hovered unit. It scrolls inside
// .grid-scroll and paints only the rows on screen; the app asks which
// units those are (visibleUnits) and fetches just them. It knows cells by
// position; the app maps positions to units (the sort order, compare pairs).
// A large grid's canvas covers only the view (see framegrid.js): it sticks
// to the top-left of the scroller, over a sizer of the grid's size.
// The scroller's geometry is read on scroll and resize, not while drawing,
// so that a redraw never waits for the page's layout.

import {el, fmt} from "./dom.js";
import {FrameGrid, cellsInBand, gridLayout} from "./framegrid.js";
import {DIVERGING, SEQUENTIAL, cssGradient} from "../colormaps.js";

export class GridView {
  /** onPick(unit) when a cell is clicked, onHover(unit or -1), onScroll() when other rows come into view. */
  constructor({onPick, onHover, onScroll}) {
    this.frames = new FrameGrid({onPick, onHover});
    const canvas = this.frames.canvas;
    canvas.dataset.testid = "unit-grid";
    canvas.setAttribute("role", "img");
    this.bar = el("span", {class: "colorbar"});
    this.lo = el("span", {class: "legend-value"});
    this.hi = el("span", {class: "legend-value"});
    this.scaleNote = el("span", {class: "legend-note"});
    this.poorKey = el("span", {class: "legend-poor", hidden: true}, el("span", {class: "poor-swatch"}), "no good match");
    this.readout = el("span", {class: "readout", "aria-live": "polite"});
    this.what = el("span", {class: "grid-what", "data-testid": "grid-caption"});
    this.note = el("span", {class: "grid-note", role: "status", hidden: true});
    canvas.style.position = "sticky";
    canvas.style.top = canvas.style.left = "0";
    this.sizer = el("div", {class: "grid-sizer"}, canvas);
    this.scroller = el("div", {class: "grid-scroll"}, this.sizer);
    this.view = null;  // {left, top, width, height} of the scroller, CSS px; null: read it on demand
    this.element = el("section", {class: "grid-view"},
      el("div", {class: "grid-caption"},
        this.what,
        el("span", {class: "legend"}, this.lo, this.bar, this.hi, this.scaleNote),
        el("span", {class: "legend-dead"}, el("span", {class: "dead-swatch"}), "dead unit"),
        this.poorKey,
        this.note,
        this.readout),
      this.scroller);
    this.scroller.addEventListener("scroll", () => {
      if (this.view) Object.assign(this.view, {left: this.scroller.scrollLeft, top: this.scroller.scrollTop});
      onScroll();
    }, {passive: true});
    new ResizeObserver(() => {
      this.view = null;
      onScroll();
    }).observe(this.scroller);
  }

  /** The scroller's visible part {left, top, width, height} (CSS px; the window's size while hidden). */
  viewport() {
    if (!this.view) {
      const s = this.scroller;
      this.view = {left: s.scrollLeft, top: s.scrollTop, width: s.clientWidth, height: s.clientHeight};
      if (!this.view.width || !this.view.height) {  // hidden: not kept, read again next time
        const view = {...this.view, width: window.innerWidth, height: window.innerHeight};
        this.view = null;
        return view;
      }
    }
    return this.view;
  }

  /**
   * The grid's geometry for `units` cells of `painter` ({L, R, D} = shape)
   * at `scale` (see framegrid.gridLayout); computed, not applied.
   */
  layoutFor(painter, shape, units, scale) {
    const gap = 4;
    const probe = gridLayout(painter, shape, {count: 1, scale, gap});
    const fitting = Math.floor((this.viewport().width - gap) / (probe.cellW + gap));
    const cols = Math.min(Math.ceil(Math.sqrt(units)), Math.max(1, fitting));
    return gridLayout(painter, shape, {count: units, scale, cols, gap, windowed: true});
  }

  /** Units [first, last) of `layout` in the rows that are on screen. */
  visibleUnits(layout) {
    const {top, height} = this.viewport();
    // As the browser will scroll once the sizer shrinks (zoomed out), before it says so.
    const clamped = Math.max(0, Math.min(top, layout.height - height));
    return cellsInBand(layout, clamped, clamped + height);
  }

  /**
   * Draws `layout` (from layoutFor) with the units on screen: frameAt(unit)
   * gives a unit's frame, or null while its data loads (a placeholder; the
   * canvas is aria-busy while any is on screen). `step` is the step drawn
   * (data-step), null before any of its units arrived; `display` names the
   * painter (data-display). data: more data-* attributes of the canvas
   * ({order: "index", stepA: null, ...}; null removes one); what: what the
   * colours show, for the legend (e.g. "B − A"); poorMatches: whether cells
   * may be outlined as "no good match" (a legend entry); unit: what one
   * colour scale spans when not shared ("cell", "pair"). options: diverging,
   * shared, highlight (see FrameGrid.paint). failed: the step's fetch
   * failed (its cells are placeholders): the canvas is greyed, data-failed.
   * The canvas's data-draw-ms says how long this took (performance.now()).
   */
  draw(layout, {display, step, frameAt, data = {}, what = "", poorMatches = false, unit = "cell", failed = false,
    ...options}) {
    const started = performance.now();
    if (this.sizer.style.width !== `${layout.width}px` || this.sizer.style.height !== `${layout.height}px`) {
      this.sizer.style.width = `${layout.width}px`;
      this.sizer.style.height = `${layout.height}px`;
    }
    this.frames.setLayout(layout, this.viewport());
    const [first, last] = this.visibleUnits(layout);
    let loading = 0;
    const range = this.frames.paint(first, last, (unit) => frameAt(unit) ?? (loading++, null), options);
    const canvas = this.frames.canvas;
    canvas.setAttribute("aria-busy", String(loading > 0 && !failed));
    canvas.classList.toggle("failed", failed);
    if (failed) canvas.dataset.failed = "true";
    else delete canvas.dataset.failed;
    canvas.dataset.units = String(layout.count);
    canvas.dataset.display = display;
    for (const [name, value] of Object.entries(data)) {
      if (value === null) delete canvas.dataset[name];
      else canvas.dataset[name] = String(value);
    }
    this.poorKey.hidden = !poorMatches;
    if (step === null) {
      delete canvas.dataset.step;
    } else {
      canvas.dataset.step = String(step);
    }
    canvas.setAttribute("aria-label", `${layout.count} hidden units${step === null ? "" : ` at step ${step}`}`);

    this.bar.style.background = cssGradient(options.diverging ? DIVERGING : SEQUENTIAL);
    if (range) {
      this.lo.textContent = fmt(range.lo);
      this.hi.textContent = fmt(range.hi);
    } else {
      this.lo.textContent = options.diverging ? "−max" : "min";
      this.hi.textContent = options.diverging ? "+max" : "max";
    }
    const partial = first > 0 || last < layout.count;
    this.scaleNote.textContent = (what ? `${what}, ` : "") +
      (range ? `shared scale${partial ? " of the units on screen" : ""}` : `scaled per ${unit}`);
    canvas.dataset.drawMs = (performance.now() - started).toFixed(2);
  }

  /** Marks the canvas as showing nothing (no data-display, no data-step). */
  unset() {
    delete this.frames.canvas.dataset.display;
    delete this.frames.canvas.dataset.step;
  }

  /** Which run, tag and step the grid draws, e.g. "train · rnn/units · step 5" (text, never HTML). */
  setCaption(text) {
    this.what.textContent = text;
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
