// The unit detail: a large picture of one unit at the current step, its
// statistics, where in the sequence it fires, its class preferences and its
// filmstrip over all logged steps; in compare mode its picture at A beside
// B's and how much it changed. A modal <dialog>: Escape or × closes it.

import {el, fmt, pct} from "./dom.js";
import {FrameGrid} from "./framegrid.js";
import {barList, columnChart} from "./charts.js";
import {PAINTERS, sideBySide} from "./painters.js";
import {along, deadMeaning, frame, frames, nearestIndex, rowOf, unitStats, weightingOf} from "../model.js";

const LARGE_WIDTH = 320;   // CSS px of the large picture
const FRAME_WIDTH = 64;    // CSS px of one filmstrip frame

export class DetailView {
  /** onClose() when dismissed, onStep(step) when a filmstrip frame is clicked. */
  constructor({onClose, onStep}) {
    this.steps = [];
    this.large = new FrameGrid({className: "frame-large"});
    this.strip = new FrameGrid({
      className: "filmstrip",
      onPick: (i) => onStep(this.steps[i]),
      onHover: (i) => { this.strip.canvas.title = i >= 0 ? `step ${this.steps[i]}` : ""; },
    });
    this.title = el("h2", {});
    this.subtitle = el("span", {class: "subtitle"});
    this.stats = el("dl", {class: "stats"});
    this.caption = el("figcaption", {class: "note"});
    this.change = el("dl", {class: "stats"});
    this.changePanel = el("section", {class: "panel", hidden: true}, el("h3", {}, "Change"), this.change);
    this.firing = el("div", {});
    this.classes = el("section", {class: "panel"});
    this.stripNote = el("span", {class: "note"});
    const close = el("button", {class: "icon close", title: "Close (Esc)", "aria-label": "Close"}, "×");
    close.addEventListener("click", () => this.element.close());

    this.element = el("dialog", {class: "detail", "data-testid": "unit-detail", "aria-label": "Unit detail",
      tabindex: -1},
      el("header", {}, el("div", {}, this.title, this.subtitle), close),
      el("div", {class: "detail-body"},
        el("figure", {class: "detail-picture"}, this.large.canvas, this.caption),
        el("div", {class: "detail-side"},
          el("section", {class: "panel"}, el("h3", {}, "Statistics"), this.stats),
          this.changePanel,
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
   * current: a decoded /features answer holding `unit` (null while it loads
   * or when the step lacks the unit; `missing` then says why); history: the
   * decoded /unit answer for the filmstrip, null while it loads, or an Error;
   * step, weighting (one `current` logged), diff, shared: what the grid
   * shows; label: subtitle text. Compare mode: partner, B's frame (null
   * when B has no such unit), drawn right of the unit's and named by
   * `caption`; change: [[name, value text]] rows of how it changed.
   */
  render({current, unit, missing = "loading…", history, step, weighting, diff, shared, label,
    partner, caption = "", change = []}) {
    this.element.dataset.unit = String(unit);
    this.title.textContent = `Unit ${unit}`;
    this.subtitle.textContent = label;
    this.changePanel.hidden = !change.length;
    this.change.replaceChildren(...change.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    this.renderFilmstrip(history, {step, weighting, diff, shared});
    const row = current ? rowOf(current, unit) : -1;
    const painter = current && PAINTERS[current.header.display];
    this.large.canvas.hidden = row < 0 || !painter;
    this.classes.hidden = true;
    if (row < 0 || !painter) {
      this.stats.replaceChildren();
      this.firing.replaceChildren(el("p", {class: "note"},
        current && row >= 0 ? `cannot draw display ${current.header.display}` : missing));
      return;
    }
    const desc = current.header;
    const picture = frame(current, weighting, "unit", row, diff);
    const paired = partner !== undefined;
    this.large.draw([paired ? {a: picture, b: partner} : picture], paired ? sideBySide(painter) : painter,
      shapeOf(desc), {cols: 1, scale: scaleFor(LARGE_WIDTH / (paired ? 2 : 1), desc.input_size, 24), gap: 2,
        diverging: diff});
    this.caption.textContent = `${paired ? `${caption}; ` : ""}window above the line, rollout below`;
    this.renderStats(unitStats(current, weighting, "unit", row), desc.num_windows, weighting,
      desc.probe_fingerprint);
    const share = current.arrays[`${weighting}/position_share`];
    // End position e = inputs consumed at the window's end: L (the first full
    // window) to T = L + P - 1.
    this.firing.replaceChildren(share
      ? columnChart(along(share, "unit", row).data, {firstLabel: desc.window, axis: "end position", format: pct})
      : el("p", {class: "note"}, "not logged"));
    const classWeight = current.arrays[`${weighting}/class_weight`];
    this.classes.hidden = !(classWeight && desc.class_names);
    if (!this.classes.hidden) {
      this.classes.replaceChildren(el("h3", {}, "Class preferences"),
        el("p", {class: "note"}, "mean weight of the windows of each class"),
        barList(along(classWeight, "unit", row).data, desc.class_names, fmt));
    }
  }

  renderFilmstrip(history, {step, weighting, diff, shared}) {
    const painter = history && !(history instanceof Error) && PAINTERS[history.header.display];
    this.strip.canvas.hidden = !painter;
    if (!painter) {
      this.steps = [];
      this.stripNote.textContent = history instanceof Error ? `could not be loaded: ${history.message}`
        : history ? `not drawn: display ${history.header.display}` : "loading…";
      return;
    }
    const {steps, other_layout_steps: others = [], unreadable_steps: unreadable = []} = history.header;
    this.steps = steps;
    // The filmstrip stacks one layout's steps, which may lack the weighting shown.
    const stripWeighting = weightingOf(history, weighting);
    const shape = shapeOf(history.header);
    const scale = scaleFor(FRAME_WIDTH, shape.D, 4);
    const scroller = this.strip.canvas.parentElement;
    const highlight = nearestIndex(steps, step);
    const cellW = painter.cellSize(shape, scale).w;
    this.strip.draw(frames(history, stripWeighting, "step", diff), painter, shape, {
      cols: Math.max(1, Math.floor(((scroller.clientWidth || 800) - 3) / (cellW + 3))),
      scale, gap: 3, diverging: diff, shared, highlight,
    });
    // Keep the current step's frame in view (scrolled by the step control too).
    const {y, h} = this.strip.rect(highlight);
    if (y < scroller.scrollTop || y + h > scroller.scrollTop + scroller.clientHeight) {
      scroller.scrollTop = y - (scroller.clientHeight - h) / 2;
    }
    this.stripNote.textContent = `${steps.length} logged steps, ${steps[0]}–${steps.at(-1)}` +
      `${stripWeighting === weighting ? "" : `, ${stripWeighting} weighting`}; click one to show it` +
      (others.length ? `. ${others.length} ${others.length === 1 ? "step was" : "steps were"} logged ` +
        "with another layout (e.g. a resized layer) and are not shown" : "") +
      (unreadable.length ? `. ${unreadable.length} ${unreadable.length === 1 ? "step is" : "steps are"} not shown: ` +
        `${unreadable.length === 1 ? "it" : "they"} could not be read (step ${unreadable[0].step}: ` +
        `${unreadable[0].reason}${unreadable.length > 1 ? "; …" : ""})` : "");
  }

  renderStats(stats, numWindows, weighting, fingerprint) {
    const ess = stats.effectiveSampleSize;
    const rows = [
      ["Active fraction", pct(stats.activeFraction)],
      ["Effective sample size",
        Number.isFinite(ess) && numWindows ? `${pct(ess)} of ${numWindows} windows` : pct(ess)],
      ["Mean signal", fmt(stats.signalMean)],
      ["Max signal", fmt(stats.signalMax)],
      ["Dead", stats.dead ? `yes: ${deadMeaning(weighting)}` : "no"],
    ];
    // Identifies the probe data the statistics were measured on.
    if (fingerprint) rows.push(["Probe", fingerprint]);
    this.stats.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {class: k.toLowerCase()}, v)]));
    this.stats.classList.toggle("is-dead", stats.dead);
  }
}

/** {L, R, D} of a description. */
function shapeOf({window: L, rollout: R, input_size: D}) {
  return {L, R, D};
}

/** Whole CSS px per value so that `input_size` values span about `width`. */
function scaleFor(width, inputSize, max) {
  return Math.max(1, Math.min(max, Math.floor(width / inputSize)));
}
