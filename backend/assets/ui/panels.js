// The side panels: the service's health, memory and query latency (polled
// from /health, /metrics/memory and /metrics/performance and drawn as
// sparklines), the async jobs list, and the snapshot timeline. Each panel
// says what it cannot show (a key without the role, a feature turned off)
// in the API's words instead of failing the page.

import { ApiError, describe, el, formatBytes, formatCount, getJson, request } from "./api.js";
import { Sparkline } from "./charts.js";
import { saveBlob } from "./results.js";
import { errorLine } from "./sidebar.js";

const QUERY_ROUTE = "POST /api/v1/query";

export class MetricsPanel {
  constructor(container, healthBadge) {
    this.container = container;
    this.healthBadge = healthBadge;
    this.memory = new Sparkline("process memory over the last minutes", { series: 2 });
    this.latency = new Sparkline("query latency p50 and p99 over the last minutes", { series: 2 });
    this.memoryText = el("span", { class: "value", text: "–" });
    this.latencyText = el("span", { class: "value", text: "–" });
    this.memoryNote = el("p", { class: "note muted", hidden: true });
    this.latencyNote = el("p", { class: "note muted", hidden: true });
    this.cacheText = el("span", { class: "value", text: "–" });
    container.replaceChildren(
      el(
        "div",
        { class: "metric", "data-metric": "memory" },
        el("div", { class: "metric-head" }, el("span", { text: "Memory (process, DuckDB)" }), this.memoryText),
        this.memory.svg,
        this.memoryNote,
      ),
      el(
        "div",
        { class: "metric", "data-metric": "latency" },
        el("div", { class: "metric-head" }, el("span", { text: "Query p50 / p99 (1 min)" }), this.latencyText),
        this.latency.svg,
        this.latencyNote,
      ),
      el(
        "div",
        { class: "metric", "data-metric": "cache" },
        el("div", { class: "metric-head" }, el("span", { text: "Result cache" }), this.cacheText),
      ),
    );
  }

  start(intervalMs = 3000) {
    this.poll();
    this.timer = setInterval(() => this.poll(), intervalMs);
  }

  async poll() {
    await Promise.all([this.pollHealth(), this.pollMemory(), this.pollLatency()]);
  }

  async pollHealth() {
    try {
      const res = await fetch("/health");
      const ok = res.ok;
      this.healthBadge.textContent = ok ? "service up" : `service answers ${res.status}`;
      this.healthBadge.className = `health ${ok ? "up" : "down"}`;
    } catch {
      this.healthBadge.textContent = "service unreachable";
      this.healthBadge.className = "health down";
    }
  }

  async pollMemory() {
    try {
      const m = await getJson("/metrics/memory");
      const resident = m.process && m.process.resident_bytes;
      const duck = m.duckdb && m.duckdb.memory_usage_bytes;
      this.memory.push(resident ?? null, duck ?? null);
      this.memoryText.textContent = `${formatBytes(resident)} · ${formatBytes(duck)}`;
      this.memoryNote.hidden = true;
    } catch (err) {
      this.unavailable(this.memoryNote, err);
    }
  }

  async pollLatency() {
    try {
      const report = await getJson("/metrics/performance");
      const window = report.routes && report.routes[QUERY_ROUTE] && report.routes[QUERY_ROUTE]["1m"];
      if (window && window.count > 0) {
        this.latency.push(window.p50_ms, window.p99_ms);
        this.latencyText.textContent = `${fmtMs(window.p50_ms)} / ${fmtMs(window.p99_ms)}`;
      } else {
        this.latency.push(0, 0);
        this.latencyText.textContent = "no queries";
      }
      this.latencyNote.hidden = true;
      this.cacheText.textContent = describeCache(report.cache);
    } catch (err) {
      this.unavailable(this.latencyNote, err);
    }
  }

  unavailable(note, err) {
    const { code, message } = describe(err);
    const why = err instanceof ApiError && err.status === 403 ? "needs an admin key: " : "";
    note.replaceChildren(el("code", { text: code }), ` ${why}${message}`);
    note.hidden = false;
  }
}

