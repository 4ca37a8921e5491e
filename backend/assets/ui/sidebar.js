// The lake browser: schemas → tables (row count, size) → columns, loaded
// lazily as the user opens them. <details>/<summary> make it keyboard- and
// screen-reader-friendly without any ARIA tree plumbing.

import { describe, el, formatBytes, formatCount, getJson, quoteIdent } from "./api.js";

const PAGE = 200;

export class LakeBrowser {
  /** `onQuery(sql)` puts SQL in the editor and runs it. */
  constructor(container, { onQuery }) {
    this.container = container;
    this.onQuery = onQuery;
  }

  async load() {
    this.container.setAttribute("aria-busy", "true");
    try {
      const schemas = await allPages("/api/v1/schemas");
      const list = el("ul", { class: "schemas" });
      for (const schema of schemas) list.append(this.schemaNode(schema));
      if (!schemas.length) list.append(el("li", { class: "muted", text: "No schemas." }));
      this.container.replaceChildren(list);
    } catch (err) {
      this.container.replaceChildren(errorLine(err));
    } finally {
      this.container.setAttribute("aria-busy", "false");
    }
  }

  schemaNode(schema) {
    const body = el("ul", { class: "tables" });
    const details = el(
      "details",
      { "data-schema": schema.name },
      el(
        "summary",
        {},
        el("span", { class: "name", text: schema.name }),
        el("span", { class: "meta", text: `${schema.table_count} ${schema.table_count === 1 ? "table" : "tables"}` }),
      ),
      body,
    );
    details.addEventListener("toggle", async () => {
      if (!details.open || details.dataset.loaded) return;
      details.dataset.loaded = "1";
      body.replaceChildren(el("li", { class: "muted", text: "loading…" }));
      try {
        const tables = await allPages(`/api/v1/tables?schema=${encodeURIComponent(schema.name)}`);
        body.replaceChildren(...tables.map((t) => this.tableNode(t)));
        if (!tables.length) body.append(el("li", { class: "muted", text: "No tables." }));
      } catch (err) {
        delete details.dataset.loaded;
        body.replaceChildren(errorLine(err));
      }
    });
    return el("li", {}, details);
  }

  tableNode(table) {
    const columns = el("div", { class: "columns" });
    const path = `${encodeURIComponent(table.schema)}/${encodeURIComponent(table.name)}`;
    const details = el(
      "details",
      { "data-table": `${table.schema}.${table.name}` },
      el(
        "summary",
        { "aria-label": `table ${table.name}, ${formatCount(table.row_count)} rows, ${formatBytes(table.size_bytes)}` },
        el("span", { class: "name", text: table.name }),
        el("span", { class: "meta", text: `${formatCount(table.row_count)} rows · ${formatBytes(table.size_bytes)}` }),
      ),
      columns,
    );
    details.addEventListener("toggle", async () => {
      if (!details.open || details.dataset.loaded) return;
      details.dataset.loaded = "1";
      columns.replaceChildren(el("p", { class: "muted", text: "loading…" }));
      try {
        const detail = await getJson(`/api/v1/tables/${path}`);
        const rows = detail.columns.map((c) =>
          el(
            "tr",
            {},
            el("th", { scope: "row", text: c.name }),
            el("td", { text: c.type }),
            el("td", { class: "muted", text: c.nullable ? "" : "NOT NULL" }),
          ),
        );
        const sql = `SELECT * FROM ${quoteIdent(table.schema)}.${quoteIdent(table.name)} LIMIT 1000`;
        columns.replaceChildren(
          el(
            "table",
            { class: "column-list", "aria-label": `columns of ${table.name}` },
            el("tbody", {}, rows),
          ),
          el(
            "p",
            { class: "muted" },
            `${formatCount(detail.data_file_count)} files · snapshot ${detail.last_change_snapshot}`,
          ),
          el("button", {
            type: "button",
            class: "small",
            text: "Query this table",
            onclick: () => this.onQuery(sql),
          }),
        );
      } catch (err) {
        delete details.dataset.loaded;
        columns.replaceChildren(errorLine(err));
      }
    });
    return el("li", {}, details);
  }
}

/** Every page of a paged list endpoint (`items`, `next_cursor`). */
async function allPages(path) {
  const items = [];
  let cursor = null;
  const sep = path.includes("?") ? "&" : "?";
  do {
    const page = await getJson(`${path}${sep}limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 5000);
  return items;
}

export function errorLine(err) {
  const { code, message } = describe(err);
  return el("p", { class: "error-line", role: "alert" }, el("code", { text: code }), " ", message);
}
