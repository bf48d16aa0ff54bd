// The "Send event" dialog (sidebar button, and "Send a copy" on an event's page).

import { api, checkJsonObject } from "./api.js";
import { openDialog } from "./dialog.js";
import { h, put } from "./dom.js";
import { eventHref, runHref } from "./nav.js";

let lastName = "";
let lastData = "{\n  \n}";

export function openSendEvent({ name, data } = {}) {
  const nameInput = h("input.input.mono", {
    id: "send-name",
    name: "name",
    placeholder: "app/resource.action",
    autocomplete: "off",
    spellcheck: "false",
    list: "send-event-names",
    required: true,
    autofocus: true,
    value: name ?? lastName,
    "data-testid": "send-name",
  });
  const names = h("datalist", { id: "send-event-names" });
  const dataInput = h("textarea.input.mono.code-input", {
    id: "send-data",
    name: "data",
    rows: 9,
    spellcheck: "false",
    "data-testid": "send-data",
    value: data ?? lastData,
  });
  const result = h("div.send-result", { "data-testid": "send-result", "aria-live": "polite" });
  const body = h(
    "div.form",
    null,
    h("label.field", { for: "send-name" }, h("span.label", null, "Name"), nameInput, names),
    h(
      "label.field",
      { for: "send-data" },
      h("span.label", null, "Data ", h("span.muted", null, "(a JSON object)")),
      dataInput,
    ),
    result,
  );
  const dialog = openDialog({
    title: "Send event",
    body,
    testid: "send-dialog",
    cancelLabel: "Close",
    wide: true,
    actions: [
      {
        label: "Send event",
        kind: "primary",
        run: async () => {
          const eventName = nameInput.value.trim();
          if (!eventName) throw new Error("Give the event a name, like app/user.signup");
          const checked = checkJsonObject(dataInput.value);
          if (!checked.ok) {
            dataInput.focus();
            throw new Error(checked.message);
          }
          lastName = eventName;
          lastData = dataInput.value;
          const reply = await api.sendEvent(eventName, checked.text);
          showResult(result, eventName, reply.results[0], dialog.close);
          return true;
        },
      },
    ],
  });
  const clear = () => dialog.showError("");
  nameInput.addEventListener("input", clear);
  dataInput.addEventListener("input", clear);
  fillEventNames(names);
}

/** Fill a <datalist> with the event names functions are triggered by. */
export function fillEventNames(datalist) {
  api.functions().then(
    (reply) => {
      const known = new Set();
      for (const fn of reply.functions) for (const t of fn.triggers) if (t.type === "event") known.add(t.event);
      put(datalist, [...known].sort().map((value) => h("option", { value })));
    },
    () => {}, // only suggestions: the field works without them
  );
}

function showResult(box, name, sent, close) {
  const runs = sent.run_ids.map((id) =>
    h("li", null, h("a.mono", { href: runHref(id), onclick: close, "data-testid": "sent-run-link" }, id)),
  );
  const effects = [];
  if (sent.resumed_run_ids.length) effects.push(`resumed ${sent.resumed_run_ids.length} waiting run(s)`);
  if (sent.cancelled_run_ids.length) effects.push(`cancelled ${sent.cancelled_run_ids.length} run(s)`);
  put(
    box,
    h(
      "div.banner.banner-ok",
      { role: "status" },
      h("div", null,
        h("strong", null, sent.duplicate ? "Duplicate event ignored " : "Event sent "),
        h("a.mono", { href: eventHref(sent.event_id), onclick: close }, sent.event_id),
      ),
      runs.length
        ? h("div", null, `Started ${runs.length} run${runs.length > 1 ? "s" : ""}:`, h("ul.plain", null, runs))
        : h("div.muted", null, sent.skipped.length ? "Started no run." : `No function is triggered by ${name}.`),
      sent.skipped.length
        ? h(
            "ul.plain",
            null,
            sent.skipped.map((skip) => h("li", null, h("span.mono", null, `${skip.app_id}/${skip.function_id}`), ` skipped it: ${skip.reason}`)),
          )
        : null,
      effects.length ? h("div.muted", null, `It also ${effects.join(" and ")}.`) : null,
    ),
  );
}
