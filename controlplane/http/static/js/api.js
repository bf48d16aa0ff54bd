// The JSON API under /api. Errors come back as {"error", "message"}; they are
// raised as ApiError so views can show the message as it is.

const KEY_STORAGE = "tether.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A JSON integer too large for a double, kept as written (shown and sent back exactly). */
export class LosslessNumber {
  constructor(source) {
    this.source = source;
  }
  toJSON() {
    return typeof JSON.rawJSON === "function" ? JSON.rawJSON(this.source) : Number(this.source);
  }
  toString() {
    return this.source;
  }
}

/** JSON.parse, keeping integers beyond 2^53 exact where the browser exposes the source text. */
export function parseJson(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && context && typeof context.source === "string" && !Number.isSafeInteger(value) && /^-?\d+$/.test(context.source)) {
      return new LosslessNumber(context.source);
    }
    return value;
  });
}

export function stringifyJson(value, indent = 2) {
  return JSON.stringify(value, null, indent);
}

const listeners = new Set();
/** Called with true/false after each request: whether the control plane answered. */
export function onConnection(listener) {
  listeners.add(listener);
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** A request; ``body`` is a value to send as JSON, or {raw: "json text"}. */
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = body && typeof body.raw === "string" ? body.raw : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch (error) {
    listeners.forEach((listener) => listener(false));
    throw new ApiError(0, "unavailable", `cannot reach the control plane (${error.message})`);
  }
  listeners.forEach((listener) => listener(true));
  const text = await response.text();
  let value = null;
  if (text) {
    try {
      value = parseJson(text);
    } catch {
      value = null;
    }
  }
  if (!response.ok) {
    const code = value && value.error ? value.error : `HTTP ${response.status}`;
    const message = value && value.message ? value.message : text || response.statusText;
    throw new ApiError(response.status, code, message);
  }
  return value;
}

const query = (params) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "" && value !== 0) search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
};

const enc = encodeURIComponent;

export const api = {
  functions: () => request("GET", "/api/functions"),
  invoke: (appId, functionId, dataJson) =>
    request("POST", `/api/functions/${enc(appId)}/${enc(functionId)}/invoke`, { raw: `{"data": ${dataJson}}` }),
  pause: (appId, functionId, mode) => request("POST", `/api/functions/${enc(appId)}/${enc(functionId)}/pause`, { mode }),
  resume: (appId, functionId) => request("POST", `/api/functions/${enc(appId)}/${enc(functionId)}/resume`, {}),
  events: (params) => request("GET", `/api/events${query(params)}`),
  event: (id) => request("GET", `/api/events/${enc(id)}`),
  sendEvent: (name, dataJson) => request("POST", "/api/events", { raw: `{"name": ${JSON.stringify(name)}, "data": ${dataJson}}` }),
  runs: (params) => request("GET", `/api/runs${query(params)}`),
  run: (id) => request("GET", `/api/runs/${enc(id)}`),
  cancel: (id, reason) => request("POST", `/api/runs/${enc(id)}/cancel`, { reason }),
  replay: (id, mode) => request("POST", `/api/runs/${enc(id)}/replay`, { mode }),
};

// -- who is calling ----------------------------------------------------------------

/** What each role may do: "read" runs, events and functions; "send" events;
"admin" cancel, replay, pause, resume and invoke (the server checks it again). */
const GRANTS = {
  admin: ["read", "send", "admin"],
  read: ["read"],
  send: ["send"],
  worker: ["send"],
};

let caller = null; // GET /api/me: {environment, role, apps, key_id}; null while unknown
const callerListeners = new Set();

/** The caller the stored key makes, or null until the control plane said. */
export function currentCaller() {
  return caller;
}

/** Whether the caller may do ``what`` ("read", "send" or "admin"); never while unknown. */
export function may(what) {
  return Boolean(caller) && (GRANTS[caller.role] || []).includes(what);
}

/** Called with the caller each time /api/me answers (or with null when it refuses the key). */
export function onCaller(listener) {
  callerListeners.add(listener);
}

/** Ask the control plane who the stored key is. Rejects with the ApiError (status
0 when it cannot be reached); a refused key (401) leaves no caller. */
export async function loadCaller() {
  try {
    caller = await request("GET", "/api/me");
  } catch (error) {
    if (error.status === 401 && caller) {
      caller = null;
      callerListeners.forEach((listener) => listener(caller));
    }
    throw error;
  }
  callerListeners.forEach((listener) => listener(caller));
  return caller;
}

/**
 * Check JSON typed by a user: returns {ok: true, text} with the text to send
 * (exactly as typed, so large integers survive) or {ok: false, message}.
 */
export function checkJsonObject(text, what = "Data") {
  const trimmed = text.trim();
  if (!trimmed) return { ok: true, text: "{}" };
  let value;
  try {
    value = JSON.parse(trimmed);
  } catch (error) {
    return { ok: false, message: `${what} is not valid JSON: ${describeJsonError(error, trimmed)}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, message: `${what} must be a JSON object, like {"user_id": 1}` };
  }
  return { ok: true, text: trimmed };
}

function describeJsonError(error, text) {
  const message = String(error.message || error);
  const match = /position (\d+)/.exec(message);
  if (!match) return message;
  const position = Number(match[1]);
  const before = text.slice(0, position);
  const line = before.split("\n").length;
  const column = position - before.lastIndexOf("\n");
  return `${message.replace(/\s*in JSON at position \d+.*$/, "").replace(/\s*\(line \d+ column \d+\)$/, "")} (line ${line}, column ${column})`;
}
