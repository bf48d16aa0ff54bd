// Runs: filtered by function, status and age (kept in the hash), live, paged.

import { api } from "../api.js";
import { emptyState, h, liveDuration, pill, put, timeStack, clearError, showError } from "../dom.js";
import { jsonPreview } from "../json.js";
import { navigate, runHref } from "../nav.js";
import { tokenPager } from "../pager.js";
import { Poller } from "../poll.js";

export const STATUSES = ["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"];
const FINISHED = new Set(["completed", "failed", "cancelled"]);
const SINCE = [
  ["15m", "Last 15 min", 15 * 60_000],
  ["1h", "Last hour", 3_600_000],
  ["24h", "Last 24 hours", 86_400_000],
  ["7d", "Last 7 days", 7 * 86_400_000],
  ["", "Any time", 0],
];
const PAGE_SIZE = 50;

export const isFinished = (status) => FINISHED.has(status);

function readFilters(query) {
  const statuses = (query.get("status") || "").split(",").filter((s) => STATUSES.includes(s));
  const since = SINCE.some(([key]) => key === query.get("since")) ? query.get("since") : "";
  return { fn: query.get("fn") || "", statuses, since };
}

export function mount(root, { query }) {
  let filters = readFilters(query);
  let generation = 0;
  const rows = new Map(); // run id -> {tr, json}

  const fnSelect = h("select.input.fn-select", { "aria-label": "Function", "data-testid": "filter-function" }, h("option", { value: "" }, "All functions"));
  const sinceSelect = h(
    "select.input",
    { "aria-label": "Created", "data-testid": "filter-since" },
    SINCE.map(([key, label]) => h("option", { value: key }, label)),
  );
  const statusButtons = STATUSES.map((status) =>
    h("button.status-toggle", { type: "button", dataset: { status }, "aria-pressed": "false", "data-testid": `filter-status-${status}` }, h("span.dot"), status),
  );
  const clearButton = h("button.btn.btn-sm", { type: "button", "data-testid": "clear-filters" }, "Clear filters");
  const tbody = h("tbody");
  const table = h(
    "table.table.runs.clickable",
    { "data-testid": "runs-table" },
    h("thead", null, h("tr", null, ["Status", "Function", "Run ID", "Created", "Duration", "Result"].map((t) => h("th", null, t)))),
    tbody,
  );
  const emptySlot = h("div");
  const errorSlot = h("div");
  const pager = tokenPager(() => restart());
  table.hidden = true;

  root.append(
    h("header.page-head", null, h("div", null, h("h1", null, "Runs"), h("p.subtitle", null, "Newest first, updated live.")), clearButton),
    h(
      "div.toolbar",
      null,
      h("label.toolbar-field", null, h("span.label", null, "Function"), fnSelect),
      h("div.toolbar-field", null, h("span.label", null, "Status"), h("div.status-toggles", { role: "group", "aria-label": "Status" }, statusButtons)),
      h("label.toolbar-field", null, h("span.label", null, "Created"), sinceSelect),
    ),
    errorSlot,
    h("div.card.table-card", null, table, emptySlot),
    pager.element,
  );

  const pushFilters = (next) => {
    const merged = { ...filters, ...next };
    navigate("/runs", { fn: merged.fn, status: merged.statuses.join(","), since: merged.since });
  };
  fnSelect.addEventListener("change", () => pushFilters({ fn: fnSelect.value }));
  sinceSelect.addEventListener("change", () => pushFilters({ since: sinceSelect.value }));
  statusButtons.forEach((button) =>
    button.addEventListener("click", () => {
      const status = button.dataset.status;
      const statuses = filters.statuses.includes(status) ? filters.statuses.filter((s) => s !== status) : [...filters.statuses, status];
      pushFilters({ statuses: STATUSES.filter((s) => statuses.includes(s)) });
    }),
  );
  clearButton.addEventListener("click", () => navigate("/runs"));

  function syncControls() {
    if (filters.fn && ![...fnSelect.options].some((o) => o.value === filters.fn)) {
      fnSelect.append(h("option", { value: filters.fn }, filters.fn));
    }
    fnSelect.value = filters.fn;
    sinceSelect.value = filters.since;
    for (const button of statusButtons) button.setAttribute("aria-pressed", String(filters.statuses.includes(button.dataset.status)));
    clearButton.hidden = !(filters.fn || filters.statuses.length || filters.since);
  }

  api.functions().then(
    (reply) => {
      const values = reply.functions.map((fn) => `${fn.app_id}/${fn.id}`).sort();
      for (const value of values) {
        if (![...fnSelect.options].some((o) => o.value === value)) fnSelect.append(h("option", { value }, value));
      }
      syncControls();
    },
    () => {},
  );

  async function load() {
    const mine = generation;
    const params = { limit: PAGE_SIZE, page_token: pager.token };
    if (filters.fn) {
      const slash = filters.fn.indexOf("/");
      params.app_id = slash >= 0 ? filters.fn.slice(0, slash) : "";
      params.function_id = slash >= 0 ? filters.fn.slice(slash + 1) : filters.fn;
    }
    if (filters.statuses.length) params.status = filters.statuses.join(",");
    const span = SINCE.find(([key]) => key === filters.since)[2];
    if (span) params.created_after_ms = Date.now() - span;
    let reply;
    try {
      reply = await api.runs(params);
    } catch (error) {
      if (mine === generation) showError(errorSlot, error);
      return;
    }
    if (mine !== generation) return; // the filters changed meanwhile
    clearError(errorSlot);
    renderRows(reply.runs);
    pager.shown(reply.next_page_token);
  }

  function renderRows(runs) {
    const seen = new Set();
    let previous = null;
    for (const run of runs) {
      seen.add(run.id);
      const json = JSON.stringify(run);
      let entry = rows.get(run.id);
      if (!entry || entry.json !== json) {
        const tr = runRow(run);
        if (entry) entry.tr.replaceWith(tr);
        entry = { tr, json };
        rows.set(run.id, entry);
      }
      const want = previous ? previous.nextSibling : tbody.firstChild;
      if (want !== entry.tr) tbody.insertBefore(entry.tr, want);
      previous = entry.tr;
    }
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.tr.remove();
        rows.delete(id);
      }
    }
    const filtered = filters.fn || filters.statuses.length || filters.since;
    if (runs.length) put(emptySlot);
    else if (!emptySlot.firstChild || emptySlot.dataset.filtered !== String(Boolean(filtered))) {
      emptySlot.dataset.filtered = String(Boolean(filtered));
      put(
        emptySlot,
        filtered
          ? emptyState("No runs match these filters.", h("a.btn.btn-sm", { href: "#/runs" }, "Clear filters"))
          : emptyState("No runs yet. Send an event or invoke a function to start one.", h("a.btn.btn-sm", { href: "#/functions" }, "Functions")),
      );
    }
    table.hidden = !runs.length;
  }

  const poller = new Poller(load, 1000);
  function restart() {
    generation += 1;
    poller.refresh();
  }

  syncControls();
  poller.start();
  return {
    unmount: () => poller.stop(),
    update(nextQuery) {
      filters = readFilters(nextQuery);
      pager.reset();
      syncControls();
      restart();
    },
  };
}

