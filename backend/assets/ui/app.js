// The console's entry point: wires the editor, the result grid, the lake
// browser and the side panels to the API, and the keyboard shortcuts
// (Ctrl/Cmd+Enter runs, Esc cancels).

import { apiKey, describe, el, formatCount, onUnauthorized, setApiKey } from "./api.js";
import { ResultGrid } from "./grid.js";
import { JobsPanel, MetricsPanel, SnapshotTimeline } from "./panels.js";
import { exportResult, streamQuery } from "./results.js";
import { LakeBrowser } from "./sidebar.js";

const $ = (id) => document.getElementById(id);

const editor = $("sql");
const runButton = $("run");
const cancelButton = $("cancel");
const statusLine = $("status");
const errorBox = $("error");
const snapshotInput = $("snapshot");
const maxRowsInput = $("max-rows");

const grid = new ResultGrid($("grid"));
const browser = new LakeBrowser($("schemas"), { onQuery: (sql) => { editor.value = sql; run(); } });
const metrics = new MetricsPanel($("metrics"), $("health"));
const jobs = new JobsPanel($("jobs"));
const snapshots = new SnapshotTimeline($("snapshots"), {
  onPick: (id) => {
    snapshotInput.value = id === null ? "" : String(id);
    setStatus(id === null ? "Queries read the latest snapshot." : `Queries read the lake as of snapshot ${id}.`);
    editor.focus();
  },
});

let running = null; // the AbortController of the query in flight

function setStatus(text) {
  statusLine.textContent = text;
}

function showError(err) {
  const { code, message } = describe(err);
  errorBox.replaceChildren(el("code", { class: "code", text: code }), " ", el("span", { class: "message", text: message }));
  errorBox.hidden = false;
}

function clearError() {
  errorBox.hidden = true;
  errorBox.replaceChildren();
}

function options() {
  const snapshot = snapshotInput.value.trim() === "" ? null : Number(snapshotInput.value);
  const maxRows = maxRowsInput.value.trim() === "" ? null : Number(maxRowsInput.value);
  return { sql: editor.value, snapshot, maxRows };
}

async function run() {
  if (running) return;
  loginDismissed = false;
  const { sql, snapshot, maxRows } = options();
  if (!sql.trim()) return;
  clearError();
  grid.clear("Running…");
  const controller = new AbortController();
  running = controller;
  runButton.disabled = true;
  cancelButton.disabled = false;
  document.body.classList.add("busy");
  const started = performance.now();
  let progressFrame = 0;
  setStatus("Running…");
  try {
    const summary = await streamQuery({
      sql,
      snapshot,
      maxRows,
      signal: controller.signal,
      onColumns: (columns) => grid.setColumns(columns),
      onRows: (rows) => {
        grid.append(rows);
        if (!progressFrame) {
          progressFrame = requestAnimationFrame(() => {
            progressFrame = 0;
            if (running === controller) setStatus(`Running… ${formatCount(grid.rowCount)} rows`);
          });
        }
      },
    });
    const parts = [`${formatCount(summary.row_count)} ${summary.row_count === 1 ? "row" : "rows"}`];
    if (summary.truncated) parts.push(`truncated at the row limit`);
    parts.push(`${summary.elapsed_ms.toFixed(1)} ms in DuckDB`);
    parts.push(`${Math.round(performance.now() - started)} ms total`);
    if (summary.snapshot) parts.push(`snapshot ${summary.snapshot}`);
    if (summary.cache === "hit") parts.push("from the result cache");
    grid.flush();
    setStatus(parts.join(" · "));
    if (/^\s*(create|drop|alter|insert|update|delete|copy|merge)\b/im.test(sql)) {
      browser.load();
      snapshots.load();
    }
  } catch (err) {
    grid.flush();
    if (controller.signal.aborted) {
      setStatus(`Cancelled after ${formatCount(grid.rowCount)} rows.`);
    } else {
      showError(err);
      setStatus(grid.rowCount ? `Failed after ${formatCount(grid.rowCount)} rows.` : "Failed.");
      if (!grid.rowCount && !grid.columns.length) grid.clear("No result.");
    }
  } finally {
    cancelAnimationFrame(progressFrame);
    running = null;
    runButton.disabled = false;
    cancelButton.disabled = true;
    document.body.classList.remove("busy");
  }
}

