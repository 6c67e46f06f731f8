// The controller: holds what is selected, asks the model for data and hands
// it to the views. Views report user actions back here; data flows one way.

import {deadMeaning, defaultWeighting, fetchFeatures, fetchSteps, fetchTags, fetchUnit, frames, nearestIndex,
  unitStats, weightingOf} from "./model.js";
import {el, fmt, pct} from "./views/dom.js";
import {Controls} from "./views/controls.js";
import {DetailView} from "./views/detail.js";
import {GridView} from "./views/grid.js";
import {Stepper} from "./views/stepper.js";

// How often to look for new runs, tags and steps, like TensorBoard's reload.
// localStorage "rnn_units.poll_ms" overrides it (the browser tests use 1000).
const POLL_MS = 15000;
const PLAY_MS = 200;      // at most one step per PLAY_MS while playing
const CACHE_STEPS = 32;   // decoded steps kept for scrubbing back and forth

export class App {
  constructor(root) {
    this.run = null;
    this.tag = null;
    this.weighting = null;  // selected; a step that lacks it is drawn with its own default
    this.shared = false;
    this.diff = false;
    this.scale = 1;         // CSS px per value
    this.zoomed = false;    // the user set the zoom; until then it fits the page
    this.tags = {};         // {run: {tag: description}}
    this.steps = [];        // [{step, wall_time}] of run/tag
    this.index = 0;         // into steps
    this.data = null;       // decoded features of the step drawn
    this.unit = -1;         // unit open in the detail view
    this.history = null;    // its decoded /unit response (or the Error loading it)
    this.playing = null;    // token of the running playback loop
    this.drawing = null;    // token of the latest step request
    this.cache = new Map(); // "run/tag/step" -> Promise of decoded features

    this.controls = new Controls((name, value) => this.onControl(name, value));
    this.stepper = new Stepper({
      onIndex: (i) => { this.stepper.say(""); this.showIndex(i); },
      onTyped: (step) => this.jumpTo(step),
      onPlay: () => this.togglePlay(),
    });
    this.grid = new GridView({onPick: (u) => this.openUnit(u), onHover: (u) => this.hover(u)});
    this.detail = new DetailView({
      onClose: () => { this.unit = -1; this.history = null; this.redraw(); },
      onStep: (step) => this.jumpTo(step),
    });
    this.notice = el("div", {class: "notice", role: "status"});
    this.header = el("header", {class: "top"}, this.controls.element, this.stepper.element);
    this.main = el("main", {}, this.notice, this.grid.element);
    root.append(this.header, this.main, this.detail.element);
    this.setNotice("Loading…");
  }

