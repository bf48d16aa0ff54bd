// A run: header, output or error, actions, timeline, step details, steps, history.

import { api, may } from "../api.js";
import { confirmDialog } from "../dialog.js";
import { copyable, emptyState, facts, h, liveDuration, loading, pill, put, relTime, section, timeStack, clearError, showError } from "../dom.js";
import { formatAbsolute, formatDuration, formatExact } from "../format.js";
import { jsonPreview, jsonView } from "../json.js";
import { eventHref, href, navigate, runHref } from "../nav.js";
import { Poller } from "../poll.js";
import { barKey, barSpans, KIND_WORDS, renderTimeline } from "../timeline.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);

export function mount(root, { params }) {
  const [runId] = params;
  let detail = null;
  let selected = "";
  const seen = { head: "", result: "", steps: "", history: "", events: "", details: "" };

  const errorSlot = h("div");
  const head = h("div.run-head", null, loading());
  const result = h("div");
  const timelineBody = h("div.tl-container");
  const detailsBody = h("div.step-details", { "data-testid": "step-details" });
  const steps = section("steps", "Steps");
  const events = section("events", "Trigger event");
  const history = section("history", "History", { open: false });
  const timelineCard = h(
    "section.card.timeline-card",
    null,
    h("header.card-head", null, h("h2", null, "Timeline"), legend()),
    timelineBody,
    detailsBody,
  );
  const page = h(
    "div.run-page",
    null,
    h("nav.crumbs", null, h("a", { href: "#/runs" }, "Runs"), h("span.sep", null, "/"), h("span.mono", null, runId)),
    errorSlot,
    head,
    result,
    timelineCard,
    steps.details,
    events.details,
    history.details,
  );
  const below = [timelineCard, steps.details, events.details, history.details];
  below.forEach((element) => (element.hidden = true));
  root.append(page);

  const onSelect = (key) => {
    selected = selected === key ? "" : key;
    renderTimelinePart();
    renderDetails();
    if (selected) detailsBody.scrollIntoView({ block: "nearest", behavior: "smooth" });
  };

  function renderTimelinePart() {
    if (!detail) return;
    const width = Math.max(200, timelineBody.clientWidth - 300 - 16);
    put(timelineBody, renderTimeline(detail, Date.now(), { selected, onSelect, width }));
  }

  function renderDetails() {
    const key = `${selected}|${JSON.stringify(detail.timeline)}|${JSON.stringify(detail.steps)}`;
    if (key === seen.details) return;
    seen.details = key;
    const span = barSpans(detail, Date.now()).find((s) => barKey(s.bar) === selected);
    if (!span) {
      put(detailsBody, h("p.muted.small.hint", null, detail.timeline.length ? "Click a bar or a step to see its details." : ""));
      return;
    }
    put(detailsBody, stepDetails(span, detail));
  }

  function render() {
    const run = detail.run;
    document.title = `${run.function_id} ${run.status} · Tether`;
    const headJson = JSON.stringify([run, detail.events.map((e) => [e.id, e.name])]);
    if (headJson !== seen.head) {
      seen.head = headJson;
      put(head, header(detail, { cancel, replay }));
      put(result, resultCard(detail));
    }
    renderTimelinePart();
    renderDetails();
    const stepsJson = JSON.stringify([detail.steps, selected]);
    if (stepsJson !== seen.steps) {
      seen.steps = stepsJson;
      put(steps.summary, h("span.section-title", null, "Steps"), h("span.count", null, String(detail.steps.length)));
      put(steps.body, stepsTable(detail, selected, (stepId) => {
        const bars = detail.timeline.filter((b) => b.step_id === stepId);
        if (bars.length) onSelect(barKey(bars[bars.length - 1]));
      }));
    }
    const eventsJson = JSON.stringify(detail.events);
    if (eventsJson !== seen.events) {
      seen.events = eventsJson;
      put(events.summary, h("span.section-title", null, detail.events.length > 1 ? "Trigger events" : "Trigger event"), h("span.count", null, String(detail.events.length)));
      put(events.body, detail.events.map(eventBlock));
    }
    const historyJson = JSON.stringify(detail.history);
    if (historyJson !== seen.history) {
      seen.history = historyJson;
      put(history.summary, h("span.section-title", null, "History"), h("span.count", null, String(detail.history.length)));
      put(history.body, historyTable(detail));
    }
  }

  async function load() {
    try {
      detail = await api.run(runId);
    } catch (error) {
      if (error.status === 404) {
        poller.stop();
        clearError(errorSlot);
        put(head, emptyState(`Run ${runId} was not found.`, h("a.btn.btn-sm", { href: "#/runs" }, "All runs")));
      } else {
        showError(errorSlot, error);
      }
      return;
    }
    clearError(errorSlot);
    below.forEach((element) => (element.hidden = false));
    render();
    if (FINISHED.has(detail.run.status)) poller.interval = 0; // nothing changes any more
  }

  async function cancel(button) {
    const ok = await confirmDialog({
      title: "Cancel this run?",
      message: `Run ${runId} of ${detail.run.function_id} stops: its worker starts no further step. This cannot be undone.`,
      confirmLabel: "Cancel run",
      cancelLabel: "Keep running",
      danger: true,
    });
    if (!ok) return;
    button.disabled = true;
    try {
      await api.cancel(runId, "cancelled from the dev UI");
    } catch (error) {
      showError(errorSlot, error);
    }
    poller.interval = 1000;
    poller.refresh();
  }

  async function replay(mode, button) {
    button.disabled = true;
    try {
      const reply = await api.replay(runId, mode);
      navigate(`/runs/${encodeURIComponent(reply.run.id)}`);
    } catch (error) {
      showError(errorSlot, error);
      button.disabled = false;
    }
  }

  const poller = new Poller(load, 1000).start();
  let frame = 0;
  const onResize = () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(renderTimelinePart);
  };
  window.addEventListener("resize", onResize);
  return {
    unmount: () => {
      poller.stop();
      window.removeEventListener("resize", onResize);
    },
  };
}

