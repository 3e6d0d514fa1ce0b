// The optional parts of a set and of the server, each drawn only when the data has it:
// a softmax set's risk-coverage curve, the cross-fitted "expected on new data" figures,
// a calibrated set's reliability diagrams, and the drift of the served scores.

import {
  byId, chartLayout, el, fmt, intervalBounds, intervalText, isNumber, operatingIndex,
  percent, showMessage,
} from "./common.js";

// --- softmax: the risk-coverage curve -------------------------------------------------

/**
 * A softmax set's risk-coverage curve, from the report (`risk_coverage`) or the curves
 * answer, as a slider card's curve: `thresholds` (m, ascending), `coverage`, `accuracy`
 * (and `answered`) (m + 1, the last: nothing answered), the tuned `threshold` with its
 * `chosen_index`, and "every row answered" as the default point. null when absent.
 */
export function riskCoverageOf(report, curvesData) {
  const found = report?.risk_coverage ?? curvesData?.risk_coverage ?? null;
  if (!found || typeof found !== "object") return null;
  const curve = found.curve ?? found;
  // The tuned point's figures: the set's `multiclass` summary, or a full ConfidenceResult.
  const summary = [report?.multiclass, curvesData?.multiclass, found.curve ? found : null].find(
    (item) => item && typeof item === "object",
  ) ?? {};
  const arrays = ["thresholds", "coverage", "accuracy"];
  if (!arrays.every((key) => Array.isArray(curve[key]))) return null;
  if (curve.coverage.length !== curve.thresholds.length + 1) return null;
  const params = report?.threshold_set?.params ?? {};
  const threshold =
    [summary.threshold, curve.threshold, params.confidence_threshold].find(isNumber) ??
    curve.thresholds[curve.chosen_index] ??
    0;
  const chosen = Number.isInteger(curve.chosen_index)
    ? curve.chosen_index
    : operatingIndex(curve.thresholds, threshold);
  return {
    ...curve,
    threshold,
    chosen_index: chosen,
    default_index: Number.isInteger(curve.default_index) ? curve.default_index : 0,
    default_threshold: isNumber(curve.default_threshold) ? curve.default_threshold : 0,
    summary,
  };
}

/** A softmax set's per-class figures at the confidence threshold, as table rows. */
export function classRows(report) {
  const perClass = report?.multiclass?.per_class;
  if (!Array.isArray(perClass)) return null;
  return perClass.map((row) =>
    el(
      "tr",
      { dataset: { label: row.label } },
      el("th", { scope: "row", textContent: row.label }),
      el("td", { className: "num", textContent: fmt(row.precision) }),
      el("td", { className: "num", textContent: fmt(row.recall) }),
      el("td", { className: "num", textContent: String(row.support ?? "–") }),
      el("td", { className: "num", textContent: String(row.predicted ?? "–") }),
      el("td", { className: "num", textContent: fmt(row.at_default?.precision) }),
      el("td", { className: "num", textContent: fmt(row.at_default?.recall) }),
    ),
  );
}

export const CLASS_TITLES = [
  "Class", "Precision (answered)", "Recall", "Support", "Predicted",
  "Precision answering all", "Recall answering all",
];

/** One sentence on the tuned confidence threshold (from the set's stored result). */
export function confidenceText(curve) {
  const found = curve.summary;
  const coverage = isNumber(found.coverage) ? found.coverage : curve.coverage[curve.chosen_index];
  const accuracy = isNumber(found.accuracy) ? found.accuracy : curve.accuracy[curve.chosen_index];
  const parts = [
    `Answer a row when its top probability is at least ${fmt(curve.threshold, 4)}: ` +
      `coverage ${percent(coverage)}, accuracy of answered rows ${fmt(accuracy)}`,
  ];
  if (isNumber(found.overall_accuracy)) {
    parts.push(`accuracy answering every row ${fmt(found.overall_accuracy)}`);
  }
  if (found.objective && isNumber(found.params?.target)) {
    parts.push(`${found.objective}, target ${found.params.target}`);
  }
  if (found.status && found.status !== "ok") parts.push(`status ${found.status}`);
  return `${parts.join("; ")}.`;
}

// --- issue 20: in sample vs expected on new data ----------------------------------------

/** " in sample; expected on new data 0.47 (90%: 0.43–0.51)" for a summary pair. */
export function expectedText(pair) {
  if (!pair || !("expected" in pair)) return "";
  if (!isNumber(pair.expected)) return "; no expected figure on new data";
  const bounds = intervalBounds(pair.expected_interval);
  const interval = bounds ? ` (90%: ${fmt(bounds[0])}–${fmt(bounds[1])})` : "";
  return `; expected on new data ${fmt(pair.expected)}${interval}`;
}

