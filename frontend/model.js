// Fetches the plugin's routes and decodes the binary wire format (see
// docs/CONTRACTS.md), plus small pure helpers over decoded responses. URLs
// are relative: TensorBoard's plugin iframe sets <base href="plugin/rnn_units/">,
// so "./tags" reaches the plugin's route.
//
// Every decoded array carries its `axes` (names, one per dimension). Code
// finds the unit (or step) axis from them, never from the array's name:
// a /features answer has per-unit arrays ["unit", ...] cut to its
// `unit_range`, a /unit answer has the same arrays stacked as ["step", ...].

/** GET ./tags -> {run: {tag: description}}. */
export function fetchTags() {
  return fetchJson("./tags");
}

/** GET ./problems -> [{run, tag, reason}] of the tags the server cannot read. */
export function fetchProblems() {
  return fetchJson("./problems");
}

/** GET ./steps -> [{step, wall_time}, ...] ascending by step. */
export function fetchSteps(run, tag) {
  return fetchJson(`./steps?${new URLSearchParams({run, tag})}`);
}

/**
 * GET ./features -> decoded arrays of one step (see decodeWire). `units`,
 * [start, stop) or absent for all, asks for those units only; the answer's
 * header.unit_range says which it holds.
 */
export function fetchFeatures(run, tag, step, units) {
  const query = {run, tag, step};
  if (units) query.units = `${units[0]}:${units[1]}`;
  return fetchWire(`./features?${new URLSearchParams(query)}`);
}

/** GET ./unit -> one unit's arrays stacked over the logged steps of one layout. */
export function fetchUnit(run, tag, unit) {
  return fetchWire(`./unit?${new URLSearchParams({run, tag, unit})}`);
}

/**
 * GET ./exemplars -> {display, window, weighting, exemplars: [{sequence,
 * start, end, signal, values (T x D) or tokens (T ids)}]}: the probe
 * windows that weigh most in `unit`'s average at `step`, best first, each
 * with its whole sequence so the window can be shown in context.
 */
export function fetchExemplars(run, tag, step, unit, weighting) {
  return fetchJson(`./exemplars?${new URLSearchParams({run, tag, step, unit, weighting})}`);
}

// The comparison routes (docs/CONTRACTS.md, "Comparison routes").

/** GET ./change -> {units, step_a, step_b, activation: [H] or null, average: {weighting: [H]}, missing}. */
export function fetchChange(run, tag, stepA, stepB) {
  return fetchJson(`./change?${new URLSearchParams({run, tag, step_a: stepA, step_b: stepB})}`);
}

/** GET ./drift -> decoded `change` ["transition", "unit"]; header {steps, units, threshold, settled, skipped_steps}. */
export function fetchDrift(run, tag) {
  return fetchWire(`./drift?${new URLSearchParams({run, tag})}`);
}

/** GET ./similarity -> decoded `cka` ["step", "other_step"]; header {steps, of_steps, skipped_steps}. */
export function fetchSimilarity(run, tag) {
  return fetchWire(`./similarity?${new URLSearchParams({run, tag})}`);
}

/** GET ./match -> {assignment: [H] (unit of other_run or -1), similarity: [H] (or null), cka, threshold}. */
export function fetchMatch(run, tag, step, otherRun, otherStep) {
  return fetchJson(`./match?${new URLSearchParams({run, tag, step, other_run: otherRun, other_step: otherStep})}`);
}

/** GET ./order -> {similarity: [unit order], from: array name}. */
export function fetchOrder(run, tag, step) {
  return fetchJson(`./order?${new URLSearchParams({run, tag, step})}`);
}

/** GET ./coverage -> decoded `units_per_class` ["step", "class"]; header {steps, class_names, weighting}. */
export function fetchCoverage(run, tag, weighting) {
  return fetchWire(`./coverage?${new URLSearchParams({run, tag, weighting})}`);
}

/** An HTTP or decoding failure, with the server's message when it sent one. */
class FetchError extends Error {}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) {
    const text = (await response.text()).trim().slice(0, 300);
    throw new FetchError(`${response.status} ${response.statusText}${text ? `: ${text}` : ""}`);
  }
  return response;
}

async function fetchJson(url) {
  return parseJson(await (await fetchOk(url)).text());
}

