// The step control: slider over the logged steps, previous / play / next,
// left and right arrow keys, and a box to type an exact step.

import {el} from "./dom.js";
import {typedStep} from "../model.js";

export class Stepper {
  /**
   * onIndex(i) to show the i-th logged step, onTyped(step) for a typed step
   * number, onPlay() to toggle playback.
   */
  constructor({onIndex, onTyped, onPlay}) {
    this.index = 0;
    this.editing = false; // true while the user types in the step box
    this.slider = el("input", {type: "range", min: 0, max: 0, value: 0, class: "step-slider",
      "data-testid": "step-slider", "aria-label": "Logged step"});
    this.input = el("input", {type: "number", class: "step-input", "data-testid": "step-input",
      "aria-label": "Go to step", title: "Type a step and press Enter"});
    this.prev = el("button", {class: "icon", title: "Previous step (←)", "aria-label": "Previous step"}, "‹");
    this.next = el("button", {class: "icon", title: "Next step (→)", "aria-label": "Next step"}, "›");
    this.play = el("button", {class: "icon play", title: "Play through the steps", "aria-label": "Play"}, "▶");
    this.position = el("span", {class: "step-position"});
    this.message = el("span", {class: "step-message", role: "status"});

    this.slider.addEventListener("input", () => onIndex(Number(this.slider.value)));
    this.prev.addEventListener("click", () => onIndex(this.index - 1));
    this.next.addEventListener("click", () => onIndex(this.index + 1));
    this.play.addEventListener("click", () => onPlay());
    this.input.addEventListener("input", () => { this.editing = true; });
    this.input.addEventListener("change", () => {
      this.editing = false;
      if (this.input.value !== "") onTyped(typedStep(this.input.value));
    });
    document.addEventListener("keydown", (e) => {
      // Form fields keep their own arrow keys (the slider moves itself).
      if (e.altKey || e.ctrlKey || e.metaKey || e.target.closest("input, select, textarea")) return;
      if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        e.preventDefault();
        onIndex(this.index + (e.key === "ArrowLeft" ? -1 : 1));
      }
    });

    this.element = el("div", {class: "stepper"},
      el("span", {class: "field-label"}, "Step"),
      this.input, this.prev, this.play, this.next, this.slider, this.position, this.message);
  }

  /** steps: [{step, wall_time}]; index: the one shown; playing: playback state. */
  update(steps, index, playing) {
    this.index = index;
    this.slider.max = String(Math.max(0, steps.length - 1));
    this.slider.value = String(index);
    const current = steps[index];
    if (current && !this.editing) this.input.value = String(current.step);
    this.input.min = String(steps[0]?.step ?? 0);
    this.input.max = String(steps.at(-1)?.step ?? 0);
    this.position.textContent = current
      ? `${index + 1} of ${steps.length} · ${new Date(current.wall_time * 1000).toLocaleString()}`
      : "";
    this.prev.disabled = index <= 0;
    this.next.disabled = index >= steps.length - 1;
    this.play.textContent = playing ? "❚❚" : "▶";
    this.play.setAttribute("aria-label", playing ? "Pause" : "Play");
    this.play.title = playing ? "Pause" : "Play through the steps";
  }

  /** A short note next to the control, e.g. why a typed step was adjusted. */
  say(text) {
    this.message.textContent = text;
  }
}