export function hasExpected(report) {
  const { summary, per_label: rows } = report;
  return (
    Boolean(summary && ("expected" in (summary.macro_f1 ?? {}))) ||
    (rows ?? []).some((row) => "expected_f1" in row)
  );
}

/** The per-label cell: "0.412 (0.35–0.47)", or the reason when the label has none. */
export function expectedCell(row) {
  if (isNumber(row.expected_f1)) {
    const bounds = intervalBounds(row.expected_f1_interval);
    const value = fmt(row.expected_f1);
    const text = bounds ? `${value} (${intervalText(bounds)})` : value;
    return el("td", { className: "num", textContent: text });
  }
  const reason =
    row.expected_f1_reason ?? row.expected_reason ?? row.expected_note ?? row.reason ?? null;
  return el("td", {
    className: "muted reason",
    textContent: reason ? `none: ${reason}` : "none",
  });
}

// --- issue 19: calibration --------------------------------------------------------------

/** {method, before, after} from the report, or null when the set has no calibration. */
export function calibrationOf(report) {
  const params = report?.threshold_set?.params ?? {};
  const found = report?.calibration ?? params.calibration?.report ?? null;
  const pair = found?.report ?? found;
  if (!pair?.before?.per_label || !pair?.after?.per_label) return null;
  const method = found.method ?? params.calibration?.method ?? "calibrated";
  return { method, before: pair.before, after: pair.after };
}

export function renderCalibration(report, plots) {
  const box = byId("calibration");
  const found = calibrationOf(report);
  box.hidden = !found;
  if (!found) return null;
  const { method, before, after } = found;
  byId("calibration-summary").textContent =
    `Scores calibrated by ${method} (figures on validation rows the calibrator did not see). ` +
    `ECE ${fmt(before.ece)} before, ${fmt(after.ece)} after; ` +
    `Brier score ${fmt(before.brier)} before, ${fmt(after.brier)} after. ` +
    "Thresholds apply to the calibrated scores.";
  const afterBy = new Map(after.per_label.map((row) => [row.label, row]));
  byId("calibration-rows").replaceChildren(
    ...before.per_label.map((row) => {
      const other = afterBy.get(row.label) ?? {};
      return el(
        "tr",
        { dataset: { label: row.label } },
        el("th", { scope: "row", textContent: row.label }),
        el("td", { className: "num", textContent: fmt(row.ece) }),
        el("td", { className: "num", textContent: fmt(other.ece) }),
        el("td", { className: "num", textContent: fmt(row.brier) }),
        el("td", { className: "num", textContent: fmt(other.brier) }),
      );
    }),
  );
  const select = byId("calibration-label");
  const kept = select.value;
  select.replaceChildren(
    ...before.per_label.map((row) => el("option", { value: row.label, textContent: row.label })),
  );
  if (before.per_label.some((row) => row.label === kept)) select.value = kept;
  const draw = () => drawReliability(found, select.value, plots);
  select.onchange = draw;
  return draw;
}

/** The bins of one label's diagram with observations: x mean predicted, y observed. */
export function reliabilityPoints(diagram) {
  const xs = [];
  const ys = [];
  const counts = [];
  const centers = diagram.bin_centers ?? [];
  const observed = diagram.observed ?? [];
  observed.forEach((y, i) => {
    if (!isNumber(y)) return;
    xs.push(diagram.mean_predicted?.[i] ?? centers[i]);
    ys.push(y);
    counts.push(diagram.counts?.[i] ?? null);
  });
  return { x: xs, y: ys, counts };
}

function drawReliability({ before, after }, label, plots) {
  const plot = byId("reliability-plot");
  window.Plotly?.purge(plot);
  if (!window.Plotly) return;
  const pick = (found) => found.per_label.find((row) => row.label === label);
  const traces = [
    {
      x: [0, 1],
      y: [0, 1],
      mode: "lines",
      name: "perfectly calibrated",
      line: { color: "#9aa3b5", dash: "dot", width: 1 },
      hoverinfo: "skip",
    },
  ];
  const described = [];
  for (const [name, found, color, symbol] of [
    ["before", before, "#d35400", "square"],
    ["after", after, "#1f5fa8", "circle"],
  ]) {
    const row = pick(found);
    if (!row?.reliability) continue;
    const points = reliabilityPoints(row.reliability);
    traces.push({
      x: points.x,
      y: points.y,
      customdata: points.counts,
      mode: "lines+markers",
      name: `${name} (ECE ${fmt(row.ece)})`,
      line: { color, width: 2, dash: name === "before" ? "dash" : "solid" },
      marker: { color, symbol, size: 8 },
      hovertemplate:
        `${name}<br>mean score %{x:.3f}<br>observed %{y:.3f}<br>` +
        "%{customdata} rows<extra></extra>",
    });
    described.push(`${name} ECE ${fmt(row.ece)}`);
  }
  plot.dataset.label = label;
  plot.setAttribute(
    "aria-label",
    `Reliability diagram of ${label}: observed share of positives against mean score per bin, ` +
      `${described.join(", ")}.`,
  );
  const layout = chartLayout({
    height: 320,
    xTitle: "Mean score in the bin",
    yTitle: "Observed share of positives",
    legend: true,
  });
  window.Plotly.newPlot(plot, traces, layout, { displayModeBar: false, responsive: true });
  if (!plots.includes(plot)) plots.push(plot);
}

