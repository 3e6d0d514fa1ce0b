// The JSON API as the page uses it: admin key from the tab's session storage, errors as
// ApiError with the server's `detail` in a sentence.

import { byId } from "./common.js";

const KEY_STORAGE = "labelcut.adminKey";

export class ApiError extends Error {
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

export function adminKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export async function api(path, { method = "GET", body, admin = false } = {}) {
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


export function keepAdminKey(value) {
  if (value) sessionStorage.setItem(KEY_STORAGE, value);
  else sessionStorage.removeItem(KEY_STORAGE);
}
