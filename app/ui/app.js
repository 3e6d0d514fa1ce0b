// labelcut's web page: reads the JSON API, draws each label's precision-recall curve
// with plotly.js (served by the app) and previews other thresholds from the stored
// curve. Every text from the server goes into the DOM through textContent.

const KEY_STORAGE = "labelcut.adminKey";
const CONSTRAINED = new Set(["recall_at_precision", "precision_at_recall"]);
const COLORS = { curve: "#1f5fa8", chosen: "#c0392b", fallback: "#555555", slider: "#1e8449" };
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

const byId = (id) => document.getElementById(id);

/** An element with properties (textContent, className, attributes via `attrs`) and children. */
function el(tag, props = {}, ...children) {
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

function fmt(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
}

function f1Of(precision, recall) {
  if (!Number.isFinite(precision) || !Number.isFinite(recall)) return NaN;
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

function shortHash(hash) {
  return typeof hash === "string" ? hash.slice(0, 12) : "–";
}

function when(iso) {
  const date = new Date(iso);
  const time = el("time", { textContent: iso, attrs: { datetime: iso, title: iso } });
  if (!Number.isNaN(date.getTime())) {
    time.textContent = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  return time;
}

function objectiveText(objective, params = {}) {
  const parts = [objective];
  if (objective === "fbeta" && params.beta != null) parts.push(`β ${params.beta}`);
  if (CONSTRAINED.has(objective) && params.target != null) parts.push(`target ${params.target}`);
  if (params.min_positives != null && params.min_positives !== 1) {
    parts.push(`min positives ${params.min_positives}`);
  }
  if (params.strategy) parts.push(`${params.strategy} strategy`);
  return parts.join(", ");
}

function intervalText(value) {
  if (value === null || value === undefined) return "–";
  if (Array.isArray(value) && value.length === 2) return `${fmt(value[0])}–${fmt(value[1])}`;
  if (typeof value === "object") {
    const low = value.low ?? value.lo ?? value.lower;
    const high = value.high ?? value.hi ?? value.upper;
    if (low !== undefined && high !== undefined) return `${fmt(low)}–${fmt(high)}`;
    return JSON.stringify(value);
  }
  return typeof value === "number" ? fmt(value) : String(value);
}

function showMessage(node, text) {
  node.textContent = text || "";
  if (node.classList.contains("error")) node.hidden = !text;
}

// --- the API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** FastAPI's `detail`: a sentence, or a list of validation errors. */
function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const where = (item.loc || []).filter((part) => part !== "body").join(".");
        return where ? `${where}: ${item.msg}` : String(item.msg);
      })
      .join("; ");
  }
  return detail === undefined ? "" : JSON.stringify(detail);
}

function adminKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

