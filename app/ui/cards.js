// A curve with a threshold slider: the chart, a slider and an exact-value field that
// preview the stored curve's operating point at any threshold (nothing on the server
// changes). Two kinds: a label's precision-recall curve, and a softmax set's
// risk-coverage curve (coverage on x, accuracy of the answered rows on y).

import { byId, el, f1Of, fmt, operatingIndex, percent, chartLayout } from "./common.js";

const COLORS = { curve: "#1f5fa8", chosen: "#c0392b", fallback: "#555555", slider: "#1e8449" };

/** A label's precision-recall curve (sklearn semantics: the last point predicts nothing). */
export const PR_KIND = {
  x: "recall",
  y: "precision",
  xTitle: "Recall",
  yTitle: "Precision",
  chartName: "Precision-recall curve",
  resetText: "Back to the tuned threshold",
  point(curve, index) {
    const precision = curve.precision[index];
    const recall = curve.recall[index];
    return { precision, recall, f1: f1Of(precision, recall) };
  },
  text(threshold, point) {
    return (
      `threshold ${fmt(threshold, 3)}: precision ${fmt(point.precision)}, ` +
      `recall ${fmt(point.recall)}, F1 ${fmt(point.f1)}`
    );
  },
  items(point, chosen, fallback) {
    return [
      [`Precision ${fmt(point.precision)}`],
      [`Recall ${fmt(point.recall)}`],
      [`F1 ${fmt(point.f1)}`],
      [`tuned F1 ${fmt(chosen.f1)}, at 0.5 F1 ${fmt(fallback.f1)}`, "muted"],
    ];
  },
  endText: "nothing predicted",
  defaultName: "0.5",
};

/** A softmax set's risk-coverage curve: a row is answered iff its top probability >= t. */
export const RC_KIND = {
  x: "coverage",
  y: "accuracy",
  xTitle: "Coverage (share of rows answered)",
  yTitle: "Accuracy of answered rows",
  chartName: "Risk-coverage curve",
  resetText: "Back to the tuned confidence threshold",
  point(curve, index) {
    const point = { coverage: curve.coverage[index], accuracy: curve.accuracy[index] };
    if (Array.isArray(curve.answered)) point.answered = curve.answered[index];
    return point;
  },
  text(threshold, point) {
    return (
      `confidence threshold ${fmt(threshold, 3)}: coverage ${percent(point.coverage)}, ` +
      `accuracy ${fmt(point.accuracy)}`
    );
  },
  items(point, chosen) {
    const items = [
      [`Coverage ${percent(point.coverage)}`],
      [`Accuracy ${fmt(point.accuracy)}`],
    ];
    if (point.answered !== undefined) items.push([`${point.answered} rows answered`]);
    const tuned = `tuned: coverage ${percent(chosen.coverage)}, accuracy ${fmt(chosen.accuracy)}`;
    items.push([tuned, "muted"]);
    return items;
  },
  endText: "nothing answered",
  defaultName: "every row answered",
  // Accuracy often lies in a narrow band near 1: let the axis fit it.
  yAuto: true,
};

/**
 * One card: `curve` has `thresholds` (ascending, m), the kind's x and y arrays (m + 1),
 * `threshold` (the tuned one), `chosen_index`, `default_index` and `default_threshold`.
 * `plots` collects the drawn plot nodes (for purging). Returns {node, draw}.
 */
