// Building DOM safely: every piece of data goes in as text (textContent or a
// text node), never as HTML.

import { loadCaller, setApiKey } from "./api.js";
import { formatAbsolute, formatDuration, formatRelative } from "./format.js";

/**
 * h("a.link", {href: "#/runs", onclick: fn}, "text", child, [more, children])
 * The tag may carry classes after dots. Attributes: "class", "dataset" (object),
 * "style" (object), on* (listeners), booleans (set when true); anything else is
 * set with setAttribute. Children: nodes, strings/numbers (as text), arrays,
 * null/undefined/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const element = document.createElement(name || "div");
  if (classes.length) element.className = classes.join(" ");
  if (attrs) setAttributes(element, attrs);
  append(element, children);
  return element;
}

function setAttributes(element, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") {
      element.className = [element.className, value].filter(Boolean).join(" ");
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key === "style") {
      Object.assign(element.style, value);
    } else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (value === true) {
      element.setAttribute(key, "");
    } else if (key === "value" || key === "checked" || key === "selected") {
      element[key] = value;
    } else {
      element.setAttribute(key, String(value));
    }
  }
}

export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all children of ``parent``. */
export function put(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

const SVG = "http://www.w3.org/2000/svg";

/** A small stroked icon from path data (no user data involved). */
export function icon(paths, size = 14) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", String(size));
  svg.setAttribute("height", String(size));
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("icon");
  for (const d of [].concat(paths)) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
  }
  return svg;
}

export const ICONS = {
  copy: ["M5.5 5.5h7v7h-7z", "M3.5 10.5v-7h7"],
  check: ["M3.5 8.5l3 3 6-7"],
  step: ["M4 3.5l8 4.5-8 4.5z"],
  sleep: ["M8 2.5a5.5 5.5 0 1 0 5.5 5.5", "M8 5v3.2l2 1.3"],
  wait: ["M2.5 4.5h11v7h-11z", "M2.5 4.5l5.5 4 5.5-4"],
  invoke: ["M3 8h8", "M8 5l3 3-3 3", "M13 3v10"],
  send: ["M2.5 8l11-5-4 11-2-4.5z"],
  run: ["M2.5 3.5h11v9h-11z", "M5 6.5l2 1.5-2 1.5", "M8.5 10h2.5"],
};

/** A status pill: queued, running, sleeping, waiting, completed, failed, cancelled… */
export function pill(status, label) {
  return h("span.pill", { dataset: { status }, "data-testid": "status" }, label || status);
}

/** A time as "12s ago" (kept up to date) with the absolute time as a tooltip. */
export function relTime(ms, { prefix = "" } = {}) {
  if (!ms) return h("span.muted", null, "—");
  return h(
    "time.rel",
    { datetime: new Date(ms).toISOString(), title: formatAbsolute(ms, true), dataset: { rel: String(ms), prefix } },
    prefix + formatRelative(ms),
  );
}

/** Absolute time on one line, relative under it (the relative one ticks). */
export function timeStack(ms) {
  if (!ms) return h("span.muted", null, "—");
  return h(
    "span.time-stack",
    null,
    h("span.abs", { title: formatAbsolute(ms, true) }, formatAbsolute(ms)),
    relTime(ms),
  );
}

/** A duration that grows while it is not over (``end`` 0). */
export function liveDuration(start, end) {
  if (!start) return h("span.muted", null, "—");
  if (end) return h("span.duration", null, formatDuration(end - start));
  return h("span.duration.live", { dataset: { since: String(start) } }, formatDuration(Date.now() - start));
}

/** Refresh every relative time and live duration on the page. */
export function tickTimes(root = document) {
  const now = Date.now();
  for (const element of root.querySelectorAll("[data-rel]")) {
    element.textContent = (element.dataset.prefix || "") + formatRelative(Number(element.dataset.rel), now);
  }
  for (const element of root.querySelectorAll("[data-since]")) {
    element.textContent = formatDuration(now - Number(element.dataset.since));
  }
}

/** An id in monospace with a copy button. */
export function copyable(text, { label, short = false, testid } = {}) {
  const shown = short && text.length > 12 ? `${text.slice(0, 6)}…${text.slice(-6)}` : text;
  const button = h(
    "button.icon-btn.copy",
    { type: "button", title: `Copy ${label || "to clipboard"}`, "aria-label": `Copy ${label || text}` },
    icon(ICONS.copy),
  );
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    event.stopPropagation();
    await copyText(text);
    button.replaceChildren(icon(ICONS.check));
    button.classList.add("copied");
    setTimeout(() => {
      button.replaceChildren(icon(ICONS.copy));
      button.classList.remove("copied");
    }, 1200);
  });
  return h("span.copyable", null, h("code.mono", { title: text, "data-testid": testid }, shown), button);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { style: { position: "fixed", opacity: "0" } });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

/** A <details> section whose open state survives re-renders (kept by key). */
const openSections = new Map();
export function section(key, title, { open = true, count } = {}) {
  const isOpen = openSections.has(key) ? openSections.get(key) : open;
  const body = h("div.section-body");
  const summary = h("summary", null, h("span.section-title", null, title), count !== undefined ? h("span.count", null, String(count)) : null);
  const details = h("details.section", { open: isOpen, dataset: { section: key } }, summary, body);
  details.addEventListener("toggle", () => openSections.set(key, details.open));
  return { details, body, summary };
}

export function emptyState(message, ...actions) {
  actions = actions.filter(Boolean);
  return h("div.empty", null, h("p", null, message), actions.length ? h("div.empty-actions", null, actions) : null);
}

export function errorBanner(error) {
  const message = error && error.message ? error.message : String(error);
  const code = error && error.code ? error.code : "";
  if (error && error.status === 401) return apiKeyForm(message);
  return h("div.banner.banner-error", { role: "alert" }, code ? h("strong", null, `${code}: `) : null, message);
}

/** Show an error in ``slot``, leaving it alone when it already shows the same one
(so polling does not wipe what someone is typing into the API key form). */
export function showError(slot, error) {
  const key = `${error && error.status}|${error && error.code}|${error && error.message}`;
  if (slot.dataset.error === key) return;
  slot.dataset.error = key;
  put(slot, errorBanner(error));
}

export function clearError(slot) {
  if (!slot.dataset.error) return;
  delete slot.dataset.error;
  slot.replaceChildren();
}

/** The control plane runs with --api-key: ask for one, keep it in this browser.
Once /api/me accepts it, the caller's listeners redraw the screen for its role. */
function apiKeyForm(message) {
  const input = h("input.input.mono", { type: "password", placeholder: "API key", autocomplete: "off", "aria-label": "API key" });
  const text = h("span", null, message);
  const submit = h("button.btn.btn-primary.btn-sm", { type: "submit" }, "Use key");
  const form = h(
    "form.banner.banner-error.key-form",
    { role: "alert", "data-testid": "api-key-form" },
    h("div", null, h("strong", null, "This control plane needs an API key. "), text),
    h("div.btn-row", null, input, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    submit.disabled = true;
    try {
      await loadCaller();
    } catch (error) {
      text.textContent = error.status === 401 ? "That key was refused: check it and try again." : error.message;
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export function loading() {
  return h("div.loading", null, "Loading…");
}

/** A definition list: [["Run ID", node], …]. */
export function facts(rows) {
  return h(
    "dl.facts",
    null,
    rows.filter(Boolean).map(([term, value]) => h("div.fact", null, h("dt", null, term), h("dd", null, value))),
  );
}
