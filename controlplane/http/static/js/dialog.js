// Modal dialogs on the native <dialog> element.

import { h } from "./dom.js";

/**
 * Open a modal. ``actions``: [{label, kind: "primary"|"danger"|"", run: async () => keepOpen?}].
 * An action that throws shows its message in the dialog and keeps it open.
 * Returns {dialog, close, showError, body}.
 */
export function openDialog({ title, body, actions = [], cancelLabel = "Cancel", testid, wide = false }) {
  const errorBox = h("div.banner.banner-error.dialog-error", { role: "alert", hidden: true, "data-testid": "dialog-error" });
  const footer = h("footer.dialog-actions");
  const dialog = h(
    "dialog.dialog",
    { "aria-label": title, "data-testid": testid, class: wide ? "dialog-wide" : "" },
    h("form.dialog-form", { method: "dialog", novalidate: true },
      h("header.dialog-head", null,
        h("h2", null, title),
        h("button.icon-btn.dialog-x", { type: "button", "aria-label": "Close", onclick: () => close() }, "×"),
      ),
      h("div.dialog-body", null, body, errorBox),
      footer,
    ),
  );
  const close = () => {
    if (dialog.open) dialog.close();
    dialog.remove();
  };
  const showError = (message) => {
    errorBox.hidden = !message;
    errorBox.textContent = message || "";
  };
  const buttons = [];
  footer.appendChild(h("button.btn", { type: "button", onclick: () => close() }, cancelLabel));
  actions.forEach((action, index) => {
    const button = h(`button.btn${action.kind ? `.btn-${action.kind}` : ""}`, { type: index === actions.length - 1 ? "submit" : "button" }, action.label);
    buttons.push(button);
    button.addEventListener("click", async (event) => {
      event.preventDefault();
      showError("");
      buttons.forEach((b) => (b.disabled = true));
      try {
        const keepOpen = await action.run();
        if (!keepOpen) close();
      } catch (error) {
        // An API error reads "invalid_argument: <the API's message>".
        const message = error && error.message ? error.message : String(error);
        showError(error && error.status ? `${error.code}: ${message}` : message);
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    });
    footer.appendChild(button);
  });
  dialog.addEventListener("close", () => dialog.remove());
  dialog.addEventListener("cancel", () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  const focus = dialog.querySelector("[autofocus]") || dialog.querySelector("textarea, input, select") || buttons.at(-1);
  if (focus) focus.focus();
  return { dialog, close, showError, body, footer };
}

/** Ask before doing something that cannot be undone; resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = "Confirm", danger = false, cancelLabel = "Keep" }) {
  return new Promise((resolve) => {
    let confirmed = false;
    const { dialog } = openDialog({
      title,
      body: h("p.dialog-message", null, message),
      cancelLabel,
      testid: "confirm-dialog",
      actions: [{ label: confirmLabel, kind: danger ? "danger" : "primary", run: () => { confirmed = true; } }],
    });
    dialog.addEventListener("close", () => resolve(confirmed));
    const observer = new MutationObserver(() => {
      if (!dialog.isConnected) {
        observer.disconnect();
        resolve(confirmed);
      }
    });
    observer.observe(document.body, { childList: true });
  });
}
