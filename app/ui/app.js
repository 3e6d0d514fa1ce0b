// labelcut's web page: reads the JSON API, draws each label's precision-recall curve
// (or a softmax set's risk-coverage curve) with plotly.js (served by the app) and
// previews other thresholds from the stored curve. Every text from the server goes into
// the DOM through textContent.

import { adminKey, api, keepAdminKey } from "./api.js";
import { PR_KIND, RC_KIND, sliderCard } from "./cards.js";
import {
  byId, el, fmt, intervalText, isNumber, percent, shortHash, showMessage, when,
} from "./common.js";
import {
  CLASS_TITLES, classRows, confidenceText, driftError, expectedCell, expectedText, hasExpected,
  renderCalibration, renderDrift, riskCoverageOf,
} from "./panels.js";
import { adaptTuneForm, setUpTuneForm, tuneFormSchema } from "./tune.js";

export { operatingIndex } from "./common.js";

const CONSTRAINED = new Set([
  "recall_at_precision", "precision_at_recall", "coverage_at_accuracy", "accuracy_at_coverage",
]);
// The compared sets: first and second (colour-blind-safe blue and orange).
const PAIR_COLORS = ["#1f5fa8", "#d35400"];

const state = {
  model: null,
  activeId: null,
  shownId: null,
  shownReport: null,
  token: 0,
  plots: [],
  items: [],
  compared: null,
};

// --- small helpers --------------------------------------------------------------------

/** The objective and the parameters that shaped a set, in a few words. */
function objectiveText(objective, params = {}) {
  const parts = [objective];
  if ((objective === "fbeta" || objective === "micro_fbeta") && params.beta != null) {
    parts.push(`β ${params.beta}`);
  }
  if (objective === "cost") {
    const cost = (value) => (typeof value === "object" ? "by label" : value);
    if (params.cost_fp != null) parts.push(`cost FP ${cost(params.cost_fp)}`);
    if (params.cost_fn != null) parts.push(`cost FN ${cost(params.cost_fn)}`);
  }
  if (CONSTRAINED.has(objective) && params.target != null) parts.push(`target ${params.target}`);
  if (params.min_positives != null && params.min_positives !== 1) {
    parts.push(`min positives ${params.min_positives}`);
  }
  if (params.strategy) parts.push(`${params.strategy} strategy`);
  if (params.decision_rule === "abstain") {
    parts.push(params.npv_target != null ? `abstain, NPV ${params.npv_target}` : "abstain");
  }
  if (isNumber(params.confidence_threshold)) {
    parts.push(`confidence ≥ ${fmt(params.confidence_threshold, 3)}`);
  }
  const method = params.calibration?.method ?? params.calibration;
  if (typeof method === "string" && method !== "none") parts.push(`${method} calibration`);
  return parts.join(", ");
}

// --- model, active set, history -------------------------------------------------------

