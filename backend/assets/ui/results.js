// Running a query and reading its result as it streams: the service's JSON
// format is `{"columns":[...],"rows":[[...],...],"row_count":n,...}`, written
// row by row, so rows are cut out of the byte stream as they arrive (a small
// scanner that knows strings and nesting) and parsed a batch at a time.

import { request } from "./api.js";

/** Splits the JSON result format into its head, row batches and tail. */
export class ResultScanner {
  constructor() {
    this.buf = "";
    this.phase = "head"; // head → rows → tail
    this.pos = 0; // scan position in buf
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.columns = null;
  }

  /** Feeds text; returns the complete rows it finished (maybe none). */
  feed(text) {
    this.buf += text;
    const rows = [];
    if (this.phase === "head") this.scanHead();
    if (this.phase === "rows") this.scanRows(rows);
    return rows;
  }

  scanHead() {
    const marker = ',"rows":[';
    const at = this.buf.indexOf(marker);
    if (at < 0) return;
    // The column list never contains that marker outside a string followed
    // by `[`: column names are JSON strings, so find the real one by parsing.
    for (let i = at; i >= 0; i = this.buf.indexOf(marker, i + 1)) {
      try {
        const head = JSON.parse(`${this.buf.slice(0, i)}}`);
        this.columns = head.columns;
        this.buf = this.buf.slice(i + marker.length);
        this.phase = "rows";
        this.pos = 0;
        return;
      } catch {
        // the marker was inside a column name; look further
      }
    }
  }

  scanRows(rows) {
    const buf = this.buf;
    let { pos, depth, inString, escaped } = this;
    let lastEnd = 0; // end of the last complete row in buf
    for (; pos < buf.length; pos += 1) {
      const c = buf.charCodeAt(pos);
      if (inString) {
        if (escaped) escaped = false;
        else if (c === 92) escaped = true; // backslash
        else if (c === 34) inString = false; // quote
      } else if (c === 34) {
        inString = true;
      } else if (c === 91 || c === 123) {
        depth += 1; // [ {
      } else if (c === 93 || c === 125) {
        if (depth === 0) {
          // the `]` closing the rows array
          this.phase = "tail";
          break;
        }
        depth -= 1;
        if (depth === 0) lastEnd = pos + 1;
      }
    }
    if (lastEnd > 0) {
      let slice = buf.slice(0, lastEnd);
      if (slice.charCodeAt(0) === 44) slice = slice.slice(1); // leading comma
      for (const row of JSON.parse(`[${slice}]`, exactIntegers)) rows.push(row);
    }
    if (this.phase === "tail") {
      this.tailText = buf.slice(pos + 1);
      this.buf = "";
      return;
    }
    this.buf = buf.slice(lastEnd);
    this.pos = pos - lastEnd;
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
  }

  /** After the last byte: `{row_count, truncated, elapsed_ms}`. */
  finish() {
    const tail = this.phase === "tail" ? this.tailText + this.buf : "";
    if (this.phase !== "tail") throw new Error("the result ended early (the connection closed mid-result)");
    return JSON.parse(`{${tail.replace(/^,/, "")}`);
  }
}

/**
 * The service writes BIGINT/HUGEINT with every digit; integers past 2^53
 * become BigInts (from the source text, where the browser gives it) instead
 * of rounded doubles.
 */
function exactIntegers(_key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
}

/**
 * Runs `sql` and streams its rows: onColumns(columns) once, onRows(rows) per
 * batch; resolves to the summary and the response's snapshot header.
 */
export async function streamQuery({ sql, snapshot, maxRows, signal, onColumns, onRows }) {
  const body = { sql };
  if (snapshot !== null && snapshot !== undefined) body.snapshot = snapshot;
  if (maxRows) body.max_rows = maxRows;
  const res = await request("/api/v1/query", {
    method: "POST",
    body,
    signal,
    headers: { Accept: "application/json" },
  });
  const scanner = new ResultScanner();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let announced = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const rows = scanner.feed(value);
    if (!announced && scanner.columns) {
      announced = true;
      onColumns(scanner.columns);
    }
    if (rows.length) onRows(rows);
  }
  const summary = scanner.finish();
  return { ...summary, snapshot: res.headers.get("X-DuckLake-Snapshot"), cache: res.headers.get("X-Cache") };
}

const EXTENSIONS = { csv: "csv", parquet: "parquet", arrow: "arrow" };

/** Runs `sql` again in `format` and saves the answer as a download. */
export async function exportResult({ sql, snapshot, maxRows, format }) {
  const body = { sql, format };
  if (snapshot !== null && snapshot !== undefined) body.snapshot = snapshot;
  if (maxRows) body.max_rows = maxRows;
  const res = await request("/api/v1/query", { method: "POST", body });
  const blob = await res.blob();
  saveBlob(blob, `result.${EXTENSIONS[format] || format}`);
  return blob.size;
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
