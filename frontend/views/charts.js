// Small DOM bar charts for the unit detail. Bar sizes are set through the
// CSSOM (element.style), which TensorBoard's Content-Security-Policy allows.

import {el} from "./dom.js";

/**
 * Vertical bars over consecutive positions: values[i] is drawn at x label
 * firstLabel + i. `format` turns a value into tooltip text.
 */
export function columnChart(values, {firstLabel = 0, axis = "", format = String}) {
  const max = Math.max(...values.filter(Number.isFinite), 0);
  const columns = Array.from(values, (v, i) => {
    const column = el("span", {class: "column", title: `${axis} ${firstLabel + i}: ${format(v)}`});
    column.style.height = `${max > 0 ? (100 * v) / max : 0}%`;
    return column;
  });
  return el("figure", {class: "column-chart"},
    el("div", {class: "columns"}, ...columns),
    el("figcaption", {class: "axis"},
      el("span", {}, String(firstLabel)),
      el("span", {class: "axis-name"}, axis),
      el("span", {}, String(firstLabel + values.length - 1))));
}

/** Horizontal bars, one labelled row per value, scaled to the largest. */
export function barList(values, labels, format = String) {
  const max = Math.max(...values.filter(Number.isFinite), 0);
  return el("div", {class: "bar-list"}, ...Array.from(values, (v, i) => {
    const fill = el("span", {class: "bar-fill"});
    fill.style.width = `${max > 0 ? (100 * v) / max : 0}%`;
    return el("div", {class: "bar-row"},
      el("span", {class: "bar-label", title: labels[i]}, labels[i]),
      el("span", {class: "bar-track"}, fill),
      el("span", {class: "bar-value"}, format(v)));
  }));
}
