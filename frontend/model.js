// Fetches the plugin's routes and decodes the binary wire format (see
// docs/CONTRACTS.md). URLs are relative: TensorBoard's plugin iframe sets
// <base href="plugin/rnn_units/">, so "./tags" reaches the plugin's route.

/** GET ./tags -> {run: {tag: description}}. */
export function fetchTags() {
  return fetchJson("./tags");
}

/** GET ./steps -> [{step, wall_time}, ...] ascending by step. */
export function fetchSteps(run, tag) {
  return fetchJson(`./steps?${new URLSearchParams({run, tag})}`);
}

/** GET ./features -> decoded arrays of one step (see decodeWire). */
export function fetchFeatures(run, tag, step) {
  return fetchWire(`./features?${new URLSearchParams({run, tag, step})}`);
}

/** GET ./unit -> one unit's arrays stacked over all logged steps. */
export function fetchUnit(run, tag, unit) {
  return fetchWire(`./unit?${new URLSearchParams({run, tag, unit})}`);
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
  return (await fetchOk(url)).json();
}

async function fetchWire(url) {
  return decodeWire(await (await fetchOk(url)).arrayBuffer());
}

/**
 * Decodes the wire format: uint32 LE header length n, n bytes of JSON header
 * with an `arrays` list of {name, dtype, shape, offset, nbytes}, then the raw
 * little-endian array bytes at 8-aligned offsets.
 *
 * Returns {header, arrays: {name: {data, shape}}}; float16 and float32 become
 * Float32Array, uint8 stays Uint8Array. Typed-array views read the platform's
 * byte order, which is little-endian on every browser platform.
 */
export function decodeWire(buffer) {
  if (buffer.byteLength < 4) throw new FetchError("response too short for the wire format");
  const n = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const arrays = {};
  for (const {name, dtype, shape, offset, nbytes} of header.arrays) {
    const count = shape.reduce((a, b) => a * b, 1);
    const size = {float16: 2, float32: 4, uint8: 1}[dtype];
    if (!size || count * size !== nbytes || offset % 8 || offset + nbytes > buffer.byteLength) {
      throw new FetchError(`array ${name}: bad spec ${JSON.stringify({dtype, shape, offset, nbytes})}`);
    }
    const data =
      dtype === "float16" ? halfToFloat(new Uint16Array(buffer, offset, count))
      : dtype === "float32" ? new Float32Array(buffer, offset, count)
      : new Uint8Array(buffer, offset, count);
    arrays[name] = {data, shape};
  }
  return {header, arrays};
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

/** The i-th slice along the leading axis of a decoded array. */
export function slice(array, i) {
  const stride = array.shape.slice(1).reduce((a, b) => a * b, 1);
  return array.data.subarray(i * stride, (i + 1) * stride);
}

/** The weighting shown first: `top` when logged, else the first logged one. */
export function defaultWeighting(weightings) {
  return weightings.includes("top") ? "top" : weightings[0];
}

/**
 * `wanted` if a decoded response logged that weighting, else its default
 * (an older step may have been logged with other weightings than the tag's
 * description lists).
 */
export function weightingOf({header, arrays}, wanted) {
  const logged = (header.weightings ?? []).filter((w) => arrays[`${w}/average`]);
  return logged.includes(wanted) || !logged.length ? wanted : defaultWeighting(logged);
}

// What a dead unit (all its window weights zero) means under each weighting.
const DEAD_MEANINGS = {
  relu: "never active on the probe (signal ≤ 0 on every window)",
  top: "no window above its top-fraction threshold",
};

/** Why a unit is dead under `weighting`, for labels. */
export function deadMeaning(weighting) {
  return DEAD_MEANINGS[weighting] ?? "all its window weights are zero";
}

/**
 * The pictures to draw along the leading axis of a decoded response: one per
 * unit of a /features step, one per step of a /unit response. Each is
 * {window (L*D), rollout (R*D or null), dead}. With `diff`, the probe's mean
 * window (and mean rollout) is subtracted, leaving what the unit prefers.
 * `weighting` must be one the response logged (see weightingOf).
 */
export function frames(decoded, weighting, diff) {
  const average = decoded.arrays[`${weighting}/average`];
  if (!average) throw new Error(`no ${weighting} weighting in this response`);
  return Array.from({length: average.shape[0]}, (_, i) => frame(decoded, weighting, i, diff));
}

/** The i-th of `frames(decoded, weighting, diff)`. */
export function frame({arrays}, weighting, i, diff) {
  const average = arrays[`${weighting}/average`];
  const rollout = arrays[`${weighting}/rollout`];
  // The means are (L, D) in a /features step and stacked (S, L, D) in /unit.
  const mean = (a) => (a.shape.length === average.shape.length ? slice(a, i) : a.data);
  return {
    window: centred(slice(average, i), diff && mean(arrays.mean_window)),
    rollout: rollout && rollout.shape.at(-2) > 0
      ? centred(slice(rollout, i), diff && arrays.mean_rollout && mean(arrays.mean_rollout))
      : null,
    dead: Boolean(arrays[`${weighting}/dead`]?.data[i]),
  };
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
 * One unit's statistics at index i of decoded arrays: i is the unit for a
 * /features step, the step index for a /unit response (missing ones are NaN).
 */
export function unitStats({arrays}, weighting, i) {
  const at = (name) => arrays[name]?.data[i] ?? NaN;
  return {
    activeFraction: at(`${weighting}/active_fraction`),
    effectiveSampleSize: at(`${weighting}/effective_sample_size`),
    signalMean: at("signal_mean"),
    signalMax: at("signal_max"),
    dead: Boolean(at(`${weighting}/dead`)),
  };
}