async function loadModel() {
  for (;;) {
    try {
      state.model = await api("/model");
      break;
    } catch (error) {
      if (error.status !== 503) throw error;
      showMessage(byId("page-error"), `${error.message} Retrying…`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  showMessage(byId("page-error"), "");
  const model = state.model;
  byId("model-name").textContent = `${model.name} (version ${model.version}, ${model.format})`;
  byId("model-device").textContent = `${model.device}, ${model.dtype}`;
  if (model.activation) {
    const kind =
      model.activation === "softmax"
        ? "softmax: multi-class, one class per row"
        : model.activation === "sigmoid"
          ? "sigmoid: multi-label, each label on its own"
          : model.activation;
    const outputs = model.outputs ? `; the module returns ${model.outputs}` : "";
    byId("model-activation").textContent = `${kind}${outputs}`;
    byId("model-activation").hidden = false;
    byId("model-activation-term").hidden = false;
  }
  byId("model-sha").textContent = shortHash(model.sha256);
  byId("model-sha").title = model.sha256;
  byId("model-label-count").textContent = `${model.labels.length}:`;
  byId("model-labels").textContent = model.labels.join(", ");
}

async function loadActive() {
  const active = await api("/thresholds");
  const set = active.threshold_set;
  state.activeId = set ? set.id : null;
  const node = byId("active-set");
  node.replaceChildren();
  if (!set) {
    node.textContent = "none: every label is cut at 0.5";
    return;
  }
  node.append(
    el("strong", { textContent: `Set ${set.id}` }),
    ` (${objectiveText(set.objective, set.params)}, tuned `,
    when(set.created_at),
    ` on ${set.n_samples} rows)`,
  );
}

async function loadHistory() {
  const { items } = await api("/thresholds/history?limit=100");
  const rows = byId("history-rows");
  rows.replaceChildren();
  byId("history-empty").hidden = items.length > 0;
  byId("history-table").hidden = items.length === 0;
  for (const item of items) rows.append(historyRow(item));
  state.items = items;
  fillSetSelects(items);
  return items;
}

/** The set pickers of "Evaluate" and "Compare": kept choices survive a refresh. */
function fillSetSelects(items) {
  const preferred = state.activeId ?? items[0]?.id;
  const other = items.find((item) => item.id !== preferred)?.id ?? preferred;
  const defaults = { "evaluate-set": preferred, "compare-a": preferred, "compare-b": other };
  for (const [id, fallback] of Object.entries(defaults)) {
    const select = byId(id);
    const kept = Number(select.value);
    select.replaceChildren(
      ...items.map((item) =>
        el("option", {
          value: String(item.id),
          textContent: `#${item.id} · ${objectiveText(item.objective, item.params)}${item.active ? " · active" : ""}`,
        }),
      ),
    );
    const chosen = items.some((item) => item.id === kept) ? kept : fallback;
    if (chosen !== undefined && chosen !== null) select.value = String(chosen);
  }
  for (const id of ["evaluate-submit", "compare-submit"]) byId(id).disabled = items.length === 0;
}

function historyRow(item) {
  const { summary } = item;
  const show = el("button", {
    type: "button",
    textContent: "Show",
    className: "show-set",
    attrs: { "aria-label": `Show set ${item.id}` },
    dataset: { setId: String(item.id) },
  });
  show.addEventListener("click", () => showSet(item.id, { focus: true }));
  const actions = el("td", { className: "actions" }, show);
  const stateCell = el("td");
  if (item.active) {
    stateCell.append(el("strong", { className: "badge", textContent: "Active" }));
  } else {
    const activate = el("button", {
      type: "button",
      textContent: "Activate",
      className: "activate-set",
      attrs: { "aria-label": `Activate set ${item.id}` },
      dataset: { setId: String(item.id) },
    });
    activate.addEventListener("click", () => activateSet(item.id));
    actions.append(" ", activate);
  }
  const row = el(
    "tr",
    { dataset: { setId: String(item.id) } },
    el("th", { scope: "row", textContent: `#${item.id}` }),
    el("td", {}, when(item.created_at)),
    el("td", { textContent: objectiveText(item.objective, item.params) }),
    el(
      "td",
      { className: "mono", title: item.data_sha256 },
      `${shortHash(item.data_sha256)} · ${item.n_samples} rows`,
    ),
    ...historyFigures(item),
    stateCell,
    actions,
  );
  if (item.id === state.shownId) row.setAttribute("aria-current", "true");
  return row;
}

function tunedVsDefault(pair) {
  if (!pair) return "–";
  const expected = isNumber(pair.expected) ? `; ${fmt(pair.expected)} expected` : "";
  return `${fmt(pair.tuned)} (${fmt(pair.default)})${expected}`;
}

/** The history row's two figure cells: macro/micro-F1, or a softmax set's confidence point. */
function historyFigures(item) {
  const multiclass = item.multiclass;
  if (!item.summary?.macro_f1 && multiclass) {
    return [
      el("td", { className: "num", textContent: `accuracy ${fmt(multiclass.accuracy)}` }),
      el("td", { className: "num", textContent: `coverage ${percent(multiclass.coverage)}` }),
    ];
  }
  return [
    el("td", { className: "num", textContent: tunedVsDefault(item.summary?.macro_f1) }),
    el("td", { className: "num", textContent: tunedVsDefault(item.summary?.micro_f1) }),
  ];
}
async function refreshSets() {
  await Promise.all([loadActive(), loadHistory()]);
}

async function activateSet(id) {
  const status = byId("history-status");
  const error = byId("history-error");
  showMessage(error, "");
  showMessage(status, `Activating set ${id}…`);
  try {
    await api(`/thresholds/${id}/activate`, { method: "POST", admin: true });
  } catch (failure) {
    showMessage(status, "");
    showMessage(error, `Set ${id} was not activated. ${failure.message}`);
    return;
  }
  byId("admin-key").removeAttribute("aria-invalid");
  await refreshSets();
  await loadDrift();
  showMessage(status, `Set ${id} is now active: /predict uses its thresholds.`);
  // The button just pressed is gone (the row is active now); keep focus in the row.
  document.querySelector(`#history-rows button.show-set[data-set-id="${id}"]`)?.focus();
  if (state.shownId === id && state.shownReport) {
    state.shownReport.threshold_set.active = true;
    renderSummary(state.shownReport);
  }
}

// --- one set: summary, diagnosis, per-label table -------------------------------------

async function showSet(id, { report = null, focus = false } = {}) {
  const token = ++state.token;
  state.shownId = id;
  for (const row of document.querySelectorAll("#history-rows tr")) {
    if (row.dataset.setId === String(id)) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
  history.replaceState(null, "", `#set=${id}`);
  byId("set-heading").textContent = `Threshold set ${id}`;
  byId("set-empty").hidden = true;
  byId("set-body").hidden = false;
  showMessage(byId("curves-status"), "Loading…");
  let found = report;
  try {
    found = found || (await api(`/thresholds/${id}`));
  } catch (error) {
    if (token !== state.token) return;
    showMessage(byId("set-summary"), error.message);
    clearCurves();
    showMessage(byId("curves-status"), "");
    return;
  }
  if (token !== state.token) return;
  state.shownReport = found;
  renderSummary(found);
  renderDiagnosis(found);
  renderLabelTable(found);
  if (focus) byId("set-detail").focus();
  await showCurves(id, found, token);
}

function renderSummary(report) {
  const info = report.threshold_set;
  const { summary } = report;
  const node = byId("set-summary");
  node.replaceChildren(
    `${objectiveText(info.objective, info.params)}; tuned `,
    when(info.created_at),
    ` on ${info.n_samples} rows (data sha256 `,
    el("span", { className: "mono", title: info.data_sha256, textContent: shortHash(info.data_sha256) }),
    "). ",
    ...summaryFigures(summary ?? {}).map((text) => el("span", { className: "figure", textContent: text })),
    info.active ? el("strong", { className: "badge", textContent: "Active" }) : "Not active.",
  );
}

/** The set's summary sentences: F1 in sample (and expected on new data), cost, review. */
function summaryFigures(summary = {}) {
  const sentences = [];
  const f1 = (name, pair) =>
    `${name} ${fmt(pair.tuned)} in sample (${fmt(pair.default)} at 0.5)${expectedText(pair)}. `;
  if (summary.macro_f1) sentences.push(f1("Macro-F1", summary.macro_f1));
  if (summary.micro_f1) sentences.push(f1("Micro-F1", summary.micro_f1));
  // What the default "adaptive" strategy kept, and why (its held-out gain over 0.5).
  if (summary.adaptive?.why) sentences.push(`Adaptive kept ${summary.adaptive.why}. `);
  const micro = summary.micro_fbeta;
  if (micro && isNumber(micro.tuned)) {
    const start = isNumber(micro.start) ? `, ${fmt(micro.start)} at the shared start` : "";
    const interval = micro.interval ? `, interval ${intervalText(micro.interval)}` : "";
    sentences.push(
      `Micro F-beta ${fmt(micro.tuned)} (${fmt(micro.default)} at 0.5${start}${interval}). `,
    );
  }
  const cost = summary.cost;
  if (cost && isNumber(cost.tuned)) {
    sentences.push(`Total cost of errors ${fmt(cost.tuned, 2)} (${fmt(cost.default, 2)} at 0.5). `);
  }
  if (isNumber(summary.review_share)) {
    sentences.push(`${percent(summary.review_share)} of the (row, label) pairs go to review. `);
  }
  return sentences;
}

function diagnosisMessages(report) {
  const diagnosis = report.diagnosis ?? report.summary?.diagnosis;
  if (!diagnosis) return [];
  if (Array.isArray(diagnosis)) return diagnosis.map(String);
  if (Array.isArray(diagnosis.messages)) return diagnosis.messages.map(String);
  return [];
}

function renderDiagnosis(report) {
  const messages = diagnosisMessages(report);
  const list = byId("diagnosis-messages");
  list.replaceChildren(...messages.map((text) => el("li", { textContent: text })));
  byId("diagnosis").hidden = messages.length === 0;
}

// Optional per-label fields: a column each, shown only when some label has the field.
const OPTIONAL_COLUMNS = [
  { key: "strategy", title: "Strategy", text: (v) => String(v) },
  { key: "threshold_interval", title: "Threshold interval", text: intervalText },
  { key: "f1_interval", title: "F1 interval", text: intervalText },
  { key: "unstable", title: "Stability", text: (v) => (v ? "unstable" : "stable") },
];

/** The lower threshold of label i of an abstain set: its row's, else the set's params. */
function lowerThreshold(report, row, i) {
  if (isNumber(row.lower)) return row.lower;
  const lower = report.lower_thresholds ?? report.threshold_set?.params?.lower_thresholds;
  if (Array.isArray(lower)) return lower[i];
  return lower && typeof lower === "object" ? lower[row.label] : undefined;
}

/** A label's cost at 0.5: `default_cost` (tuning's report) or `at_default.cost`. */
function defaultCost(row) {
  return isNumber(row.default_cost) ? row.default_cost : row.at_default?.cost;
}

// Columns of the wave-2 objectives and estimate: shown when the set has their fields.
const FIGURE_COLUMNS = [
  {
    title: "Expected F1 on new data (90%)",
    has: (report) => hasExpected(report),
    cell: (row) => expectedCell(row),
  },
  {
    title: "Cost",
    has: (report) => report.per_label?.some((row) => isNumber(row.cost)),
    cell: (row) => el("td", { className: "num", textContent: fmt(row.cost, 2) }),
  },
  {
    title: "Cost at 0.5",
    has: (report) => report.per_label?.some((row) => isNumber(defaultCost(row))),
    cell: (row) => el("td", { className: "num", textContent: fmt(defaultCost(row), 2) }),
  },
  {
    title: "Cost interval",
    has: (report) => report.per_label?.some((row) => row.cost_interval != null),
    cell: (row) => el("td", { textContent: intervalText(row.cost_interval) }),
  },
  {
    title: "Lower threshold",
    has: (report) =>
      report.per_label?.some((row, i) => isNumber(lowerThreshold(report, row, i))),
    cell: (row, i, report) =>
      el("td", { className: "num", textContent: fmt(lowerThreshold(report, row, i), 4) }),
  },
  {
    title: "Lower threshold interval",
    has: (report) => report.per_label?.some((row) => row.lower_interval != null),
    cell: (row) => el("td", { textContent: intervalText(row.lower_interval) }),
  },
  {
    title: "Sent to review",
    has: (report) => report.per_label?.some((row) => isNumber(row.review_share)),
    cell: (row) => el("td", { className: "num", textContent: percent(row.review_share) }),
  },
  {
    title: "Review share interval",
    has: (report) => report.per_label?.some((row) => row.review_share_interval != null),
    cell: (row) => el("td", { textContent: intervalText(row.review_share_interval) }),
  },
];

function renderLabelTable(report) {
  const classes = classRows(report);
  byId("labels-heading").textContent = classes ? "Per class" : "Per label";
  if (classes && !report.per_label?.length) {
    byId("labels-head").replaceChildren(
      ...CLASS_TITLES.map((title) => el("th", { scope: "col", textContent: title })),
    );
    byId("labels-rows").replaceChildren(...classes);
    return;
  }
  const perLabel = report.per_label ?? [];
  const figures = FIGURE_COLUMNS.filter((col) => col.has(report));
  const optional = OPTIONAL_COLUMNS.filter((col) => perLabel.some((row) => row[col.key] != null));
  const titles = [
    "Label", "Status", "Threshold", "Precision", "Recall", "F1 (in sample)", "Support",
    "Predicted", "F1 at 0.5",
    ...figures.map((col) => col.title),
    ...optional.map((col) => col.title),
  ];
  byId("labels-head").replaceChildren(
    ...titles.map((title) => el("th", { scope: "col", textContent: title })),
  );
  const rows = perLabel.map((row, i) => {
    const link = el("a", { href: `#curve-${i}`, textContent: row.label });
    const cells = [
      el("th", { scope: "row" }, link),
      el("td", { textContent: row.status, className: row.status === "ok" ? "" : "warn" }),
      el("td", { className: "num", textContent: fmt(row.threshold, 4) }),
      el("td", { className: "num", textContent: fmt(row.precision) }),
      el("td", { className: "num", textContent: fmt(row.recall) }),
      el("td", { className: "num", textContent: fmt(row.f1) }),
      el("td", { className: "num", textContent: String(row.support) }),
      el("td", { className: "num", textContent: String(row.predicted_positives) }),
      el("td", { className: "num", textContent: fmt(row.at_default?.f1) }),
      ...figures.map((col) => col.cell(row, i, report)),
      ...optional.map((col) =>
        el("td", { textContent: row[col.key] == null ? "–" : col.text(row[col.key]) }),
      ),
    ];
    return el("tr", { className: row.unstable ? "unstable" : "" }, ...cells);
  });
  byId("labels-rows").replaceChildren(...rows);
}

// --- curves ---------------------------------------------------------------------------

function clearCurves() {
  for (const plot of state.plots) window.Plotly?.purge(plot);
  state.plots = [];
  byId("curves").replaceChildren();
  byId("rc-card").replaceChildren();
  byId("risk-coverage").hidden = true;
  byId("calibration").hidden = true;
}

/**
 * The set's charts: each label's precision-recall curve (when stored), a softmax set's
 * risk-coverage curve, and a calibrated set's reliability diagram.
 */
async function showCurves(id, report, token) {
  const status = byId("curves-status");
  let data = null;
  let failure = null;
  try {
    data = await api(`/thresholds/${id}/curves`);
  } catch (error) {
    failure = error;
  }
  if (token !== state.token) return;
  clearCurves();
  const riskCoverage = riskCoverageOf(report, data);
  const prCurves = data?.curves ?? [];
  // A softmax set answers with its confidence curve; per-class PR curves are optional.
  const onlyConfidence = Boolean(riskCoverage) && prCurves.length === 0;
  byId("curves-heading").hidden = onlyConfidence;
  byId("curves-hint").hidden = onlyConfidence;
  if (!window.Plotly) {
    showMessage(status, "plotly.js did not load, so the curves cannot be drawn.");
    return;
  }
  if (riskCoverage) {
    byId("rc-summary").textContent = confidenceText(riskCoverage);
    byId("risk-coverage").hidden = false;
    const card = sliderCard(riskCoverage, 0, {
      kind: RC_KIND,
      title: "answered rows",
      plots: state.plots,
    });
    byId("rc-card").replaceChildren(card.node);
    card.draw();
  }
  renderCalibration(report, state.plots)?.();
  if (failure && !riskCoverage) {
    showMessage(status, `No curves for set ${id}. ${failure.message}`);
    return;
  }
  const statuses = new Map((report.per_label ?? []).map((row) => [row.label, row.status]));
  const cards = prCurves.map((curve, i) => {
    const labelStatus = statuses.get(curve.label);
    const note = labelStatus && labelStatus !== "ok" ? `(${labelStatus}: 0.5 kept)` : null;
    return sliderCard(curve, i, { kind: PR_KIND, title: curve.label, note, plots: state.plots });
  });
  byId("curves").replaceChildren(...cards.map((card) => card.node));
  for (const card of cards) card.draw();
  showMessage(
    status,
    cards.length ? `${cards.length} curves, at most ${data.max_points} points each.` : "",
  );
}


// --- evaluate a set on a file ---------------------------------------------------------

async function submitEvaluate(event) {
  event.preventDefault();
  const status = byId("evaluate-status");
  const error = byId("evaluate-error");
  showMessage(error, "");
  const file = byId("evaluate-file").files[0];
  const id = Number(byId("evaluate-set").value);
  if (!id) {
    showMessage(error, "No threshold set to evaluate yet: tune one first.");
    return;
  }
  if (!file) {
    showMessage(error, "Choose a labelled file first.");
    byId("evaluate-file").focus();
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const button = byId("evaluate-submit");
  button.disabled = true;
  showMessage(status, `Evaluating set ${id} on ${file.name}…`);
  let found;
  try {
    found = await api(`/thresholds/${id}/evaluate`, { method: "POST", body: form, admin: true });
  } catch (failure) {
    showMessage(status, "");
    showMessage(error, `Set ${id} was not evaluated. ${failure.message}`);
    return;
  } finally {
    button.disabled = false;
  }
  byId("admin-key").removeAttribute("aria-invalid");
  if (!found?.per_label || !found.summary?.at_threshold) {
    showMessage(status, "");
    showMessage(byId("evaluate-error"), `Set ${id}'s evaluation has no per-label figures to show.`);
    return;
  }
  renderEvaluation(found, file.name);
  showMessage(
    status,
    `Set ${id} evaluated on ${found.n_samples} rows of ${file.name}; nothing stored.`,
  );
}

function renderEvaluation(found, name) {
  const tuned = found.summary.at_threshold;
  const fallback = found.summary.at_default;
  byId("evaluate-summary").textContent =
    `Set ${found.threshold_set_id} on ${name} (${found.n_samples} rows, sha256 ` +
    `${shortHash(found.data_sha256)}): macro-F1 ${fmt(tuned.macro.f1)} ` +
    `(${fmt(fallback.macro.f1)} at 0.5), micro-F1 ${fmt(tuned.micro.f1)} ` +
    `(${fmt(fallback.micro.f1)} at 0.5).`;
  const multiclass = found.multiclass;
  if (multiclass) {
    byId("evaluate-summary").textContent +=
      ` At its confidence threshold ${fmt(multiclass.threshold, 4)}: coverage ` +
      `${percent(multiclass.coverage)} (${multiclass.answered} rows answered), accuracy of ` +
      `answered rows ${fmt(multiclass.accuracy)}; argmax accuracy on every row ` +
      `${fmt(multiclass.overall_accuracy)}.`;
  }
  const rows = found.per_label.map((row) =>
    el(
      "tr",
      { dataset: { label: row.label } },
      el("th", { scope: "row", textContent: row.label }),
      el("td", { className: "num", textContent: fmt(row.threshold, 4) }),
      el("td", { className: "num", textContent: String(row.support) }),
      el("td", { className: "num", textContent: fmt(row.at_threshold.precision) }),
      el("td", { className: "num", textContent: fmt(row.at_threshold.recall) }),
      el("td", { className: "num", textContent: fmt(row.at_threshold.f1) }),
      el("td", { className: "num", textContent: fmt(row.at_default.f1) }),
    ),
  );
  byId("evaluate-rows").replaceChildren(...rows);
  byId("evaluate-body").hidden = false;
}

// --- compare two sets -----------------------------------------------------------------

async function curvesOrNull(id) {
  try {
    return await api(`/thresholds/${id}/curves`);
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

async function submitCompare(event) {
  event.preventDefault();
  const status = byId("compare-status");
  const error = byId("compare-error");
  showMessage(error, "");
  const ids = [Number(byId("compare-a").value), Number(byId("compare-b").value)];
  if (!ids[0] || !ids[1]) {
    showMessage(error, "Two threshold sets are needed to compare: tune another first.");
    return;
  }
  showMessage(status, `Comparing sets ${ids[0]} and ${ids[1]}…`);
  let reports;
  let curves;
  try {
    reports = await Promise.all(ids.map((id) => api(`/thresholds/${id}`)));
    curves = await Promise.all(ids.map((id) => curvesOrNull(id)));
  } catch (failure) {
    showMessage(status, "");
    showMessage(error, `The sets could not be compared. ${failure.message}`);
    return;
  }
  const perClass = ids.filter((_, i) => !reports[i].per_label?.length);
  if (perClass.length) {
    // Softmax sets have one confidence threshold and no per-label rows to set side by side.
    showMessage(status, "");
    showMessage(
      error,
      `Set ${perClass.join(" and ")} has no per-label thresholds (a softmax set tunes one ` +
        "confidence threshold): show it above to see its risk-coverage curve.",
    );
    return;
  }
  state.compared = { ids, reports, curves };
  renderComparison();
  showMessage(status, `Sets ${ids[0]} and ${ids[1]} side by side.`);
}

function renderComparison() {
  const { ids, reports } = state.compared;
  const [a, b] = reports;
  const describe = (id, report) => {
    const info = report.threshold_set;
    const { macro_f1: macro, micro_f1: micro } = report.summary;
    return (
      `Set ${id} (${objectiveText(info.objective, info.params)}): ` +
      `macro-F1 ${fmt(macro.tuned)}, micro-F1 ${fmt(micro.tuned)}.`
    );
  };
  byId("compare-summary").textContent = `${describe(ids[0], a)} ${describe(ids[1], b)}`;
  const titles = [
    "Label", `Threshold #${ids[0]}`, `Threshold #${ids[1]}`, `F1 #${ids[0]}`, `F1 #${ids[1]}`,
    `F1 change (#${ids[1]} − #${ids[0]})`,
  ];
  byId("compare-head").replaceChildren(
    ...titles.map((title) => el("th", { scope: "col", textContent: title })),
  );
  const second = new Map(b.per_label.map((row) => [row.label, row]));
  const rows = a.per_label.map((row) => {
    const other = second.get(row.label);
    const change = other ? other.f1 - row.f1 : NaN;
    return el(
      "tr",
      { dataset: { label: row.label } },
      el("th", { scope: "row", textContent: row.label }),
      el("td", { className: "num", textContent: fmt(row.threshold, 4) }),
      el("td", { className: "num", textContent: fmt(other?.threshold, 4) }),
      el("td", { className: "num", textContent: fmt(row.f1) }),
      el("td", { className: "num", textContent: fmt(other?.f1) }),
      el("td", {
        className: `num ${change > 0 ? "better" : change < 0 ? "worse" : ""}`,
        textContent: Number.isFinite(change) ? `${change > 0 ? "+" : ""}${change.toFixed(3)}` : "–",
      }),
    );
  });
  byId("compare-rows").replaceChildren(...rows);
  const select = byId("compare-label");
  const kept = select.value;
  select.replaceChildren(
    ...a.per_label.map((row) => el("option", { value: row.label, textContent: row.label })),
  );
  if (a.per_label.some((row) => row.label === kept)) select.value = kept;
  byId("compare-body").hidden = false;
  drawComparison();
}

function drawComparison() {
  const { ids, curves } = state.compared;
  const label = byId("compare-label").value;
  const plot = byId("compare-plot");
  const status = byId("compare-chart-status");
  window.Plotly?.purge(plot);
  const found = curves.map((data) => data?.curves.find((curve) => curve.label === label) ?? null);
  const missing = ids.filter((_, i) => found[i] === null);
  if (!window.Plotly) {
    showMessage(status, "plotly.js did not load, so the chart cannot be drawn.");
    return;
  }
  const traces = [];
  const described = [];
  found.forEach((curve, i) => {
    if (!curve) return;
    const chosen = PR_KIND.point(curve, curve.chosen_index);
    const color = PAIR_COLORS[i];
    traces.push({
      x: curve.recall,
      y: curve.precision,
      mode: "lines",
      name: `set ${ids[i]} curve`,
      line: { color, width: 2, dash: i === 0 ? "solid" : "dash" },
      hovertemplate: `set ${ids[i]}<br>recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>`,
    });
    traces.push({
      x: [chosen.recall],
      y: [chosen.precision],
      mode: "markers",
      name: `set ${ids[i]} chosen ${fmt(curve.threshold, 3)}`,
      marker: { symbol: i === 0 ? "diamond" : "star", color, size: 14, line: { color: "#fff", width: 1 } },
      hovertemplate: `set ${ids[i]} chosen<br>recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>`,
    });
    described.push(`set ${ids[i]} chose ${PR_KIND.text(curve.threshold, chosen)}`);
  });
  plot.dataset.label = label;
  plot.dataset.traces = String(traces.length);
  plot.setAttribute(
    "aria-label",
    `Precision-recall curves of ${label} for sets ${ids[0]} and ${ids[1]}: ${described.join("; ")}.`,
  );
  if (traces.length === 0) {
    showMessage(status, `Sets ${missing.join(" and ")} have no stored curves to draw.`);
    return;
  }
  const layout = {
    height: 360,
    margin: { l: 52, r: 12, t: 8, b: 44 },
    showlegend: true,
    legend: { orientation: "h", y: -0.2 },
    xaxis: { title: { text: "Recall" }, range: [-0.02, 1.02], zeroline: false },
    yaxis: { title: { text: "Precision" }, range: [-0.02, 1.05], zeroline: false },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#fbfbfd",
    font: { family: "system-ui, sans-serif", size: 12 },
  };
  window.Plotly.newPlot(plot, traces, layout, { displayModeBar: false, responsive: true });
  showMessage(
    status,
    missing.length ? `Set ${missing[0]} has no stored curves; only the other is drawn.` : "",
  );
}

// --- admin key ------------------------------------------------------------------------

function setUpAdminKey() {
  const input = byId("admin-key");
  const stateText = byId("admin-key-state");
  const describe = () => {
    stateText.textContent = adminKey()
      ? "A key is kept for this tab and sent with admin actions."
      : "No key kept: admin actions are sent without one.";
  };
  input.value = adminKey();
  // The key is kept as it is typed; Enter in the field must not reload the page.
  byId("admin-form").addEventListener("submit", (event) => event.preventDefault());
  input.addEventListener("input", () => {
    input.removeAttribute("aria-invalid");
    keepAdminKey(input.value);
    describe();
  });
  byId("admin-key-clear").addEventListener("click", () => {
    keepAdminKey("");
    input.value = "";
    input.removeAttribute("aria-invalid");
    describe();
  });
  describe();
}

// --- drift of the served scores ---------------------------------------------------------

/** GET /drift into its panel; the panel stays hidden on a server without the route. */
async function loadDrift({ announce = false } = {}) {
  const section = byId("drift");
  const status = byId("drift-status");
  driftError("");
  let data;
  try {
    data = await api("/drift");
  } catch (error) {
    // FastAPI's own 404 for a route it does not have: this server has no drift figures.
    if (error.status === 404 && / Not Found$/.test(error.message)) {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    showMessage(status, "");
    driftError(`No drift figures. ${error.message}`);
    return;
  }
  section.hidden = false;
  const found = renderDrift(data ?? {}, state.model?.labels ?? []);
  const drifted = found.rows.filter((row) => row.drifted).length;
  showMessage(
    status,
    announce ? `Drift refreshed: ${drifted} of ${found.rows.length} labels drifted.` : "",
  );
}

// --- start ----------------------------------------------------------------------------

async function start() {
  setUpAdminKey();
  setUpTuneForm(async (report) => {
    await refreshSets();
    await showSet(report.threshold_set.id, { report });
  });
  byId("drift-refresh").addEventListener("click", () => loadDrift({ announce: true }));
  byId("evaluate-form").addEventListener("submit", submitEvaluate);
  byId("compare-form").addEventListener("submit", submitCompare);
  byId("compare-label").addEventListener("change", drawComparison);
  try {
    await loadModel();
    const [, items, schema] = await Promise.all([loadActive(), loadHistory(), tuneFormSchema()]);
    adaptTuneForm(state.model, schema);
    await loadDrift();
    const wanted = /^#set=(\d+)$/.exec(location.hash);
    const id = wanted ? Number(wanted[1]) : (state.activeId ?? items[0]?.id ?? null);
    if (id !== null) await showSet(id);
  } catch (error) {
    showMessage(byId("page-error"), error.message);
  }
  document.body.dataset.ready = "true";
}

start();
