// The unit detail: a large picture of one unit at the current step, its
// statistics, where in the sequence it fires, its class preferences and its
// filmstrip over all logged steps. A modal <dialog>: Escape or × closes it.

import {el, fmt, pct} from "./dom.js";
import {FrameGrid} from "./framegrid.js";
import {barList, columnChart} from "./charts.js";
import {deadMeaning, frame, frames, nearestIndex, slice, unitStats, weightingOf} from "../model.js";

const LARGE_WIDTH = 320;   // CSS px of the large picture
const FRAME_WIDTH = 64;    // CSS px of one filmstrip frame

export class DetailView {
  /** onClose() when dismissed, onStep(step) when a filmstrip frame is clicked. */
  constructor({onClose, onStep}) {
    this.steps = [];
    this.large = new FrameGrid({gap: 2, className: "frame-large"});
    this.strip = new FrameGrid({
      gap: 3,
      className: "filmstrip",
      onPick: (i) => onStep(this.steps[i]),
      onHover: (i) => { this.strip.canvas.title = i >= 0 ? `step ${this.steps[i]}` : ""; },
    });
    this.title = el("h2", {});
    this.subtitle = el("span", {class: "subtitle"});
    this.stats = el("dl", {class: "stats"});
    this.firing = el("div", {});
    this.classes = el("section", {class: "panel"});
    this.stripNote = el("span", {class: "note"});
    const close = el("button", {class: "icon close", title: "Close (Esc)", "aria-label": "Close"}, "×");
    close.addEventListener("click", () => this.element.close());

    this.element = el("dialog", {class: "detail", "data-testid": "unit-detail", "aria-label": "Unit detail",
      tabindex: -1},
      el("header", {}, el("div", {}, this.title, this.subtitle), close),
      el("div", {class: "detail-body"},
        el("figure", {class: "detail-picture"}, this.large.canvas,
          el("figcaption", {class: "note"}, "window above the line, rollout below")),
        el("div", {class: "detail-side"},
          el("section", {class: "panel"}, el("h3", {}, "Statistics"), this.stats),
          el("section", {class: "panel"}, el("h3", {}, "Where it fires"),
            el("p", {class: "note"}, "share of the unit's weight per window end position"),
            this.firing),
          this.classes)),
      el("section", {class: "panel filmstrip-panel"},
        el("h3", {}, "Across training ", this.stripNote), el("div", {class: "filmstrip-scroll"}, this.strip.canvas)));
    this.element.addEventListener("close", () => onClose());
  }

  /** Opens the dialog (if closed); `render` fills it. */
  open() {
    if (this.element.open) return;
    this.element.showModal();
    this.element.focus();  // not the close button: a focus ring there reads as a hover
  }

  /**
   * current: decoded /features of the step shown, with `unit` the unit;
   * history: decoded /unit response for the filmstrip, null while it loads,
   * or an Error; step, weighting (one `current` logged), diff, shared: what
   * the grid shows;
   * label: subtitle text.
   */
  render({current, unit, history, step, weighting, diff, shared, label}) {
    const desc = current.header;
    const shape = {L: desc.window, R: desc.rollout, D: desc.input_size};
    this.title.textContent = `Unit ${unit}`;
    this.subtitle.textContent = label;

    this.large.draw([frame(current, weighting, unit, diff)], shape,
      {cols: 1, scale: scaleFor(LARGE_WIDTH, desc.input_size, 24), diverging: diff});
    this.renderStats(unitStats(current, weighting, unit), desc.num_windows, weighting);
    const share = current.arrays[`${weighting}/position_share`];
    // End position e = inputs consumed at the window's end: L (the first full
    // window) to T = L + P - 1.
    this.firing.replaceChildren(share
      ? columnChart(slice(share, unit), {firstLabel: desc.window, axis: "end position", format: pct})
      : el("p", {class: "note"}, "not logged"));
    const classWeight = current.arrays[`${weighting}/class_weight`];
    this.classes.hidden = !(classWeight && desc.class_names);
    if (!this.classes.hidden) {
      this.classes.replaceChildren(el("h3", {}, "Class preferences"),
        el("p", {class: "note"}, "mean weight of the windows of each class"),
        barList(slice(classWeight, unit), desc.class_names, fmt));
    }
    this.renderFilmstrip(history, shape, {step, weighting, diff, shared});
  }

  renderFilmstrip(history, shape, {step, weighting, diff, shared}) {
    this.strip.canvas.hidden = !history || history instanceof Error;
    if (this.strip.canvas.hidden) {
      this.steps = [];
      this.stripNote.textContent = history ? `could not be loaded: ${history.message}` : "loading…";
      return;
    }
    this.steps = history.header.steps;
    // The filmstrip stacks the latest layout's steps, which may lack the weighting shown.
    const stripWeighting = weightingOf(history, weighting);
    const scale = scaleFor(FRAME_WIDTH, shape.D, 4);
    const scroller = this.strip.canvas.parentElement;
    const highlight = nearestIndex(this.steps, step);
    this.strip.draw(frames(history, stripWeighting, diff), shape, {
      cols: Math.max(1, Math.floor(((scroller.clientWidth || 800) - 3) / (shape.D * scale + 3))),
      scale, diverging: diff, shared, highlight,
    });
    // Keep the current step's frame in view (scrolled by the step control too).
    const {y, h} = this.strip.rect(highlight);
    if (y < scroller.scrollTop || y + h > scroller.scrollTop + scroller.clientHeight) {
      scroller.scrollTop = y - (scroller.clientHeight - h) / 2;
    }
    this.stripNote.textContent = `${this.steps.length} logged steps, ` +
      `${this.steps[0]}–${this.steps.at(-1)}` +
      `${stripWeighting === weighting ? "" : `, ${stripWeighting} weighting`}; click one to show it`;
  }

  renderStats(stats, numWindows, weighting) {
    const ess = stats.effectiveSampleSize;
    const rows = [
      ["Active fraction", pct(stats.activeFraction)],
      ["Effective sample size",
        Number.isFinite(ess) && numWindows ? `${pct(ess)} of ${numWindows} windows` : pct(ess)],
      ["Mean signal", fmt(stats.signalMean)],
      ["Max signal", fmt(stats.signalMax)],
      ["Dead", stats.dead ? `yes: ${deadMeaning(weighting)}` : "no"],
    ];
    this.stats.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    this.stats.classList.toggle("is-dead", stats.dead);
  }
}

/** Whole CSS px per value so that `input_size` values span about `width`. */
function scaleFor(width, inputSize, max) {
  return Math.max(1, Math.min(max, Math.floor(width / inputSize)));
}