function cancel() {
  if (running) running.abort();
}

async function exportAs(format, button) {
  const { sql, snapshot, maxRows } = options();
  if (!sql.trim()) return;
  loginDismissed = false;
  clearError();
  button.disabled = true;
  setStatus(`Exporting ${format}…`);
  try {
    const bytes = await exportResult({ sql, snapshot, maxRows, format });
    setStatus(`Exported result.${format} (${formatCount(bytes)} bytes).`);
  } catch (err) {
    showError(err);
    setStatus("Export failed.");
  } finally {
    button.disabled = false;
  }
}

async function submitJob() {
  const { sql } = options();
  if (!sql.trim()) return;
  loginDismissed = false;
  clearError();
  try {
    const job = await jobs.submit(sql);
    setStatus(`Submitted job ${job.id}.`);
  } catch (err) {
    showError(err);
  }
}

// --- login (only when the API answers 401) --------------------------------

const dialog = $("login");
// Polling panels get 401s too: once the prompt is dismissed it comes back
// only for something the user does (run, export, submit).
let loginDismissed = false;
onUnauthorized((err) => {
  if (dialog.open || loginDismissed) return;
  dialog.returnValue = "";
  $("login-reason").textContent = apiKey()
    ? `The key was refused: ${err.message}`
    : "This service has authentication on: enter an API key.";
  dialog.showModal();
  $("api-key").focus();
});

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  setApiKey(key);
  $("api-key").value = "";
  dialog.close("key");
  $("logout").hidden = false;
  refreshAll();
});
$("login-cancel").addEventListener("click", () => dialog.close());
dialog.addEventListener("close", () => {
  loginDismissed = dialog.returnValue !== "key";
});
$("logout").addEventListener("click", () => {
  setApiKey(null);
  $("logout").hidden = true;
  refreshAll();
});
$("logout").hidden = !apiKey();

// --- theme: auto (the system's) → dark → light -----------------------------

const THEMES = ["auto", "dark", "light"];
function applyTheme(theme) {
  if (theme === "auto") document.documentElement.removeAttribute("data-theme");
  else document.documentElement.dataset.theme = theme;
  const button = $("theme");
  button.textContent = `Theme: ${theme}`;
  button.setAttribute("aria-label", `Colour theme: ${theme === "auto" ? "follow the system" : theme}; change`);
  localStorage.setItem("ducklake.theme", theme);
}
applyTheme(localStorage.getItem("ducklake.theme") || "auto");
$("theme").addEventListener("click", () => {
  const current = document.documentElement.dataset.theme || "auto";
  applyTheme(THEMES[(THEMES.indexOf(current) + 1) % THEMES.length]);
});

// --- events -----------------------------------------------------------------

$("query-form").addEventListener("submit", (event) => {
  event.preventDefault();
  run();
});
cancelButton.addEventListener("click", cancel);
$("submit-job").addEventListener("click", submitJob);
for (const button of document.querySelectorAll("button.export")) {
  button.addEventListener("click", () => exportAs(button.dataset.format, button));
}
$("refresh-browser").addEventListener("click", () => browser.load());
$("refresh-jobs").addEventListener("click", () => jobs.load());
$("refresh-snapshots").addEventListener("click", () => snapshots.load());

document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
    event.preventDefault();
    run();
  } else if (event.key === "Escape" && running) {
    event.preventDefault();
    cancel();
  }
});

function refreshAll() {
  browser.load();
  snapshots.load();
  jobs.load();
  metrics.poll();
}

browser.load();
snapshots.load();
jobs.start();
metrics.start();
document.body.dataset.ready = "1";