/**
 * JSON.parse that keeps integers beyond 2**53 exact, as their decimal
 * strings: steps are int64, and a rounded step names another one (or none).
 * Such a step is then a string wherever it travels (URLs, labels, equality);
 * only "nearest step" arithmetic sees it rounded.
 */
export function parseJson(text) {
  return JSON.parse(text, (key, value, context) =>
    Number.isInteger(value) && !Number.isSafeInteger(value) && context?.source ? context.source : value);
}

/** A step typed by the user: a number, or its digits when beyond 2**53 (see parseJson). */
export function typedStep(text) {
  const number = Number(text);
  return Number.isSafeInteger(number) || !/^-?[0-9]+$/.test(text.trim()) ? number : text.trim();
}

async function fetchWire(url) {
  return decodeWire(await (await fetchOk(url)).arrayBuffer());
}

const ITEM_SIZES = {float16: 2, float32: 4, uint8: 1, int32: 4};
const VIEWS = {float32: Float32Array, uint8: Uint8Array, int32: Int32Array};

/**
 * Decodes the wire format: uint32 LE header length n, n bytes of JSON header
 * with an `arrays` list of {name, dtype, shape, axes, offset, nbytes}, then
 * the raw little-endian array bytes at 8-aligned offsets.
 *
 * Returns {header, arrays: {name: {data, shape, axes}}, ignored, bytes}:
 * float16 and float32 become Float32Array, uint8 stays Uint8Array, int32
 * Int32Array. An array
 * of a dtype this code does not know, or without one axis name per
 * dimension, is left out and named in `ignored` (a newer backend may add
 * such arrays); an array whose bytes lie outside the buffer fails the whole
 * response. `bytes` is the memory the result holds, for caches. Typed-array
 * views read the platform's byte order, little-endian on every browser platform.
 */
export function decodeWire(buffer) {
  if (buffer.byteLength < 4) throw new FetchError("response too short for the wire format");
  const n = new DataView(buffer).getUint32(0, true);
  const header = parseJson(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const arrays = {};
  const ignored = [];
  let bytes = buffer.byteLength;
  for (const {name, dtype, shape, axes, offset, nbytes} of header.arrays ?? []) {
    const size = ITEM_SIZES[dtype];
    if (!size || !Array.isArray(shape) || !Array.isArray(axes) || axes.length !== shape.length) {
      ignored.push(name);
      continue;
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (count * size !== nbytes || offset % 8 || offset + nbytes > buffer.byteLength) {
      throw new FetchError(`array ${name}: bad spec ${JSON.stringify({dtype, shape, offset, nbytes})}`);
    }
    let data;
    if (dtype === "float16") {
      data = halfToFloat(new Uint16Array(buffer, offset, count));
      bytes += data.byteLength;
    } else {
      data = new VIEWS[dtype](buffer, offset, count);
    }
    arrays[name] = {data, shape, axes};
  }
  return {header, arrays, ignored, bytes};
}

let halfTable = null;

/** float16 bits -> float32 through a 65536-entry lookup table built on first use. */
function halfToFloat(bits) {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >> 10) & 0x1f;
      const mantissa = h & 0x3ff;
      halfTable[h] =
        exponent === 0 ? sign * mantissa * 2 ** -24                 // subnormal
        : exponent === 31 ? (mantissa ? NaN : sign * Infinity)
        : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
    }
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfTable[bits[i]];
  return out;
}

const product = (values) => values.reduce((a, b) => a * b, 1);

/**
 * Index i along the axis named `axis` of a decoded array, as a decoded array
 * without that axis ({data, shape, axes}). An array without that axis is
 * returned whole: it is shared by every unit (or step).
 */
export function along(array, axis, i) {
  const k = array.axes.indexOf(axis);
  if (k < 0) return array;
  const {data, shape, axes} = array;
  const n = shape[k];
  const inner = product(shape.slice(k + 1));
  const outer = product(shape.slice(0, k));
  const rest = {shape: shape.filter((_, j) => j !== k), axes: axes.filter((_, j) => j !== k)};
  if (outer === 1) return {data: data.subarray(i * inner, (i + 1) * inner), ...rest};
  const out = new data.constructor(outer * inner);
  for (let o = 0; o < outer; o++) {
    out.set(data.subarray((o * n + i) * inner, (o * n + i + 1) * inner), o * inner);
  }
  return {data: out, ...rest};
}