function runRow(run) {
  const link = runHref(run.id);
  const result = run.error
    ? h("span.error-text", { title: `${run.error.name}: ${run.error.message}` }, `${run.error.name}: ${run.error.message}`)
    : run.status === "completed"
      ? h("code.mono.muted", { title: jsonPreview(run.output, 2000) }, jsonPreview(run.output, 60))
      : null;
  const tr = h(
    "tr",
    { dataset: { runId: run.id, status: run.status }, "data-testid": "run-row" },
    h("td", null, pill(run.status)),
    h("td.nowrap", null, h("span.muted", null, `${run.app_id} / `), h("span.strong", null, run.function_id), run.replay_of ? h("span.tag", { title: `Replay of ${run.replay_of}` }, "replay") : null),
    h("td", null, h("a.mono.run-link", { href: link }, run.id)),
    h("td", null, timeStack(run.created_at_ms)),
    h("td.num", null, run.started_at_ms ? liveDuration(run.started_at_ms, run.ended_at_ms || (isFinished(run.status) ? run.started_at_ms : 0)) : h("span.muted", null, "—")),
    h("td.result", null, result),
  );
  tr.addEventListener("click", (event) => {
    if (event.target.closest("a, button") || window.getSelection().toString()) return;
    location.hash = link;
  });
  return tr;
}
