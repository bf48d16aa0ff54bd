// A run's timeline: a time axis, one row per bar (step attempt, sleep, wait,
// invoke), bars coloured by status. Long idle stretches (a day's sleep next to
// millisecond steps) are drawn compressed behind a scale break; every bar keeps
// a minimum width and its exact duration in text.

import { h, icon, ICONS } from "./dom.js";
import { formatAbsolute, formatDuration, formatOffset, formatRelative, formatWhen, niceStep } from "./format.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);

export const KIND_WORDS = { run: "step", sleep: "sleep", wait_for_event: "wait", invoke: "invoke", send_event: "send" };
const KIND_ICONS = { run: ICONS.step, sleep: ICONS.sleep, wait_for_event: ICONS.wait, invoke: ICONS.invoke, send_event: ICONS.send };

export const barKey = (bar) => `${bar.step_id}:${bar.attempt}`;

/** Where each bar starts and ends on the clock, given the run and now. */
export function barSpans(detail, now) {
  const run = detail.run;
  const finished = FINISHED.has(run.status);
  return detail.timeline.map((bar) => {
    const start = bar.started_at_ms;
    let end = bar.ended_at_ms;
    let planned = 0;
    let open = false;
    // The API marks a sleep, wait or invoke the run ended during.
    let interrupted = bar.status === "interrupted";
    if (!end) {
      if (finished) {
        end = Math.max(start, run.ended_at_ms || start);
        interrupted = true;
      } else {
        end = Math.max(start, now);
        open = true;
        if (bar.until_ms > end) planned = bar.until_ms;
      }
    }
    // A replay from the failed step keeps the steps that completed before it:
    // they ran in the original run, before this one was created.
    const kept = Boolean(run.replay_of) && end <= run.created_at_ms;
    return { bar, start, end, planned, open, interrupted, kept };
  });
}

/**
 * A piecewise-linear scale over [start, end]: stretches that no bar starts or
 * ends in and that dwarf the rest are compressed (each shown with a break).
 */
export function makeScale(points, start, end) {
  const total = Math.max(end - start, 1);
  const cuts = [...new Set(points.filter((t) => t > start && t < end))].sort((a, b) => a - b);
  const edges = [start, ...cuts, Math.max(end, start + 1)];
  const intervals = [];
  for (let i = 0; i < edges.length - 1; i++) intervals.push({ t0: edges[i], t1: edges[i + 1] });
  const bigCut = Math.max(60_000, total * 0.2);
  const big = intervals.filter((iv) => iv.t1 - iv.t0 > bigCut);
  const sumBig = big.reduce((sum, iv) => sum + iv.t1 - iv.t0, 0);
  const rest = total - sumBig;
  const compress = big.length > 0 && rest > 0 && sumBig > 4 * rest;
  const segments = [];
  if (!compress) {
    segments.push({ t0: start, t1: start + total, x0: 0, x1: 1, compressed: false });
  } else {
    const bigShare = 0.4;
    let x = 0;
    for (const iv of intervals) {
      const length = iv.t1 - iv.t0;
      const isBig = length > bigCut;
      const width = isBig ? (bigShare * length) / sumBig : ((1 - bigShare) * length) / rest;
      const last = segments[segments.length - 1];
      if (!isBig && last && !last.compressed) {
        last.t1 = iv.t1;
        last.x1 = x + width;
      } else {
        segments.push({ t0: iv.t0, t1: iv.t1, x0: x, x1: x + width, compressed: isBig });
      }
      x += width;
    }
    segments[segments.length - 1].x1 = 1;
  }
  const x = (t) => {
    if (t <= segments[0].t0) return 0;
    for (const s of segments) {
      if (t <= s.t1) return s.x0 + ((t - s.t0) / Math.max(s.t1 - s.t0, 1)) * (s.x1 - s.x0);
    }
    return 1;
  };
  return { x, segments, start, end: start + total, compressed: compress };
}