/** Length of the `axis` axis of a decoded response (0 when its weighting's average lacks it). */
export function axisLength({arrays}, weighting, axis) {
  const average = arrays[`${weighting}/average`];
  const k = average ? average.axes.indexOf(axis) : -1;
  return k < 0 ? 0 : average.shape[k];
}

/** Row of `unit` in a /features answer (its header.unit_range), or -1 if it does not hold it. */
export function rowOf({header}, unit) {
  const [start, stop] = header.unit_range ?? [0, header.units];
  return unit >= start && unit < stop ? unit - start : -1;
}

/** The weighting shown first: `top` when logged, else the first logged one. */
export function defaultWeighting(weightings) {
  return weightings.includes("top") ? "top" : weightings[0];
}

/**
 * `wanted` if a decoded response logged that weighting, else its default
 * (an older step may have been logged with other weightings than the tag's
 * description lists). Without `arrays`, the header's `weightings` decide.
 */
export function weightingOf({header, arrays}, wanted) {
  const logged = (header.weightings ?? []).filter((w) => !arrays || arrays[`${w}/average`]);
  return logged.includes(wanted) || !logged.length ? wanted : defaultWeighting(logged);
}

// What a dead unit (all its window weights zero) means under each weighting.
const DEAD_MEANINGS = {
  relu: "never active on the probe (signal ≤ 0 on every window)",
  top: "no window above its top-fraction threshold",
  bottom: "no window below its bottom-fraction threshold",
};

/** Why a unit is dead under `weighting`, for labels. */
export function deadMeaning(weighting) {
  return DEAD_MEANINGS[weighting] ?? "all its window weights are zero";
}

/**
 * Whether a unit's signal is never positive on the probe (its signal_max
 * ≤ 0) while `weighting` looks at the positive side (relu, top): such a
 * unit is not dead, it works below zero (e.g. a tanh unit), which the
 * "bottom" weighting shows. `stats` from unitStats.
 */
export function neverPositive(stats, weighting) {
  return (weighting === "relu" || weighting === "top") && stats.signalMax <= 0;
}

/**
 * The picture of item i along `axis` of a decoded response: a unit's row of
 * a /features answer (axis "unit"), a step of a /unit answer (axis "step").
 * Returns {window (L*D values), rollout (R*D values or null), dead}. With
 * `diff`, the probe's mean window (and mean rollout) is subtracted, leaving
 * what the unit prefers. `weighting` must be one the response logged (see
 * weightingOf).
 */
export function frame({arrays}, weighting, axis, i, diff) {
  const at = (name) => arrays[name] && along(arrays[name], axis, i).data;
  const average = at(`${weighting}/average`);
  if (!average) throw new Error(`no ${weighting} weighting in this response`);
  const rollout = at(`${weighting}/rollout`);
  const meanWindow = at("mean_window");
  const meanRollout = at("mean_rollout");
  return {
    window: centred(average, diff && meanWindow),
    rollout: rollout?.length ? centred(rollout, diff && meanRollout) : null,
    dead: Boolean(at(`${weighting}/dead`)?.[0]),
    // The probe's mean window and rollout, a reference some painters draw (none with diff: it is 0 there).
    mean: !diff && meanWindow ? {window: meanWindow, rollout: meanRollout?.length ? meanRollout : null} : null,
  };
}

/** Every frame along `axis` (e.g. one per step of a /unit answer, for the filmstrip). */
export function frames(decoded, weighting, axis, diff) {
  return Array.from({length: axisLength(decoded, weighting, axis)},
    (_, i) => frame(decoded, weighting, axis, i, diff));
}

function centred(values, mean) {
  return mean ? values.map((v, j) => v - mean[j]) : values;
}

/** Index of the number in `values` closest to `target` (ties go to the earlier one). */
export function nearestIndex(values, target) {
  let best = 0;
  for (let i = 1; i < values.length; i++) {
    if (Math.abs(values[i] - target) < Math.abs(values[best] - target)) best = i;
  }
  return best;
}

/**
 * Statistics of item i along `axis` (see frame); missing ones are NaN.
 */
export function unitStats({arrays}, weighting, axis, i) {
  const at = (name) => (arrays[name] ? along(arrays[name], axis, i).data[0] : NaN);
  return {
    activeFraction: at(`${weighting}/active_fraction`),
    effectiveSampleSize: at(`${weighting}/effective_sample_size`),
    signalMean: at("signal_mean"),
    signalMax: at("signal_max"),
    dead: Boolean(at(`${weighting}/dead`)),
  };
}

