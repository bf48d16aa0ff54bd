// Paging over the API's next_page_token for newest-first lists (runs, events).

import { h } from "./dom.js";

/** "← Newer" / "Older →" buttons; ``onChange`` reloads the list at ``pager.token``. */
export function tokenPager(onChange) {
  let tokens = [""]; // page tokens, newest page first
  let index = 0;
  let next = "";
  const newer = h("button.btn.btn-sm", { type: "button", "data-testid": "newer" }, "← Newer");
  const older = h("button.btn.btn-sm", { type: "button", "data-testid": "older" }, "Older →");
  const info = h("span.muted.small");
  const element = h("div.pager", null, info, h("div.btn-row", null, newer, older));
  element.hidden = true;
  newer.addEventListener("click", () => {
    if (index > 0) {
      index -= 1;
      onChange();
    }
  });
  older.addEventListener("click", () => {
    if (next) {
      tokens = tokens.slice(0, index + 1).concat(next);
      index += 1;
      onChange();
    }
  });
  return {
    element,
    /** The token of the page to load. */
    get token() {
      return tokens[index];
    },
    /** A page was shown; ``nextToken`` is its next_page_token. */
    shown(nextToken) {
      next = nextToken;
      newer.disabled = index === 0;
      older.disabled = !next;
      element.hidden = index === 0 && !next;
      info.textContent = `Page ${index + 1}`;
    },
    /** Back to the newest page (the filters changed). */
    reset() {
      tokens = [""];
      index = 0;
      next = "";
    },
  };
}