function legend() {
  const item = (status, label) => h("span.legend-item", null, h("span.legend-swatch", { dataset: { status } }), label);
  return h("div.legend", null, item("completed", "completed"), item("failed", "failed"), item("waiting", "waiting / planned"), item("timed_out", "timed out"));
}

function header(detail, { cancel, replay }) {
  const run = detail.run;
  const finished = FINISHED.has(run.status);
  const event = detail.events.find((e) => e.id === run.event_id) || detail.events[0];
  // Cancel and replay need an admin key: other keys are offered neither.
  const admin = may("admin");
  const actions = [];
  if (admin && !finished) {
    const button = h("button.btn.btn-danger-outline", { type: "button", "data-testid": "cancel-run" }, "Cancel run");
    button.addEventListener("click", () => cancel(button));
    actions.push(button);
  } else if (admin) {
    if (run.status === "failed") {
      const fromFailed = h("button.btn", { type: "button", "data-testid": "replay-from-failed" }, "Replay from failed step");
      fromFailed.addEventListener("click", () => replay("from_failed_step", fromFailed));
      actions.push(fromFailed);
    }
    const fromStart = h("button.btn.btn-primary", { type: "button", "data-testid": "replay" }, run.status === "failed" ? "Replay from start" : "Replay");
    fromStart.addEventListener("click", () => replay("from_start", fromStart));
    actions.push(fromStart);
  }
  const ended = run.ended_at_ms;
  return [
    h(
      "div.title-row",
      null,
      h(
        "div.title",
        null,
        h("h1", null, h("span.muted.app-id", null, `${run.app_id} / `), h("a.plain-link", { href: href("/runs", { fn: `${run.app_id}/${run.function_id}` }) }, run.function_id)),
        h("span.run-status", { "data-testid": "run-status" }, pill(run.status)),
      ),
      h("div.btn-row", null, actions),
    ),
    facts([
      ["Run ID", copyable(run.id, { label: "run ID", testid: "run-id" })],
      ["Trace ID", run.trace_id ? copyable(run.trace_id, { label: "trace ID", testid: "trace-id" }) : h("span.muted", null, "—")],
      ["Event", event ? h("a", { href: eventHref(event.id) }, h("span.mono", null, event.name)) : run.event_id ? h("a.mono", { href: eventHref(run.event_id) }, run.event_id) : "—"],
      ["Created", timeStack(run.created_at_ms)],
      ["Started", run.started_at_ms ? timeStack(run.started_at_ms) : h("span.muted", null, "not yet")],
      ["Ended", ended ? timeStack(ended) : h("span.muted", null, "not yet")],
      ["Duration", run.started_at_ms ? liveDuration(run.started_at_ms, ended || (finished ? run.started_at_ms : 0)) : h("span.muted", null, "—")],
      run.attempt ? ["Function attempt", String(run.attempt + 1)] : null,
      run.replay_of ? ["Replay of", h("a.mono", { href: runHref(run.replay_of) }, run.replay_of)] : null,
      run.parent_run_id ? ["Invoked by", h("a.mono", { href: runHref(run.parent_run_id) }, run.parent_run_id)] : null,
    ]),
  ];
}

