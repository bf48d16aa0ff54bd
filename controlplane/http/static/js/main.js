// The dev UI: hash routes (#/runs, #/runs/<id>, #/functions, #/events,
// #/events/<id>) rendered into <main id="view">.

import { loadCaller, may, onCaller, onConnection } from "./api.js";
import { emptyState, h, put, tickTimes } from "./dom.js";
import { navigate, parseHash } from "./nav.js";
import { openSendEvent } from "./send.js";
import * as eventView from "./views/event.js";
import * as eventsView from "./views/events.js";
import * as functionsView from "./views/functions.js";
import * as runView from "./views/run.js";
import * as runsView from "./views/runs.js";

const ROUTES = [
  { pattern: /^\/runs\/?$/, view: runsView, nav: "runs", title: "Runs" },
  { pattern: /^\/runs\/([^/]+)$/, view: runView, nav: "runs", title: "Run" },
  { pattern: /^\/events\/?$/, view: eventsView, nav: "events", title: "Events" },
  { pattern: /^\/events\/([^/]+)$/, view: eventView, nav: "events", title: "Event" },
  { pattern: /^\/functions\/?$/, view: functionsView, nav: "functions", title: "Functions" },
];

const root = document.getElementById("view");
let current = null; // {route, params, instance}

function route() {
  const { path, query } = parseHash();
  if (path === "/" || path === "") return navigate("/runs");
  let match = null;
  let found = null;
  for (const candidate of ROUTES) {
    match = candidate.pattern.exec(path);
    if (match) {
      found = candidate;
      break;
    }
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", Boolean(found) && link.dataset.nav === found.nav);
    if (found && link.dataset.nav === found.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const params = match ? match.slice(1).map(decodeURIComponent) : [];
  // Same screen, other filters: let the view update in place (no flicker).
  if (
    current &&
    found &&
    current.route === found &&
    current.params.join("/") === params.join("/") &&
    current.instance.update
  ) {
    current.instance.update(query);
    return;
  }
  if (current && current.instance.unmount) current.instance.unmount();
  current = null;
  if (!found) {
    document.title = "Not found · Tether";
    put(root, emptyState(`Nothing here: ${path}`, h("a.btn", { href: "#/runs" }, "Go to runs")));
    return;
  }
  document.title = `${found.title} · Tether`;
  root.replaceChildren();
  window.scrollTo(0, 0);
  const instance = found.view.mount(root, { params, query, navigate }) || {};
  current = { route: found, params, instance };
}

function connectionIndicator() {
  const element = document.getElementById("connection");
  const text = element.querySelector(".conn-text");
  onConnection((ok) => {
    const state = ok ? "live" : "down";
    if (element.dataset.state === state) return;
    element.dataset.state = state;
    text.textContent = ok ? "connected" : "control plane unreachable";
  });
}

const ROLE_WORDS = { admin: "admin", read: "read-only", send: "send-only", worker: "worker" };
const ROLE_HINTS = {
  admin: "This key may do everything: cancel and replay runs, pause, resume and invoke functions, send events.",
  read: "This key may look at runs, events and functions, and change nothing.",
  send: "This key may send events, and nothing else.",
  worker: "A worker key: here it may send events, and nothing else.",
};

/** "default · read-only" under the brand; the sidebar's Send event only for a role that may. */
function showCaller(caller) {
  const element = document.getElementById("caller");
  element.hidden = !caller;
  if (caller) {
    element.dataset.role = caller.role;
    element.title = `Environment ${caller.environment}. ${ROLE_HINTS[caller.role] || ""}`;
    put(element, h("span.caller-env", null, caller.environment), " · ", h("span.caller-role", null, ROLE_WORDS[caller.role] || caller.role));
  }
  document.getElementById("send-event-button").hidden = !may("send");
}

// Who the key is decides which actions are offered: ask at start, again when a key
// is entered (the API key form), and once the control plane answers if it could
// not be reached. A new answer redraws the screen.
let started = false;
let askAgain = false;
function whoAmI() {
  return loadCaller().then(
    () => (askAgain = false),
    (error) => (askAgain = error.status === 0),
  );
}
onCaller((caller) => {
  showCaller(caller);
  if (!started) return;
  if (current && current.instance.unmount) current.instance.unmount();
  current = null;
  route();
});
onConnection((ok) => {
  if (ok && askAgain) {
    askAgain = false;
    whoAmI();
  }
});

document.getElementById("send-event-button").addEventListener("click", () => openSendEvent());
window.addEventListener("hashchange", route);
connectionIndicator();
showCaller(null);
setInterval(() => tickTimes(), 1000);
whoAmI().finally(() => {
  started = true;
  route();
});
