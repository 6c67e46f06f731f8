// Unit orders for the grid: which unit each cell shows. An order is an
// Int32Array, position -> unit, or null for the units' own order. The app
// computes one when the user picks an order, the run or the tag changes, or
// on an explicit re-sort, never on a step change: units stay put while the
// user scrubs through training.

/** [name, label, description] of each order, in the order the sort menu lists them. */
export const ORDERS = [
  ["index", "Unit index", "unit 0 first"],
  ["activity", "Activity", "largest mean signal first"],
  ["selectivity", "Selectivity", "smallest effective sample size first: weight on the fewest windows"],
  ["change", "Change A → B", "most changed from A to B first (compare mode)"],
  ["class", "Dominant class", "by the class of largest mean weight, then by that weight"],
  ["similarity", "Similarity", "units that behave alike side by side (clustering of their activations)"],
];

/** What each order needs: data of every unit at one step, comparison scores, or /order. */
export const NEEDS = {index: null, activity: "units", selectivity: "units", class: "units",
  change: "change", similarity: "similarity"};

// One more order per annotation the probe has, named "annotation:NAME":
// the units most correlated with that annotation first, either sign (a unit
// low inside strings tracks strings as much as one high there).
const ANNOTATION = "annotation:";

/** [name, label, description] of the orders of a tag: ORDERS and one per annotation of its description. */
export function ordersOf(description) {
  const names = description?.annotation_names ?? [];
  return [...ORDERS, ...names.map((n) => [`${ANNOTATION}${n}`, `annotation: ${n}`,
    `strongest correlation, either sign, with the annotation “${n}” first (at the window's last input)`])];
}

/** The annotation an order sorts by ("annotation:NAME" -> NAME), or null. */
export function annotationOf(name) {
  return typeof name === "string" && name.startsWith(ANNOTATION) ? name.slice(ANNOTATION.length) : null;
}

/** What the order `name` needs (see NEEDS); annotation orders need every unit at one step. */
export function needsOf(name) {
  return annotationOf(name) !== null ? "units" : NEEDS[name] ?? null;
}

/**
 * The order `name` of `count` units from what it needs:
 *   stats(unit): model.unitStats at the step sorted by (activity, selectivity);
 *   dominant(unit): model.dominantClass, {index, weight} or null (class);
 *   change: per-unit change scores, NaN where unknown (change);
 *   similarity: /order's `similarity` list (similarity);
 *   annotation(unit): the unit's correlation with the order's annotation
 *     ("annotation:NAME"), NaN where not logged.
 * Units without a value (dead, unmatched, no class) go last.
 */
export function unitOrder(name, {count, stats, dominant, change, similarity, annotation}) {
  if (annotationOf(name) !== null) return sortUnits(count, (u) => -Math.abs(annotation(u)), (u) => -annotation(u));
  switch (name) {
    case "activity":
      return sortUnits(count, (u) => -stats(u).signalMean);
    case "selectivity":  // a low effective sample size: the unit's weight is on few windows
      return sortUnits(count, (u) => (stats(u).dead ? NaN : stats(u).effectiveSampleSize));
    case "change":
      return sortUnits(count, (u) => -change[u]);
    case "class":
      return sortUnits(count, (u) => dominant(u)?.index ?? NaN, (u) => -(dominant(u)?.weight ?? NaN));
    case "similarity":
      return Int32Array.from(similarity);
    default:
      return null;
  }
}

/**
 * Units 0..count-1 sorted by the first key (unit -> number), ties by the
 * next, then by unit; NaN sorts last.
 */
export function sortUnits(count, ...keys) {
  const columns = keys.map((key) => Float64Array.from({length: count}, (_, u) => key(u)));
  const units = Int32Array.from({length: count}, (_, u) => u);
  return units.sort((a, b) => {
    for (const column of columns) {
      const d = compare(column[a], column[b]);
      if (d) return d;
    }
    return a - b;
  });
}

function compare(x, y) {
  if (Number.isNaN(x)) return Number.isNaN(y) ? 0 : 1;
  if (Number.isNaN(y)) return -1;
  return x - y;
}

/**
 * An order (or null) applied to `count` units: unitAt(position),
 * positionOf(unit) and `valid`, false (identity) when the order was not
 * made for `count` units (e.g. a step of another layout); `units`: the
 * order applied (null when identity).
 */
export function orderMaps(units, count) {
  const valid = Boolean(units) && units.length === count;
  const position = new Int32Array(count);
  for (let p = 0; p < count; p++) position[valid ? units[p] : p] = p;
  return {unitAt: (p) => (valid ? units[p] : p), positionOf: (u) => (u >= 0 && u < count ? position[u] : -1),
    valid, units: valid ? units : null};
}
