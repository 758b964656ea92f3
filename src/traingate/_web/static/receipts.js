"use strict";
// The feedback receipts this browser holds, kept in localStorage. A receipt is the only key to
// its report: the report itself is de-linked from the account on the server.
(function () {
  const KEY = "traingate.receipts";

  function load() {
    try {
      const value = JSON.parse(window.localStorage.getItem(KEY) || "[]");
      return Array.isArray(value)
        ? value.filter((entry) => entry && typeof entry.receipt === "string")
        : [];
    } catch (_) {
      return [];
    }
  }

  function save(list) {
    window.localStorage.setItem(KEY, JSON.stringify(list));
  }

  function add(entry) {
    const list = load().filter((other) => other.receipt !== entry.receipt);
    list.unshift(entry);
    save(list);
  }

  function remove(receipt) {
    save(load().filter((entry) => entry.receipt !== receipt));
  }

  function formatDate(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso || "";
    return date.toLocaleDateString("en-GB", {
      day: "numeric", month: "long", year: "numeric", timeZone: "UTC",
    });
  }

  window.traingateReceipts = { load, add, remove, formatDate };

  // The receipt page the server renders when the dialog's script did not run.
  const stored = document.getElementById("stored-receipt");
  if (stored && stored.dataset.receipt) {
    add({
      receipt: stored.dataset.receipt,
      rating: stored.dataset.rating,
      title: document.title,
      saved_at: new Date().toISOString(),
    });
  }
})();
