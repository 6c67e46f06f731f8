// The unit detail: a large picture of one unit at the current step (image
// rows; a chart with axes and channel names for series; a sequence logo and
// the most likely text for tokens), its statistics and gates, what it
// tracks (annotations), where in the sequence it fires, its class
// preferences, its top windows (exemplars) and its filmstrip over all
// logged steps; in compare mode its picture at A beside B's and how much it
// changed. A modal <dialog>: Escape or × closes it.

import {el, fmt, pct} from "./dom.js";
import {FrameGrid} from "./framegrid.js";
import {barList, columnChart} from "./charts.js";
import {renderExemplars} from "./exemplars.js";
import {PAINTERS, sideBySide} from "./painters.js";
import {SeriesChart} from "./series.js";
import {drawLogo, likelyText, logoColumnAt, shownText, visibleToken} from "./tokens.js";
import {along, annotationCorrelations, deadMeaning, frame, frames, gateStats, nearestIndex, neverPositive, rowOf,
  unitStats, weightingOf} from "../model.js";

const LARGE_WIDTH = 320;   // CSS px of the large picture
const LOGO_HINT = "Point at a position for its most likely tokens.";
const FRAME_WIDTH = 64;    // CSS px of one filmstrip frame

export class DetailView {
  /** onClose() when dismissed, onStep(step) when a filmstrip frame is clicked. */
  constructor({onClose, onStep}) {
    this.steps = [];
    this.large = new FrameGrid({className: "frame-large"});
    this.strip = new FrameGrid({
      className: "filmstrip",
      onPick: (i) => onStep(this.steps[i]),
      onHover: (i) => { this.strip.canvas.title = i >= 0 ? `step ${this.steps[i]}` : ""; },
    });
    this.title = el("h2", {});
    this.subtitle = el("span", {class: "subtitle"});
    this.stats = el("dl", {class: "stats"});
    this.caption = el("figcaption", {class: "note"});
    this.change = el("dl", {class: "stats"});
    this.changePanel = el("section", {class: "panel", hidden: true}, el("h3", {}, "Change"), this.change);
    this.firing = el("div", {});
    this.classes = el("section", {class: "panel"});
    this.gates = el("section", {class: "panel", hidden: true});
    this.tracks = el("section", {class: "panel", hidden: true});
    this.exemplars = el("div", {class: "exemplars"});
    this.exemplarsPanel = el("section", {class: "panel exemplars-panel"},
      el("h3", {}, "Top windows ", el("span", {class: "note"},
        "the probe windows that weigh most in this unit's average, best first")), this.exemplars);
    // Tokens: the most likely text (also as data-window / data-rollout) and a logo per side.
    this.tokensLine = el("p", {class: "unit-tokens", "data-testid": "unit-tokens"});
    this.logos = [0, 1].map(() => {
      const canvas = el("canvas", {class: "logo", role: "img"});
      const caption = el("p", {class: "note logo-caption"});
      const view = {canvas, caption, drawn: null, element: el("div", {class: "logo-view"}, caption, canvas)};
      canvas.addEventListener("mousemove", (e) => this.hoverLogo(view, e));
      canvas.addEventListener("mouseleave", () => this.hoverLogo(view, null));
      return view;
    });
    this.logoReadout = el("p", {class: "logo-readout", "aria-live": "polite"}, LOGO_HINT);
    this.tokensView = el("div", {class: "tokens-detail"}, this.tokensLine, ...this.logos.map((v) => v.element),
      this.logoReadout);
    // Series: a chart per side.
    this.charts = [new SeriesChart(), new SeriesChart()];
    this.chartCaptions = [el("p", {class: "note"}), el("p", {class: "note"})];
    this.seriesView = el("div", {class: "series-view"},
      ...this.charts.flatMap((c, k) => [this.chartCaptions[k], c.element]));
    this.stripNote = el("span", {class: "note"});
    const close = el("button", {class: "icon close", title: "Close (Esc)", "aria-label": "Close"}, "×");
    close.addEventListener("click", () => this.element.close());

    this.element = el("dialog", {class: "detail", "data-testid": "unit-detail", "aria-label": "Unit detail",
      tabindex: -1},
      el("header", {}, el("div", {}, this.title, this.subtitle), close),
      el("div", {class: "detail-body"},
        this.picture = el("figure", {class: "detail-picture"}, this.large.canvas, this.tokensView, this.seriesView,
          this.caption),
        el("div", {class: "detail-side"},
          el("section", {class: "panel"}, el("h3", {}, "Statistics"), this.stats),
          this.changePanel,
          this.gates,
          this.tracks,
          el("section", {class: "panel"}, el("h3", {}, "Where it fires"),
            el("p", {class: "note"}, "share of the unit's weight per window end position"),
            this.firing),
          this.classes)),
      this.exemplarsPanel,
      el("section", {class: "panel filmstrip-panel"},
        el("h3", {}, "Across training ", this.stripNote), el("div", {class: "filmstrip-scroll"}, this.strip.canvas)));
    this.element.addEventListener("close", () => onClose());
  }

