// The compare bar, shown instead of the step control in compare mode: step
// A (of the selected run), run B and its step, "difference B − A", a note
// (e.g. a step adjusted to the nearest logged one) and a summary line of
// the comparison. Like the other views it only reports what the user did.
// Below it, the words for comparison answers (/change, /match, /drift),
// shared by the summary, the hover readout and the unit detail.

import {el, fmt} from "./dom.js";
import {changeScores, typedStep} from "../model.js";

export class CompareBar {
  /** onStepA(step) and onStepB(step) for a typed step, onRun(run) for B's run, onDiff(boolean). */
  constructor({onStepA, onStepB, onRun, onDiff}) {
    this.stepA = stepBox("step-a-input", "Step A", onStepA);
    this.stepB = stepBox("step-b-input", "Step B", onStepB);
    this.run = el("select", {"data-testid": "compare-run-select", "aria-label": "Run B",
      title: "Compare with a later step of this run, or with another run logged on the same probe"});
    this.run.addEventListener("change", () => onRun(this.run.value));
    this.diff = el("input", {type: "checkbox", "data-testid": "compare-diff"});
    this.diff.addEventListener("change", () => onDiff(this.diff.checked));
    this.message = el("span", {class: "step-message", role: "status"});
    this.summary = el("span", {class: "compare-summary", "data-testid": "compare-summary", role: "status"});
    this.element = el("div", {class: "stepper compare-bar"},
      el("span", {class: "field-label"}, "A"), el("span", {class: "note"}, "step"), this.stepA,
      el("span", {class: "field-label"}, "B"), this.run, el("span", {class: "note"}, "step"), this.stepB,
      el("label", {class: "check", title: "Each unit's picture at B minus its picture at A"},
        this.diff, "Difference B − A"),
      this.message, this.summary);
  }

  /**
   * thisRun: the selected run; runs: [{run, comparable, why}] of the other
   * runs with the tag; compare: the state's {run, step_a, step_b, diff};
   * summary: text.
   */
  update({thisRun, runs, compare, summary}) {
    const options = [[thisRun, "this run"], ...runs.map(({run, comparable}) =>
      [run, comparable ? run : `${run} (other probe)`])];
    const current = Array.from(this.run.options, (o) => [o.value, o.textContent]);
    if (JSON.stringify(current) !== JSON.stringify(options)) {
      this.run.replaceChildren(...options.map(([value, text]) => el("option", {value}, text)));
    }
    this.run.value = compare.run;
    this.stepA.show(compare.step_a);
    this.stepB.show(compare.step_b);
    this.diff.checked = compare.diff;
    this.summary.textContent = summary;
  }

  /** A short note, e.g. why a typed step was adjusted or a run refused ("" clears it). */
  say(text) {
    this.message.textContent = text;
  }
}

/** A number box like the step control's: Enter (or leaving it) reports the typed step. */
function stepBox(testid, label, onTyped) {
  const input = el("input", {type: "number", class: "step-input", "data-testid": testid, "aria-label": label,
    title: "Type a step and press Enter"});
  let editing = false;  // the user's typing is not overwritten by renders
  input.addEventListener("input", () => { editing = true; });
  input.addEventListener("change", () => {
    editing = false;
    if (input.value !== "") onTyped(typedStep(input.value));
  });
  input.show = (step) => {
    if (!editing && step !== null) input.value = String(step);
  };
  return input;
}

/** A change score or correlation for labels; rounding noise (|v| < 1e-6, e.g. 1 − 1 = 2.2e-16) reads 0. */
export function fmtChange(value) {
  return fmt(Math.abs(value) < 1e-6 ? 0 : value);
}

/**
 * One line on a /change answer (the spread of change, and whether the
 * activation sample was missing) or a /match answer (the runs' CKA and how
 * many units have no good match); `runs` = [A's run, B's run].
 */
export function summaryText(answer, {runs, weighting}) {
  if (answer.assignment) {
    const poor = answer.similarity.filter((v) => !(v >= answer.threshold)).length;
    return `${runs[0]} vs ${runs[1]}: CKA ${fmt(answer.cka)} between the layers; units matched one-to-one by ` +
      `correlation, ${poor} of ${answer.assignment.length} without a good match (below ${answer.threshold}).`;
  }
  const {scores, source} = changeScores(answer, weighting);
  const sorted = Array.from(scores).filter(Number.isFinite).sort((x, y) => x - y);
  const spread = sorted.length
    ? `median ${fmtChange(sorted[Math.floor(sorted.length / 2)])}, largest ${fmtChange(sorted.at(-1))}` : "no value";
  if (source === "activation") {
    return `Change A → B per unit (1 − correlation of its activation sample): ${spread}.`;
  }
  return "These steps have no activation sample (logged by an older tensorboard-rnn-units), so change is " +
    `measured on the average window and rollout only. Change A → B per unit (1 − correlation): ${spread}.`;
}

/**
 * [[name, text]]: how `unit` changed from A to B, from a /change or /match
 * answer (an Error, or undefined while it loads).
 */
export function changeRows(answer, unit, {sameRun, weighting}) {
  const name = sameRun ? "Change A → B" : "Matched unit of B";
  if (!answer) return [[name, "loading…"]];
  if (answer instanceof Error) return [[name, `not available: ${answer.message}`]];
  if (answer.assignment) {
    const partner = answer.assignment[unit];
    const similarity = answer.similarity[unit];
    if (partner === undefined || partner < 0) return [[name, "none (B's layer has fewer units)"]];
    return [[name, `${partner}, correlation ${fmtChange(similarity ?? NaN)}` +
      (similarity >= answer.threshold ? "" : ` · no good match (below ${answer.threshold})`)]];
  }
  const average = fmtChange(changeScores({...answer, activation: null}, weighting).scores[unit]);
  if (!answer.activation) return [[name, `${average} on the average (no activation sample at these steps)`]];
  return [[name, `${fmtChange(answer.activation[unit] ?? NaN)} on the activation sample, ${average} on the average`]];
}

/** [["Settled", text]] for `unit` from a /drift answer (an Error, or undefined: []). */
export function settledRows(drift, unit) {
  if (drift instanceof Error) return [["Settled", "unknown: needs the activation sample (newer logs)"]];
  const settled = drift?.header.settled[unit];
  if (settled === undefined) return [];
  const {threshold} = drift.header;
  return [["Settled", settled === null ? `not yet (its change was ${threshold} or more at the last step)`
    : `at step ${settled} (changes below ${threshold} from then on)`]];
}
