// The service's HTTP API as the console uses it: the key (session storage
// only), JSON calls, and errors carried exactly as the API worded them.

const KEY = "ducklake.apiKey";
const unauthorizedListeners = [];

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** Called with the ApiError whenever the API answers 401. */
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

/** An error answer of the API: `{"error": {"code", "message"}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(res) {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.code) {
      return new ApiError(res.status, body.error.code, body.error.message);
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(res.status, `http_${res.status}`, text || res.statusText);
}

/**
 * fetch() with the key, a JSON body when `body` is given; resolves to the
 * Response when it is 2xx, else throws an ApiError.
 */
export async function request(path, { method = "GET", body, signal, headers = {} } = {}) {
  const init = { method, signal, headers: { ...headers } };
  const key = apiKey();
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.ok) return res;
  const err = await errorOf(res);
  // A 401 for a key that has since been replaced (a poll sent before the
  // user logged in) says nothing about the current key: it must not bring
  // the login prompt back.
  if (res.status === 401 && key === apiKey()) unauthorizedListeners.forEach((l) => l(err));
  throw err;
}

/** A JSON answer (or null for 204). */
export async function getJson(path, options) {
  const res = await request(path, options);
  return res.status === 204 ? null : res.json();
}

/** `code: message` for display, as the API said it. */
export function describe(err) {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  if (err && err.name === "AbortError") return { code: "cancelled", message: "cancelled" };
  return { code: "network_error", message: String(err && err.message ? err.message : err) };
}

export function formatBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatCount(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

/** A schema or table name quoted for SQL. */
export function quoteIdent(name) {
  return `"${String(name).replaceAll('"', '""')}"`;
}

/** A small element builder: el("li", {class: "x", onclick: f}, child, "text"). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
