// 256-entry RGBA lookup tables: viridis for values, a blue-white-red
// diverging map (RdBu reversed) for differences around zero.

const VIRIDIS = [
  [68, 1, 84], [72, 36, 117], [65, 68, 135], [53, 95, 141], [42, 120, 142],
  [33, 145, 140], [34, 168, 132], [68, 191, 112], [122, 209, 81], [189, 223, 38],
  [253, 231, 37],
];

const BLUE_WHITE_RED = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
  [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43],
  [103, 0, 31],
];

/** Linear interpolation through evenly spaced RGB stops into 256 RGBA entries. */
function table(stops) {
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2);
    const t = x - k;
    for (let c = 0; c < 3; c++) lut[4 * i + c] = stops[k][c] + t * (stops[k + 1][c] - stops[k][c]);
    lut[4 * i + 3] = 255;
  }
  return lut;
}

export const SEQUENTIAL = table(VIRIDIS);
export const DIVERGING = table(BLUE_WHITE_RED);

/** CSS linear-gradient of a table, for colour bars drawn with DOM. */
export function cssGradient(lut) {
  const stops = [0, 64, 128, 191, 255].map((i) =>
    `rgb(${lut[4 * i]}, ${lut[4 * i + 1]}, ${lut[4 * i + 2]}) ${(100 * i) / 255}%`);
  return `linear-gradient(to right, ${stops.join(", ")})`;
}

/**
 * {lo, hi} over the finite values of the given arrays (nulls skipped; {0, 0}
 * when there are none), symmetric about 0 when `diverging`; `padFlat` widens
 * a flat range to 1 (for axes, which need a span; colours map flat to the middle).
 */
export function valueRange(arrays, diverging, padFlat = false) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of arrays) {
    if (!values) continue;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo > hi) lo = hi = 0;
  if (diverging) {
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    [lo, hi] = [-m, m];
  }
  return padFlat && hi - lo < 1e-9 ? {lo: lo - 0.5, hi: hi + 0.5} : {lo, hi};
}
