// The toolbar: run, tag and weighting selectors and the display options.
// It only reports what the user picked; the app decides what to show.

import {el, setOptions} from "./dom.js";

export class Controls {
  /**
   * onChange(name, value) with name one of "run", "tag", "weighting" (strings),
   * "shared", "diff" (booleans), "scale" (number).
   */
  constructor(onChange) {
    this.run = el("select", {"data-testid": "run-select", "aria-label": "Run"});
    this.tag = el("select", {"data-testid": "tag-select", "aria-label": "Tag"});
    this.weighting = el("select", {
      "data-testid": "weighting-select",
      "aria-label": "Weighting",
      title: "How windows are weighted by the unit's signal: top = its strongest windows, relu = all positive signal",
    });
    this.shared = el("input", {type: "checkbox"});
    this.diff = el("input", {type: "checkbox"});
    this.scale = el("input", {type: "range", min: 1, max: 12, step: 1, "aria-label": "Zoom"});

    for (const name of ["run", "tag", "weighting"]) {
      this[name].addEventListener("change", () => onChange(name, this[name].value));
    }
    for (const name of ["shared", "diff"]) {
      this[name].addEventListener("change", () => onChange(name, this[name].checked));
    }
    this.scale.addEventListener("input", () => onChange("scale", Number(this.scale.value)));

    this.element = el("div", {class: "toolbar", role: "toolbar"},
      field("Run", this.run),
      field("Tag", this.tag),
      field("Weighting", this.weighting),
      el("label", {class: "check", title: "One colour scale for all units instead of one per cell"},
        this.shared, "Shared scale"),
      el("label", {class: "check", title: "Show each unit's average minus the mean of all probe windows"},
        this.diff, "Difference from mean"),
      field("Zoom", this.scale));
  }

  /** Sorted run and tag names, the selected ones, and the tag's weightings. */
  update({runs, run, tags, tag, weightings, weighting, shared, diff, scale}) {
    setOptions(this.run, runs, run);
    setOptions(this.tag, tags, tag);
    setOptions(this.weighting, weightings, weighting);
    this.shared.checked = shared;
    this.diff.checked = diff;
    this.scale.value = String(scale);
  }
}

function field(label, control) {
  return el("label", {class: "field"}, el("span", {class: "field-label"}, label), control);
}
