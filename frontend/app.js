// The controller. Everything the user selected is one state object, changed
// only through update(patch), which then calls render(). render() draws
// from the state and whatever data has arrived, and starts fetching what it
// found missing; each fetch that lands renders again. Views report user
// actions back here; data flows one way:
//
//   user action -> update(patch) -> render() -> views
//                                      |  fetch what is missing
//                                      +-- data arrives -> render()

import {deadMeaning, defaultWeighting, fetchSteps, fetchTags, fetchUnit, frame, nearestIndex, rowOf,
  unitStats, weightingOf} from "./model.js";
import {BLOCK_UNITS, Store, blocksOf} from "./store.js";
import {el, fmt, pct} from "./views/dom.js";
import {Controls} from "./views/controls.js";
import {DetailView} from "./views/detail.js";
import {GridView} from "./views/grid.js";
import {PAINTERS} from "./views/painters.js";
import {Stepper} from "./views/stepper.js";

// How often to look for new runs, tags and steps, like TensorBoard's reload.
// localStorage "rnn_units.poll_ms" overrides it (the browser tests use 1000).
const POLL_MS = 15000;
const PLAY_MS = 200;      // at most one step per PLAY_MS while playing
const MIN_CELL_PX = 24;   // a fitted grid's cells are at least this long; more units scroll

