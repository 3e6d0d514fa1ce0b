// The tune form: which fields an objective and a decision rule need, the options the
// server and the model offer (from the server's OpenAPI schema and /model), and the
// request it sends to POST /tune-thresholds.

import { api } from "./api.js";
import { byId, fmt, percent, showMessage } from "./common.js";

const CONSTRAINED = new Set(["recall_at_precision", "precision_at_recall"]);
// Softmax models: one class per row, a confidence threshold over the top probability.
export const MULTICLASS = new Set(["coverage_at_accuracy", "accuracy_at_coverage"]);
const BETA_OBJECTIVES = new Set(["fbeta", "micro_fbeta"]);
const TARGET_LABELS = {
  recall_at_precision: "Precision floor (0 to 1]",
  precision_at_recall: "Recall floor (0 to 1]",
  coverage_at_accuracy: "Accuracy floor (0 to 1]",
  accuracy_at_coverage: "Coverage floor (0 to 1]",
};
const ABSTAIN_TARGET_LABEL = "Precision floor of the yes side (0 to 1]";
// Optional form fields: sent only when the form shows them, so a server without them
// never sees an unknown field.
// Fields of per-label tuning: a softmax model tunes one confidence threshold instead.
const MULTI_LABEL_FIELDS = [
  "tune-strategy-field", "tune-min-positives-field", "tune-n-bootstrap-field",
  "tune-calibration-field", "tune-estimate-field",
];
const OPTIONAL_FIELDS = { calibration: "tune-calibration-field", estimate: "tune-estimate-field" };

export function needsTarget(objective, rule) {
  return CONSTRAINED.has(objective) || MULTICLASS.has(objective) || rule === "abstain";
}

// --- what the server takes ------------------------------------------------------------