/** Axis ticks: [{x, label}] per linear segment, plus the breaks. */
function ticks(scale, origin, widthPx) {
  const out = [];
  for (const s of scale.segments) {
    if (s.compressed) continue;
    const px = (s.x1 - s.x0) * widthPx;
    const count = Math.max(1, Math.floor(px / 110));
    const step = niceStep((s.t1 - s.t0) / count);
    const first = Math.ceil((s.t0 - origin) / step) * step;
    for (let offset = first; origin + offset <= s.t1; offset += step) {
      out.push({ x: scale.x(origin + offset), label: formatOffset(offset, step) });
    }
  }
  // Drop labels that would touch the previous one.
  const kept = [];
  for (const tick of out) {
    const last = kept[kept.length - 1];
    if (!last || (tick.x - last.x) * widthPx >= 64) kept.push(tick);
  }
  return kept;
}

const pct = (fraction) => `${(fraction * 100).toFixed(3)}%`;

/**
 * The timeline element. ``state``: {selected: key, onSelect(key), width: px of the track}.
 */
export function renderTimeline(detail, now, state) {
  const run = detail.run;
  const spans = barSpans(detail, now);
  const finished = FINISHED.has(run.status);
  const runEnd = run.ended_at_ms || now;
  const live = spans.filter((s) => !s.kept);
  const origin = Math.min(run.created_at_ms || now, ...live.map((s) => s.start).filter(Boolean));
  const points = [run.started_at_ms, runEnd, finished ? 0 : now];
  for (const s of live) {
    points.push(s.start, s.end, s.planned, s.bar.retry_at_ms);
  }
  const end = Math.max(runEnd, ...points.filter(Boolean));
  const scale = makeScale(points.filter(Boolean), origin, end);
  const width = state.width || 800;

  const axis = h("div.tl-axis", { "aria-hidden": "true" });
  const grid = h("div.tl-grid", { "aria-hidden": "true" });
  for (const tick of ticks(scale, origin, width)) {
    const edge = tick.x > 0.97 ? "end" : tick.x < 0.02 ? "start" : "";
    axis.append(h("span.tl-tick", { style: { left: pct(tick.x) }, dataset: { edge } }, tick.label));
    grid.append(h("span.tl-gridline", { style: { left: pct(tick.x) } }));
  }
  for (const s of scale.segments.filter((seg) => seg.compressed)) {
    axis.append(
      h(
        "span.tl-break-label",
        { style: { left: pct(s.x0), width: pct(s.x1 - s.x0) }, title: `${formatDuration(s.t1 - s.t0)} compressed` },
        `≈ ${formatDuration(s.t1 - s.t0)}`,
      ),
    );
    grid.append(h("span.tl-break", { style: { left: pct(s.x0), width: pct(s.x1 - s.x0) } }));
  }
  if (!finished) grid.append(h("span.tl-now", { style: { left: pct(scale.x(now)) }, title: "now" }));

  const rows = [runRow(run, scale, now, runEnd)];
  spans.forEach((span) => rows.push(barRow(span, scale, state)));

  return h(
    "div.timeline",
    { "data-testid": "timeline" },
    h("div.tl-head", null, h("div.tl-label.tl-head-label", null, "Started", h("span.muted", null, ` ${formatAbsolute(origin, true)}`)), axis),
    h("div.tl-rows", null, h("div.tl-grid-wrap", null, grid), rows),
    spans.length ? null : h("p.muted.small.tl-none", null, "No steps yet."),
  );
}

function runRow(run, scale, now, runEnd) {
  const started = run.started_at_ms;
  const track = h("div.tl-track");
  const queuedEnd = started || runEnd;
  if (queuedEnd > run.created_at_ms) {
    track.append(
      h("span.tl-bar.tl-queued", {
        style: { left: pct(scale.x(run.created_at_ms)), width: pct(scale.x(queuedEnd) - scale.x(run.created_at_ms)) },
        title: `queued ${formatDuration(queuedEnd - run.created_at_ms)}`,
      }),
    );
  }
  if (started) {
    track.append(
      h("span.tl-bar.tl-run-bar", {
        dataset: { status: run.status },
        style: { left: pct(scale.x(started)), width: pct(scale.x(runEnd) - scale.x(started)) },
        title: `${run.status} · ${formatDuration(runEnd - started)}`,
      }),
    );
  }
  const total = runEnd - run.created_at_ms;
  const queued = started ? started - run.created_at_ms : total;
  const summary = `${formatDuration(total)}${FINISHED.has(run.status) ? "" : " so far"}`;
  return h(
    "div.tl-row.tl-run",
    { "data-testid": "timeline-run" },
    h("div.tl-label", null, h("span.kind-tag.kind-run", null, icon(ICONS.run, 12), "run"), h("span.tl-name", null, run.function_id),
      h("span.tl-run-duration", { title: `queued ${formatDuration(queued)}` }, summary),
    ),
    track,
  );
}

