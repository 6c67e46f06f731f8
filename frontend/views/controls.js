// The toolbar: run, tag and weighting selectors, the display options, the
// unit order and the compare switch. It only reports what the user picked;
// the app decides what to show.

import {el, setOptions} from "./dom.js";
import {ORDERS} from "../order.js";

export class Controls {
  /**
   * onChange(name, value) with name one of "run", "tag", "weighting", "order" (strings),
   * "shared", "diff", "labels", "compare" (booleans), "scale" (number), "resort" (no value).
   */
  constructor(onChange) {
    this.run = el("select", {"data-testid": "run-select", "aria-label": "Run"});
    this.tag = el("select", {"data-testid": "tag-select", "aria-label": "Tag"});
    this.weighting = el("select", {
      "data-testid": "weighting-select",
      "aria-label": "Weighting",
      title: "How windows are weighted by the unit's signal: top = its strongest windows, relu = all positive " +
        "signal, bottom = its most negative windows (what drives it below zero)",
    });
    this.shared = el("input", {type: "checkbox"});
    this.diff = el("input", {type: "checkbox"});
    this.labels = el("input", {type: "checkbox"});
    this.scale = el("input", {type: "range", min: 1, max: 12, step: 1, "aria-label": "Zoom"});
    this.order = el("select", {"data-testid": "sort-select", "aria-label": "Order of the units",
      title: "Order of the units in the grid, computed at the step shown when you pick it; it stays put while the step changes"});
    this.orders = [];
    this.setOrders(ORDERS);
    this.resort = el("button", {class: "icon", title: "Sort again at the step shown", "aria-label": "Sort again"}, "↻");
    this.resort.addEventListener("click", () => onChange("resort"));
    this.compare = el("input", {type: "checkbox", "data-testid": "compare-toggle"});

    for (const name of ["run", "tag", "weighting", "order"]) {
      this[name].addEventListener("change", () => onChange(name, this[name].value));
    }
    for (const name of ["shared", "diff", "labels", "compare"]) {
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
      this.labelsField = el("label", {class: "check", title: "Write each unit's dominant class on its cell"},
        this.labels, "Class labels"),
      field("Zoom", this.scale),
      field("Order", this.order), this.resort,
      el("label", {class: "check compare-toggle",
        title: "Compare two steps (A, B) of this run, or of two runs logged on the same probe"},
      this.compare, "Compare"));
  }

  /** The order menu's entries, [[value, label, title]] (rebuilt only on change: that closes an open menu). */
  setOrders(orders) {
    if (JSON.stringify(orders) === JSON.stringify(this.orders)) return;
    this.orders = orders;
    this.order.replaceChildren(...orders.map(([value, label, title]) => el("option", {value, title}, label)));
  }

  /**
   * Sorted run and tag names, the selected ones, and the weightings the
   * tag and step logged; orders: the order menu's entries (order.ordersOf);
   * hasLabels: whether the tag has classes; compare: whether compare mode is on.
   */
  update({runs, run, tags, tag, weightings, weighting, shared, diff, labels, hasLabels, scale, orders = ORDERS,
    order, compare}) {
    setOptions(this.run, runs, run);
    setOptions(this.tag, tags, tag);
    setOptions(this.weighting, weightings, weighting);
    this.setOrders(orders);
    this.shared.checked = shared;
    this.diff.checked = diff;
    this.labels.checked = labels;
    this.labelsField.hidden = !hasLabels;
    this.scale.value = String(scale);
    for (const option of this.order.options) {
      option.disabled = (option.value === "change" && !compare) || (option.value === "class" && !hasLabels);
    }
    this.order.value = order;
    this.resort.hidden = order === "index";
    this.compare.checked = compare;
  }
}

function field(label, control) {
  return el("label", {class: "field"}, el("span", {class: "field-label"}, label), control);
}