function resultCard(detail) {
  const run = detail.run;
  if (run.status === "completed") {
    return h("section.card.result-card", { "data-testid": "run-output" }, h("header.card-head", null, h("h2", null, "Output")), jsonView(run.output));
  }
  if (run.status === "cancelled") {
    const entry = [...detail.history].reverse().find((e) => e.kind === "run.cancelled");
    const reason = (run.error && run.error.message) || (entry && entry.message) || "The run was cancelled.";
    return h(
      "section.card.result-card.result-cancelled",
      { "data-testid": "run-cancelled" },
      h("header.card-head", null, h("h2", null, "Cancelled")),
      h("p", null, reason, run.ended_at_ms ? h("span.muted", null, ` · ${formatAbsolute(run.ended_at_ms)}`) : null),
    );
  }
  if (run.error) {
    return h("section.card.result-card.result-error", { "data-testid": "run-error" }, h("header.card-head", null, h("h2", null, "Error")), errorView(run.error));
  }
  return null;
}

export function errorView(error) {
  return h(
    "div.error-view",
    null,
    h("div.error-title", null, h("strong", null, error.name), error.message ? `: ${error.message}` : ""),
    error.stack ? h("pre.stack", null, error.stack) : null,
  );
}

function stepDetails(span, detail) {
  const { bar, start, end, planned, open, interrupted } = span;
  const step = detail.steps.find((s) => s.step_id === bar.step_id);
  const status = interrupted ? "interrupted" : bar.status;
  const rows = [
    ["Status", status === "waiting" && bar.kind === "sleep" ? pill("sleeping") : pill(status)],
    bar.kind === "run" ? ["Attempt", `${bar.attempt + 1}${step && step.attempts > 1 ? ` of ${step.attempts}` : ""}`] : null,
    ["Started", h("span.mono", null, formatAbsolute(start, true))],
    ["Ended", bar.ended_at_ms ? h("span.mono", null, formatAbsolute(bar.ended_at_ms, true)) : h("span.muted", null, open ? "not yet" : "never")],
    ["Duration", open ? h("span", null, `${formatExact(end - start)} so far`) : formatExact(end - start)],
    bar.until_ms ? [bar.kind === "sleep" ? "Sleeps until" : "Times out at", h("span", null, h("span.mono", null, formatAbsolute(bar.until_ms, true)), " ", relTime(bar.until_ms))] : null,
    planned && !bar.until_ms ? ["Planned until", formatAbsolute(planned, true)] : null,
    bar.retry_at_ms ? ["Retry at", h("span", null, h("span.mono", null, formatAbsolute(bar.retry_at_ms, true)), h("span.muted", null, ` (${formatDuration(bar.retry_at_ms - bar.ended_at_ms)} after it failed)`))] : null,
    step && step.waiting_for ? ["Waiting for", h("code.mono", null, step.waiting_for)] : null,
    step && step.child_run_id ? ["Invoked run", h("a.mono", { href: runHref(step.child_run_id) }, step.child_run_id)] : null,
    ["Step ID", h("code.mono.small", { title: "SHA-1 of the step name (what the wire carries)" }, bar.step_id)],
  ];
  const showOutput = step && bar.status === "completed" && bar.kind !== "sleep";
  return h(
    "div.details-panel",
    { "data-key": barKey(bar) },
    h(
      "header.details-head",
      null,
      h(`span.kind-tag.kind-${bar.kind}`, null, KIND_WORDS[bar.kind] || bar.kind),
      h("h3.mono", null, bar.name),
      bar.kind === "run" ? h("span.muted", null, `attempt ${bar.attempt + 1}`) : null,
    ),
    h(
      "div.details-grid",
      null,
      facts(rows),
      h(
        "div.details-payload",
        null,
        bar.error ? [h("h4", null, "Error"), errorView(bar.error)] : null,
        showOutput ? [h("h4", null, "Output"), jsonView(step.output, { testid: "step-output" })] : null,
        !bar.error && !showOutput ? h("p.muted.small", null, open ? "Not finished yet." : bar.kind === "sleep" ? "A sleep has no output." : "No output recorded.") : null,
        h("p.muted.small", null, "Step inputs are not stored."),
      ),
    ),
  );
}