  async start() {
    await this.reload();
    let busy = false;  // a slow server must not pile up reloads
    setInterval(async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        await this.reload();
      } finally {
        busy = false;
      }
    }, pollInterval());
  }

  /** Re-reads runs, tags and steps; new steps appear without a page refresh. */
  async reload() {
    let tags;
    try {
      tags = await fetchTags();
    } catch (e) {
      return this.setNotice("Could not load the runs.", e.message, true);
    }
    this.tags = tags;
    const runs = Object.keys(tags).sort();
    if (!runs.length) {
      return this.setNotice("No RNN unit data was found.",
        "Log some during training with tensorboard_rnn_units.add_rnn_units(writer, tag, rnn, probe, " +
        "global_step=step); this page looks for new data every few seconds.");
    }
    this.select(runs.includes(this.run) ? this.run : runs[0], this.tag);
    await this.loadSteps();
  }

  /**
   * Selects `run` and `tag` (or the run's first tag if it has no `tag`) and a
   * weighting the tag logged (`top` by default when logged); a new selection
   * drops what the old one showed.
   */
  select(run, tag) {
    const tags = Object.keys(this.tags[run]).sort();
    if (!tags.includes(tag)) tag = tags[0];
    if (run !== this.run || tag !== this.tag) {
      this.run = run;
      this.tag = tag;
      this.data = null;
      this.drawing = null;  // drop responses still on their way
      this.unit = -1;
      this.detail.element.close();
    }
    const desc = this.description();
    const weightings = desc.weightings;
    if (!weightings.includes(this.weighting)) this.weighting = defaultWeighting(weightings);
    if (!this.zoomed) this.scale = fitScale(desc, this.main.clientWidth, window.innerHeight);
    this.controls.update({
      runs: Object.keys(this.tags).sort(), run: this.run, tags, tag: this.tag,
      weightings, weighting: this.weighting, shared: this.shared, diff: this.diff, scale: this.scale,
    });
  }

  description() {
    return this.tags[this.run][this.tag];
  }

  /** Fetches the steps of run/tag, keeping the step shown unless it was the latest. */
  async loadSteps() {
    const {run, tag} = this;
    let steps;
    try {
      steps = await fetchSteps(run, tag);
    } catch (e) {
      return this.setNotice(`Could not load the steps of ${run} / ${tag}.`, e.message, true);
    }
    if (run !== this.run || tag !== this.tag) return;
    if (!steps.length) {
      this.steps = [];
      return this.setNotice("No steps logged yet for this tag.");
    }
    this.setNotice("");

    const old = this.steps;
    const followLatest = this.index >= old.length - 1;
    const oldStep = old[this.index]?.step;
    const unchanged = this.data && this.data.header.step === oldStep
      && steps.length === old.length && steps.at(-1).step === old.at(-1).step;
    this.steps = steps;
    if (unchanged) return;
    if (this.unit >= 0) this.loadHistory();
    const stepNumbers = steps.map((s) => s.step);
    await this.showIndex(followLatest ? steps.length - 1 : nearestIndex(stepNumbers, oldStep));
  }

  /** Shows the i-th logged step (clamped). */
  async showIndex(i) {
    if (!this.steps.length) return;
    this.index = Math.max(0, Math.min(this.steps.length - 1, i));
    this.stepper.update(this.steps, this.index, Boolean(this.playing));
    const step = this.steps[this.index].step;
    const token = (this.drawing = {});
    let data;
    try {
      data = await this.features(step);
    } catch (e) {
      if (token === this.drawing) this.setNotice(`Could not load step ${step}.`, e.message, true);
      return;
    }
    if (token !== this.drawing) return;  // a later request superseded this one
    this.data = data;
    this.redraw();
    this.renderDetail();
  }

  /** Jumps to `step`, or to the nearest logged step with a note saying so. */
  async jumpTo(step) {
    const i = nearestIndex(this.steps.map((s) => s.step), step);
    const actual = this.steps[i]?.step;
    this.stepper.say(actual === undefined || actual === step ? ""
      : `Step ${step} was not logged; showing the nearest, ${actual}.`);
    await this.showIndex(i);
  }

  key(step) {
    return JSON.stringify([this.run, this.tag, step]);
  }

  /** Decoded features of `step` of run/tag, from a small cache of recent steps. */
  features(step) {
    const key = this.key(step);
    let promise = this.cache.get(key);
    if (!promise) {
      promise = fetchFeatures(this.run, this.tag, step);
      promise.catch(() => this.cache.delete(key));
      if (this.cache.size >= CACHE_STEPS) this.cache.delete(this.cache.keys().next().value);
    } else {
      this.cache.delete(key);  // re-insert: most recently used last
    }
    this.cache.set(key, promise);
    return promise;
  }

  /** The weighting the current step is drawn with: the selected one if that step logged it. */
  shownWeighting() {
    return this.data ? weightingOf(this.data, this.weighting) : this.weighting;
  }

  /** Redraws the grid from the current step's data and display options. */
  redraw() {
    if (!this.data) return;
    const {window: L, rollout: R, input_size: D, step} = this.data.header;
    const weighting = this.shownWeighting();
    this.grid.say(weighting === this.weighting ? ""
      : `Step ${step} was logged without the ${this.weighting} weighting; showing ${weighting}.`);
    this.grid.draw(frames(this.data, weighting, this.diff), {L, R, D}, step,
      {scale: this.scale, diverging: this.diff, shared: this.shared, highlight: this.unit});
  }

  onControl(name, value) {
    this.stepper.say("");
    if (name === "run" || name === "tag") {
      this.select(name === "run" ? value : this.run, name === "tag" ? value : this.tag);
      this.loadSteps();
      return;
    }
    this[name] = value;
    if (name === "scale") this.zoomed = true;
    this.redraw();
    this.renderDetail();
  }

  async togglePlay() {
    if (this.playing) {
      this.playing = null;
      this.stepper.update(this.steps, this.index, false);
      return;
    }
    const token = (this.playing = {});
    if (this.index >= this.steps.length - 1) await this.showIndex(0);
    while (this.playing === token && this.index < this.steps.length - 1) {
      const started = performance.now();
      await this.showIndex(this.index + 1);
      if (this.index + 1 < this.steps.length) this.features(this.steps[this.index + 1].step);
      await new Promise((r) => setTimeout(r, Math.max(0, PLAY_MS - (performance.now() - started))));
    }
    if (this.playing === token) {
      this.playing = null;
      this.stepper.update(this.steps, this.index, false);
    }
  }

  hover(unit) {
    if (unit < 0 || !this.data) return this.grid.setReadout("");
    const weighting = this.shownWeighting();
    const s = unitStats(this.data, weighting, unit);
    this.grid.setReadout(s.dead ? `unit ${unit} · dead: ${deadMeaning(weighting)}`
      : `unit ${unit} · active ${pct(s.activeFraction)} · ESS ${pct(s.effectiveSampleSize)}`
        + ` · max signal ${fmt(s.signalMax)} · click for detail`);
  }

  openUnit(unit) {
    this.unit = unit;
    this.history = null;
    this.redraw();
    this.renderDetail();
    this.detail.open();
    this.loadHistory();
  }

  /** Fetches the open unit across all steps, for the detail's filmstrip. */
  async loadHistory() {
    const {run, tag, unit} = this;
    let history;
    try {
      history = await fetchUnit(run, tag, unit);
    } catch (e) {
      history = e;
    }
    if (run !== this.run || tag !== this.tag || unit !== this.unit) return;
    this.history = history;
    this.renderDetail();
  }

  renderDetail() {
    if (this.unit < 0 || !this.data) return;
    this.detail.render({current: this.data, unit: this.unit, history: this.history,
      step: this.data.header.step, weighting: this.shownWeighting(), diff: this.diff, shared: this.shared,
      label: this.label()});
  }

  label() {
    const step = this.steps[this.index]?.step;
    return `${this.run} · ${this.tag} · ${this.shownWeighting()} weighting · step ${step}`;
  }

  /**
   * Shows a message instead of the grid ("" hides it). An `error` keeps the
   * grid visible, so a failed reload does not blank what is already drawn.
   */
  setNotice(title, text = "", error = false) {
    this.notice.replaceChildren(el("strong", {}, title), text ? el("p", {}, text) : "");
    this.notice.hidden = !title;
    this.notice.classList.toggle("error", error);
    const empty = Boolean(title) && !error;
    this.grid.element.hidden = empty;
    this.header.hidden = empty && !this.run;
  }
}

function pollInterval() {
  try {
    return Number(localStorage.getItem("rnn_units.poll_ms")) || POLL_MS;
  } catch {
    return POLL_MS;  // storage blocked
  }
}

/**
 * CSS px per value (1 to 8) at which the near-square grid of a tag's units
 * fits `width` x `height` (less room for the toolbar, gaps and separators).
 */
function fitScale({units, input_size: D, window: L, rollout: R}, width, height) {
  const cols = Math.ceil(Math.sqrt(units));
  const rows = Math.ceil(units / cols);
  const byWidth = ((width || 800) - 32 - 4 * (cols + 1)) / (cols * D);
  const byHeight = ((height || 600) - 140 - 8 * rows) / (rows * (L + R));
  return Math.max(1, Math.min(8, Math.floor(Math.min(byWidth, byHeight))));
}
