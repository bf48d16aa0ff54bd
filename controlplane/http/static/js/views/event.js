// An event: its payload, the runs it started and the functions that skipped it.

import { api, may, stringifyJson } from "../api.js";
import { copyable, emptyState, facts, h, liveDuration, loading, pill, put, timeStack, clearError, showError } from "../dom.js";
import { formatAbsolute } from "../format.js";
import { jsonView } from "../json.js";
import { href, runHref } from "../nav.js";
import { Poller } from "../poll.js";
import { openSendEvent } from "../send.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);

export function mount(root, { params }) {
  const [eventId] = params;
  const errorSlot = h("div");
  const body = h("div", null, loading());
  root.append(
    h("nav.crumbs", null, h("a", { href: "#/events" }, "Events"), h("span.sep", null, "/"), h("span.mono", null, eventId)),
    errorSlot,
    body,
  );
  let lastJson = "";
  const poller = new Poller(async () => {
    let detail;
    try {
      detail = await api.event(eventId);
    } catch (error) {
      if (error.status === 404) {
        poller.stop();
        put(body, emptyState(`Event ${eventId} was not found.`, h("a.btn.btn-sm", { href: "#/events" }, "All events")));
      } else {
        showError(errorSlot, error);
      }
      return;
    }
    clearError(errorSlot);
    const json = JSON.stringify(detail);
    if (json !== lastJson) {
      lastJson = json;
      document.title = `${detail.event.name} · Tether`;
      put(body, render(detail));
    }
    if (detail.runs.every((run) => FINISHED.has(run.status))) poller.interval = 0;
  }, 1500).start();
  return { unmount: () => poller.stop() };
}

function render(detail) {
  const event = detail.event;
  const copy = may("send") ? h("button.btn", { type: "button", "data-testid": "send-copy" }, "Send a copy") : null;
  if (copy) copy.addEventListener("click", () => openSendEvent({ name: event.name, data: stringifyJson(event.data ?? {}) }));
  return [
    h(
      "div.run-head",
      null,
      h(
        "div.title-row",
        null,
        h("div.title", null, h("h1.mono", { "data-testid": "event-name" }, event.name)),
        h("div.btn-row", null, copy),
      ),
      facts([
        ["Event ID", copyable(event.id, { label: "event ID", testid: "event-id" })],
        ["Received", timeStack(event.received_at_ms)],
        event.ts_ms && event.ts_ms !== event.received_at_ms ? ["Happened", h("span.mono", null, formatAbsolute(event.ts_ms, true))] : null,
        ["Runs started", String(detail.runs.length)],
      ]),
    ),
    h(
      "div.two-col",
      null,
      h(
        "section.card",
        { "data-testid": "event-runs" },
        h("header.card-head", null, h("h2", null, "Runs it started")),
        detail.runs.length
          ? h("div.table-scroll", null, h(
              "table.table.clickable",
              null,
              h("thead", null, h("tr", null, ["Status", "Function", "Run ID", "Duration"].map((t) => h("th", null, t)))),
              h(
                "tbody",
                null,
                detail.runs.map((run) => {
                  const tr = h(
                    "tr",
                    { "data-testid": "event-run" },
                    h("td", null, pill(run.status)),
                    h("td.nowrap", null, h("span.muted", null, `${run.app_id} / `), h("span.strong", null, run.function_id)),
                    h("td", null, h("a.mono", { href: runHref(run.id) }, run.id)),
                    h("td.num", null, run.started_at_ms ? liveDuration(run.started_at_ms, run.ended_at_ms || (FINISHED.has(run.status) ? run.started_at_ms : 0)) : "—"),
                  );
                  tr.addEventListener("click", (e) => {
                    if (!e.target.closest("a")) location.hash = runHref(run.id);
                  });
                  return tr;
                }),
              ),
            ))
          : h("p.muted.pad", null, "It started no run."),
        detail.skipped.length
          ? [
              h("h3.subhead", null, "Skipped by"),
              h(
                "ul.skips",
                { "data-testid": "event-skipped" },
                detail.skipped.map((skip) =>
                  h(
                    "li",
                    null,
                    h("a.mono.strong", { href: href("/runs", { fn: `${skip.app_id}/${skip.function_id}` }) }, `${skip.app_id}/${skip.function_id}`),
                    h("span", null, ` — ${skip.reason}`),
                    skip.existing_run_id ? [" (run ", h("a.mono", { href: runHref(skip.existing_run_id) }, skip.existing_run_id), ")"] : null,
                  ),
                ),
              ),
            ]
          : null,
      ),
      h(
        "section.card",
        { "data-testid": "event-payload" },
        h("header.card-head", null, h("h2", null, "Data")),
        jsonView(event.data, { testid: "event-data" }),
        event.user !== null && event.user !== undefined ? [h("h3.subhead", null, "User"), jsonView(event.user)] : null,
      ),
    ),
  ];
}
