"use strict";
// The admin console: follow a running build's progress, and verify finished builds.
(function () {
  const status = document.getElementById("build-status");
  if (status && ["queued", "running"].includes(status.dataset.status)) {
    const bar = document.getElementById("build-progress");
    const text = document.getElementById("progress-text");
    const badge = document.getElementById("status-badge");
    const poll = async () => {
      let state;
      try {
        const response = await fetch(status.dataset.statusUrl, {
          headers: { Accept: "application/json" }, credentials: "same-origin",
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        state = await response.json();
      } catch (err) {
        text.textContent = `Progress unavailable (${err.message}); retrying…`;
        window.setTimeout(poll, 2000);
        return;
      }
      const progress = state.progress || {};
      badge.textContent = state.status;
      if (progress.fraction !== null && progress.fraction !== undefined) {
        bar.value = progress.fraction;
      }
      if (state.status === "succeeded" || state.status === "failed") {
        text.textContent = state.status === "succeeded" ? "Finished: loading the manifest…" : "Failed.";
        window.location.reload();
        return;
      }
      text.textContent = progress.messages_total
        ? `${progress.messages_done} of ${progress.messages_total} messages.`
        : "Waiting to start…";
      window.setTimeout(poll, 400);
    };
    poll();
  }

  document.querySelectorAll("[data-verify]").forEach(async (cell) => {
    cell.textContent = "Verifying…";
    try {
      const response = await fetch(cell.dataset.verify, {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      const result = await response.json();
      if (!response.ok) throw new Error(result.error ? result.error.message : `HTTP ${response.status}`);
      cell.textContent = "";
      const badge = document.createElement("span");
      badge.className = `badge ${result.ok ? "yes" : "no"}`;
      badge.textContent = result.ok ? "verified" : `${result.problems.length} problem(s)`;
      cell.append(badge);
      if (!result.ok) {
        const list = document.createElement("ul");
        list.className = "small";
        result.problems.forEach((problem) => {
          const item = document.createElement("li");
          item.textContent = problem;
          list.append(item);
        });
        cell.append(list);
      } else if (cell.tagName === "P") {
        cell.append(document.createTextNode(
          " The files, their row counts and checksums, the counts by basis and the signature all match the manifest."));
      }
    } catch (err) {
      cell.textContent = `Not verified: ${err.message}`;
    }
  });
})();