function resolve(schema, root) {
  let found = schema;
  for (let depth = 0; found?.$ref && depth < 8; depth += 1) {
    found = found.$ref
      .replace(/^#\//, "")
      .split("/")
      .reduce((node, part) => node?.[part], root);
  }
  return found;
}

/** The values an OpenAPI schema allows (enum, const, through $ref/anyOf/allOf); null: any. */
function enumOf(schema, root) {
  const found = resolve(schema, root);
  if (!found) return null;
  if (Array.isArray(found.enum)) return found.enum;
  if (found.const !== undefined) return [found.const];
  const parts = [...(found.anyOf ?? []), ...(found.oneOf ?? []), ...(found.allOf ?? [])];
  const values = parts.map((part) => enumOf(part, root)).filter(Boolean).flat();
  return values.length ? values : null;
}

/**
 * The form fields of /tune-thresholds from /openapi.json: {fields: Set, objectives,
 * rules, calibrations: Set | null}. null when the schema cannot be read (then the form
 * offers everything and the server's answer says what it refuses).
 */
export async function tuneFormSchema() {
  try {
    const root = await api("/openapi.json");
    const body = root.paths["/tune-thresholds"].post.requestBody.content;
    const form = resolve(body["multipart/form-data"].schema, root);
    const properties = form.properties ?? {};
    const values = (name) => (properties[name] ? enumOf(properties[name], root) : null);
    const asSet = (list) => (list ? new Set(list) : null);
    return {
      fields: new Set(Object.keys(properties)),
      objectives: asSet(values("objective")),
      rules: asSet(values("decision_rule")),
      calibrations: asSet(values("calibration")),
    };
  } catch {
    return null;
  }
}

/** Offer what this server and this model take: objectives, rules, calibration. */
export function adaptTuneForm(model, schema) {
  const softmax = model?.activation === "softmax";
  const objective = byId("tune-objective");
  for (const option of [...objective.options]) {
    const offered = !schema?.objectives || schema.objectives.has(option.value);
    // A softmax model takes only the multi-class objectives, a sigmoid one only the others.
    if (!offered || MULTICLASS.has(option.value) !== softmax) option.remove();
  }
  for (const group of objective.querySelectorAll("optgroup")) {
    if (group.children.length === 0) group.remove();
  }
  const multiclass = byId("tune-objectives-multiclass");
  if (softmax && multiclass?.isConnected) {
    objective.prepend(multiclass);
    objective.value = multiclass.firstElementChild.value;
  }
  const rule = byId("tune-decision-rule");
  for (const option of [...rule.options]) {
    if (schema?.rules && !schema.rules.has(option.value)) option.remove();
  }
  if (softmax) {
    for (const option of [...rule.options]) if (option.value !== "exactly_one") option.remove();
  }
  for (const [name, id] of Object.entries(OPTIONAL_FIELDS)) {
    byId(id).hidden = Boolean(schema) && !schema.fields.has(name);
  }
  if (softmax) for (const id of MULTI_LABEL_FIELDS) byId(id).hidden = true;
  const calibration = byId("tune-calibration");
  for (const option of [...calibration.options]) {
    if (schema?.calibrations && !schema.calibrations.has(option.value)) option.remove();
  }
  syncTuneFields();
}

// --- fields an objective and a rule need -----------------------------------------------

export function syncTuneFields() {
  const objective = byId("tune-objective").value;
  const rule = byId("tune-decision-rule").value;
  byId("tune-beta-field").hidden = !BETA_OBJECTIVES.has(objective);
  byId("tune-target-field").hidden = !needsTarget(objective, rule);
  byId("tune-target-label").textContent =
    TARGET_LABELS[objective] ??
    (rule === "abstain" ? ABSTAIN_TARGET_LABEL : TARGET_LABELS.recall_at_precision);
  byId("tune-cost-fields").hidden = objective !== "cost";
  byId("tune-k-field").hidden = rule !== "top_k";
  byId("tune-npv-field").hidden = rule !== "abstain";
}

function onObjectiveChange() {
  // A multi-class objective answers one class per row: the argmax rule goes with it.
  const rule = byId("tune-decision-rule");
  if (MULTICLASS.has(byId("tune-objective").value) && rule.value !== "exactly_one") {
    if ([...rule.options].some((o) => o.value === "exactly_one")) rule.value = "exactly_one";
  }
  syncTuneFields();
}

/**
 * A cost field's value as sent: a number, or a JSON object of label -> number ("*" for
 * every other label). Throws an Error naming the field when it is neither.
 */
export function costValue(text, name) {
  const value = text.trim();
  if (value !== "" && Number.isFinite(Number(value))) return value;
  let parsed;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  const ok =
    parsed && typeof parsed === "object" && !Array.isArray(parsed) &&
    Object.values(parsed).every((v) => typeof v === "number" && Number.isFinite(v));
  if (!ok) {
    throw new Error(
      `${name}: give a number, or a JSON object of label to number such as ` +
        '{"Class1": 5, "*": 1} ("*": every other label).',
    );
  }
  return JSON.stringify(parsed);
}

/** The request for the form as it stands (only the fields the choices need). */
export function tuneRequest(file) {
  const objective = byId("tune-objective").value;
  const rule = byId("tune-decision-rule").value;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("objective", objective);
  if (BETA_OBJECTIVES.has(objective) && byId("tune-beta").value !== "") {
    form.append("beta", byId("tune-beta").value);
  }
  if (needsTarget(objective, rule)) form.append("target", byId("tune-target").value);
  if (objective === "cost") {
    form.append("cost_fp", costValue(byId("tune-cost-fp").value, "Cost of a false positive"));
    form.append("cost_fn", costValue(byId("tune-cost-fn").value, "Cost of a false negative"));
  }
  const shown = (id) => !byId(id).hidden;
  if (shown("tune-strategy-field")) form.append("strategy", byId("tune-strategy").value);
  if (shown("tune-min-positives-field")) {
    form.append("min_positives", byId("tune-min-positives").value || "1");
  }
  form.append("decision_rule", rule);
  if (rule === "top_k") form.append("k", byId("tune-k").value || "1");
  if (rule === "abstain") form.append("npv_target", byId("tune-npv-target").value);
  const calibration = byId("tune-calibration");
  if (!byId("tune-calibration-field").hidden && calibration.value && calibration.value !== "none") {
    form.append("calibration", calibration.value);
  }
  // The estimate is on by default where the server has it: send only a "no".
  if (!byId("tune-estimate-field").hidden && !byId("tune-estimate").checked) {
    form.append("estimate", "false");
  }
  if (shown("tune-n-bootstrap-field")) {
    form.append("n_bootstrap", byId("tune-n-bootstrap").value || "0");
  }
  form.append("activate", byId("tune-activate").checked ? "true" : "false");
  return form;
}

function tunedText(report) {
  const info = report.threshold_set;
  const macro = report.summary?.macro_f1;
  const confidence = report.multiclass;
  let figures = macro ? `macro-F1 ${fmt(macro.tuned)} (${fmt(macro.default)} at 0.5)` : "";
  if (confidence && typeof confidence.coverage === "number") {
    figures = `coverage ${percent(confidence.coverage)} at accuracy ${fmt(confidence.accuracy)}`;
  }
  return (
    `Set ${info.id} tuned on ${info.n_samples} rows: ${figures}` +
    `${info.active ? ", now active" : ", not activated"}.`
  );
}

async function submitTune(event, onTuned) {
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
  let form;
  try {
    form = tuneRequest(file);
  } catch (failure) {
    showMessage(error, failure.message);
    return;
  }
  const button = byId("tune-submit");
  button.disabled = true;
  byId("tune-form").setAttribute("aria-busy", "true");
  showMessage(status, `Tuning on ${file.name}…`);
  let report;
  try {
    report = await api("/tune-thresholds", { method: "POST", body: form, admin: true });
    if (report?.state && report?.id) report = await followJob(report, status);
  } catch (failure) {
    showMessage(status, "");
    showMessage(error, `Tuning failed. ${failure.message}`);
    return;
  } finally {
    button.disabled = false;
    byId("tune-form").removeAttribute("aria-busy");
  }
  byId("admin-key").removeAttribute("aria-invalid");
  showMessage(status, tunedText(report));
  await onTuned(report);
}

/**
 * A large upload runs as a job (202 with the job): poll GET /jobs/{id} until it ends,
 * showing its progress, and return its result (what a synchronous tune answers).
 */
async function followJob(job, status) {
  let current = job;
  while (current.state === "queued" || current.state === "running") {
    const p = current.progress;
    const done = p.partitions ? `${p.partitions_done}/${p.partitions} partitions` : `${p.rows_done} rows`;
    showMessage(status, `Tuning as job ${current.id.slice(0, 8)}: ${current.state}, ${done}…`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    current = await api(`/jobs/${current.id}`, { admin: true });
  }
  if (current.state !== "succeeded") {
    throw new Error(`The job ${current.state}${current.error ? `: ${current.error}` : ""}.`);
  }
  return current.result;
}

/** Wire the form; `onTuned(report)` runs after a set is stored. */
export function setUpTuneForm(onTuned) {
  byId("tune-objective").addEventListener("change", onObjectiveChange);
  byId("tune-decision-rule").addEventListener("change", syncTuneFields);
  byId("tune-form").addEventListener("submit", (event) => submitTune(event, onTuned));
  syncTuneFields();
}
