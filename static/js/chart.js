// chart.js: small line charts drawn as SVG by hand (no charting library):
// one time axis, one value axis starting at 0, a line per series. A gap in
// a series (null) breaks its line. Colours come from app.css classes
// (chart-s0, chart-s1, ...), so the page's CSP needs no inline style.
//
// Each chart is an <svg role="img"> labelled by its title, with the latest
// values as its description; every series' <path> carries data-series
// and data-points (how many values it draws) for tests and tools.

const SVG = "http://www.w3.org/2000/svg";
// The viewBox is about the size a chart is drawn at (a third of a laptop's
// page, or a phone's width), so its text stays legible when it scales.
const W = 360;
const H = 140;
const PAD = { left: 46, right: 10, top: 10, bottom: 22 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** niceMax rounds v up to 1, 2 or 5 times a power of ten (at least min). */
export function niceMax(v, min = 1) {
  const x = Math.max(v, min);
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (x <= m * p) return m * p;
  return 10 * p;
}

/** formatNumber writes v for an axis or a figure: 3 significant digits, k and M for large values. */
export function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a === 0) return "0";
  return String(+v.toPrecision(a >= 1 ? 3 : 2));
}

/**
 * lineChart builds a chart; series is [{name}] in drawing order. Returns
 * {el, update(times, values, from, to)}: times are Dates (the x of each
 * point), values[i] the values of series i (numbers or null), from and to
 * the time axis's ends.
 */
export function lineChart(id, title, series, { unit = "", max: fixedMax } = {}) {
  const titleId = id + "-title";
  const descId = id + "-desc";
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${titleId} ${descId}`, class: "chart", id, "data-testid": id });
  root.append(svg("title", { id: titleId }, title), svg("desc", { id: descId }));
  const grid = svg("g", { class: "chart-grid" });
  const lines = series.map((s, i) => svg("path", { class: `chart-line chart-s${i}`, "data-series": s.name, "data-points": 0, d: "" }));
  // A dot marks each series' latest value.
  const dots = series.map((s, i) => svg("circle", { class: `chart-dot chart-s${i}`, r: 3, cx: -10, cy: -10 }));
  const xLabels = svg("g", { class: "chart-axis" });
  root.append(grid, xLabels, ...lines, ...dots);
  const legend = document.createElement("ul");
  legend.className = "chart-legend";
  for (const [i, s] of series.entries()) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = `chart-swatch chart-s${i}`;
    li.append(sw, " " + s.name);
    legend.append(li);
  }
  const figure = document.createElement("figure");
  figure.className = "chart-box";
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  figure.append(cap, root, legend);

  function update(times, values, from, to) {
    const all = values.flat().filter((v) => typeof v === "number");
    const max = fixedMax || niceMax(all.length ? Math.max(...all) : 0);
    const t0 = from.getTime();
    const span = Math.max(1, to.getTime() - t0);
    const x = (t) => PAD.left + ((t.getTime() - t0) / span) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
    grid.replaceChildren();
    for (const f of [0, 0.5, 1]) {
      const gy = y(max * f);
      grid.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: gy, y2: gy }),
        svg("text", { x: PAD.left - 4, y: gy + 4, "text-anchor": "end" }, formatNumber(max * f) + unit));
    }
    xLabels.replaceChildren(
      svg("text", { x: PAD.left, y: H - 6, "text-anchor": "start" }, clock(from)),
      svg("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end" }, clock(to)));
    const latest = [];
    for (const [i, path] of lines.entries()) {
      let d = "";
      let pen = false;
      let n = 0;
      let last = null;
      for (const [j, v] of (values[i] || []).entries()) {
        if (typeof v !== "number") {
          pen = false;
          continue;
        }
        last = [x(times[j]).toFixed(1), y(v).toFixed(1)];
        d += `${pen ? "L" : "M"}${last[0]},${last[1]}`;
        pen = true;
        n++;
      }
      path.setAttribute("d", d);
      dots[i].setAttribute("cx", last ? last[0] : -10);
      dots[i].setAttribute("cy", last ? last[1] : -10);
      dots[i].toggleAttribute("hidden", !last);
      path.dataset.points = String(n);
      const vs = (values[i] || []).filter((v) => typeof v === "number");
      latest.push(`${series[i].name} ${vs.length ? formatNumber(vs[vs.length - 1]) + unit : "no data"}`);
    }
    root.dataset.max = String(max);
    // data-span: the seconds the time axis covers, for a test to see the
    // window chosen drawn.
    root.dataset.span = String(Math.round(span / 1000));
    root.querySelector("desc").textContent = `Latest: ${latest.join(", ")}.`;
  }
  return { el: figure, svg: root, update };
}

function clock(d) {
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}
