"use strict";
// The privacy center: confirm deletions, and list the feedback reports this browser holds
// receipts for, each checked against the receipt API (GET/DELETE /v1/feedback/{receipt}).
(function () {
  // Back from the training toggle: the keyboard's focus returns to the switch it pressed.
  const focusTarget = document.querySelector("[data-focus-on-load]");
  if (focusTarget) {
    focusTarget.focus({ preventScroll: true });
    focusTarget.scrollIntoView({ block: "center" });
  }

  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  const list = document.getElementById("report-list");
  const receipts = window.traingateReceipts;
  if (!list || !receipts) return;
  const status = document.getElementById("reports-status");
  const formatDate = receipts.formatDate;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showEmpty() {
    if (!list.querySelector("li")) list.append(element("li", "empty", list.dataset.empty));
  }

  // A cookie-authenticated DELETE carries the page's CSRF token, as the forms do.
  const csrf = document.querySelector('input[name="csrf"]');

  function api(receipt, method) {
    const headers = { Accept: "application/json" };
    if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf.value;
    return fetch(`/v1/feedback/${encodeURIComponent(receipt)}`, {
      method,
      headers,
      credentials: "same-origin",
    });
  }

  function button(label, className, onClick, ariaLabel) {
    const node = element("button", className, label);
    node.type = "button";
    if (ariaLabel) node.setAttribute("aria-label", ariaLabel);
    node.addEventListener("click", onClick);
    return node;
  }

  function forget(entry, item, message) {
    receipts.remove(entry.receipt);
    item.remove();
    status.textContent = message;
    showEmpty();
  }

  async function remove(entry, item, sent) {
    if (!window.confirm(`Delete the report you sent ${sent}? It can never be read again.`)) return;
    const response = await api(entry.receipt, "DELETE");
    if (response.ok || response.status === 404) {
      forget(entry, item, `The report you sent ${sent} was deleted. It can never be read again.`);
    } else {
      status.textContent = `The report could not be deleted (HTTP ${response.status}). Try again.`;
    }
  }

  async function show(entry) {
    const item = element("li", "report");
    item.dataset.receipt = entry.receipt;
    const text = element("div");
    const title = element("span", "title", entry.title || "Feedback report");
    const meta = element("div", "muted small", "Checking…");
    text.append(title, meta);
    item.append(text);
    list.append(item);
    let response;
    try {
      response = await api(entry.receipt, "GET");
    } catch (_) {
      meta.textContent = "Could not be checked: the server did not answer.";
      return;
    }
    if (response.status === 404) {
      meta.textContent = "No longer stored: it was deleted or its retention ended.";
      item.append(button("Forget receipt", "btn small", () =>
        forget(entry, item, "The receipt was removed from this browser.")));
      return;
    }
    if (!response.ok) {
      meta.textContent = `Could not be checked (HTTP ${response.status}).`;
      return;
    }
    const body = await response.json();
    const snapshot = body.snapshot || {};
    const rating = snapshot.rating === "up" ? "Thumbs up" : "Thumbs down";
    const sent = formatDate(body.report.submitted_at);
    const parts = [`Sent ${sent}`, `kept until ${formatDate(body.report.expires_at)}`];
    parts.push(`${(snapshot.messages || []).length} messages stored`);
    meta.textContent = parts.join(" · ");
    const badge = element("span", `badge ${snapshot.rating === "up" ? "yes" : "no"}`, rating);
    title.after(document.createTextNode(" "), badge);
    if (snapshot.comment) text.append(element("div", "small", `“${snapshot.comment}”`));
    if ((snapshot.categories || []).length) {
      const categories = snapshot.categories.map((name) => name.replaceAll("_", " "));
      text.append(element("div", "muted small", `Categories: ${categories.join(", ")}`));
    }
    item.append(button("Delete report", "btn danger small", () => remove(entry, item, sent),
      `Delete the report you sent ${sent}`));
  }

  const entries = receipts.load();
  if (!entries.length) showEmpty();
  entries.forEach(show);
})();