/**
 * [{name, value}] of a per-unit array with a second named axis at item i
 * along `axis` (e.g. `annotation_correlation` ["unit", "annotation"] with
 * the header's `annotation_names`), or [] when the response lacks it.
 */
export function namedValues({header, arrays}, array, namesKey, axis, i) {
  const names = header[namesKey];
  if (!arrays[array] || !Array.isArray(names)) return [];
  const values = along(arrays[array], axis, i).data;
  return names.slice(0, values.length).map((name, k) => ({name: String(name), value: values[k]}));
}

/** [{name, value}] of each annotation's correlation with item i along `axis` (see namedValues). */
export function annotationCorrelations(decoded, axis, i) {
  return namedValues(decoded, "annotation_correlation", "annotation_names", axis, i);
}

/**
 * Gated cells: {saturation: [{name, value}] (fraction of windows with the
 * gate below 0.1 or above 0.9), timeConstant (steps; Infinity: never
 * forgets; NaN when not logged)} of item i along `axis`.
 */
export function gateStats(decoded, axis, i) {
  const tau = decoded.arrays.time_constant;
  return {
    saturation: namedValues(decoded, "gate_saturation", "gate_names", axis, i),
    timeConstant: tau ? along(tau, axis, i).data[0] : NaN,
  };
}

/**
 * The most likely token at each position of a tokens display's picture
 * (positions x V row-major probabilities, V = vocabulary size): {index,
 * value} per position, the first of equal values winning.
 */
export function mostLikely(values, V) {
  const out = [];
  for (let p = 0; p + V <= values.length; p += V) {
    let best = 0;
    for (let v = 1; v < V; v++) if (values[p + v] > values[p + best]) best = v;
    out.push({index: best, value: values[p + best]});
  }
  return out;
}

/**
 * Tokens as plain text: single characters joined with nothing between
 * them, longer tokens set off by spaces: ["a", "b", "cd", "e"] -> "ab cd e".
 */
export function joinTokens(tokens) {
  const single = (t) => [...String(t)].length === 1;
  let text = "";
  tokens.forEach((t, k) => {
    text += k > 0 && !(single(t) && single(tokens[k - 1])) ? ` ${t}` : String(t);
  });
  return text;
}

/**
 * The class item i along `axis` prefers: {index, weight} of its largest mean
 * class weight under `weighting`, or null (no labels, or no weight at all).
 */
export function dominantClass({arrays}, weighting, axis, i) {
  const weights = arrays[`${weighting}/class_weight`];
  if (!weights) return null;
  const values = along(weights, axis, i).data;
  let best = -1;
  for (let c = 0; c < values.length; c++) {
    if (values[c] > 0 && (best < 0 || values[c] > values[best])) best = c;
  }
  return best < 0 ? null : {index: best, weight: values[best]};
}

/**
 * Each unit's change from A to B, from a /change answer (1 - correlation of
 * the activation sample, else of the `weighting`'s average) or a /match
 * answer (1 - the matched pair's correlation). Returns {scores (NaN where
 * unknown), source: "activation" | "average" | "match"}.
 */
export function changeScores(answer, weighting) {
  const numbers = (values) => Float64Array.from(values ?? [], (v) => (v === null ? NaN : v));
  if (answer.assignment) {
    return {scores: numbers(answer.similarity).map((v) => 1 - v), source: "match"};
  }
  if (answer.activation) return {scores: numbers(answer.activation), source: "activation"};
  const average = answer.average[weighting] ?? Object.values(answer.average)[0];
  return {scores: numbers(average), source: "average"};
}

/** {step, note}: the logged step nearest to `wanted` in `steps` ([{step}]), and a note when it is not `wanted`. */
export function nearestStep(steps, wanted) {
  const exact = steps.find((s) => String(s.step) === String(wanted));
  const step = exact ? exact.step : steps[nearestIndex(steps.map((s) => s.step), wanted)].step;
  return {step, note: exact ? "" : `Step ${wanted} was not logged; showing the nearest, ${step}.`};
}

/** The value of a decoded array at `index`, {axis name: position} (e.g. {transition: 2, unit: 7}). */
export function valueAt({data, shape, axes}, index) {
  let k = 0;
  axes.forEach((name, d) => { k = k * shape[d] + index[name]; });
  return data[k];
}
