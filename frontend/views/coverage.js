// Class coverage: how many units prefer each class (largest mean class
// weight), as bars at the steps compared and as a classes x steps heatmap
// over training, from /coverage. A class no unit prefers is what the
// research note found ("no unit captured 1, 4, 5 or 6"): it is drawn red.

import {el} from "./dom.js";
import {Heatmap} from "./heatmap.js";
import {along, valueAt} from "../model.js";

const ZERO_RGB = [229, 57, 53];

export class CoverageView {
  constructor() {
    this.heatmap = new Heatmap({testid: "coverage-heatmap", title: "Over training"});
    this.legend = el("p", {class: "note"});
    this.bars = el("div", {class: "coverage-bars"});
    this.message = el("p", {class: "note", hidden: true});
    this.element = el("section", {class: "coverage", "data-testid": "class-coverage"},
      el("strong", {}, "Units per class"), this.legend, this.message, this.bars, this.heatmap.element);
  }

  /**
   * sides: [{label, step, answer}], the steps compared (A, then B), each
   * with its run's decoded /coverage answer (an Error, or undefined while
   * it loads). The heatmap shows the first side's run over training.
   */
  render(sides) {
    const first = sides[0].answer;
    if (!first || first instanceof Error) {
      this.bars.replaceChildren();
      this.legend.textContent = "";
      this.message.hidden = false;
      this.message.textContent = first ? `Not available: ${first.message}` : "loading…";
      this.heatmap.element.hidden = true;
      return;
    }
    this.message.hidden = true;
    this.heatmap.element.hidden = false;
    const names = first.header.class_names;
    const counts = sides.map(({step, answer}) => {
      const i = answer && !(answer instanceof Error) ? answer.header.steps.indexOf(step) : -1;
      return i < 0 ? null : along(answer.arrays.units_per_class, "step", i).data;
    });
    const max = Math.max(1, ...names.map((_, c) => Math.max(...counts.map((n) => n?.[c] ?? 0))));
    this.legend.replaceChildren(...sides.map(({label}, k) =>
      el("span", {class: `coverage-key side-${k}`}, label)));
    // One group of columns per class (A, B side by side), its name and counts under it.
    this.bars.replaceChildren(...names.map((name, c) => {
      const zero = counts.some((n) => n && n[c] === 0);
      const text = counts.map((n) => (n ? String(n[c]) : "–"));
      return el("div", {class: `coverage-group${zero ? " zero" : ""}`,
        title: `class ${name}: ${sides.map(({label}, k) => `${label}: ${text[k]} units`).join("; ")}`},
      el("span", {class: "coverage-columns"}, ...counts.map((n, k) => {
        const column = el("span", {class: `coverage-column side-${k}`});
        column.style.height = `${n ? (100 * n[c]) / max : 0}%`;
        return column;
      })),
      el("span", {class: "bar-label"}, name),
      el("span", {class: "coverage-counts"}, text.join(" · ")));
    }));

    const {steps} = first.header;
    const table = first.arrays.units_per_class;  // (steps, classes)
    const value = (c, t) => valueAt(table, {step: t, class: c});
    this.heatmap.draw({
      rows: names.length, cols: steps.length, value, lo: 0, inputs: [first],
      special: (v) => (v === 0 ? ZERO_RGB : null),
      width: 240, height: Math.min(120, Math.max(30, 10 * names.length)),
      note: "red: no unit", y: [names[0], "class", names.at(-1)], x: [steps[0], "step", steps.at(-1)],
      describe: (c, t) => `class ${names[c]} at step ${steps[t]}: ${value(c, t)} units`,
    });
  }
}
