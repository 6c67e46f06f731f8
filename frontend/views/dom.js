// Tiny DOM builder. Strings become text nodes, never HTML, so run, tag and
// class names from the logs cannot inject markup.

/**
 * el("button", {class: "icon", title: "Next"}, "›") -> <button class="icon" title="Next">›</button>
 * Attributes whose value is null/undefined/false are skipped; `true` sets an empty attribute.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** Replaces a <select>'s options with `values` (text only) and selects `selected`. */
export function setOptions(select, values, selected) {
  const current = Array.from(select.options, (o) => o.value);
  if (current.length !== values.length || current.some((v, i) => v !== values[i])) {
    // Rebuilt only on change: replacing the options closes an open dropdown.
    select.replaceChildren(...values.map((v) => el("option", {value: v}, v)));
  }
  select.value = selected;
}

/** Formats a number compactly for labels: 3 significant digits, no exponent below 1e5. */
export function fmt(value, digits = 3) {
  if (!Number.isFinite(value)) return String(value);
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) {
    return value.toExponential(digits - 1);
  }
  return String(Number(value.toPrecision(digits)));
}

/** Formats a fraction in [0, 1] as a percentage. */
export function pct(value) {
  return Number.isFinite(value) ? `${fmt(100 * value)}%` : String(value);
}

/** Sizes `canvas` to `width` x `height` CSS px at the screen's pixel ratio; returns its context, in CSS px. */
export function sizeCanvas(canvas, width, height) {
  const dpr = globalThis.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** Runs draw() clipped to the cell at (x, y), w x h CSS px, on a white background. */
export function inCell(ctx, x, y, w, h, draw) {
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(x, y, w, h);
  ctx.save();
  ctx.beginPath();
  ctx.rect(x, y, w, h);
  ctx.clip();
  draw();
  ctx.restore();
}

/** Sets `ctx` up for an axis: 11 px grey labels, right-aligned and centred on their tick, 1 px `stroke` lines. */
export function axisPen(ctx, stroke) {
  ctx.font = "11px Roboto, \"Helvetica Neue\", Arial, sans-serif";
  ctx.fillStyle = "#616161";
  ctx.strokeStyle = stroke;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
}
