// The result grid: rows are kept in an array and only the ones in view (and
// a few around them) are in the DOM, so a 100,000-row result scrolls as
// lightly as a 10-row one. Appends are batched into one render per frame;
// `flush()` renders what is pending at once, so a status that says "n rows"
// is never shown beside a grid that has not drawn them yet.

import { el } from "./api.js";

const ROW_HEIGHT = 26; // px; matches `.grid td` in console.css
const OVERSCAN = 10;

export class ResultGrid {
  constructor(container) {
    this.container = container;
    this.columns = [];
    this.rows = [];
    this.frame = 0;
    this.table = el("table", { class: "result", "aria-rowcount": "0" });
    this.thead = el("thead");
    this.tbody = el("tbody");
    this.table.append(this.thead, this.tbody);
    this.empty = el("p", { class: "muted placeholder", text: "Run a query to see its rows here." });
    container.append(this.empty, this.table);
    this.table.hidden = true;
    container.addEventListener("scroll", () => this.schedule(), { passive: true });
    window.addEventListener("resize", () => this.schedule());
  }

  clear(message = "Run a query to see its rows here.") {
    this.columns = [];
    this.rows = [];
    this.thead.replaceChildren();
    this.tbody.replaceChildren();
    this.table.hidden = true;
    this.empty.textContent = message;
    this.empty.hidden = false;
    this.container.scrollTop = 0;
  }

  setColumns(columns) {
    this.columns = columns;
    this.rows = [];
    const head = el(
      "tr",
      { "aria-rowindex": "1" },
      el("th", { scope: "col", class: "rownum", "aria-label": "row number", text: "#" }),
      columns.map((c) =>
        el("th", { scope: "col", title: c.type }, el("span", { text: c.name }), el("small", { text: c.type })),
      ),
    );
    this.thead.replaceChildren(head);
    this.table.hidden = false;
    this.empty.hidden = columns.length > 0;
    if (!columns.length) this.empty.textContent = "The statement returned no columns.";
    this.schedule();
  }

  append(rows) {
    for (const row of rows) this.rows.push(row);
    this.schedule();
  }

  get rowCount() {
    return this.rows.length;
  }

  /** Renders pending rows now (the end of a result), not on the next frame. */
  flush() {
    if (this.frame) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    this.render();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const total = this.rows.length;
    this.table.setAttribute("aria-rowcount", String(total + 1));
    const headHeight = this.thead.offsetHeight || ROW_HEIGHT;
    const scrollTop = Math.max(0, this.container.scrollTop - headHeight);
    const viewport = this.container.clientHeight || 400;
    const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(total, Math.ceil((scrollTop + viewport) / ROW_HEIGHT) + OVERSCAN);
    const width = this.columns.length + 1;
    const spacer = (rows) => {
      const td = el("td", { colspan: String(width), class: "spacer", "aria-hidden": "true" });
      td.style.height = `${rows * ROW_HEIGHT}px`;
      return el("tr", { "aria-hidden": "true" }, td);
    };
    const out = [];
    if (first > 0) out.push(spacer(first));
    for (let i = first; i < last; i += 1) {
      out.push(
        el(
          "tr",
          { "aria-rowindex": String(i + 2), class: i % 2 ? "alt" : undefined },
          el("td", { class: "rownum", text: String(i + 1) }),
          this.rows[i].map(cell),
        ),
      );
    }
    if (last < total) out.push(spacer(total - last));
    this.tbody.replaceChildren(...out);
  }
}

function cell(value) {
  if (value === null) return el("td", { class: "null", text: "NULL" });
  const text = typeof value === "object" ? JSON.stringify(value, exactBigInts) : String(value);
  const td = el("td", { text });
  if (typeof value === "number" || typeof value === "bigint") td.className = "num";
  if (text.length > 40) td.title = text;
  return td;
}

/** Nested BigInts as their digits (JSON.rawJSON where the browser has it). */
function exactBigInts(_key, value) {
  if (typeof value !== "bigint") return value;
  return JSON.rawJSON ? JSON.rawJSON(value.toString()) : value.toString();
}
