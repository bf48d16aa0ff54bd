// Functions: triggers, options, connected workers, paused state; Invoke, Pause/Resume
// (for an admin key only).

import { api, checkJsonObject, may } from "../api.js";
import { confirmDialog, openDialog } from "../dialog.js";
import { emptyState, errorBanner, h, loading, put, relTime, clearError, showError } from "../dom.js";
import { formatAbsolute, formatPeriod } from "../format.js";
import { href, navigate } from "../nav.js";
import { Poller } from "../poll.js";

export function mount(root) {
  const content = h("div.page-body", null, loading());
  const errorSlot = h("div");
  root.append(
    h("header.page-head", null, h("div", null, h("h1", null, "Functions"), h("p.subtitle", null, "Every function registered by a worker, what triggers it and how it is configured."))),
    errorSlot,
    content,
  );
  let lastJson = "";
  const poller = new Poller(async () => {
    try {
      const reply = await api.functions();
      clearError(errorSlot);
      const json = JSON.stringify(reply);
      if (json === lastJson) return;
      lastJson = json;
      render(content, reply.functions, () => poller.refresh());
    } catch (error) {
      showError(errorSlot, error);
    }
  }, 3000).start();
  return { unmount: () => poller.stop() };
}

function render(content, functions, refresh) {
  if (!functions.length) {
    put(
      content,
      emptyState(
        "No functions yet. Start a worker, e.g. tether worker my_app.worker:app, and its functions appear here.",
      ),
    );
    return;
  }
  const columns = ["Function", "Triggers", "Options", "Workers", ...(may("admin") ? [""] : [])];
  const byApp = new Map();
  for (const fn of functions) {
    if (!byApp.has(fn.app_id)) byApp.set(fn.app_id, []);
    byApp.get(fn.app_id).push(fn);
  }
  put(
    content,
    [...byApp.entries()].map(([appId, fns]) =>
      h(
        "section.card.app-card",
        { "data-testid": "app", "data-app": appId },
        h(
          "header.card-head",
          null,
          h("h2", null, h("span.muted", null, "app "), h("span.mono", null, appId)),
          h("span.muted.small", null, `${fns.length} function${fns.length === 1 ? "" : "s"}`),
        ),
        h(
          "table.table.functions",
          null,
          h("thead", null, h("tr", null, columns.map((t) => h("th", null, t)))),
          h("tbody", null, fns.map((fn) => functionRow(fn, refresh))),
        ),
      ),
    ),
  );
}

function functionRow(fn, refresh) {
  const runsLink = h("a.small", { href: href("/runs", { fn: `${fn.app_id}/${fn.id}` }) }, "Runs →");
  return h(
    "tr",
    { "data-testid": "function", "data-function": fn.id },
    h(
      "td.fn-name",
      null,
      h("div.strong.mono", null, fn.id),
      fn.name && fn.name !== fn.id ? h("div.muted.small", null, fn.name) : null,
      fn.paused ? h("span.pill", { dataset: { status: "paused" }, "data-testid": "paused" }, `paused · ${fn.paused}`) : null,
      h("div.small", null, runsLink),
    ),
    h("td.triggers", null, fn.triggers.map(triggerView)),
    h("td.options", null, optionChips(fn.options)),
    h("td.workers", null, workersBadge(fn.connected_workers)),
    may("admin")
      ? h(
          "td.actions",
          null,
          h("div.btn-row", null,
            h("button.btn.btn-sm", { type: "button", onclick: () => openInvoke(fn), "data-testid": "invoke" }, "Invoke"),
            fn.paused
              ? h("button.btn.btn-sm", { type: "button", onclick: () => resume(fn, refresh), "data-testid": "resume" }, "Resume")
              : h("button.btn.btn-sm", { type: "button", onclick: () => openPause(fn, refresh), "data-testid": "pause" }, "Pause"),
          ),
        )
      : null,
  );
}

function triggerView(trigger) {
  if (trigger.type === "cron") {
    return h(
      "div.trigger",
      { "data-testid": "cron-trigger" },
      h("span.kind-tag", null, "cron"),
      h("code.mono", null, trigger.cron),
      trigger.timezone ? h("span.muted.small", null, ` ${trigger.timezone}`) : null,
      trigger.next_fire_ms
        ? h(
            "div.small.next-fire",
            { "data-testid": "next-fire" },
            "next ",
            h("span", { title: inZone(trigger.next_fire_ms, trigger.timezone) }, formatAbsolute(trigger.next_fire_ms)),
            " · ",
            relTime(trigger.next_fire_ms),
          )
        : null,
    );
  }
  return h(
    "div.trigger",
    { "data-testid": "event-trigger" },
    h("span.kind-tag", null, "event"),
    h("a.mono", { href: href("/events", { name: trigger.event }) }, trigger.event),
    trigger.if_expression ? h("div.small", null, h("span.muted", null, "if "), h("code.mono.cel", null, trigger.if_expression)) : null,
  );
}

/** The tick in the trigger's own time zone, for the tooltip. */
function inZone(ms, timeZone) {
  if (!timeZone) return formatAbsolute(ms, true);
  try {
    const text = new Intl.DateTimeFormat("en-GB", { timeZone, dateStyle: "medium", timeStyle: "short" }).format(ms);
    return `${text} ${timeZone}`;
  } catch {
    return formatAbsolute(ms, true);
  }
}

