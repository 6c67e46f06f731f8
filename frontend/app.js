// The controller. Everything the user selected is one state object, changed
// only through update(patch), which then calls render(). render() draws
// from the state and whatever data has arrived, and starts fetching what it
// found missing; each fetch that lands renders again. Views report user
// actions back here; data flows one way:
//
//   user action -> update(patch) -> render() -> views
//                                      |  fetch what is missing
//                                      +-- data arrives -> render()
//
// Compare mode draws two selections, A (the selected run at compare.step_a)
// and B (compare.run at compare.step_b), in each cell or as B − A, with the
// drift, layer-similarity and class-coverage panel under the grid. A is the
// reference: the unit numbers, the order, the detail are A's; across runs
// each cell shows B's unit matched to A's (/match).

import {annotationCorrelations, changeScores, deadMeaning, defaultWeighting, dominantClass, fetchChange, fetchCoverage,
  fetchDrift, fetchExemplars, fetchProblems, fetchMatch, fetchOrder, fetchSimilarity, fetchSteps, fetchTags, fetchUnit,
  frame, nearestIndex, nearestStep, neverPositive, rowOf, unitStats, weightingOf} from "./model.js";
import {annotationOf, needsOf, orderMaps, ordersOf, unitOrder} from "./order.js";
import {Answers, BLOCK_UNITS, Store, blocksOf} from "./store.js";
import {el, fmt, pct} from "./views/dom.js";
import {CompareBar, changeRows, settledRows, summaryText} from "./views/compare.js";
import {Controls} from "./views/controls.js";
import {DetailView} from "./views/detail.js";
import {GridView} from "./views/grid.js";
import {AnalysisPanel} from "./views/panel.js";
import {PAINTERS, difference, sideBySide} from "./views/painters.js";
import {channelColour, channelName} from "./views/series.js";
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
    // none); order: the unit order's name (order.js); labels: each unit's
    // dominant class written on its cell; compare: null, or compare mode's
    // {run (B's run, the selected one or another on the same probe), step_a
    // (of the selected run), step_b (of B's run), diff (draw B − A)}; the
    // steps are logged ones, null until the run's steps are known.
    this.state = {run: null, tag: null, step: null, weighting: null, diff: false, shared: false,
      scale: 1, zoomed: false, unit: -1, order: "index", labels: true, compare: null};

    // What the server said so far.
    this.tags = null;             // {run: {tag: description}} of the last poll
    this.tagsError = null;        // why the last poll failed, if it did
    this.problems = [];           // [{run, tag, reason}] of unreadable tags (/problems, each poll)
    this.steps = new Map();       // JSON [run, tag] -> [{step, wall_time}] ascending, or an Error
    this.stepsLoading = new Set(); // JSON [run, tag] being fetched
    this.store = new Store({onLoad: () => this.renderSoon()});  // /features blocks
    this.history = null;          // {id: JSON [run, tag, unit], value: decoded /unit answer or Error}
    this.historyKey = null;       // what the latest /unit request was for
    this.answers = new Answers({onLoad: () => this.renderSoon()});  // /change, /drift, ... answers
    // The unit order in use: {key (what it was asked for), name, units
    // (position -> unit, or null: by index), error}; see ensureOrder.
    this.ordering = {key: null, name: "index", units: null, error: null};
    this.resorts = 0;             // explicit re-sorts so far (part of the order's key)

    // What is on screen. The grid keeps showing the previous step of a
    // tag until the units on screen of the selected one have arrived.
    this.drawn = null;            // {sides: [A, B?] (see sides()), header, order (orderMaps)}
    this.playing = null;          // token of the running playback loop
    this.renderQueued = false;

    this.controls = new Controls((name, value) => this.onControl(name, value));
    this.stepper = new Stepper({
      onIndex: (i) => { this.stepper.say(""); this.showIndex(i); },
      onTyped: (step) => this.jumpTo(step),
      onPlay: () => this.togglePlay(),
    });
    this.compareBar = new CompareBar({
      onStepA: (step) => this.setCompareStep("step_a", step),
      onStepB: (step) => this.setCompareStep("step_b", step),
      onRun: (run) => this.setCompareRun(run),
      onDiff: (diff) => this.update({compare: {...this.state.compare, diff}}),
    });
    this.grid = new GridView({
      onPick: (position) => this.drawn && this.update({unit: this.drawn.order.unitAt(position)}),
      onHover: (position) => this.hover(position),
      onScroll: () => this.renderSoon(),
    });
    this.detail = new DetailView({
      onClose: () => this.update({unit: -1}),
      onStep: (step) => (this.state.compare ? this.setCompareStep("step_a", step) : this.jumpTo(step)),
    });
    this.panel = new AnalysisPanel({onPickSteps: (a, b) => this.compareSteps(a, b)});
    this.notice = el("div", {class: "notice", role: "status"});
    // What the cells of a series or tokens grid show (renderKey).
    this.key = el("div", {class: "display-key", hidden: true});
    // Tags that cannot be read while others can (render: problemsNotice).
    this.problemsNote = el("p", {class: "problems-note", role: "status", "data-testid": "problems-note",
      hidden: true});
    this.compareBar.element.hidden = true;
    this.header = el("header", {class: "top"}, this.controls.element, this.stepper.element, this.compareBar.element);
    this.main = el("main", {}, this.problemsNote, this.notice, this.key, this.grid.element, this.panel.element);
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
      const steps = this.steps.get(JSON.stringify([s.run, s.tag]));
      if (s.step === null && steps?.length) s.step = steps.at(-1).step;
      // A weighting the tag logged, or the step shown (or the one shown before) did: e.g. "bottom" on some steps.
      const sameTag = s.run === old.run && s.tag === old.tag;
      if (!this.weightingsAt(s.run, s.tag, s.step, sameTag ? old.step : null).includes(s.weighting)) {
        s.weighting = defaultWeighting(desc.weightings);
      }
      if (s.compare) s.compare = this.consistentCompare(s, old);
      if (!desc.class_names?.length && s.order === "class") s.order = "index";
    }
    const orders = s.run ? ordersOf(this.tags[s.run][s.tag]) : [];
    if (!orders.some(([name]) => name === s.order) || (s.order === "change" && !s.compare)) s.order = "index";
    this.state = s;
    // A manual change of run, tag or step tries failed steps again at once.
    if (s.run !== old.run || s.tag !== old.tag || s.step !== old.step
        || JSON.stringify(s.compare) !== JSON.stringify(old.compare)) this.store.retryNow();
    if ((s.run !== old.run || s.tag !== old.tag) && this.steps.has(JSON.stringify([s.run, s.tag]))) {
      this.loadSteps(s.run, s.tag);  // a selection seen before: its steps may have grown since
    }
    this.render();
  }

  /**
   * Compare settings that fit the state `s` (old: the state before): B's
   * run has the tag (else it is the selected run), another run or tag
   * starts over, and a step not chosen yet is A's first or B's latest.
   */
  consistentCompare(s, old) {
    const c = {...s.compare};
    if (s.run !== old.run || s.tag !== old.tag) {
      Object.assign(c, {run: s.run, step_a: null, step_b: null});
    } else if (!this.tags[c.run]?.[s.tag]) {
      Object.assign(c, {run: s.run, step_b: null});
    }
    const stepsA = this.stepsOf(s.run, s.tag);
    const stepsB = this.stepsOf(c.run, s.tag);
    if (c.step_a === null && stepsA.length) c.step_a = stepsA[0].step;
    if (c.step_b === null && stepsB.length) c.step_b = stepsB.at(-1).step;
    return c;
  }

  /**
   * The weightings of run/tag: those of its description (its latest step)
   * and of the given steps' headers, where loaded, in the order logged.
   */
  weightingsAt(run, tag, ...steps) {
    const headers = steps.filter((step) => step !== null).map((step) => this.store.header(run, tag, step));
    return [...new Set([...this.tags[run][tag].weightings, ...headers.flatMap((h) => h?.weightings ?? [])])];
  }

  /** Shows the i-th logged step (clamped); not in compare mode, where the step control is hidden. */
  showIndex(i) {
    const steps = this.currentSteps();
    if (!steps.length || this.state.compare) return;
    this.update({step: steps[Math.max(0, Math.min(steps.length - 1, i))].step});
  }

  /** Shows `step`, or the nearest logged step with a note saying so. */
  jumpTo(wanted) {
    const steps = this.currentSteps();
    if (!steps.length) return;
    const {step, note} = nearestStep(steps, wanted);
    this.stepper.say(note);
    this.update({step});
  }

  /** Sets compare mode's step A or B ("step_a", "step_b") to `wanted`, or the nearest logged one with a note. */
  setCompareStep(which, wanted) {
    const c = this.state.compare;
    const steps = this.stepsOf(which === "step_a" ? this.state.run : c.run, this.state.tag);
    if (!steps.length) return;
    const {step, note} = nearestStep(steps, wanted);
    this.compareBar.say(note);
    this.update({compare: {...c, [which]: step}});
  }

  /** Compares two steps of the selected run (a click on the similarity map). */
  compareSteps(stepA, stepB) {
    this.compareBar.say("");
    this.update({compare: {...this.state.compare, run: this.state.run, step_a: stepA, step_b: stepB}});
  }

  /** Takes B from `run` (its latest step), unless it was logged on another probe: then says why not. */
  setCompareRun(run) {
    const why = this.whyNotComparable(run);
    this.compareBar.say(why);
    if (why) return this.render();  // the menu goes back to B's run
    this.update({compare: {...this.state.compare, run, step_b: null}});
  }

  /** "" if `run`'s units can be compared with the selected run's (same probe), else why not. */
  whyNotComparable(run) {
    const {run: mine, tag} = this.state;
    if (run === mine) return "";
    const [a, b] = [mine, run].map((r) => this.tags[r]?.[tag]?.probe_fingerprint);
    if (!a || !b) {
      return `Run “${run}” cannot be compared with “${mine}”: ${!b ? "it" : "this run"} was logged without a ` +
        "probe fingerprint (an older format), so nothing says both saw the same windows.";
    }
    if (a === b) return "";
    return `Run “${run}” was logged on another probe (fingerprint ${b}; “${mine}” has ${a}): its units saw ` +
      "other windows, so they cannot be compared. Log both runs with the same Probe.";
  }

  onControl(name, value) {
    this.stepper.say("");
    if (name === "resort") {
      this.resorts++;
      return this.render();
    }
    if (name === "compare") {
      this.playing = null;
      this.compareBar.say("");
      const {run, step} = this.state;
      return this.update({compare: value ? {run, step_a: null, step_b: step, diff: false} : null});
    }
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
      // /problems reads only the tags' metadata: cheap enough for every poll. When it fails the
      // last answer stands (the tags still load).
      const [tags, problems] = await Promise.all([fetchTags(), fetchProblems().catch(() => this.problems)]);
      changed = JSON.stringify(tags) !== JSON.stringify(this.tags) || this.tagsError !== null
        || JSON.stringify(problems) !== JSON.stringify(this.problems);
      this.tags = tags;
      this.problems = problems;
      this.tagsError = null;
    } catch (e) {
      changed = this.tagsError?.message !== e.message;
      this.tagsError = e;
    }
    // Failed steps are fetched again after 1 poll, then 2, 4, ... (store.poll); other answers each poll.
    if (this.store.poll() + this.answers.forgetErrors()) changed = true;
    if (this.history?.value instanceof Error) {
      this.historyKey = null;
      changed = true;
    }
    if (changed) this.update({});
    const {run, tag, compare} = this.state;
    await Promise.all([run && this.loadSteps(run, tag), compare && this.loadSteps(compare.run, tag)]);
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
    if (run !== s.run || tag !== s.tag || !Array.isArray(steps) || !steps.length) return this.update({});
    const numbers = steps.map((x) => x.step);
    const wasLatest = s.step === null || !Array.isArray(old) || s.step === old.at(-1)?.step;
    this.update({step: wasLatest ? numbers.at(-1) : numbers[nearestIndex(numbers, s.step)]});
  }

  /** The logged steps of the selected run/tag ([] while unknown). */
  currentSteps() {
    return this.stepsOf(this.state.run, this.state.tag);
  }

  /** The logged steps of run/tag ([] while unknown or failed). */
  stepsOf(run, tag) {
    const steps = this.steps.get(JSON.stringify([run, tag]));
    return Array.isArray(steps) ? steps : [];
  }

  /**
   * The selections the grid draws: [A] normally, [A, B] in compare mode.
   * Each is {run, tag, step, units}: A's step is compare.step_a in compare
   * mode; `units` is null when the side's unit u is A's unit u, else (B
   * across runs) A's unit -> B's matched unit (-1: none), undefined while
   * /match answers.
   */
  sides() {
    const {run, tag, step, compare: c} = this.state;
    if (!c) return [{run, tag, step, units: null}];
    const b = {run: c.run, tag, step: c.step_b, units: null};
    if (c.run !== run) {
      const match = this.comparison();
      b.units = match instanceof Error ? [] : match?.assignment;
    }
    return [{run, tag, step: c.step_a, units: null}, b];
  }

  /**
   * How to draw `sides` (see sides()) with the units on screen: the step's
   * layout (A's header once any of its blocks arrived, the tag's latest
   * layout until then), its painter (undefined if unknown), the grid layout,
   * the order in use and the blocks [side, block] the cells on screen need.
   */
  plan(sides) {
    const [a, b] = sides;
    const header = this.store.header(a.run, a.tag, a.step) ?? this.tags[a.run][a.tag];
    const painter = PAINTERS[header.display];
    if (!painter) return {header, loads: []};
    const mode = !b ? "single" : this.state.compare.diff ? "diff" : "pair";
    const layout = this.grid.layoutFor(mode === "pair" ? sideBySide(painter) : painter, shapeOf(header),
      header.units, this.scale());
    const order = orderMaps(this.ordering.units, header.units);
    const [first, last] = this.grid.visibleUnits(layout);
    const shown = Array.from({length: last - first}, (_, i) => order.unitAt(first + i));
    const loads = [];
    let waiting = false;  // for a side's step or matching
    for (const side of sides) {
      if (side.step === null || side.units === undefined) {
        waiting = true;
        continue;
      }
      const blocks = new Set(shown.map((u) => (side.units ? side.units[u] ?? -1 : u))
        .filter((u) => u >= 0).map((u) => Math.floor(u / BLOCK_UNITS)));
      if (!this.store.header(side.run, side.tag, side.step)) blocks.add(0);  // block 0 tells the step's layout
      for (const block of blocks) loads.push([side, block]);
    }
    return {header, painter, mode, layout, order, loads, waiting};
  }

  /** Fetches the blocks `step` of the selected run/tag needs on screen; resolves once they are in. */
  prefetch(step) {
    const {run, tag} = this.state;
    return Promise.all(this.plan([{run, tag, step, units: null}]).loads.map(([, b]) => this.store.load(run, tag, step, b)));
  }

  /** Every block of a step; rejects if one fails. */
  async loadStep(run, tag, step) {
    const first = await this.store.load(run, tag, step, 0);
    if (!first) throw this.store.error(run, tag, step, 0) ?? new Error(`could not load step ${step}`);
    const blocks = await Promise.all(blocksOf(0, first.header.units).map((b) => this.store.load(run, tag, step, b)));
    if (!blocks.every(Boolean)) throw new Error(`could not load every unit of step ${step}`);
    return blocks;
  }

  /** [key, fetch] of the comparison of A and B: /change within a run, /match across runs. */
  comparisonRequest() {
    const {run, tag, compare: c} = this.state;
    return c.run === run
      ? [["change", run, tag, c.step_a, c.step_b], () => fetchChange(run, tag, c.step_a, c.step_b)]
      : [["match", run, tag, c.step_a, c.run, c.step_b], () => fetchMatch(run, tag, c.step_a, c.run, c.step_b)];
  }

  /** The /change or /match answer for A and B: a value, an Error, or undefined while it loads or steps are unknown. */
  comparison() {
    const c = this.state.compare;
    if (!c || c.step_a === null || c.step_b === null) return undefined;
    return this.answers.get(...this.comparisonRequest());
  }

  /** A route's answer about the selected run/tag that changes with its steps (drift, similarity). */
  perRun(route, fetch, run = this.state.run, extra = []) {
    const {tag} = this.state;
    const latest = this.stepsOf(run, tag).at(-1)?.step;
    return this.answers.get([route, run, tag, ...extra, latest], () => fetch(run, tag, ...extra));
  }

  /**
   * Starts computing the unit order the state asks for, unless it is the
   * one in use or on its way: when the order, run or tag changes or on a
   * re-sort, never on a step change. It is computed at the step shown (A in
   * compare mode); the previous order stays on screen until it is ready.
   */
  ensureOrder() {
    const s = this.state;
    const key = JSON.stringify([s.run, s.tag, s.order, this.resorts]);
    const step = s.compare ? s.compare.step_a : s.step;
    if (this.ordering.key === key || step === null || (s.order === "change" && !this.comparisonReady())) return;
    const old = this.ordering;
    const same = old.run === s.run && old.tag === s.tag;
    const ordering = {key, run: s.run, tag: s.tag, name: same ? old.name : "index", units: same ? old.units : null,
      error: null};
    this.ordering = ordering;
    this.computeOrder(s.order, {run: s.run, tag: s.tag, step}).then((units) => {
      Object.assign(ordering, {name: s.order, units});
    }, (error) => {
      Object.assign(ordering, {name: "index", units: null, error: `Could not sort by ${s.order}: ${error.message}`});
    }).then(() => this.ordering === ordering && this.renderSoon());
  }

  /** Whether A and B are known (their steps), so a change order can be computed. */
  comparisonReady() {
    const c = this.state.compare;
    return Boolean(c) && c.step_a !== null && c.step_b !== null;
  }

  /** The order `name` of the units of a step (see order.js); a promise. */
  async computeOrder(name, {run, tag, step}) {
    const weighting = this.state.weighting;
    const needs = needsOf(name);
    if (needs === "similarity") return unitOrder(name, {similarity: (await fetchOrder(run, tag, step)).similarity});
    if (needs === "change") {
      const answer = await this.answers.load(...this.comparisonRequest());
      if (answer instanceof Error) throw answer;
      const {scores} = changeScores(answer, weighting);
      return unitOrder(name, {count: scores.length, change: scores});
    }
    if (needs !== "units") return null;
    const blocks = await this.loadStep(run, tag, step);
    const w = weightingOf(blocks[0], weighting);
    const at = (u) => [blocks[Math.floor(u / BLOCK_UNITS)], w, "unit", u % BLOCK_UNITS];
    const annotation = annotationOf(name);
    if (annotation !== null && !blocks[0].arrays.annotation_correlation) {
      throw new Error(`step ${step} has no annotation correlations`);
    }
    return unitOrder(name, {count: blocks[0].header.units, stats: (u) => unitStats(...at(u)),
      dominant: (u) => dominantClass(...at(u)),
      annotation: (u) => annotationCorrelations(blocks[Math.floor(u / BLOCK_UNITS)], "unit", u % BLOCK_UNITS)
        .find((a) => a.name === annotation)?.value ?? NaN});
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
    const [title, list] = s.run && this.problems?.length ? problemsNotice(this.problems, true) : ["", ""];
    this.problemsNote.textContent = title && `${title} ${list}`;
    this.problemsNote.hidden = !title;
    if (!this.tags) {
      if (this.tagsError) this.setNotice("Could not load the runs.", this.tagsError.message, true);
      return;
    }
    if (!s.run) {
      if (this.problems?.length) return this.setNotice(...problemsNotice(this.problems), true);
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
      weightings: this.weightingsAt(s.run, s.tag, s.compare ? s.compare.step_a : s.step), weighting: s.weighting,
      shared: s.shared, diff: s.diff, labels: s.labels, hasLabels: Boolean(desc.class_names?.length),
      scale: this.scale(), orders: ordersOf(desc), order: s.order, compare: Boolean(s.compare),
    });
    if (steps instanceof Error) {
      return this.setNotice(`Could not load the steps of ${s.run} / ${s.tag}.`, steps.message, true);
    }
    if (!steps.length) return this.setNotice("No steps logged yet for this tag.");
    const index = steps.findIndex((x) => x.step === s.step);
    this.stepper.update(steps, Math.max(0, index), Boolean(this.playing));
    this.stepper.element.hidden = Boolean(s.compare);
    this.compareBar.element.hidden = this.panel.element.hidden = !s.compare;
    if (s.compare) this.renderCompareBar();
    this.ensureOrder();
    const problem = this.renderGrid();
    this.renderDetail();
    if (s.compare) this.renderPanel();
    if (problem) this.setNotice(...problem);
  }

  /** CSS px per value of the grid: the user's zoom, or what fits the selected tag's units on screen. */
  scale() {
    const s = this.state;
    if (s.zoomed) return s.scale;
    const {clientWidth, clientHeight} = this.grid.scroller;  // 0 while hidden
    const desc = this.tags[s.run][s.tag];
    const fit = desc.display === "image_rows" || !PAINTERS[desc.display] ? fitScale : fitCells;
    return fit(desc, clientWidth || window.innerWidth - 48, clientHeight || window.innerHeight - 140,
      s.compare && !s.compare.diff ? 2 : 1);
  }

  /** Draws the grid; returns [title, text, error] for a notice when it cannot show the selected step. */
  renderGrid() {
    const s = this.state;
    const wanted = this.sides();
    let plan = this.plan(wanted);
    if (!plan.painter) {
      this.drawn = null;
      this.renderKey(null);
      this.grid.unset();
      this.grid.setCaption(`${s.run} · ${s.tag}`);
      return [`This tag's display “${plan.header.display}” cannot be drawn by this version of the RNN Units tab.`,
        `It draws ${Object.keys(PAINTERS).join(", ")}; a newer tensorboard-rnn-units may draw this one.`];
    }
    const load = ([side, b]) => this.store.load(side.run, side.tag, side.step, b);
    const loaded = ([side, b]) => this.store.get(side.run, side.tag, side.step, b);
    plan.loads.forEach(load);
    const ready = !plan.waiting && plan.loads.every(loaded);
    const failed = plan.loads.map(([side, b]) => this.store.error(side.run, side.tag, side.step, b)).find(Boolean);

    // Keep the step drawn until the selected one is ready, unless it failed (then its cells are
    // placeholders, greyed) or another run or tag was selected (outside compare mode: there, cells
    // load as placeholders).
    const old = this.drawn?.sides;
    const keepOld = !ready && !failed && old?.length === 1 && wanted.length === 1 && old[0].run === s.run
      && old[0].tag === s.tag && old[0].step !== s.step;
    const sides = keepOld ? old : wanted;
    if (keepOld) plan = this.plan(sides);
    if (!plan.painter) return null;
    const {header, mode, layout, order} = plan;
    this.drawn = {sides, header, order};
    this.renderKey(header, mode === "diff" || s.diff);

    const [a, b] = sides;
    const match = b?.units ? this.comparison() : null;
    const poor = (u) => match?.similarity && !(match.similarity[u] >= match.threshold);
    const frameAt = (position) => {
      const u = order.unitAt(position);
      const fa = this.frameOf(a, u, header);
      if (!b) return fa ?? null;
      const fb = this.frameOf(b, b.units ? b.units[u] ?? -1 : u, header);
      if (!fa || fb === undefined) return null;  // loading
      return mode === "diff" ? {...difference(fa, fb), poorMatch: poor(u)} : {a: fa, b: fb, poorMatch: poor(u)};
    };
    const notes = sides.map((side, k) => {
      const logged = weightingOf({header: this.store.header(side.run, side.tag, side.step) ?? header}, s.weighting);
      return logged === s.weighting || side.step === null ? ""
        : `Step ${side.step}${b ? ` (${"AB"[k]})` : ""} was logged without the ${s.weighting} weighting; showing ${logged}.`;
    });
    this.grid.say([...notes, this.ordering.error ?? ""].filter(Boolean).join(" "));
    // What is drawn, in words: a grid left from another run or step cannot pass for the selected one.
    const where = b ? `A: step ${a.step} · B: ${b.run === a.run ? "" : `${b.run}, `}step ${b.step}` : `step ${a.step}`;
    this.grid.setCaption(`${a.run} · ${a.tag} · ${where}` +
      (keepOld ? ` (loading step ${s.step}…)` : failed ? " — could not be loaded" : ""));
    // data-step: the step shown (A's in compare mode), once any of its units are (cells still
    // loading are placeholders); data-step-a/-b and data-compare-run once every cell on screen is drawn.
    const known = keepOld || this.store.header(a.run, a.tag, a.step);
    const drawnPair = (value) => (b && ready ? value : null);
    this.grid.draw(layout, {display: header.display, step: known ? a.step : null, frameAt,
      diverging: s.diff || mode === "diff", shared: s.shared, highlight: order.positionOf(s.unit),
      data: {order: order.valid ? this.ordering.name : "index", compare: b ? mode : null,
        stepA: drawnPair(a.step), stepB: drawnPair(b?.step), compareRun: drawnPair(b?.run)},
      what: mode === "diff" ? "B − A" : s.diff ? "difference from the probe mean" : "",
      poorMatches: Boolean(b?.units), unit: mode === "pair" ? "pair" : "cell", failed: Boolean(failed)});
    if (match instanceof Error) return ["Could not match the units of the two runs.", match.message, true];
    return failed ? [`Could not load step ${b ? `${a.step} or ${b.step}` : s.step}.`, failed.message, true] : null;
  }

  /**
   * The frame of `unit` in a drawn side: undefined while it loads, null
   * when the side has no such unit (or another layout than `header`'s), with
   * its dominant class as `label` when class labels are on, or "≤0" when its
   * weights are zero because its signal is never positive.
   */
  frameOf(side, unit, header) {
    if (side.step === null || side.units === undefined) return undefined;
    const known = this.store.header(side.run, side.tag, side.step);
    if (unit < 0 || (known && (unit >= known.units || !sameShape(known, header)))) return null;
    const block = this.store.get(side.run, side.tag, side.step, Math.floor(unit / BLOCK_UNITS));
    const row = block ? rowOf(block, unit) : -1;
    if (row < 0) return undefined;
    const weighting = weightingOf(block, this.state.weighting);
    if (!block.arrays[`${weighting}/average`]) return null;
    const f = frame(block, weighting, "unit", row, this.state.diff);
    const dominant = this.state.labels && !f.dead && dominantClass(block, weighting, "unit", row);
    if (dominant) f.label = block.header.class_names?.[dominant.index] ?? String(dominant.index);
    // Not dead: its signal is never positive (the bottom weighting shows it).
    if (f.dead && neverPositive(unitStats(block, weighting, "unit", row), weighting)) f.label = "≤0";
    return f;
  }

  renderDetail() {
    const {unit, run, tag, diff, shared} = this.state;
    const drawn = this.drawn?.sides[0].run === run && this.drawn.sides[0].tag === tag ? this.drawn : null;
    if (unit < 0 || !drawn) {
      if (this.detail.element.open) this.detail.element.close();  // its close event sets unit -1
      return;
    }
    const {sides: [{step}, b], header} = drawn;
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
    const weighting = weightingOf(current ?? {header}, this.state.weighting);
    this.loadHistory();
    const id = JSON.stringify([run, tag, unit]);
    let label = `${run} · ${tag} · ${weighting} weighting · step ${step}`;
    const compared = {};
    if (b) {
      const partnerUnit = b.units ? b.units[unit] ?? -1 : unit;
      const where = `${b.run === run ? "" : `run ${b.run}, unit ${partnerUnit}, `}step ${b.step}`;
      label += ` (A) compared with ${where} (B)`;
      if (partnerUnit >= 0 && b.step !== null) this.store.load(b.run, b.tag, b.step, Math.floor(partnerUnit / BLOCK_UNITS));
      compared.partner = this.frameOf(b, partnerUnit, header) ?? null;
      compared.caption = `left: A, step ${step}; right: B, ${where}`;
    }
    this.detail.render({current, unit, missing, history: this.history?.id === id ? this.history.value : null,
      step, weighting, diff, shared, label, ...compared,
      exemplars: this.exemplarsOf(current, {run, tag, step, unit, weighting}),
      change: b ? [...this.changeRows(unit), ...settledRows(this.perRun("drift", fetchDrift), unit)] : []});
    this.detail.open();
  }

  /**
   * The /exemplars answer of `unit` at `step` (undefined while it loads, an
   * Error), or null when the step logged no exemplars (older logs): not asked.
   */
  exemplarsOf(current, {run, tag, step, unit, weighting}) {
    if (!current) return undefined;
    if (!current.arrays[`${weighting}/exemplar_sequence`]) return null;
    return this.answers.get(["exemplars", run, tag, step, unit, weighting],
      () => fetchExemplars(run, tag, step, unit, weighting));
  }

  hover(position) {
    if (position < 0 || !this.drawn) return this.grid.setReadout("");
    const {sides: [{run, tag, step}, b], order} = this.drawn;
    const unit = order.unitAt(position);
    const block = this.store.get(run, tag, step, Math.floor(unit / BLOCK_UNITS));
    const row = block ? rowOf(block, unit) : -1;
    if (row < 0) return this.grid.setReadout(`unit ${unit} · loading…`);
    if (b) {
      const rows = this.changeRows(unit).map(([name, text]) => `${name.toLowerCase()}: ${text}`);
      return this.grid.setReadout(`unit ${unit} · ${rows.join(" · ")} · click for detail`);
    }
    const weighting = weightingOf(block, this.state.weighting);
    const s = unitStats(block, weighting, "unit", row);
    const tracks = annotationCorrelations(block, "unit", row).filter((a) => Number.isFinite(a.value))
      .sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 2)
      .map((a) => ` · ${a.name} ${a.value < 0 ? "−" : ""}${Math.abs(a.value).toFixed(2)}`).join("");
    this.grid.setReadout(neverPositive(s, weighting) ? `unit ${unit} · never positive (max signal ${fmt(s.signalMax)})`
        + `${tracks} · click for detail`
      : s.dead ? `unit ${unit} · dead: ${deadMeaning(weighting)}`
      : `unit ${unit} · active ${pct(s.activeFraction)} · ESS ${pct(s.effectiveSampleSize)}`
        + ` · max signal ${fmt(s.signalMax)}${tracks} · click for detail`);
  }

  // ---- Compare mode ----

  renderCompareBar() {
    const {run, tag, compare} = this.state;
    const runs = Object.keys(this.tags).sort().filter((r) => r !== run && this.tags[r][tag])
      .map((r) => ({run: r, comparable: !this.whyNotComparable(r)}));
    if (!this.steps.has(JSON.stringify([compare.run, tag]))) this.loadSteps(compare.run, tag);
    this.compareBar.update({thisRun: run, runs, compare, summary: this.compareSummary()});
  }

  /** The summary line of the comparison (see compare.summaryText). */
  compareSummary() {
    const {run, tag, weighting, compare: c} = this.state;
    const stepsB = this.steps.get(JSON.stringify([c.run, tag]));
    if (stepsB instanceof Error) return `Could not load the steps of run ${c.run}: ${stepsB.message}`;
    const answer = this.comparison();
    if (!answer) return "Comparing…";
    if (answer instanceof Error) return `Could not compare: ${answer.message}`;
    return summaryText(answer, {runs: [run, c.run], weighting});
  }

  /** [[name, text]] of how `unit` changed from A to B, for the detail and the readout. */
  changeRows(unit) {
    const {run, weighting, compare: c} = this.state;
    return changeRows(this.comparison(), unit, {sameRun: c.run === run, weighting});
  }

  /** The panel under the grid: drift, layer similarity and class coverage, of the selected run (and B's). */
  renderPanel() {
    const {run, tag, weighting, compare: c} = this.state;
    const drift = this.perRun("drift", fetchDrift);
    const order = orderMaps(this.ordering.units, drift?.header?.units ?? 0);
    const coverageOf = (r) => this.perRun("coverage", fetchCoverage, r, [weighting]);
    this.panel.render({
      drift,
      similarity: this.perRun("similarity", fetchSimilarity),
      order, orderName: order.valid ? this.ordering.name : "index",
      coverage: this.tags[run][tag].class_names?.length ? [
        {label: `A: step ${c.step_a}`, step: c.step_a, answer: coverageOf(run)},
        {label: `B: ${c.run === run ? "" : `${c.run}, `}step ${c.step_b}`, step: c.step_b, answer: coverageOf(c.run)},
      ] : null,
    });
  }

  /**
   * The key of what a grid of charts or text shows, above it (its colour
   * legend says little there): the channels of a series, how to read the
   * text of tokens. `header`: the layout drawn (null: none).
   */
  renderKey(header, diff = false) {
    const display = header?.display;
    this.key.hidden = display !== "series" && display !== "tokens";
    this.main.dataset.display = display ?? "";
    if (this.key.hidden) return;
    const id = JSON.stringify([display, header.channel_names, header.input_size, diff]);
    if (this.key.dataset.id === id) return;
    this.key.dataset.id = id;
    if (display === "series") {
      const D = header.input_size;
      this.key.replaceChildren(...Array.from({length: Math.min(D, 24)}, (_, c) => {
        const swatch = el("span", {class: "swatch"});
        swatch.style.background = channelColour(c);
        return el("span", {class: "series-key"}, swatch, channelName(header.channel_names, c));
      }), D > 24 ? el("span", {class: "series-key"}, `and ${D - 24} more`) : "",
      el("span", {class: "key-note"}, diff ? "each cell: the unit's average minus the probe's mean (0: the grey line)"
        : "each cell: the unit's average window, then its rollout (shaded); faint dashed: the probe's mean"));
    } else {
      this.key.replaceChildren(el("span", {class: "key-note"}, diff
        ? "each cell: the token most over-represented at each position of the unit's window (first line) and of its " +
          "rollout (→, second line), highlighted by how much more likely than in the probe it is"
        : "each cell: the most likely token at each position of the unit's window (first line) and of its rollout " +
          "(→, second line: what its state predicts next), highlighted by its probability"));
    }
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

/**
 * [title, text] of the notice for a logdir with rnn_units tags that cannot be
 * read: its only ones, or (`some`) beside readable ones.
 */
function problemsNotice(problems, some = false) {
  const newer = problems.some((p) => /newer than this tensorboard_rnn_units/.test(p.reason));
  const what = some ? "Some runs here were" : "This logdir was";
  const title = newer
    ? `${what} written by a newer tensorboard-rnn-units: upgrade the package (pip install -U tensorboard-rnn-units).`
    : some ? "Some RNN unit data here cannot be read:" : "This logdir has RNN unit data that cannot be read.";
  const list = problems.slice(0, 5).map((p) => `${p.run} / ${p.tag}: ${p.reason}`).join(" · ");
  return [title, list + (problems.length > 5 ? ` · and ${problems.length - 5} more` : "")];
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

/** {L, R, D, vocab, channels} of a description: what painters draw from (see painters.js). */
function shapeOf({window: L, rollout: R, input_size: D, vocab = null, channel_names: channels = null}) {
  return {L, R, D, vocab, channels};
}

/** Whether two descriptions have the same window, rollout and input size (A and B draw alike). */
function sameShape(x, y) {
  return x.window === y.window && x.rollout === y.rollout && x.input_size === y.input_size;
}

/**
 * CSS px per value (1 to 8) at which the near-square grid of a tag's units
 * fits `width` x `height` CSS px (less 4 px gaps and 3 px separators), but
 * no less than makes a cell MIN_CELL_PX long: a big layer scrolls rather
 * than shrink to specks. `across` pictures side by side in a cell (2 for
 * compare mode's A | B).
 */
function fitScale({units, input_size: inputs, window: L, rollout: R}, width, height, across = 1) {
  const D = across * inputs;
  const cols = Math.ceil(Math.sqrt(units));
  const rows = Math.ceil(units / cols);
  const byWidth = (width - 4 * (cols + 1)) / (cols * D);
  const byHeight = (height - 4 * (rows + 1) - 3 * rows) / (rows * (L + R));
  const legible = Math.ceil(MIN_CELL_PX / Math.max(1, D, L + R));
  return Math.max(1, Math.min(8, Math.max(legible, Math.floor(Math.min(byWidth, byHeight)))));
}

/**
 * The zoom (1 to 8) of the displays whose cells are charts or text (series,
 * tokens): the largest at which the near-square grid of `painter`'s cells
 * fits `width` x `height` CSS px; 1 (still legible: cells scroll) when none does.
 */
function fitCells(desc, width, height, across = 1) {
  const painter = PAINTERS[desc.display];
  const cols = Math.ceil(Math.sqrt(desc.units));
  const rows = Math.ceil(desc.units / cols);
  for (let s = 8; s > 1; s--) {
    const {w, h} = painter.cellSize(shapeOf(desc), s);
    if (cols * (across * w + 2 * (across - 1) + 4) + 4 <= width && rows * (h + 4) + 4 <= height) return s;
  }
  return 1;
}