function stepsTable(detail, selected, onPick) {
  if (!detail.steps.length) return h("p.muted.small", null, "No steps yet.");
  const selectedStep = selected.split(":")[0];
  return h(
    "table.table.clickable.steps-table",
    { "data-testid": "steps-table" },
    h("thead", null, h("tr", null, ["Step", "Kind", "Status", "Attempts", "Started", "Duration", "Output / error"].map((t) => h("th", null, t)))),
    h(
      "tbody",
      null,
      detail.steps.map((step) => {
        const tr = h(
          "tr",
          { class: step.step_id === selectedStep ? "selected" : "", "data-testid": "step-row", dataset: { step: step.name } },
          h("td.mono.strong.nowrap", null, step.name),
          h("td", null, h(`span.kind-tag.kind-${step.kind}`, null, KIND_WORDS[step.kind] || step.kind)),
          h("td", null, pill(step.status)),
          h("td.num", null, String(step.attempts)),
          h("td", null, step.started_at_ms ? timeStack(step.started_at_ms) : "—"),
          h("td.num", null, stepDuration(step, detail.run)),
          h(
            "td.result",
            null,
            step.error
              ? h("span.error-text", null, `${step.error.name}: ${step.error.message}`)
              : step.status === "completed"
                ? h("code.mono.muted", null, jsonPreview(step.output, 70))
                : step.waiting_for
                  ? h("span.muted", null, `waiting for ${step.waiting_for}`)
                  : step.status === "pending" && step.kind === "sleep" && step.ended_at_ms
                    ? h("span.muted", null, `sleeps until ${formatAbsolute(step.ended_at_ms)}`)
                    : null,
          ),
        );
        tr.addEventListener("click", () => onPick(step.step_id));
        return tr;
      }),
    ),
  );
}

function stepDuration(step, run) {
  if (!step.started_at_ms) return "—";
  if (step.status === "pending") {
    return FINISHED.has(run.status) ? h("span.muted", null, "not finished") : liveDuration(step.started_at_ms, 0);
  }
  return step.ended_at_ms ? formatDuration(step.ended_at_ms - step.started_at_ms) : "—";
}

function eventBlock(event) {
  return h(
    "div.event-block",
    null,
    h(
      "div.event-block-head",
      null,
      h("a.mono.strong", { href: eventHref(event.id) }, event.name),
      h("span.muted.small.mono", null, event.id),
      h("span.muted.small", null, formatAbsolute(event.received_at_ms)),
    ),
    jsonView(event.data),
    event.user && Object.keys(event.user).length ? [h("h4", null, "User"), jsonView(event.user)] : null,
  );
}

function historyTable(detail) {
  const origin = detail.run.created_at_ms;
  return h(
    "table.table.history-table",
    { "data-testid": "history-table" },
    h("thead", null, h("tr", null, ["Time", "+", "Entry", "Step", "Attempt", "Details"].map((t) => h("th", null, t)))),
    h(
      "tbody",
      null,
      detail.history.map((entry) =>
        h(
          "tr",
          null,
          h("td.mono.small.nowrap", null, formatAbsolute(entry.ts_ms, true)),
          h("td.mono.small.muted.num", null, `+${formatDuration(entry.ts_ms - origin)}`),
          h("td", null, h("code.mono.history-kind", { dataset: { kind: entry.kind.split(".")[0] } }, entry.kind)),
          h("td.mono", null, entry.step_name || ""),
          h("td.num", null, entry.step_id ? String(entry.attempt) : ""),
          h(
            "td.small",
            null,
            entry.error ? h("span.error-text", null, `${entry.error.name}: ${entry.error.message}`) : null,
            entry.message ? h("span", null, entry.message) : null,
            entry.until_ms ? h("span.muted", null, ` until ${formatAbsolute(entry.until_ms, true)}`) : null,
            entry.execution_id ? h("span.muted.mono", null, ` execution ${entry.execution_id}`) : null,
          ),
        ),
      ),
    ),
  );
}
