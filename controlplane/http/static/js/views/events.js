// Events: newest first, searched by exact name, paged; live on the first page.

import { api, may } from "../api.js";
import { emptyState, h, put, timeStack, clearError, showError } from "../dom.js";
import { jsonPreview } from "../json.js";
import { eventHref, navigate } from "../nav.js";
import { tokenPager } from "../pager.js";
import { Poller } from "../poll.js";
import { fillEventNames, openSendEvent } from "../send.js";

const PAGE_SIZE = 50;

export function mount(root, { query }) {
  let name = query.get("name") || "";
  let generation = 0;
  let lastJson = "";

  const search = h("input.input.mono", {
    type: "search",
    placeholder: "Exact event name, e.g. app/user.signup",
    value: name,
    list: "event-names",
    "aria-label": "Event name",
    "data-testid": "event-search",
    spellcheck: "false",
  });
  const names = h("datalist", { id: "event-names" });
  const form = h(
    "form.search-form",
    { role: "search" },
    search,
    names,
    h("button.btn", { type: "submit" }, "Search"),
  );
  const clear = h("button.btn.btn-ghost", { type: "button" }, "Clear");
  form.append(clear);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate("/events", { name: search.value.trim() });
  });
  clear.addEventListener("click", () => navigate("/events"));

  const tbody = h("tbody");
  const table = h(
    "table.table.clickable.events",
    { "data-testid": "events-table" },
    h("thead", null, h("tr", null, ["Name", "Event ID", "Received", "Data"].map((t) => h("th", null, t)))),
    tbody,
  );
  const emptySlot = h("div");
  const errorSlot = h("div");
  const pager = tokenPager(() => restart());
  table.hidden = true;

  root.append(
    h(
      "header.page-head",
      null,
      h("div", null, h("h1", null, "Events"), h("p.subtitle", null, "Every event received, newest first.")),
      may("send")
        ? h("button.btn.btn-primary", { type: "button", onclick: () => openSendEvent(name ? { name } : {}), "data-testid": "events-send" }, "Send event")
        : null,
    ),
    h("div.toolbar", null, form),
    errorSlot,
    h("div.card.table-card", null, table, emptySlot),
    pager.element,
  );

  fillEventNames(names);

  async function load() {
    const mine = generation;
    let reply;
    try {
      reply = await api.events({ name, limit: PAGE_SIZE, page_token: pager.token });
    } catch (error) {
      if (mine === generation) showError(errorSlot, error);
      return;
    }
    if (mine !== generation) return;
    clearError(errorSlot);
    pager.shown(reply.next_page_token);
    const json = JSON.stringify(reply.events);
    if (json === lastJson) return;
    lastJson = json;
    put(tbody, reply.events.map(eventRow));
    table.hidden = !reply.events.length;
    const send = (label, prefill) => (may("send") ? h("button.btn.btn-sm", { type: "button", onclick: () => openSendEvent(prefill) }, label) : null);
    put(
      emptySlot,
      reply.events.length
        ? null
        : name
          ? emptyState(`No event named ${name}.`, send("Send one", { name }))
          : emptyState("No events yet.", send("Send event", {})),
    );
  }

  const poller = new Poller(load, 2000);
  function restart() {
    generation += 1;
    lastJson = "";
    poller.refresh();
  }
  poller.start();
  return {
    unmount: () => poller.stop(),
    update(nextQuery) {
      name = nextQuery.get("name") || "";
      search.value = name;
      pager.reset();
      restart();
    },
  };
}

function eventRow(event) {
  const link = eventHref(event.id);
  const tr = h(
    "tr",
    { "data-testid": "event-row", dataset: { eventId: event.id, name: event.name } },
    h("td", null, h("a.mono.strong", { href: link }, event.name)),
    h("td", null, h("span.mono.small.muted", null, event.id)),
    h("td", null, timeStack(event.received_at_ms)),
    h("td.result", null, h("code.mono.muted", { title: jsonPreview(event.data, 2000) }, jsonPreview(event.data, 90))),
  );
  tr.addEventListener("click", (e) => {
    if (e.target.closest("a, button") || window.getSelection().toString()) return;
    location.hash = link;
  });
  return tr;
}
