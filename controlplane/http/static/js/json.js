// Pretty-printed, coloured JSON built from text nodes (never HTML).

import { LosslessNumber, stringifyJson } from "./api.js";
import { copyable, h } from "./dom.js";

function render(value, indent, out) {
  const pad = "  ".repeat(indent);
  if (value === null || value === undefined) {
    out.push(h("span.j-null", null, "null"));
  } else if (value instanceof LosslessNumber) {
    out.push(h("span.j-num", null, value.source));
  } else if (typeof value === "string") {
    out.push(h("span.j-str", null, JSON.stringify(value)));
  } else if (typeof value === "number") {
    out.push(h("span.j-num", null, String(value)));
  } else if (typeof value === "boolean") {
    out.push(h("span.j-bool", null, String(value)));
  } else if (Array.isArray(value)) {
    if (!value.length) return out.push("[]");
    out.push("[\n");
    value.forEach((item, i) => {
      out.push(pad + "  ");
      render(item, indent + 1, out);
      out.push(i < value.length - 1 ? ",\n" : "\n");
    });
    out.push(pad + "]");
  } else {
    const keys = Object.keys(value);
    if (!keys.length) return out.push("{}");
    out.push("{\n");
    keys.forEach((key, i) => {
      out.push(pad + "  ", h("span.j-key", null, JSON.stringify(key)), ": ");
      render(value[key], indent + 1, out);
      out.push(i < keys.length - 1 ? ",\n" : "\n");
    });
    out.push(pad + "}");
  }
  return out;
}

/** A <pre> of the value, pretty-printed and coloured, with a copy button. */
export function jsonView(value, { testid, copy = true, empty } = {}) {
  if ((value === undefined || value === null) && empty) return h("p.muted.small", null, empty);
  const pre = h("pre.json", { "data-testid": testid }, render(value, 0, []));
  if (!copy) return pre;
  const text = stringifyJson(value ?? null);
  const button = copyable(text, { label: "JSON" });
  const copyButton = button.querySelector("button");
  return h("div.json-box", null, pre, h("div.json-tools", null, copyButton));
}

/** One line of JSON, cut to ``max`` characters (for tables). */
export function jsonPreview(value, max = 80) {
  if (value === undefined) return "";
  const text = JSON.stringify(value ?? null);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
