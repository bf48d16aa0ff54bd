// The dev UI: hash routes (#/runs, #/runs/<id>, #/functions, #/events,
// #/events/<id>) rendered into <main id="view">.

import { onConnection } from "./api.js";
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

document.getElementById("send-event-button").addEventListener("click", () => openSendEvent());
window.addEventListener("hashchange", route);
connectionIndicator();
setInterval(() => tickTimes(), 1000);
route();