function barRow(span, scale, state) {
  const { bar, start, end, planned, open, interrupted, kept } = span;
  const key = barKey(bar);
  const status = interrupted ? "interrupted" : bar.status;
  const x0 = kept ? 0 : scale.x(start);
  const x1 = kept ? 0 : scale.x(end);
  const track = h("div.tl-track");
  const title = `${bar.name} · ${KIND_WORDS[bar.kind] || bar.kind}${bar.kind === "run" ? ` · attempt ${bar.attempt + 1}` : ""} · ${status} · ${formatDuration(end - start)}`;
  track.append(
    h("span.tl-bar", {
      dataset: { status, kind: bar.kind },
      class: [open ? "open" : "", kept ? "kept" : ""].join(" ").trim(),
      style: { left: pct(x0), width: pct(x1 - x0) },
      title,
      "data-testid": "timeline-bar",
    }),
  );
  let right = x1;
  if (planned) {
    const px = scale.x(planned);
    track.append(
      h("span.tl-bar.tl-planned", {
        dataset: { kind: bar.kind },
        style: { left: pct(x1), width: pct(px - x1) },
        title: `planned until ${formatAbsolute(planned, true)}`,
      }),
    );
    right = px;
  }
  if (bar.retry_at_ms && bar.retry_at_ms > end) {
    const rx = scale.x(bar.retry_at_ms);
    track.append(h("span.tl-retry", { style: { left: pct(x1), width: pct(rx - x1) }, title: `retry due ${formatAbsolute(bar.retry_at_ms, true)}` }));
    right = Math.max(right, rx);
  }
  let text;
  if (open && planned) text = [`${formatDuration(end - start)} · until ${formatWhen(planned)} `, h("span.muted", null, `(${formatRelative(planned)})`)];
  else if (open) text = `${formatDuration(end - start)} so far`;
  else if (interrupted) text = `${formatDuration(end - start)} · not finished`;
  else if (kept) text = [formatDuration(end - start), h("span.muted", null, " · kept from the replayed run")];
  else text = formatDuration(end - start);
  if (bar.status === "failed" && bar.error) text = [text, h("span.tl-err", null, ` · ${bar.error.name}`)];
  if (bar.status === "timed_out") text = [text, h("span.muted", null, " · timed out")];
  placeLabel(track, right, x0, text, planned ? [x1, scale.x(planned)] : null, state.width || 800);

  const selected = state.selected === key;
  const row = h(
    "div.tl-row",
    {
      class: selected ? "selected" : "",
      role: "button",
      tabindex: "0",
      "aria-pressed": String(selected),
      "aria-label": title,
      dataset: { key, name: bar.name, kind: bar.kind, status, attempt: String(bar.attempt + 1) },
      "data-testid": "timeline-row",
    },
    h(
      "div.tl-label",
      null,
      h(`span.kind-tag.kind-${bar.kind}`, null, icon(KIND_ICONS[bar.kind] || ICONS.step, 12), KIND_WORDS[bar.kind] || bar.kind),
      h("span.tl-name", { title: bar.name }, bar.name),
      bar.kind === "run" ? h("span.tl-attempt", null, `attempt ${bar.attempt + 1}`) : null,
    ),
    track,
  );
  const select = () => state.onSelect(key);
  row.addEventListener("click", select);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select();
    }
  });
  return row;
}

/**
 * The duration text: right of the bar when there is room; else in the light,
 * planned part of an open sleep or wait; else left of the bar; else on it.
 */
function placeLabel(track, right, left, content, planned = null, width = 800) {
  const label = h("span.tl-text", null, content);
  if (right < 0.72) {
    label.style.left = `calc(${pct(right)} + 8px)`;
  } else if (planned && (planned[1] - planned[0]) * width > 260) {
    label.style.left = `calc(${pct(planned[0])} + 8px)`;
    label.classList.add("on-planned");
  } else if (left > 0.3) {
    label.style.right = `calc(${pct(1 - left)} + 8px)`;
    label.classList.add("before");
  } else {
    label.style.left = `calc(${pct(left)} + 8px)`;
    label.classList.add("inside");
  }
  track.append(label);
}