export function sliderCard(curve, index, { kind = PR_KIND, title, note = null, plots }) {
  const node = byId("curve-template").content.firstElementChild.cloneNode(true);
  node.id = `${kind === PR_KIND ? "curve" : "rc"}-${index}`;
  node.dataset.label = title;
  const prefix = kind === PR_KIND ? "" : "rc-";
  const sliderId = `${prefix}slider-${index}`;
  const numberId = `${prefix}threshold-${index}`;
  const chosen = kind.point(curve, curve.chosen_index);
  const fallback = kind.point(curve, curve.default_index);

  const heading = node.querySelector(".curve-title");
  heading.id = `${prefix}curve-title-${index}`;
  heading.textContent = title;
  if (note) heading.append(" ", el("span", { className: "warn", textContent: note }));
  const plot = node.querySelector(".plot");
  plot.setAttribute(
    "aria-label",
    `${kind.chartName} of ${title}. Tuned ${kind.text(curve.threshold, chosen)}. ` +
      `At ${kind.text(curve.default_threshold, fallback)}.`,
  );
  const slider = node.querySelector(".slider");
  const number = node.querySelector(".number");
  slider.id = sliderId;
  number.id = numberId;
  const what = kind === PR_KIND ? "Threshold" : "Confidence threshold";
  const sliderLabel = node.querySelector(".slider-label");
  sliderLabel.htmlFor = sliderId;
  sliderLabel.textContent = `${what} for ${title}`;
  const numberLabel = node.querySelector(".number-label");
  numberLabel.htmlFor = numberId;
  numberLabel.textContent = `Exact ${what.toLowerCase()} for ${title}`;
  number.step = "any";
  const reset = node.querySelector(".reset");
  reset.textContent = kind.resetText;
  reset.setAttribute("aria-label", `${kind.resetText} of ${title}`);
  const readout = node.querySelector(".readout");
  readout.htmlFor = `${sliderId} ${numberId}`;

  let frame = 0;
  let pending = null;
  function show(threshold, at, source) {
    const point = kind.point(curve, at);
    readout.replaceChildren(
      ...kind.items(point, chosen, fallback).map(([text, extra]) =>
        el("span", { className: `readout-item${extra ? ` ${extra}` : ""}`, textContent: text }),
      ),
    );
    for (const [key, value] of Object.entries(point)) readout.dataset[key] = String(value);
    slider.setAttribute("aria-valuetext", kind.text(threshold, point));
    if (source !== "slider") slider.value = String(threshold);
    if (source !== "number") number.value = threshold.toFixed(4);
    pending = point;
    if (!frame && plot.data) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        const moved = { x: [[pending[kind.x]]], y: [[pending[kind.y]]] };
        window.Plotly.restyle(plot, moved, [3]);
      });
    }
  }
  function fromThreshold(threshold, source) {
    if (!Number.isFinite(threshold)) return;
    const t = Math.min(1, Math.max(0, threshold));
    show(t, operatingIndex(curve.thresholds, t), source);
  }
  slider.addEventListener("input", () => fromThreshold(slider.valueAsNumber, "slider"));
  number.addEventListener("input", () => fromThreshold(number.valueAsNumber, "number"));
  reset.addEventListener("click", () => show(curve.threshold, curve.chosen_index, "reset"));

  function draw() {
    const custom = curve.thresholds.map((t) => `score ≥ ${fmt(t, 4)}`);
    custom.push(kind.endText);
    const axes = `${kind.x} %{x:.3f}<br>${kind.y} %{y:.3f}`;
    const marker = (point, name, symbol, color, size) => ({
      x: [point[kind.x]],
      y: [point[kind.y]],
      mode: "markers",
      name,
      marker: { symbol, color, size, line: { color: "#ffffff", width: 1 } },
      hovertemplate: `${name}<br>${axes}<extra></extra>`,
    });
    const traces = [
      {
        x: curve[kind.x],
        y: curve[kind.y],
        customdata: custom,
        mode: "lines",
        name: "curve",
        line: { color: COLORS.curve, width: 2 },
        hovertemplate: `%{customdata}<br>${axes}<extra></extra>`,
      },
      marker(chosen, `tuned ${fmt(curve.threshold, 3)}`, "diamond", COLORS.chosen, 11),
      marker(fallback, kind.defaultName, "square", COLORS.fallback, 10),
      marker(chosen, "slider", "circle-open", COLORS.slider, 19),
    ];
    traces[3].marker.line = { color: COLORS.slider, width: 3 };
    const layout = chartLayout({ xTitle: kind.xTitle, yTitle: kind.yTitle });
    if (kind.yAuto) layout.yaxis = { title: { text: kind.yTitle }, autorange: true };
    window.Plotly.newPlot(plot, traces, layout, { displayModeBar: false, responsive: true });
    plots.push(plot);
    show(curve.threshold, curve.chosen_index, "reset");
  }
  return { node, draw };
}