/** "83% hits · 12 answers, 1.2 MB" from /metrics/performance's cache. */
export function describeCache(cache) {
  if (!cache) return "–";
  if (!cache.enabled) return "off";
  const ratio = cache.hit_ratio === null ? "no reads yet" : `${Math.round(cache.hit_ratio * 100)}% hits`;
  return `${ratio} · ${formatCount(cache.entries)} kept, ${formatBytes(cache.bytes)}`;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export class JobsPanel {
  constructor(container) {
    this.container = container;
  }

  start(intervalMs = 3000) {
    this.load();
    this.timer = setInterval(() => {
      if (document.visibilityState === "visible") this.load();
    }, intervalMs);
  }

  async submit(sql) {
    const res = await request("/api/v1/jobs", { method: "POST", body: { sql, format: "csv" } });
    const job = await res.json();
    await this.load();
    return job;
  }

  async load() {
    try {
      const page = await getJson("/api/v1/jobs?limit=20");
      const items = page.jobs.map((job) => this.jobNode(job));
      if (!items.length) items.push(el("li", { class: "muted", text: "No jobs yet. “Run as job” submits one." }));
      this.container.replaceChildren(...items);
    } catch (err) {
      this.container.replaceChildren(el("li", {}, errorLine(err)));
    }
  }

  jobNode(job) {
    const progress = job.status === "running" || job.status === "queued"
      ? `${formatCount(job.row_count ?? 0)} rows so far`
      : `${formatCount(job.row_count)} rows · ${formatBytes(job.result_bytes)}`;
    const actions = [];
    if (FINISHED.has(job.status)) {
      if (job.status === "succeeded") {
        actions.push(el("button", { type: "button", class: "small", text: "Download CSV", onclick: () => this.download(job) }));
      }
      actions.push(el("button", { type: "button", class: "small", text: "Delete", onclick: () => this.remove(job) }));
    } else {
      actions.push(el("button", { type: "button", class: "small", text: "Cancel", onclick: () => this.remove(job) }));
    }
    return el(
      "li",
      { class: "job", "data-job": job.id, "data-status": job.status },
      el("div", { class: "job-head" }, el("span", { class: `badge ${job.status}`, text: job.status }), el("span", { class: "meta", text: progress })),
      el("code", { class: "sql", title: job.sql, text: job.sql }),
      job.status === "running" ? progressBar(job) : null,
      job.error ? el("p", { class: "error-line" }, el("code", { text: job.error.code }), " ", job.error.message) : null,
      el("div", { class: "actions" }, actions),
    );
  }

  async download(job) {
    try {
      const res = await request(`/api/v1/jobs/${job.id}/result?format=csv`);
      saveBlob(await res.blob(), `job-${job.id}.csv`);
    } catch (err) {
      this.container.prepend(el("li", {}, errorLine(err)));
    }
  }

  async remove(job) {
    try {
      await request(`/api/v1/jobs/${job.id}`, { method: "DELETE" });
    } catch (err) {
      this.container.prepend(el("li", {}, errorLine(err)));
      return;
    }
    await this.load();
  }
}

/** DuckDB's own estimate while a job runs (absent until it has one). */
function progressBar(job) {
  const percent = job.progress_percent;
  const bar = el("progress", { max: "100", "aria-label": `job progress${percent == null ? ", not estimated yet" : ""}` });
  if (percent !== null && percent !== undefined) {
    bar.value = percent;
    bar.title = `${percent.toFixed(0)} %`;
  }
  return bar;
}

export class SnapshotTimeline {
  /** `onPick(id)` sets the "as of snapshot" field (null: latest). */
  constructor(container, { onPick }) {
    this.container = container;
    this.onPick = onPick;
  }

  async load() {
    try {
      const page = await getJson("/api/v1/snapshots?limit=50");
      const items = page.items.map((s, i) => this.snapshotNode(s, i === 0));
      if (!items.length) items.push(el("li", { class: "muted", text: "No snapshots." }));
      this.container.replaceChildren(...items);
    } catch (err) {
      this.container.replaceChildren(el("li", {}, errorLine(err)));
    }
  }

  snapshotNode(snapshot, latest) {
    const when = new Date(snapshot.time);
    const label = latest ? `Query the latest snapshot (${snapshot.id})` : `Query as of snapshot ${snapshot.id}`;
    return el(
      "li",
      { "data-snapshot": String(snapshot.id) },
      el(
        "button",
        {
          type: "button",
          class: "snapshot",
          "aria-label": label,
          onclick: () => this.onPick(latest ? null : snapshot.id),
        },
        el("span", { class: "id", text: `#${snapshot.id}` }),
        el("time", { datetime: snapshot.time, title: snapshot.time, text: when.toLocaleString() }),
        el("span", { class: "changes", text: summarize(snapshot.changes) }),
      ),
    );
  }
}

/** DuckLake's change set in a few words: `tables_created: main.t; ...`. */
function summarize(changes) {
  if (!changes || typeof changes !== "object") return "";
  return Object.entries(changes)
    .map(([kind, what]) => `${kind.replaceAll("_", " ")}: ${Array.isArray(what) ? what.join(", ") : what}`)
    .join("; ");
}