async function api(path, { method = "GET", body, admin = false } = {}) {
  const headers = { Accept: "application/json" };
  if (admin && adminKey()) headers.Authorization = `Bearer ${adminKey()}`;
  let response;
  try {
    response = await fetch(path, { method, body, headers, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, `The server did not answer (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    let message = detailText(data?.detail) || text || response.statusText;
    message = `${response.status}: ${message}`;
    if (admin && (response.status === 401 || response.status === 403)) {
      message += " Enter the admin key under “Admin access” and try again.";
      byId("admin-key").setAttribute("aria-invalid", "true");
    }
    throw new ApiError(response.status, message);
  }
  return data;
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
    el("td", { className: "num", textContent: tunedVsDefault(summary?.macro_f1) }),
    el("td", { className: "num", textContent: tunedVsDefault(summary?.micro_f1) }),
    stateCell,
    actions,
  );
  if (item.id === state.shownId) row.setAttribute("aria-current", "true");
  return row;
}

function tunedVsDefault(pair) {
  return pair ? `${fmt(pair.tuned)} (${fmt(pair.default)})` : "–";
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
  renderLabelTable(found.per_label);
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
    `). Macro-F1 ${fmt(summary.macro_f1.tuned)} (${fmt(summary.macro_f1.default)} at 0.5), ` +
      `micro-F1 ${fmt(summary.micro_f1.tuned)} (${fmt(summary.micro_f1.default)} at 0.5). `,
    info.active ? el("strong", { className: "badge", textContent: "Active" }) : "Not active.",
  );
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

function renderLabelTable(perLabel) {
  const optional = OPTIONAL_COLUMNS.filter((col) => perLabel.some((row) => row[col.key] != null));
  const titles = [
    "Label", "Status", "Threshold", "Precision", "Recall", "F1", "Support", "Predicted",
    "F1 at 0.5", ...optional.map((col) => col.title),
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
      ...optional.map((col) =>
        el("td", { textContent: row[col.key] == null ? "–" : col.text(row[col.key]) }),
      ),
    ];
    return el("tr", { className: row.unstable ? "unstable" : "" }, ...cells);
  });
  byId("labels-rows").replaceChildren(...rows);
}

// --- curves ---------------------------------------------------------------------------

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

function pointAt(curve, index) {
  const precision = curve.precision[index];
  const recall = curve.recall[index];
  return { precision, recall, f1: f1Of(precision, recall) };
}

function pointText(threshold, point) {
  return (
    `threshold ${fmt(threshold, 3)}: precision ${fmt(point.precision)}, ` +
    `recall ${fmt(point.recall)}, F1 ${fmt(point.f1)}`
  );
}

function clearCurves() {
  for (const plot of state.plots) window.Plotly?.purge(plot);
  state.plots = [];
  byId("curves").replaceChildren();
}

async function showCurves(id, report, token) {
  const status = byId("curves-status");
  let data;
  try {
    data = await api(`/thresholds/${id}/curves`);
  } catch (error) {
    if (token !== state.token) return;
    clearCurves();
    showMessage(status, `No curves for set ${id}. ${error.message}`);
    return;
  }
  if (token !== state.token) return;
  clearCurves();
  if (!window.Plotly) {
    showMessage(status, "plotly.js did not load, so the curves cannot be drawn.");
    return;
  }
  const statuses = new Map(report.per_label.map((row) => [row.label, row.status]));
  const cards = data.curves.map((curve, i) => curveCard(curve, i, statuses.get(curve.label)));
  byId("curves").replaceChildren(...cards.map((card) => card.node));
  for (const card of cards) card.draw();
  showMessage(status, `${cards.length} curves, at most ${data.max_points} points each.`);
}

function curveCard(curve, index, labelStatus) {
  const node = byId("curve-template").content.firstElementChild.cloneNode(true);
  node.id = `curve-${index}`;
  node.dataset.label = curve.label;
  const sliderId = `slider-${index}`;
  const numberId = `threshold-${index}`;
  const chosen = pointAt(curve, curve.chosen_index);
  const fallback = pointAt(curve, curve.default_index);

  const title = node.querySelector(".curve-title");
  title.id = `curve-title-${index}`;
  title.textContent = curve.label;
  if (labelStatus && labelStatus !== "ok") {
    title.append(" ", el("span", { className: "warn", textContent: `(${labelStatus}: 0.5 kept)` }));
  }
  const plot = node.querySelector(".plot");
  plot.setAttribute(
    "aria-label",
    `Precision-recall curve of ${curve.label}. Tuned ${pointText(curve.threshold, chosen)}. ` +
      `At ${pointText(curve.default_threshold, fallback)}.`,
  );
  const slider = node.querySelector(".slider");
  const number = node.querySelector(".number");
  slider.id = sliderId;
  number.id = numberId;
  const sliderLabel = node.querySelector(".slider-label");
  sliderLabel.htmlFor = sliderId;
  sliderLabel.textContent = `Threshold for ${curve.label}`;
  const numberLabel = node.querySelector(".number-label");
  numberLabel.htmlFor = numberId;
  numberLabel.textContent = `Exact threshold for ${curve.label}`;
  number.step = "any";
  const reset = node.querySelector(".reset");
  reset.setAttribute("aria-label", `Back to the tuned threshold of ${curve.label}`);
  const readout = node.querySelector(".readout");
  readout.htmlFor = `${sliderId} ${numberId}`;

  let frame = 0;
  let pending = null;
  function show(threshold, index, source) {
    const point = pointAt(curve, index);
    const text = pointText(threshold, point);
    readout.replaceChildren(
      el("span", { className: "readout-item", textContent: `Precision ${fmt(point.precision)}` }),
      el("span", { className: "readout-item", textContent: `Recall ${fmt(point.recall)}` }),
      el("span", { className: "readout-item", textContent: `F1 ${fmt(point.f1)}` }),
      el("span", {
        className: "readout-item muted",
        textContent: `tuned F1 ${fmt(chosen.f1)}, at 0.5 F1 ${fmt(fallback.f1)}`,
      }),
    );
    readout.dataset.precision = String(point.precision);
    readout.dataset.recall = String(point.recall);
    readout.dataset.f1 = String(point.f1);
    slider.setAttribute("aria-valuetext", text);
    if (source !== "slider") slider.value = String(threshold);
    if (source !== "number") number.value = threshold.toFixed(4);
    pending = point;
    if (!frame && plot.data) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        window.Plotly.restyle(plot, { x: [[pending.recall]], y: [[pending.precision]] }, [3]);
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
    custom.push("nothing predicted");
    const marker = (point, name, symbol, color, size) => ({
      x: [point.recall],
      y: [point.precision],
      mode: "markers",
      name,
      marker: { symbol, color, size, line: { color: "#ffffff", width: 1 } },
      hovertemplate: `${name}<br>recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>`,
    });
    const traces = [
      {
        x: curve.recall,
        y: curve.precision,
        customdata: custom,
        mode: "lines",
        name: "curve",
        line: { color: COLORS.curve, width: 2 },
        hovertemplate: "%{customdata}<br>recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>",
      },
      marker(chosen, `tuned ${fmt(curve.threshold, 3)}`, "diamond", COLORS.chosen, 11),
      marker(fallback, "0.5", "square", COLORS.fallback, 10),
      marker(chosen, "slider", "circle-open", COLORS.slider, 19),
    ];
    traces[3].marker.line = { color: COLORS.slider, width: 3 };
    const layout = {
      height: 260,
      margin: { l: 48, r: 12, t: 8, b: 40 },
      showlegend: false,
      xaxis: { title: { text: "Recall" }, range: [-0.02, 1.02], zeroline: false },
      yaxis: { title: { text: "Precision" }, range: [-0.02, 1.05], zeroline: false },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "#fbfbfd",
      font: { family: "system-ui, sans-serif", size: 12 },
    };
    window.Plotly.newPlot(plot, traces, layout, { displayModeBar: false, responsive: true });
    state.plots.push(plot);
    show(curve.threshold, curve.chosen_index, "reset");
  }
  return { node, draw };
}

// --- the tune form --------------------------------------------------------------------

function syncRuleFields() {
  byId("tune-k-field").hidden = byId("tune-decision-rule").value !== "top_k";
}

function syncObjectiveFields() {
  const objective = byId("tune-objective").value;
  byId("tune-beta-field").hidden = objective !== "fbeta";
  byId("tune-target-field").hidden = !CONSTRAINED.has(objective);
  byId("tune-target-label").textContent =
    objective === "precision_at_recall"
      ? "Recall floor (0 to 1]"
      : "Precision floor (0 to 1]";
}

async function submitTune(event) {
  event.preventDefault();
  const status = byId("tune-status");
  const error = byId("tune-error");
  showMessage(error, "");
  const file = byId("tune-file").files[0];
  if (!file) {
    showMessage(error, "Choose a validation file first.");
    byId("tune-file").focus();
    return;
  }
  const objective = byId("tune-objective").value;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("objective", objective);
  if (objective === "fbeta" && byId("tune-beta").value !== "") {
    form.append("beta", byId("tune-beta").value);
  }
  if (CONSTRAINED.has(objective)) form.append("target", byId("tune-target").value);
  form.append("strategy", byId("tune-strategy").value);
  form.append("min_positives", byId("tune-min-positives").value || "1");
  const rule = byId("tune-decision-rule").value;
  form.append("decision_rule", rule);
  if (rule === "top_k") form.append("k", byId("tune-k").value || "1");
  form.append("n_bootstrap", byId("tune-n-bootstrap").value || "0");
  form.append("activate", byId("tune-activate").checked ? "true" : "false");

  const button = byId("tune-submit");
  button.disabled = true;
  byId("tune-form").setAttribute("aria-busy", "true");
  showMessage(status, `Tuning on ${file.name}…`);
  let report;
  try {
    report = await api("/tune-thresholds", { method: "POST", body: form, admin: true });
  } catch (failure) {
    showMessage(status, "");
    showMessage(error, `Tuning failed. ${failure.message}`);
    return;
  } finally {
    button.disabled = false;
    byId("tune-form").removeAttribute("aria-busy");
  }
  byId("admin-key").removeAttribute("aria-invalid");
  const info = report.threshold_set;
  const macro = report.summary.macro_f1;
  showMessage(
    status,
    `Set ${info.id} tuned on ${info.n_samples} rows: macro-F1 ${fmt(macro.tuned)} ` +
      `(${fmt(macro.default)} at 0.5)${info.active ? ", now active" : ", not activated"}.`,
  );
  await refreshSets();
  await showSet(info.id, { report });
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
  renderEvaluation(found, file.name);
  showMessage(status, `Set ${id} evaluated on ${found.n_samples} rows of ${file.name}; nothing stored.`);
}

function renderEvaluation(found, name) {
  const tuned = found.summary.at_threshold;
  const fallback = found.summary.at_default;
  byId("evaluate-summary").textContent =
    `Set ${found.threshold_set_id} on ${name} (${found.n_samples} rows, sha256 ` +
    `${shortHash(found.data_sha256)}): macro-F1 ${fmt(tuned.macro.f1)} ` +
    `(${fmt(fallback.macro.f1)} at 0.5), micro-F1 ${fmt(tuned.micro.f1)} ` +
    `(${fmt(fallback.micro.f1)} at 0.5).`;
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
    const chosen = pointAt(curve, curve.chosen_index);
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
    described.push(`set ${ids[i]} chose ${pointText(curve.threshold, chosen)}`);
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
    if (input.value) sessionStorage.setItem(KEY_STORAGE, input.value);
    else sessionStorage.removeItem(KEY_STORAGE);
    describe();
  });
  byId("admin-key-clear").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    input.value = "";
    input.removeAttribute("aria-invalid");
    describe();
  });
  describe();
}

// --- start ----------------------------------------------------------------------------

async function start() {
  setUpAdminKey();
  byId("tune-objective").addEventListener("change", syncObjectiveFields);
  byId("tune-form").addEventListener("submit", submitTune);
  byId("tune-decision-rule").addEventListener("change", syncRuleFields);
  byId("evaluate-form").addEventListener("submit", submitEvaluate);
  byId("compare-form").addEventListener("submit", submitCompare);
  byId("compare-label").addEventListener("change", drawComparison);
  syncObjectiveFields();
  syncRuleFields();
  try {
    await loadModel();
    const [, items] = await Promise.all([loadActive(), loadHistory()]);
    const wanted = /^#set=(\d+)$/.exec(location.hash);
    const id = wanted ? Number(wanted[1]) : (state.activeId ?? items[0]?.id ?? null);
    if (id !== null) await showSet(id);
  } catch (error) {
    showMessage(byId("page-error"), error.message);
  }
  document.body.dataset.ready = "true";
}

start();
