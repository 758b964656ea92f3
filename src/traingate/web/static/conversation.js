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
  let opener = null;

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
      document.getElementById("fb-receipt").textContent = body.receipt;
      document.getElementById("fb-expires").textContent = body.report.expires_at
        ? `until ${window.traingateReceipts.formatDate(body.report.expires_at)}`
        : "until you delete it with its receipt (the policy sets no time limit)";
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