const ms = (value) => formatPeriod(value);
const keyed = (text, key) => (key ? `${text} per ${key}` : text);

/** The options that are set, as short "name value" chips. */
export function optionChips(options) {
  const chips = [];
  const add = (name, value) => chips.push(h("span.chip", null, h("span.chip-key", null, name), " ", h("span.mono", null, value)));
  for (const [key, value] of Object.entries(options || {})) {
    if (value === null || value === "" || value === undefined) continue;
    if (Array.isArray(value) && !value.length) continue;
    switch (key) {
      case "retries":
        add("retries", String(value));
        break;
      case "cancel_on":
        for (const c of value) {
          const parts = [c.event];
          if (c.match) parts.push(`match ${c.match}`);
          if (c.if) parts.push(`if ${c.if}`);
          if (c.timeout_ms) parts.push(`within ${ms(c.timeout_ms)}`);
          add("cancel on", parts.join(" "));
        }
        break;
      case "timeouts":
        if (value.start_ms) add("start timeout", ms(value.start_ms));
        if (value.finish_ms) add("finish timeout", ms(value.finish_ms));
        break;
      case "concurrency":
        for (const c of value) add("concurrency", keyed(`${c.limit}${c.scope && c.scope !== "fn" ? ` (${c.scope})` : ""}`, c.key));
        break;
      case "throttle":
        add("throttle", keyed(`${value.limit}/${ms(value.period_ms)}${value.burst > 1 ? ` burst ${value.burst}` : ""}`, value.key));
        break;
      case "rate_limit":
        add("rate limit", keyed(`${value.limit}/${ms(value.period_ms)}`, value.key));
        break;
      case "debounce":
        add("debounce", keyed(`${ms(value.period_ms)}${value.timeout_ms ? ` (max ${ms(value.timeout_ms)})` : ""}`, value.key));
        break;
      case "batching":
        add("batch", keyed(`${value.max_size} / ${ms(value.timeout_ms)}`, value.key));
        break;
      case "singleton":
        add("singleton", keyed(value.mode || "skip", value.key));
        break;
      case "idempotency":
      case "priority":
      default:
        add(key.replace(/_/g, " "), typeof value === "string" ? value : JSON.stringify(value));
    }
  }
  return h("div.chips", null, chips);
}

function workersBadge(count) {
  if (count > 0) {
    return h("span.badge.badge-ok", { "data-testid": "workers" }, `${count} worker${count === 1 ? "" : "s"}`);
  }
  return h(
    "span.badge.badge-warn",
    { "data-testid": "workers", title: "Events that trigger it are stored and its runs wait in the queue until a worker connects." },
    "no worker connected — events will queue",
  );
}

function openInvoke(fn) {
  const data = h("textarea.input.mono.code-input", { rows: 9, spellcheck: "false", "data-testid": "invoke-data", value: "{\n  \n}" });
  openDialog({
    title: `Invoke ${fn.app_id}/${fn.id}`,
    testid: "invoke-dialog",
    wide: true,
    body: h(
      "div.form",
      null,
      h("p.muted.small", null, "Starts a run now, whatever its triggers, with this data as its event's data (event tether/function.invoked)."),
      h("label.field", null, h("span.label", null, "Data ", h("span.muted", null, "(a JSON object)")), data),
    ),
    actions: [
      {
        label: "Invoke",
        kind: "primary",
        run: async () => {
          const checked = checkJsonObject(data.value);
          if (!checked.ok) throw new Error(checked.message);
          const reply = await api.invoke(fn.app_id, fn.id, checked.text);
          navigate(`/runs/${encodeURIComponent(reply.run_id)}`);
        },
      },
    ],
  });
}

function openPause(fn, refresh) {
  const hold = h("input", { type: "radio", name: "mode", value: "hold", checked: true });
  const skip = h("input", { type: "radio", name: "mode", value: "skip" });
  openDialog({
    title: `Pause ${fn.app_id}/${fn.id}`,
    testid: "pause-dialog",
    body: h(
      "div.form",
      null,
      h("p", null, "Runs already started carry on. What happens to new events?"),
      h("label.radio", null, hold, h("span", null, h("strong", null, "Hold"), " — new runs wait and start when you resume")),
      h("label.radio", null, skip, h("span", null, h("strong", null, "Skip"), " — new events start no run")),
    ),
    actions: [
      {
        label: "Pause",
        kind: "primary",
        run: async () => {
          await api.pause(fn.app_id, fn.id, skip.checked ? "skip" : "hold");
          refresh();
        },
      },
    ],
  });
}

async function resume(fn, refresh) {
  const ok = await confirmDialog({
    title: `Resume ${fn.app_id}/${fn.id}?`,
    message: fn.paused === "hold" ? "Held runs start now." : "New events start runs again.",
    confirmLabel: "Resume",
    cancelLabel: "Cancel",
  });
  if (!ok) return;
  try {
    await api.resume(fn.app_id, fn.id);
  } catch (error) {
    openDialog({ title: "Could not resume", body: errorBanner(error), cancelLabel: "Close" });
  }
  refresh();
}
