// Compare mode's panel under the grid: drift (each unit's change from step
// to step), layer similarity (CKA between steps) and class coverage. It
// draws the answers the app fetched; a click on the similarity map asks to
// compare those two steps.

import {el, fmt} from "./dom.js";
import {CoverageView} from "./coverage.js";
import {Heatmap} from "./heatmap.js";
import {fmtChange} from "./compare.js";
import {valueAt} from "../model.js";

export class AnalysisPanel {
  /** onPickSteps(stepA, stepB) when a cell of the similarity map is clicked. */
  constructor({onPickSteps}) {
    this.drift = new Heatmap({testid: "drift-heatmap", title: "Drift"});
    this.similarity = new Heatmap({testid: "similarity-heatmap", title: "Layer similarity",
      onPick: (i, j) => this.steps && onPickSteps(this.steps[i], this.steps[j])});
    this.coverage = new CoverageView();
    this.steps = null;  // the similarity map's steps
    this.element = el("section", {class: "analysis", hidden: true},
      this.drift.element, this.similarity.element, this.coverage.element);
  }

  /**
   * drift, similarity: decoded /drift and /similarity answers (an Error,
   * or undefined while loading); order: the grid's orderMaps, so the drift
   * rows follow the grid (orderName names it); coverage: CoverageView's
   * sides, or null without labels.
   */
  render({drift, similarity, order, orderName, coverage}) {
    if (!drift || drift instanceof Error || drift.header.steps.length < 2) {
      this.drift.say(!drift ? "loading…" : drift instanceof Error ? `Not available: ${drift.message}`
        : "Needs two logged steps.");
    } else {
      const {steps, units, threshold} = drift.header;
      const value = (r, t) => valueAt(drift.arrays.change, {transition: t, unit: order.unitAt(r)});
      this.drift.draw({rows: units, cols: steps.length - 1, value, lo: 0, width: 260, height: 150,
        inputs: [drift, order.units], y: ["", `units (${orderName} order)`, ""], x: [steps[1], "step", steps.at(-1)],
        note: `each unit's change from the previous logged step (settled: below ${threshold})`,
        describe: (r, t) => `unit ${order.unitAt(r)}, step ${steps[t]} → ${steps[t + 1]}: change ${fmtChange(value(r, t))}`});
    }

    this.steps = null;
    if (!similarity || similarity instanceof Error) {
      this.similarity.say(similarity ? `Not available: ${similarity.message}` : "loading…");
    } else {
      const {steps, of_steps: of} = similarity.header;
      this.steps = steps;
      const value = (i, j) => valueAt(similarity.arrays.cka, {step: i, other_step: j});
      this.similarity.draw({rows: steps.length, cols: steps.length, value, lo: 0, hi: 1, width: 150, height: 150,
        inputs: [similarity], y: [steps[0], "step", steps.at(-1)], x: [steps[0], "step", steps.at(-1)],
        note: `linear CKA between steps${of > steps.length ? ` (${steps.length} of ${of})` : ""}; click: compare them`,
        describe: (i, j) => `step ${steps[i]} vs step ${steps[j]}: CKA ${fmt(value(i, j))}`});
    }

    this.coverage.element.hidden = !coverage;
    if (coverage) this.coverage.render(coverage);
  }
}