  /** Opens the dialog (if closed); `render` fills it. */
  open() {
    if (this.element.open) return;
    this.element.showModal();
    this.element.focus();  // not the close button: a focus ring there reads as a hover
  }

  /**
   * current: a decoded /features answer holding `unit` (null while it loads
   * or when the step lacks the unit; `missing` then says why); history: the
   * decoded /unit answer for the filmstrip, null while it loads, or an Error;
   * step, weighting (one `current` logged), diff, shared: what the grid
   * shows; label: subtitle text. Compare mode: partner, B's frame (null
   * when B has no such unit), drawn right of the unit's and named by
   * `caption`; change: [[name, value text]] rows of how it changed.
   * exemplars: the /exemplars answer (undefined while it loads, null when
   * the step logged none, or an Error).
   */
  render({current, unit, missing = "loading…", history, step, weighting, diff, shared, label,
    partner, caption = "", change = [], exemplars}) {
    this.element.dataset.unit = String(unit);
    this.title.textContent = `Unit ${unit}`;
    this.subtitle.textContent = label;
    this.changePanel.hidden = !change.length;
    this.change.replaceChildren(...change.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    this.renderFilmstrip(history, {step, weighting, diff, shared});
    const row = current ? rowOf(current, unit) : -1;
    const painter = current && PAINTERS[current.header.display];
    const display = painter ? current.header.display : null;
    this.large.canvas.hidden = row < 0 || display !== "image_rows";
    this.tokensView.hidden = row < 0 || display !== "tokens";
    this.seriesView.hidden = row < 0 || display !== "series";
    this.classes.hidden = this.gates.hidden = this.tracks.hidden = true;
    this.exemplarsPanel.hidden = row < 0 || !painter;
    if (row < 0 || !painter) {
      this.stats.replaceChildren();
      this.caption.textContent = "";
      delete this.tokensLine.dataset.window;
      delete this.tokensLine.dataset.rollout;
      this.firing.replaceChildren(el("p", {class: "note"},
        current && row >= 0 ? `cannot draw display ${current.header.display}` : missing));
      return;
    }
    const desc = current.header;
    const picture = frame(current, weighting, "unit", row, diff);
    const paired = partner !== undefined;
    const shape = shapeOf(desc);
    if (display === "tokens") {
      this.renderTokens(current, row, weighting, shape, {picture, partner, paired, caption, diff});
    } else if (display === "series") {
      this.renderSeries(shape, {picture, partner, paired, caption, diff});
    } else {
      this.large.draw([paired ? {a: picture, b: partner} : picture], paired ? sideBySide(painter) : painter,
        shape, {cols: 1, scale: scaleFor(LARGE_WIDTH / (paired ? 2 : 1), desc.input_size, 24), gap: 2,
          diverging: diff});
      this.caption.textContent = `${paired ? `${caption}; ` : ""}window above the line, rollout below`;
    }
    const stats = unitStats(current, weighting, "unit", row);
    this.renderStats(stats, desc.num_windows, weighting, desc.probe_fingerprint, {
      neverPositive: neverPositive(stats, weighting),
      bottom: (desc.weightings ?? []).includes("bottom"),
    });
    this.renderGates(gateStats(current, "unit", row));
    this.renderTracks(annotationCorrelations(current, "unit", row));
    renderExemplars(this.exemplars, exemplars, {vocab: desc.vocab,
      missing: "not logged at this step (logs from before exemplars were kept)"});
    const share = current.arrays[`${weighting}/position_share`];
    // End position e = inputs consumed at the window's end: L (the first full
    // window) to T = L + P - 1.
    this.firing.replaceChildren(share
      ? columnChart(along(share, "unit", row).data, {firstLabel: desc.window, axis: "end position", format: pct})
      : el("p", {class: "note"}, "not logged"));
    const classWeight = current.arrays[`${weighting}/class_weight`];
    this.classes.hidden = !(classWeight && desc.class_names);
    if (!this.classes.hidden) {
      this.classes.replaceChildren(el("h3", {}, "Class preferences"),
        el("p", {class: "note"}, "mean weight of the windows of each class"),
        barList(along(classWeight, "unit", row).data, desc.class_names, fmt));
    }
  }

  /**
   * Tokens: the most likely text of the window and rollout (in the
   * `unit-tokens` line and its data-window / data-rollout, always of the
   * average itself, not of its difference from the mean) and the logo of
   * the picture, and of B's in compare mode.
   */
  renderTokens(current, row, weighting, shape, {picture, partner, paired, caption, diff}) {
    const {D: V, vocab} = shape;
    const plain = diff ? frame(current, weighting, "unit", row, false) : picture;
    const windowText = likelyText(plain.window, V, vocab);
    const rolloutText = likelyText(plain.rollout, V, vocab);
    this.tokensLine.dataset.window = windowText;
    this.tokensLine.dataset.rollout = rolloutText;
    this.tokensLine.replaceChildren("likes ", el("q", {class: "tokens-window"}, shownText(plain.window, V, vocab)),
      ...(plain.rollout?.length ? [" → expects ", el("q", {class: "tokens-rollout"}, shownText(plain.rollout, V, vocab))]
        : []));
    const sides = paired ? [picture, partner] : [picture];
    this.logos.forEach((view, k) => {
      const f = sides[k];
      view.element.hidden = !f;
      view.drawn = f ? drawLogo(view.canvas, {window: f.window, rollout: f.rollout, mean: plain.mean, V, vocab,
        L: shape.L, R: shape.R, diverging: diff}) : null;
      view.caption.textContent = !paired ? "" : k === 0 ? "A" : "B";
      view.canvas.setAttribute("aria-label", `sequence logo: ${shownText(f?.window, V, vocab)}`);
    });
    if (paired && !partner) {
      this.logos[1].element.hidden = false;
      this.logos[1].caption.textContent = "B: no such unit";
    }
    this.caption.textContent = `${paired ? `${caption}; ` : ""}${diff
      ? "tokens stacked by probability minus the probe's mean (above the line: more likely than usual)"
      : "each column as tall as the information (bits) the unit's average there carries beyond the probe's usual " +
        "tokens; in it, tokens stacked by probability, the most likely on top"}: the window, then what the unit's ` +
      "state predicts next (rollout)";
  }

  /** The tokens of the logo column under the pointer (event null: the pointer left). */
  hoverLogo(view, event) {
    const logo = view.drawn;
    const i = logo && event ? logoColumnAt(logo, event.clientX - view.canvas.getBoundingClientRect().left) : -1;
    if (i < 0) {
      this.logoReadout.textContent = LOGO_HINT;
      return;
    }
    const where = i < logo.L ? `window position ${i === logo.L - 1 ? "0" : `−${logo.L - 1 - i}`}` : `rollout +${i - logo.L + 1}`;
    this.logoReadout.textContent = `${where}: ` + logo.columns[i].tokens
      .map(({token, value}) => `“${visibleToken(token, {space: true})}” ${fmt(value)}`).join(" · ");
  }

  /** Series: a chart of the picture with axes and channel names, and one of B's in compare mode. */
  renderSeries(shape, {picture, partner, paired, caption, diff}) {
    const sides = paired ? [picture, partner] : [picture];
    const width = paired ? 440 : 560;
    this.charts.forEach((chart, k) => {
      const f = sides[k];
      chart.element.hidden = !f;
      this.chartCaptions[k].hidden = !paired;
      this.chartCaptions[k].textContent = k === 0 ? "A" : f ? "B" : "B: no such unit";
      if (f) chart.draw(f, shape, {names: shape.channels, diverging: diff, width, height: paired ? 200 : 240});
    });
    this.caption.textContent = `${paired ? `${caption}; ` : ""}${diff ? "the unit's average minus the probe's mean"
      : "the unit's weighted average (solid) and the probe's mean (faint)"}: the window, then the rollout after the dashed line`;
  }

  /** Gated cells: each gate's saturation and the time constant; hidden for cells without gates. */
  renderGates({saturation, timeConstant}) {
    this.gates.hidden = !saturation.length && !Number.isFinite(timeConstant) && timeConstant !== Infinity;
    if (this.gates.hidden) return;
    const tau = timeConstant === Infinity ? "∞ (never forgets)"
      : Number.isFinite(timeConstant) ? `${fmt(timeConstant)} steps` : "not logged";
    this.gates.replaceChildren(el("h3", {}, "Gates"),
      el("p", {class: "note"}, "saturation: share of windows where the gate is below 0.1 or above 0.9"),
      saturation.length ? el("div", {class: "bar-list"}, ...saturation.map(({name, value}) => {
        // On an absolute scale: 100% is a gate always saturated.
        const fill = el("span", {class: "bar-fill"});
        fill.style.width = `${Number.isFinite(value) ? Math.max(0, Math.min(100, 100 * value)) : 0}%`;
        return el("div", {class: "bar-row"}, el("span", {class: "bar-label", title: name}, name),
          el("span", {class: "bar-track"}, fill), el("span", {class: "bar-value"}, pct(value)));
      })) : "",
      el("dl", {class: "stats"}, el("dt", {}, "Time constant"), el("dd", {class: "time-constant",
        title: "−1 / log(mean forget activation): how many steps its memory lasts"}, tau)));
  }

  /** What the unit tracks: its correlation with each annotation of the probe, strongest first. */
  renderTracks(correlations) {
    this.tracks.hidden = !correlations.length;
    if (this.tracks.hidden) return;
    const rows = [...correlations].sort((a, b) => Math.abs(b.value) - Math.abs(a.value) || 0).map(({name, value}) => {
      const fill = el("span", {class: `corr-fill ${value < 0 ? "negative" : "positive"}`});
      const width = Number.isFinite(value) ? Math.min(50, 50 * Math.abs(value)) : 0;
      fill.style.width = `${width}%`;
      fill.style.left = value < 0 ? `${50 - width}%` : "50%";
      return el("div", {class: "corr-row", title: `correlation with ${name}: ${fmtR(value)}`},
        el("span", {class: "corr-name"}, name), el("span", {class: "corr-track"}, fill),
        el("span", {class: "corr-value"}, fmtR(value)));
    });
    this.tracks.replaceChildren(el("h3", {}, "Tracks"),
      el("p", {class: "note"}, "correlation of its signal with each annotation, at the window's last input"),
      el("div", {class: "corr-list"}, ...rows));
  }

  renderFilmstrip(history, {step, weighting, diff, shared}) {
    const painter = history && !(history instanceof Error) && PAINTERS[history.header.display];
    this.strip.canvas.hidden = !painter;
    if (!painter) {
      this.steps = [];
      this.stripNote.textContent = history instanceof Error ? `could not be loaded: ${history.message}`
        : history ? `not drawn: display ${history.header.display}` : "loading…";
      return;
    }
    const {steps, other_layout_steps: others = [], unreadable_steps: unreadable = []} = history.header;
    this.steps = steps;
    // The filmstrip stacks one layout's steps, which may lack the weighting shown.
    const stripWeighting = weightingOf(history, weighting);
    const shape = shapeOf(history.header);
    // Charts and text have a zoom level of their own: 2 keeps a frame small and readable.
    const scale = history.header.display === "image_rows" ? scaleFor(FRAME_WIDTH, shape.D, 4) : 2;
    const scroller = this.strip.canvas.parentElement;
    const highlight = nearestIndex(steps, step);
    const cellW = painter.cellSize(shape, scale).w;
    this.strip.draw(frames(history, stripWeighting, "step", diff), painter, shape, {
      cols: Math.max(1, Math.floor(((scroller.clientWidth || 800) - 3) / (cellW + 3))),
      scale, gap: 3, diverging: diff, shared, highlight,
    });
    // Keep the current step's frame in view (scrolled by the step control too).
    const {y, h} = this.strip.rect(highlight);
    if (y < scroller.scrollTop || y + h > scroller.scrollTop + scroller.clientHeight) {
      scroller.scrollTop = y - (scroller.clientHeight - h) / 2;
    }
    this.stripNote.textContent = `${steps.length} logged steps, ${steps[0]}–${steps.at(-1)}` +
      `${stripWeighting === weighting ? "" : `, ${stripWeighting} weighting`}; click one to show it` +
      (others.length ? `. ${others.length} ${others.length === 1 ? "step was" : "steps were"} logged ` +
        "with another layout (e.g. a resized layer) and are not shown" : "") +
      (unreadable.length ? `. ${unreadable.length} ${unreadable.length === 1 ? "step is" : "steps are"} not shown: ` +
        `${unreadable.length === 1 ? "it" : "they"} could not be read (step ${unreadable[0].step}: ` +
        `${unreadable[0].reason}${unreadable.length > 1 ? "; …" : ""})` : "");
  }

  /**
   * neverPositive: the signal is ≤ 0 on every window under a weighting of
   * the positive side, said instead of "dead" (with a pointer to the bottom
   * weighting when logged).
   */
  renderStats(stats, numWindows, weighting, fingerprint, {neverPositive: never = false, bottom = false} = {}) {
    const ess = stats.effectiveSampleSize;
    const rows = [
      ["Active fraction", pct(stats.activeFraction)],
      ["Effective sample size",
        Number.isFinite(ess) && numWindows ? `${pct(ess)} of ${numWindows} windows` : pct(ess)],
      ["Mean signal", fmt(stats.signalMean)],
      ["Max signal", fmt(stats.signalMax)],
      never ? ["Never positive", `its signal is ≤ 0 on every probe window, so the ${weighting} weighting has ` +
        `little to show; ${bottom ? "the bottom weighting shows" : "log the bottom weighting to see"} what drives it ` +
        "negative"]
        : ["Dead", stats.dead ? `yes: ${deadMeaning(weighting)}` : "no"],
    ];
    // Identifies the probe data the statistics were measured on.
    if (fingerprint) rows.push(["Probe", fingerprint]);
    const classOf = (k) => k.toLowerCase().replace(/ /g, "-");
    this.stats.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {class: classOf(k)}, v)]));
    this.stats.classList.toggle("is-dead", stats.dead && !never);
  }
}

/** A correlation for labels: two decimals, a true minus sign. */
function fmtR(value) {
  if (!Number.isFinite(value)) return "–";
  return `${value < 0 ? "−" : ""}${Math.abs(value).toFixed(2)}`;
}

/** {L, R, D, vocab, channels} of a description (see painters.js). */
function shapeOf({window: L, rollout: R, input_size: D, vocab = null, channel_names: channels = null}) {
  return {L, R, D, vocab, channels};
}

/** Whole CSS px per value so that `input_size` values span about `width`. */
function scaleFor(width, inputSize, max) {
  return Math.max(1, Math.min(max, Math.floor(width / inputSize)));
}
