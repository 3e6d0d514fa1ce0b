// Small helpers shared by the page's modules: DOM building (text only, never HTML),
// number formatting and the operating-point lookup on a stored curve.

export const byId = (id) => document.getElementById(id);

/** An element with properties (textContent, className, attributes via `attrs`) and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { attrs, dataset, ...rest } = props;
  Object.assign(node, rest);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  Object.assign(node.dataset, dataset || {});
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

export function fmt(value, digits = 3) {
  return isNumber(value) ? value.toFixed(digits) : "–";
}

/** A share in [0, 1] as a percentage with one decimal. */
export function percent(value) {
  return isNumber(value) ? `${(100 * value).toFixed(1)}%` : "–";
}

export function f1Of(precision, recall) {
  if (!Number.isFinite(precision) || !Number.isFinite(recall)) return NaN;
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

export function shortHash(hash) {
  return typeof hash === "string" ? hash.slice(0, 12) : "–";
}

export function when(iso) {
  const date = new Date(iso);
  const time = el("time", { textContent: iso, attrs: { datetime: iso, title: iso } });
  if (!Number.isNaN(date.getTime())) {
    time.textContent = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  return time;
}

/** [low, high] of an interval given as a pair or as {low, high} (or lo/hi, lower/upper). */
export function intervalBounds(value) {
  if (Array.isArray(value) && value.length === 2) return value;
  if (value && typeof value === "object") {
    const low = value.low ?? value.lo ?? value.lower;
    const high = value.high ?? value.hi ?? value.upper;
    if (low !== undefined && high !== undefined) return [low, high];
  }
  return null;
}

export function intervalText(value) {
  if (value === null || value === undefined) return "–";
  const bounds = intervalBounds(value);
  if (bounds) return `${fmt(bounds[0])}–${fmt(bounds[1])}`;
  if (typeof value === "object") return JSON.stringify(value);
  return typeof value === "number" ? fmt(value) : String(value);
}

export function showMessage(node, text) {
  node.textContent = text || "";
  if (node.classList.contains("error")) node.hidden = !text;
}

/** The operating point for threshold t: the smallest stored threshold >= t, else the end. */
export function operatingIndex(thresholds, t) {
  let low = 0;
  let high = thresholds.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (thresholds[mid] < t) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Plotly's layout shared by the page's charts. */
export function chartLayout({ height = 260, xTitle, yTitle, legend = false }) {
  return {
    height,
    margin: { l: 52, r: 12, t: 8, b: legend ? 44 : 40 },
    showlegend: legend,
    legend: legend ? { orientation: "h", y: -0.25 } : undefined,
    xaxis: { title: { text: xTitle }, range: [-0.02, 1.02], zeroline: false },
    yaxis: { title: { text: yTitle }, range: [-0.02, 1.05], zeroline: false },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#fbfbfd",
    font: { family: "system-ui, sans-serif", size: 12 },
  };
}