export class App {
  constructor(root) {
    // What the user selected. step: a logged step number (null: the latest,
    // once the steps are known); weighting: the one selected (a step that
    // lacks it is drawn with its own default); diff, shared: display
    // options; scale: CSS px per value the user zoomed to, used once zoomed
    // is true (until then the grid fits the space on screen); unit: the unit open in the detail (-1:
    // none); compare: room for a second selection {run, tag, step} to
    // compare with (A/B), null until that exists. The store and the loaders
    // below take a selection, so they serve it as they serve the main one.
    this.state = {run: null, tag: null, step: null, weighting: null, diff: false, shared: false,
      scale: 1, zoomed: false, unit: -1, compare: null};

    // What the server said so far.
    this.tags = null;             // {run: {tag: description}} of the last poll
    this.tagsError = null;        // why the last poll failed, if it did
    this.steps = new Map();       // JSON [run, tag] -> [{step, wall_time}] ascending, or an Error
    this.stepsLoading = new Set(); // JSON [run, tag] being fetched
    this.store = new Store({onLoad: () => this.renderSoon()});  // /features blocks
    this.history = null;          // {id: JSON [run, tag, unit], value: decoded /unit answer or Error}
    this.historyKey = null;       // what the latest /unit request was for

    // What is on screen. The grid keeps showing the previous step of a
    // tag until the units on screen of the selected one have arrived.
    this.drawn = null;            // {selection: {run, tag, step}, header, weighting}
    this.playing = null;          // token of the running playback loop
    this.renderQueued = false;

    this.controls = new Controls((name, value) => this.onControl(name, value));
    this.stepper = new Stepper({
      onIndex: (i) => { this.stepper.say(""); this.showIndex(i); },
      onTyped: (step) => this.jumpTo(step),
      onPlay: () => this.togglePlay(),
    });
    this.grid = new GridView({
      onPick: (unit) => this.update({unit}),
      onHover: (unit) => this.hover(unit),
      onScroll: () => this.renderSoon(),
    });
    this.detail = new DetailView({
      onClose: () => this.update({unit: -1}),
      onStep: (step) => this.jumpTo(step),
    });
    this.notice = el("div", {class: "notice", role: "status"});
    this.header = el("header", {class: "top"}, this.controls.element, this.stepper.element);
    this.main = el("main", {}, this.notice, this.grid.element);
    root.append(this.header, this.main, this.detail.element);
    this.setNotice("Loading…");
    window.addEventListener("resize", () => this.renderSoon());  // refits the grid unless zoomed
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

  // ---- State ----

  /**
   * The one way to change the state: merges `patch`, makes the result
   * consistent with what the server has (a run and tag that exist, a
   * weighting the tag logged, a logged step) and renders.
   */
  update(patch) {
    const old = this.state;
    const s = {...old, ...patch};
    const runs = Object.keys(this.tags ?? {}).sort();
    if (!runs.length) {
      s.run = s.tag = null;
    } else {
      if (!runs.includes(s.run)) s.run = runs[0];
      const tags = Object.keys(this.tags[s.run]).sort();
      if (!tags.includes(s.tag)) s.tag = tags[0];
      if (s.run !== old.run || s.tag !== old.tag) {
        // Another selection: its latest step, nothing open.
        if (!("step" in patch)) s.step = null;
        if (!("unit" in patch)) s.unit = -1;
      }
      const desc = this.tags[s.run][s.tag];
      if (!desc.weightings.includes(s.weighting)) s.weighting = defaultWeighting(desc.weightings);
      const steps = this.steps.get(JSON.stringify([s.run, s.tag]));
      if (s.step === null && steps?.length) s.step = steps.at(-1).step;
    }
    this.state = s;
    if ((s.run !== old.run || s.tag !== old.tag) && this.steps.has(JSON.stringify([s.run, s.tag]))) {
      this.loadSteps(s.run, s.tag);  // a selection seen before: its steps may have grown since
    }
    this.render();
  }

  /** Shows the i-th logged step (clamped). */
  showIndex(i) {
    const steps = this.currentSteps();
    if (!steps.length) return;
    this.update({step: steps[Math.max(0, Math.min(steps.length - 1, i))].step});
  }

  /** Shows `step`, or the nearest logged step with a note saying so. */
  jumpTo(step) {
    const steps = this.currentSteps();
    if (!steps.length) return;
    const actual = steps[nearestIndex(steps.map((s) => s.step), step)].step;
    this.stepper.say(actual === step ? "" : `Step ${step} was not logged; showing the nearest, ${actual}.`);
    this.update({step: actual});
  }

  onControl(name, value) {
    this.stepper.say("");
    this.update(name === "scale" ? {scale: value, zoomed: true} : {[name]: value});
  }

  async togglePlay() {
    if (this.playing) {
      this.playing = null;
      this.render();
      return;
    }
    const token = (this.playing = {});
    const steps = this.currentSteps();
    if (steps.at(-1)?.step === this.state.step) {
      await this.prefetch(steps[0].step);
      this.update({step: steps[0].step});
    }
    for (;;) {
      const steps = this.currentSteps();
      const i = steps.findIndex((s) => s.step === this.state.step);
      if (this.playing !== token || i < 0 || i >= steps.length - 1) break;
      const started = performance.now();
      await this.prefetch(steps[i + 1].step);
      if (this.playing !== token) break;
      this.update({step: steps[i + 1].step});
      if (i + 2 < steps.length) this.prefetch(steps[i + 2].step);
      await new Promise((r) => setTimeout(r, Math.max(0, PLAY_MS - (performance.now() - started))));
    }
    if (this.playing === token) {
      this.playing = null;
      this.render();
    }
  }

  // ---- Data ----

  /** Re-reads runs, tags and steps; new steps appear without a page refresh. */
  async reload() {
    let changed = false;
    try {
      const tags = await fetchTags();
      changed = JSON.stringify(tags) !== JSON.stringify(this.tags) || this.tagsError !== null;
      this.tags = tags;
      this.tagsError = null;
    } catch (e) {
      changed = this.tagsError?.message !== e.message;
      this.tagsError = e;
    }
    // Failed fetches are tried again once a poll.
    if (this.store.forgetErrors()) changed = true;
    if (this.history?.value instanceof Error) {
      this.historyKey = null;
      changed = true;
    }
    if (changed) this.update({});
    const {run, tag, compare} = this.state;
    await Promise.all([run && this.loadSteps(run, tag), compare && this.loadSteps(compare.run, compare.tag)]);
  }

  /** Fetches the steps of run/tag; when they changed, the selection follows its latest step if it showed it. */
  async loadSteps(run, tag) {
    const key = JSON.stringify([run, tag]);
    if (this.stepsLoading.has(key)) return;
    this.stepsLoading.add(key);
    let steps;
    try {
      steps = await fetchSteps(run, tag);
    } catch (e) {
      steps = e;
    } finally {
      this.stepsLoading.delete(key);
    }
    const old = this.steps.get(key);
    this.steps.set(key, steps);
    if (sameSteps(old, steps)) return;
    const s = this.state;
    if (run !== s.run || tag !== s.tag || !Array.isArray(steps) || !steps.length) return this.render();
    const numbers = steps.map((x) => x.step);
    const wasLatest = s.step === null || !Array.isArray(old) || s.step === old.at(-1)?.step;
    this.update({step: wasLatest ? numbers.at(-1) : numbers[nearestIndex(numbers, s.step)]});
  }

  /** The logged steps of the selected run/tag ([] while unknown). */
  currentSteps() {
    const steps = this.steps.get(JSON.stringify([this.state.run, this.state.tag]));
    return Array.isArray(steps) ? steps : [];
  }

  /**
   * What the grid needs to draw a selection {run, tag, step}: the step's
   * layout (its header once any of its blocks arrived, the tag's latest
   * layout until then), the painter of its display (undefined if unknown),
   * the grid layout and the blocks holding the units on screen.
   */
  need({run, tag, step}) {
    const known = this.store.header(run, tag, step);
    const header = known ?? this.tags[run][tag];
    const painter = PAINTERS[header.display];
    if (!painter) return {header, blocks: []};
    const layout = this.grid.layoutFor(painter, shapeOf(header), header.units, this.scale());
    const blocks = blocksOf(...this.grid.visibleUnits(layout));
    if (!known && !blocks.includes(0)) blocks.push(0);  // every step has block 0: it tells the step's layout
    return {header, painter, layout, blocks};
  }

  /** Fetches the blocks `step` of the selected run/tag needs on screen; resolves once they are in. */
  prefetch(step) {
    const {run, tag} = this.state;
    return Promise.all(this.need({run, tag, step}).blocks.map((b) => this.store.load(run, tag, step, b)));
  }

  /** Fetches the open unit across all steps, for the detail's filmstrip (again when the steps change). */
  loadHistory() {
    const {run, tag, unit} = this.state;
    const steps = this.currentSteps();
    const key = JSON.stringify([run, tag, unit, steps.length, steps.at(-1)?.step]);
    if (key === this.historyKey) return;
    this.historyKey = key;
    const id = JSON.stringify([run, tag, unit]);
    if (this.history?.id !== id) this.history = null;
    fetchUnit(run, tag, unit).catch((e) => e).then((value) => {
      if (this.historyKey !== key) return;
      this.history = {id, value};
      this.renderSoon();
    });
  }

  // ---- Rendering ----

  /** Renders once before the next frame (data arrivals and scrolling come in bursts). */
  renderSoon() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  render() {
    const s = this.state;
    if (s.unit < 0 && this.detail.element.open) this.detail.element.close();
    if (!this.tags) {
      if (this.tagsError) this.setNotice("Could not load the runs.", this.tagsError.message, true);
      return;
    }
    if (!s.run) {
      return this.setNotice("No RNN unit data was found.",
        "Log some during training with tensorboard_rnn_units.add_rnn_units(writer, tag, rnn, probe, " +
        "global_step=step); this page looks for new data every few seconds.");
    }
    const steps = this.steps.get(JSON.stringify([s.run, s.tag]));
    if (steps === undefined) return void this.loadSteps(s.run, s.tag);  // renders when they arrive
    if (!(steps instanceof Error) && steps.length) {
      // The grid is shown before it is laid out, so that it fits the space it gets.
      this.setNotice(this.tagsError ? "Could not reload the runs." : "", this.tagsError?.message, true);
    }
    const desc = this.tags[s.run][s.tag];
    this.controls.update({
      runs: Object.keys(this.tags).sort(), run: s.run, tags: Object.keys(this.tags[s.run]).sort(), tag: s.tag,
      weightings: desc.weightings, weighting: s.weighting, shared: s.shared, diff: s.diff, scale: this.scale(),
    });
    if (steps instanceof Error) {
      return this.setNotice(`Could not load the steps of ${s.run} / ${s.tag}.`, steps.message, true);
    }
    if (!steps.length) return this.setNotice("No steps logged yet for this tag.");
    const index = steps.findIndex((x) => x.step === s.step);
    this.stepper.update(steps, Math.max(0, index), Boolean(this.playing));
    const problem = this.renderGrid();
    this.renderDetail();
    if (problem) this.setNotice(...problem);
  }

  /** CSS px per value of the grid: the user's zoom, or what fits the selected tag's units on screen. */
  scale() {
    const s = this.state;
    if (s.zoomed) return s.scale;
    const {clientWidth, clientHeight} = this.grid.scroller;  // 0 while hidden
    return fitScale(this.tags[s.run][s.tag], clientWidth || window.innerWidth - 48,
      clientHeight || window.innerHeight - 140);
  }

  /** Draws the grid; returns [title, text, error] for a notice when it cannot show the selected step. */
  renderGrid() {
    const s = this.state;
    const wanted = {run: s.run, tag: s.tag, step: s.step};
    const need = this.need(wanted);
    if (!need.painter) {
      this.drawn = null;
      this.grid.unset();
      return [`This tag's display “${need.header.display}” cannot be drawn by this version of the RNN Units tab.`,
        `It draws ${Object.keys(PAINTERS).join(", ")}; a newer tensorboard-rnn-units may draw this one.`];
    }
    need.blocks.forEach((b) => this.store.load(s.run, s.tag, s.step, b));
    const ready = need.blocks.every((b) => this.store.get(s.run, s.tag, s.step, b));
    const failed = need.blocks.map((b) => this.store.error(s.run, s.tag, s.step, b)).find(Boolean);

    // Keep the step drawn until the selected one is ready, unless another run or tag was selected.
    const old = this.drawn?.selection;
    const keepOld = !ready && old && old.run === s.run && old.tag === s.tag && old.step !== s.step;
    const shown = keepOld ? old : wanted;
    const view = keepOld ? this.need(old) : need;
    if (!view.painter) return null;
    const {header, layout} = view;
    const sample = this.store.get(shown.run, shown.tag, shown.step, view.blocks[0]);
    const weighting = weightingOf(sample ?? {header}, s.weighting);
    this.drawn = {selection: shown, header, weighting};

    const frameAt = (unit) => {
      const block = this.store.get(shown.run, shown.tag, shown.step, Math.floor(unit / BLOCK_UNITS));
      const row = block ? rowOf(block, unit) : -1;
      return row >= 0 && block.arrays[`${weighting}/average`] ? frame(block, weighting, "unit", row, s.diff) : null;
    };
    this.grid.say(weighting === s.weighting ? ""
      : `Step ${shown.step} was logged without the ${s.weighting} weighting; showing ${weighting}.`);
    // data-step: the step shown, once any of its units are (cells still loading are placeholders).
    const known = keepOld || this.store.header(shown.run, shown.tag, shown.step);
    this.grid.draw(layout, {display: header.display, step: known ? shown.step : null, frameAt,
      diverging: s.diff, shared: s.shared, highlight: s.unit});
    return failed ? [`Could not load step ${s.step}.`, failed.message, true] : null;
  }

  renderDetail() {
    const {unit, run, tag, diff, shared} = this.state;
    const drawn = this.drawn?.selection.run === run && this.drawn.selection.tag === tag ? this.drawn : null;
    if (unit < 0 || !drawn) {
      if (this.detail.element.open) this.detail.element.close();  // its close event sets unit -1
      return;
    }
    const {selection: {step}, header, weighting} = drawn;
    let current = null;
    let missing = "loading…";
    if (unit >= header.units) {
      missing = `not logged at step ${step}, which has ${header.units} units`;
    } else {
      const block = Math.floor(unit / BLOCK_UNITS);
      current = this.store.get(run, tag, step, block) ?? null;
      if (!current) {
        this.store.load(run, tag, step, block);
        missing = this.store.error(run, tag, step, block)?.message ?? missing;
      }
    }
    this.loadHistory();
    const id = JSON.stringify([run, tag, unit]);
    this.detail.render({current, unit, missing, history: this.history?.id === id ? this.history.value : null,
      step, weighting, diff, shared, label: `${run} · ${tag} · ${weighting} weighting · step ${step}`});
    this.detail.open();
  }

  hover(unit) {
    if (unit < 0 || !this.drawn) return this.grid.setReadout("");
    const {selection: {run, tag, step}, weighting} = this.drawn;
    const block = this.store.get(run, tag, step, Math.floor(unit / BLOCK_UNITS));
    const row = block ? rowOf(block, unit) : -1;
    if (row < 0) return this.grid.setReadout(`unit ${unit} · loading…`);
    const s = unitStats(block, weighting, "unit", row);
    this.grid.setReadout(s.dead ? `unit ${unit} · dead: ${deadMeaning(weighting)}`
      : `unit ${unit} · active ${pct(s.activeFraction)} · ESS ${pct(s.effectiveSampleSize)}`
        + ` · max signal ${fmt(s.signalMax)} · click for detail`);
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
    this.header.hidden = empty && !this.state.run;
  }
}

function pollInterval() {
  try {
    return Number(localStorage.getItem("rnn_units.poll_ms")) || POLL_MS;
  } catch {
    return POLL_MS;  // storage blocked
  }
}

/** Whether two answers of /steps (or Errors) show the same. */
function sameSteps(a, b) {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.at(-1)?.step === b.at(-1)?.step;
  return a instanceof Error && b instanceof Error && a.message === b.message;
}

/** {L, R, D} of a description. */
function shapeOf({window: L, rollout: R, input_size: D}) {
  return {L, R, D};
}

/**
 * CSS px per value (1 to 8) at which the near-square grid of a tag's units
 * fits `width` x `height` CSS px (less 4 px gaps and 3 px separators), but
 * no less than makes a cell MIN_CELL_PX long: a big layer scrolls rather
 * than shrink to specks.
 */
function fitScale({units, input_size: D, window: L, rollout: R}, width, height) {
  const cols = Math.ceil(Math.sqrt(units));
  const rows = Math.ceil(units / cols);
  const byWidth = (width - 4 * (cols + 1)) / (cols * D);
  const byHeight = (height - 4 * (rows + 1) - 3 * rows) / (rows * (L + R));
  const legible = Math.ceil(MIN_CELL_PX / Math.max(1, D, L + R));
  return Math.max(1, Math.min(8, Math.max(legible, Math.floor(Math.min(byWidth, byHeight)))));
}
