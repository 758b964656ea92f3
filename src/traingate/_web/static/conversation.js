"use strict";
// The feedback dialog: thumbs up or down on an assistant message opens it; sending posts the
// form, shows the receipt and keeps it in this browser (receipts.js).
(function () {
  const dialog = document.getElementById("feedback-dialog");
  if (!dialog) return;
  const form = document.getElementById("feedback-form");
  const done = document.getElementById("feedback-done");
  const error = document.getElementById("fb-error");
  const submit = form.querySelector("button[type=submit]");
  const copyStatus = document.getElementById("fb-copy-status");
  let opener = null;
  let stored = null; // the receipt just received, with what its file says

  // Copy and download the receipt: it is the only key to the report (nothing links it to the
  // account), and this browser's storage may be cleared.
  document.getElementById("fb-copy").addEventListener("click", async () => {
    if (!stored) return;
    try {
      await navigator.clipboard.writeText(stored.receipt);
      copyStatus.textContent = "The receipt was copied. Paste it somewhere safe.";
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById("fb-receipt"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copyStatus.textContent = "The receipt is selected: press Ctrl+C (or ⌘C) to copy it.";
    }
  });
  document.getElementById("fb-download").addEventListener("click", () => {
    if (!stored) return;
    const text = [
      "traingate feedback receipt",
      "",
      stored.receipt,
      "",
      `Report sent ${stored.sent}; stored ${stored.until}.`,
      `See or delete it in the privacy center: ${window.location.origin}/privacy#reports`,
      "A lost receipt cannot be recovered: nothing links the report to your account.",
      "",
    ].join("\n");
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `traingate-receipt-${stored.day}.txt`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    copyStatus.textContent = `The receipt was saved as ${link.download}.`;
  });

  function setRating(value) {
    form.querySelectorAll("fieldset[data-for-rating]").forEach((fieldset) => {
      const on = fieldset.dataset.forRating === value;
      fieldset.hidden = !on;
      fieldset.querySelectorAll("input").forEach((input) => {
        input.disabled = !on;
        if (!on) input.checked = false;
      });
    });
  }

  document.querySelectorAll("button[data-rate]").forEach((button) => {
    button.addEventListener("click", () => {
      opener = button;
      form.reset();
      form.hidden = false;
      done.hidden = true;
      error.hidden = true;
      form.elements.message_id.value = button.dataset.message;
      const radio = form.querySelector(`input[name=rating][value=${button.dataset.rate}]`);
      radio.checked = true;
      setRating(button.dataset.rate);
      dialog.showModal();
      radio.focus();
    });
  });

  form.addEventListener("change", (event) => {
    if (event.target.name === "rating") setRating(event.target.value);
  });
  dialog.querySelectorAll("[data-close]").forEach((button) => {
    button.addEventListener("click", () => dialog.close());
  });
  dialog.addEventListener("close", () => {
    if (opener) opener.focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => null);
      if (!response.ok || !body || !body.receipt) {
        const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
        throw new Error(`The report was not stored: ${message}`);
      }
      window.traingateReceipts.add({
        receipt: body.receipt,
        rating: body.rating,
        title: document.querySelector("h1").textContent.trim(),
        saved_at: new Date().toISOString(),
      });
      const formatDate = window.traingateReceipts.formatDate;
      const expires = body.report.expires_at;
      document.getElementById("fb-receipt").textContent = body.receipt;
      document.getElementById("fb-expires").textContent = expires
        ? `until ${formatDate(expires)}`
        : "until you delete it with its receipt (the policy sets no time limit)";
      document.getElementById("fb-lost-stays").textContent = expires
        ? `for its whole retention, until ${formatDate(expires)}`
        : "until it is deleted: the policy sets no time limit";
      stored = {
        receipt: body.receipt,
        sent: formatDate(body.report.submitted_at),
        until: expires ? `until ${formatDate(expires)}` : "with no time limit",
        day: String(body.report.submitted_at || "").slice(0, 10) || "report",
      };
      copyStatus.textContent = "";
      form.hidden = true;
      done.hidden = false;
      document.getElementById("fb-done-title").focus();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
})();
