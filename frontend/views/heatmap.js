// One heatmap on a canvas, used for drift (units x steps), layer similarity
// (steps x steps) and class coverage (classes x steps). The canvas holds one
// pixel per value and is stretched by CSS (image-rendering: pixelated), so
// a 4,096 x 1,000 map costs one ImageData; the hover readout names the
// value under the pointer.

import {el} from "./dom.js";
import {SEQUENTIAL} from "../colormaps.js";

export class Heatmap {
  /**
   * testid: the canvas's data-testid; title: its heading; onPick(row, col)
   * when a value is clicked (optional).
   */
  constructor({testid, title, onPick = null}) {
    this.canvas = el("canvas", {class: "heatmap", "data-testid": testid, role: "img", "aria-label": title});
    this.note = el("span", {class: "note"});
    this.yFirst = el("span", {});
    this.yName = el("span", {class: "axis-name"});
    this.yLast = el("span", {});
    this.xFirst = el("span", {});
    this.xName = el("span", {class: "axis-name"});
    this.xLast = el("span", {});
    this.readout = el("div", {class: "heatmap-readout", "aria-live": "polite"});
    this.message = el("p", {class: "note", hidden: true});
    this.body = el("div", {class: "heatmap-body"},
      this.yAxis = el("div", {class: "axis heatmap-y"}, this.yFirst, this.yName, this.yLast),
      el("div", {}, this.canvas, el("div", {class: "axis"}, this.xFirst, this.xName, this.xLast)));
    this.element = el("figure", {class: "heatmap-figure"},
      el("figcaption", {}, el("strong", {}, title), " ", this.note), this.body, this.message, this.readout);
    this.view = null;
    this.canvas.addEventListener("mousemove", (e) => {
      const at = this.cellAt(e);
      this.readout.textContent = at ? this.view.describe(...at) : "";
    });
    this.canvas.addEventListener("mouseleave", () => { this.readout.textContent = ""; });
    if (onPick) {
      this.canvas.classList.add("pickable");
      this.canvas.addEventListener("click", (e) => {
        const at = this.cellAt(e);
        if (at) onPick(...at);
      });
    }
  }

  /**
   * Draws `rows` x `cols` values (value(row, col) -> number, NaN grey)
   * between lo and hi (default: the largest value) through `lut`; `special(v)` may give an [r, g, b]
   * for values to stand out. Sized width x height CSS px. Labels: note
   * (beside the title), y: [top, name, bottom] beside the rows, x: [first,
   * name, last] under the columns. describe(row, col) is the hover text.
   * `inputs`: what the picture is made from (e.g. [answer, order]); when
   * they are the ones drawn last (by identity), nothing is redrawn.
   */
  draw({rows, cols, value, lo, hi, lut = SEQUENTIAL, special = () => null, width, height, note = "",
    y = ["", "", ""], x = ["", "", ""], describe, inputs = null}) {
    this.view = {rows, cols, describe};
    if (inputs && this.inputs?.length === inputs.length && inputs.every((v, i) => v === this.inputs[i])) return;
    this.inputs = inputs;
    this.message.hidden = true;
    this.body.hidden = false;
    const values = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) values[r * cols + c] = value(r, c);
    }
    if (hi === undefined) hi = values.reduce((m, v) => (v > m ? v : m), lo + 1e-9);
    this.canvas.width = Math.max(1, cols);
    this.canvas.height = Math.max(1, rows);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = this.yAxis.style.height = `${height}px`;
    const image = new ImageData(this.canvas.width, this.canvas.height);
    const span = hi - lo;
    values.forEach((v, i) => {
      const rgb = special(v);
      if (rgb) {
        image.data.set([...rgb, 255], 4 * i);
      } else if (!Number.isFinite(v)) {
        image.data.set([189, 189, 189, 255], 4 * i);
      } else {
        const k = 4 * Math.round(255 * Math.min(1, Math.max(0, span > 0 ? (v - lo) / span : 0.5)));
        image.data.set(lut.subarray(k, k + 4), 4 * i);
      }
    });
    this.canvas.getContext("2d").putImageData(image, 0, 0);
    this.note.textContent = note;
    [this.yFirst.textContent, this.yName.textContent, this.yLast.textContent] = y.map(String);
    [this.xFirst.textContent, this.xName.textContent, this.xLast.textContent] = x.map(String);
  }

  /** Shows `text` instead of the picture (e.g. why it cannot be drawn, or "loading…"). */
  say(text) {
    this.view = null;
    this.inputs = null;
    this.body.hidden = true;
    this.message.hidden = false;
    this.message.textContent = text;
    this.readout.textContent = "";
  }

  /** [row, col] under a mouse event, or null. */
  cellAt(event) {
    if (!this.view) return null;
    const box = this.canvas.getBoundingClientRect();
    const col = Math.floor(((event.clientX - box.left) / box.width) * this.view.cols);
    const row = Math.floor(((event.clientY - box.top) / box.height) * this.view.rows);
    return row >= 0 && row < this.view.rows && col >= 0 && col < this.view.cols ? [row, col] : null;
  }
}
