// Sparklines: a few SVG elements per chart, redrawn on each sample. No
// chart library; the numbers beside each chart carry the same information
// for screen readers.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 200;
const HEIGHT = 36;

export class Sparkline {
  constructor(label, { points = 60, series = 1 } = {}) {
    this.points = points;
    this.values = Array.from({ length: series }, () => []);
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.svg.setAttribute("class", "spark");
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("aria-label", label);
    this.lines = this.values.map((_, i) => {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", `series-${i}`);
      this.svg.append(line);
      return line;
    });
  }

  /** Adds one sample per series (null for a gap). */
  push(...samples) {
    samples.forEach((v, i) => {
      const list = this.values[i];
      list.push(v);
      if (list.length > this.points) list.shift();
    });
    this.draw();
  }

  draw() {
    const all = this.values.flat().filter((v) => v !== null && Number.isFinite(v));
    const max = Math.max(1e-9, ...all);
    this.values.forEach((list, i) => {
      // Until the window fills, the samples so far span the whole width (one
      // sample draws a flat line).
      const shown = list.length === 1 ? [list[0], list[0]] : list;
      const step = WIDTH / Math.max(1, shown.length - 1);
      const pts = shown
        .map((v, j) => (v === null ? null : `${(j * step).toFixed(1)},${(HEIGHT - 2 - (v / max) * (HEIGHT - 4)).toFixed(1)}`))
        .filter(Boolean)
        .join(" ");
      this.lines[i].setAttribute("points", pts);
    });
  }
}