// --- issue 19: drift of the served scores -------------------------------------------------

const pick = (object, ...keys) => keys.map((key) => object?.[key]).find((v) => v !== undefined);

/**
 * GET /drift's answer as {setId, windowSize, nRows, rows: [{label, share, expectedShare,
 * mean, expectedMean, drifted}]}: per-label objects (`labels` or `per_label`), or arrays
 * aligned with the label names.
 */
export function normaliseDrift(data, labelNames = []) {
  const window = typeof data.window === "object" && data.window ? data.window : {};
  const result = {
    setId: pick(data, "threshold_set_id", "set_id") ?? null,
    windowSize: pick(data, "window_size", "size") ?? pick(window, "size", "window_size") ?? null,
    nRows: pick(data, "n_rows", "rows") ?? pick(window, "n_rows", "rows") ?? null,
    rows: [],
  };
  const perLabel = [data.labels, data.per_label].find(
    (list) => Array.isArray(list) && list.length && typeof list[0] === "object",
  );
  const fromObject = (row, i) => ({
    label: String(pick(row, "label", "name") ?? labelNames[i] ?? i),
    share: pick(row, "positive_share", "positive_rate", "share"),
    expectedShare: pick(row, "expected_positive_rate", "expected_positive_share", "expected_share"),
    mean: pick(row, "mean_score"),
    expectedMean: pick(row, "expected_mean_score"),
    drifted: Boolean(pick(row, "drifted", "drift")),
  });
  if (perLabel) {
    result.rows = perLabel.map(fromObject);
  } else {
    const names = Array.isArray(data.labels) ? data.labels : labelNames;
    const at = (value, i) => (Array.isArray(value) ? value[i] : value?.[names[i]]);
    result.rows = names.map((name, i) =>
      fromObject(
        {
          label: name,
          positive_share: at(data.positive_share, i),
          expected_positive_rate: at(
            pick(data, "expected_positive_rate", "expected_positive_share"),
            i,
          ),
          mean_score: at(data.mean_score, i),
          expected_mean_score: at(data.expected_mean_score, i),
          drifted: at(pick(data, "drifted", "drifted_labels"), i),
        },
        i,
      ),
    );
    // A list of drifted names instead of flags.
    if (Array.isArray(data.drifted_labels) && typeof data.drifted_labels[0] === "string") {
      const drifted = new Set(data.drifted_labels);
      for (const row of result.rows) row.drifted = drifted.has(row.label);
    }
  }
  return result;
}

/** Fill the drift panel; `data` is GET /drift's answer. */
export function renderDrift(data, labelNames) {
  const found = normaliseDrift(data, labelNames);
  const drifted = found.rows.filter((row) => row.drifted).map((row) => row.label);
  const window =
    found.windowSize != null ? `a window of at most ${found.windowSize} rows` : "the window";
  const rows = found.nRows != null ? `${found.nRows} rows in it` : "";
  const set = found.setId != null ? ` for set ${found.setId}` : " (no active set: 0.5 everywhere)";
  const expectedRows = isNumber(data.expected_rows) ? ` (${data.expected_rows} rows)` : "";
  const expected = found.rows.some((row) => isNumber(row.expectedShare))
    ? `, against the rates on the set's validation data${expectedRows}`
    : "; the set carries no expected rates to compare with";
  byId("drift-summary").textContent =
    `Served scores over ${window}${rows ? ` (${rows})` : ""}${set}${expected}. ` +
    `${drifted.length ? `Drifted: ${drifted.join(", ")}.` : "No label has drifted."}`;
  byId("drift-rows").replaceChildren(
    ...found.rows.map((row) =>
      el(
        "tr",
        { className: row.drifted ? "drifted" : "", dataset: { label: row.label } },
        el("th", { scope: "row", textContent: row.label }),
        el("td", { className: "num", textContent: percent(row.share) }),
        el("td", { className: "num", textContent: percent(row.expectedShare) }),
        el("td", { className: "num", textContent: fmt(row.mean) }),
        el("td", { className: "num", textContent: fmt(row.expectedMean) }),
        el("td", {
          className: row.drifted ? "warn" : "muted",
          textContent: row.drifted ? "drifted" : "no",
        }),
      ),
    ),
  );
  byId("drift-body").hidden = false;
  return found;
}

export function driftError(message) {
  showMessage(byId("drift-error"), message);
}
