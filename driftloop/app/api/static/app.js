/* driftloop dashboard: plain JavaScript over the JSON API, charts by uPlot (vendored). */
"use strict";

const COLORS = { stat: "#2563eb", thr: "#dc2626", drift: "#dc2626", realised: "#059669", est: "#7c3aed",
                 base: "#6b7280", band: "rgba(5,150,105,0.12)", promo: "#059669", crit: "#dc2626", warn: "#d97706" };
const state = { model: null, models: [], charts: [], timer: null, incident: null, segment: "", segments: null };
window.driftloopCharts = [];   // per chart: section, title, each point's event time (t, ms) and pixel x (px)

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}
const fmt = (x, d = 3) => (x == null || !isFinite(x) ? "–" : Number.isInteger(x) || Math.abs(x) >= 1000 ? Math.round(x).toLocaleString() : (+x).toPrecision(d));
/* a statistic in a header: 4 significant digits, so 0.9995 does not read as 1 */
const fmtStat = (x) => (x == null || !isFinite(x) ? "–" : Number.isInteger(x) || Math.abs(x) >= 1000 ? fmt(x) : (+x).toPrecision(4));
const when = (ms) => (ms == null ? "–" : new Date(ms).toLocaleString());
function ago(ms) {
  if (ms == null) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/* The read token (api.read_token_env): from the address (/#token=...; a fragment never reaches the
   server), else asked for on the first 401; kept for this tab only (sessionStorage). */
const TOKEN_KEY = "driftloop.readToken";
(function takeTokenFromAddress() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);   // out of the address bar and history
})();
let asking = null;
function askToken() {
  if (!asking) {
    asking = Promise.resolve(window.prompt("This driftloop needs a read token (api.read_token_env):") || "")
      .then((t) => { if (t) sessionStorage.setItem(TOKEN_KEY, t); asking = null; return t; });
  }
  return asking;
}

/* an endpoint that may not exist on this server (another release): null on 404 */
async function apiOptional(path) {
  try { return await api(path); } catch (err) { if (/HTTP 404/.test(err.message)) return null; throw err; }
}

async function api(path, retried = false) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers });
  if (r.status === 401 && !retried && (await askToken())) return api(path, true);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}${r.status === 401 ? " (a read token is required: open /#token=<token>)" : ""}`);
  return r.json();
}

function showError(msg) {
  const e = $("#error");
  e.hidden = !msg;
  e.textContent = msg || "";
}

/* -- axes: readable at every scale ----------------------------------------------------------- */
/* numeric ticks: as many decimals as the tick step needs, so neighbours always differ
   (0.9990, 0.9995, 1.0000 rather than 1, 1, 0.999); large values scaled with k/M/G */
function numTicks(splits) {
  const vals = splits.filter((v) => v != null && isFinite(v));
  if (!vals.length) return splits.map(() => "");
  let step = Infinity;
  for (let i = 1; i < vals.length; i++) { const d = Math.abs(vals[i] - vals[i - 1]); if (d > 0) step = Math.min(step, d); }
  if (!isFinite(step)) step = Math.abs(vals[0]) || 1;
  const big = Math.max(...vals.map(Math.abs));
  const [div, suffix] = big >= 1e9 ? [1e9, "G"] : big >= 1e6 ? [1e6, "M"] : big >= 1e4 ? [1e3, "k"] : [1, ""];
  const decimals = Math.min(12, Math.max(0, Math.ceil(-Math.log10(step / div) - 1e-9)));
  return splits.map((v) => (v == null || !isFinite(v) ? "" : (v / div).toFixed(decimals) + suffix));
}

const pad2 = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/* time ticks (epoch ms): the unit follows the step, the date is repeated where it changes */
function timeTicks(msSplits) {
  const ts = msSplits.filter((t) => t != null && isFinite(t));
  let step = Infinity;
  for (let i = 1; i < ts.length; i++) step = Math.min(step, Math.abs(ts[i] - ts[i - 1]) || Infinity);
  if (!isFinite(step)) step = 3600000;
  const span = ts.length ? Math.max(...ts) - Math.min(...ts) : 0;
  let prevDay = null, prevYear = null;
  return msSplits.map((t) => {
    if (t == null || !isFinite(t)) return "";
    const d = new Date(t);
    const day = `${MONTHS[d.getMonth()]} ${d.getDate()}`, year = d.getFullYear();
    const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    let out;
    if (step >= 300 * 86400000) out = String(year);
    else if (step >= 25 * 86400000) out = `${MONTHS[d.getMonth()]} ${year}`;
    else if (step >= 86400000) out = year !== prevYear ? `${day} ${year}` : day;
    else {
      const sec = step < 60000 ? `${hm}:${pad2(d.getSeconds())}` : hm;
      const clock = step < 1000 ? `${sec}.${String(d.getMilliseconds()).padStart(3, "0")}` : sec;
      out = day !== prevDay ? `${clock}\n${day}${year !== prevYear && span > 0 ? " " + year : ""}` : clock;
    }
    prevDay = day; prevYear = year;
    return out;
  });
}

/* -- charts ---------------------------------------------------------------------------------- */
function markers(times) {
  // vertical lines at promotions / rollbacks (times in seconds), labelled with the version
  return {
    hooks: {
      draw: [(u) => {
        const { ctx, bbox } = u;
        ctx.save();
        for (const m of times) {
          const x = u.valToPos(m.t, "x", true);
          if (x < bbox.left || x > bbox.left + bbox.width) continue;
          ctx.strokeStyle = COLORS.promo; ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          ctx.beginPath(); ctx.moveTo(x, bbox.top); ctx.lineTo(x, bbox.top + bbox.height); ctx.stroke();
          ctx.setLineDash([]); ctx.fillStyle = COLORS.promo;
          ctx.font = `${10 * devicePixelRatio}px system-ui`;
          ctx.fillText(m.label, x + 3 * devicePixelRatio, bbox.top + 10 * devicePixelRatio);
        }
        ctx.restore();
      }],
    },
  };
}

function panel(parent, title, now, bad) {
  const chart = el("div", { class: "chart" });
  const p = el("div", { class: "panel" }, el("h3", {}, el("span", { text: title }), el("span", { class: "now" + (bad ? " bad" : ""), text: now || "" })), chart);
  parent.append(p);
  return chart;
}

function legend(container, series) {
  const items = series.filter((s) => s.label && !s.noLegend).map((s) => {
    const sw = el("i", { class: "swatch" + (s.dash ? " dashed" : "") });
    sw.style.borderColor = s.swatch || s.stroke;  // CSSOM, allowed by the CSP (no inline style attributes)
    return el("span", {}, sw, s.label);
  });
  container.after(el("div", { class: "legend" }, ...items));
}

function plot(container, series, data, { promos = [], bands, yRange, xRange } = {}) {
  const width = Math.max(300, container.clientWidth || 380);
  legend(container, series);
  const opts = {
    width, height: 180, series: [{}].concat(series), legend: { show: false },
    scales: { x: { time: true, ...(xRange ? { range: () => xRange } : {}) }, y: yRange ? { range: yRange } : {} },
    axes: [{ stroke: "#6b7280", grid: { stroke: "#f0f1f3" }, size: 44, values: (u, splits) => timeTicks(splits.map((v) => v * 1000)) },
           { stroke: "#6b7280", grid: { stroke: "#f0f1f3" }, size: 60, values: (u, splits) => numTicks(splits) }],
    cursor: { drag: { x: true, y: false } }, plugins: [markers(promos)],
  };
  if (bands) opts.bands = bands;
  // what the page drew, for tests and for anyone debugging: each point's event time (t, ms) and
  // its x in CSS pixels within the plotting area (px, of width), as of the last draw
  const xs = data[0];
  const drawn = xs.map((x, i) => data.slice(1).some((col) => col[i] != null) ? i : -1).filter((i) => i >= 0);
  const entry = { section: container.closest("section").querySelector("div[id]").id,
    title: container.parentElement.querySelector("h3 span").textContent, t: drawn.map((i) => xs[i] * 1000), px: [], width: 0 };
  opts.hooks = { draw: [(u) => { entry.px = drawn.map((i) => u.valToPos(xs[i], "x")); entry.width = u.bbox.width / devicePixelRatio; }] };
  const u = new uPlot(opts, data, container);
  state.charts.push({ u, container });
  window.driftloopCharts.push(entry);
  return u;
}

/* every chart shares one EVENT-time axis (seconds): the selected range back from the model's
   newest event (the end of its newest judged window), never the wall clock, so a replay of old
   data, a backfill and a live stream look the same */
function xRange() { return state.extent; }
function extent(drift, perf) {
  const ts = drift.points.map((p) => p.t).concat(perf.points.map((p) => p.t));
  const newest = Math.max(drift.range?.newest ?? -Infinity, perf.range?.newest ?? -Infinity, ...ts);
  if (!isFinite(newest)) { const now = Date.now(); return [(now - 3600000) / 1000, now / 1000]; }
  const since = Math.max(drift.range?.since ?? -Infinity, perf.range?.since ?? -Infinity);
  const starts = drift.points.map((p) => p.window_start ?? p.t).concat(perf.points.map((p) => p.window_start ?? p.t));
  let t0 = starts.length ? Math.min(...starts) : newest - 3600000;
  if (isFinite(since)) t0 = Math.max(t0, since);
  const span = Math.max(1000, newest - t0);
  const pad = span * 0.02;
  return [(t0 - pad) / 1000, (newest + pad) / 1000];
}

/* a wall-clock instant (a promotion, an announcement) on the event-time axis: the end of the
   newest window judged at or before it (null before the first judged window) */
function wallToEvent(ms, points) {
  let best = null;
  for (const p of points) if (p.ts <= ms && (best == null || p.ts > best.ts || (p.ts === best.ts && p.t > best.t))) best = p;
  return best ? best.t : null;
}

/* series from points: one x array (seconds), values aligned by index */
function columns(points, fields) {
  const x = points.map((p) => p.t / 1000);
  return [x].concat(fields.map((f) => points.map((p) => (p[f] == null ? null : p[f]))));
}

function driftPanels(target, points, promos, kinds) {
  target.replaceChildren();
  const groups = new Map();
  for (const p of points) {
    if (!kinds.includes(p.kind)) continue;  // rows come oldest first
    const key = `${p.kind}|${p.feature}|${p.detector}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);   // p.t: the window's end in event time
  }
  // the missing-rate test gets a panel only when it ever fired
  const keys = [...groups.keys()].filter((k) => !k.endsWith("|missing_rate") || groups.get(k).some((p) => p.drifting));
  if (!keys.length) { target.append(el("div", { class: "empty", text: "No judged windows in this range yet." })); return 0; }
  for (const key of keys) {
    const pts = groups.get(key);
    const [kind, feature, detector] = key.split("|");
    const last = pts[pts.length - 1];
    const name = kind === "multivariate_drift" ? `multivariate · ${detector.replace("_", " ")}` : `${feature} · ${detector.replace("_", " ")}`;
    const chart = panel(target, name, `last ${fmtStat(last.statistic)} / ${fmtStat(last.threshold)}`, last.drifting);
    const rows = pts.map((p) => ({ ...p, flagged: p.drifting ? p.statistic : null }));
    const thrLabel = kind === "multivariate_drift" && detector === "pca_reconstruction" ? "reference" : "threshold";
    plot(chart, [
      { label: "statistic", stroke: COLORS.stat, width: 1.5, points: { show: pts.length < 60 } },
      { label: thrLabel, stroke: COLORS.thr, dash: [6, 4], width: 1, points: { show: false } },
      { label: "drift", stroke: COLORS.drift, fill: COLORS.drift, paths: () => null, points: { show: true, size: 7, fill: COLORS.drift }, swatch: COLORS.drift },
    ], columns(rows, ["statistic", "threshold", "flagged"]), { promos, xRange: xRange() });
  }
  return keys.length;
}

function performancePanels(target, points, promos) {
  target.replaceChildren();
  const metrics = [...new Set(points.map((p) => p.metric))];
  metrics.sort((a, b) => (a === "accuracy" ? -1 : b === "accuracy" ? 1 : a.localeCompare(b)));
  if (!metrics.length) { target.append(el("div", { class: "empty", text: "No labelled or estimated windows in this range yet." })); return 0; }
  for (const metric of metrics) {
    const pts = points.filter((p) => p.metric === metric);   // p.t: the window's end in event time
    const times = [...new Set(pts.map((p) => p.t))].sort((a, b) => a - b);
    const idx = new Map(times.map((t, i) => [t, i]));
    const blank = () => times.map(() => null);
    const cols = { value: blank(), hi: blank(), lo: blank(), est: blank(), base: blank() };
    for (const p of pts) {
      const i = idx.get(p.t);
      if (p.source === "realised") { cols.value[i] = p.value; cols.hi[i] = p.ci_high; cols.lo[i] = p.ci_low; }
      else { cols.est[i] = p.value; }
      if (p.baseline != null && p.source === "realised") cols.base[i] = p.baseline;
      else if (p.baseline != null && cols.base[i] == null) cols.base[i] = p.baseline;
    }
    const lastReal = pts.filter((p) => p.source === "realised").pop();
    const lastEst = pts.filter((p) => p.source === "estimated").pop();
    const bad = (lastReal && lastReal.degraded) || (lastEst && lastEst.degraded);
    const now = [lastReal ? `realised ${fmtStat(lastReal.value)}` : null, lastEst ? `estimated ${fmtStat(lastEst.value)}` : null].filter(Boolean).join(" · ");
    const chart = panel(target, metric.replace("_", " "), now, bad);
    const series = [
      { label: "realised", stroke: COLORS.realised, width: 1.5, spanGaps: true, points: { show: times.length < 60 } },
      { label: "CI high", stroke: "transparent", points: { show: false }, spanGaps: true, noLegend: true },
      { label: "CI low", stroke: "transparent", points: { show: false }, spanGaps: true, noLegend: true },
      { label: "estimated", stroke: COLORS.est, width: 1.5, dash: [2, 2], spanGaps: true, points: { show: false } },
      { label: "baseline", stroke: COLORS.base, dash: [6, 4], width: 1, spanGaps: true, points: { show: false } },
    ];
    const data = [times.map((t) => t / 1000), cols.value, cols.hi, cols.lo, cols.est, cols.base];
    plot(chart, series, data, { promos, bands: [{ series: [2, 3], fill: COLORS.band }], xRange: xRange() });
  }
  return metrics.length;
}

/* -- alerts timeline (SVG, one row per alert) ------------------------------------------------ */
function timeline(target, allEpisodes, promos, points) {
  target.replaceChildren();
  const [t0, t1] = xRange().map((t) => t * 1000);
  // event time of each episode: the window that fired it .. the one that cleared it (open: the newest event)
  const episodes = allEpisodes.map((e) => {
    const s = e.start_event ?? wallToEvent(e.start, points);
    // resolved: at the later of the window that cleared it and where the event time stood when announced
    const end = e.end == null ? t1 : Math.max(e.end_event ?? -Infinity, wallToEvent(e.end, points) ?? -Infinity);
    return s == null ? null : { ...e, s, e: isFinite(end) ? Math.max(s, end) : t1 };
  }).filter((e) => e && e.e >= t0 && e.s <= t1);
  if (!episodes.length) { target.append(el("div", { class: "empty", text: "No alert fired in this range." })); return; }
  const rows = [...new Map(episodes.map((e) => [e.alert_id, e])).values()];
  const labelW = 260, rowH = 20, width = Math.max(600, target.clientWidth - 10), height = rows.length * rowH + 40;
  const sx = (t) => labelW + ((Math.max(t0, Math.min(t1, t)) - t0) / Math.max(1, t1 - t0)) * (width - labelW - 10);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    svg.append(n); return n;
  };
  rows.forEach((row, i) => {
    const y = i * rowH + 4;
    const name = [(row.kind || "incident").replace("_", " "), row.detector === "group" ? "(group)" : row.detector, row.feature, segName(row.segment)].filter(Boolean).join(" · ");
    add("text", { x: 4, y: y + 13 }, name.length > 42 ? name.slice(0, 41) + "…" : name);
    add("line", { x1: labelW, x2: width - 10, y1: y + rowH - 2, y2: y + rowH - 2, stroke: "#f0f1f3" });
    for (const ep of episodes.filter((e) => e.alert_id === row.alert_id)) {
      const x1 = sx(ep.s), x2 = sx(ep.e);
      const bar = add("rect", { x: x1, y: y + 3, width: Math.max(3, x2 - x1), height: rowH - 8, rx: 2,
                                fill: ep.severity === "critical" ? COLORS.crit : COLORS.warn, opacity: ep.end ? 0.6 : 1 });
      const tip = document.createElementNS(NS, "title");
      tip.textContent = `events ${when(ep.s)} → ${ep.end ? when(ep.e) : "firing"} (announced ${when(ep.start)})\n${ep.summary || ""}`;
      bar.append(tip);
    }
  });
  for (const m of promos) {
    if (m.t * 1000 < t0 || m.t * 1000 > t1) continue;
    const x = sx(m.t * 1000);
    add("line", { x1: x, x2: x, y1: 0, y2: height - 36, stroke: COLORS.promo, "stroke-dasharray": "4 3" });
    add("text", { x: x + 3, y: height - 38, fill: COLORS.promo }, m.label);
  }
  const ticks = 6;
  const tickTimes = [...Array(ticks + 1).keys()].map((k) => t0 + ((t1 - t0) * k) / ticks);
  timeTicks(tickTimes).forEach((label, k) => {
    const [a, b] = label.split("\n");
    add("text", { x: sx(tickTimes[k]) - 20, y: height - 20, class: "axis" }, a);
    if (b) add("text", { x: sx(tickTimes[k]) - 20, y: height - 6, class: "axis" }, b);
  });
  target.append(svg);
}

/* -- incidents (shown only when the server has /api/incidents) -------------------------------- */
const stamp = (x) => (x == null ? "–" : typeof x === "number" ? when(x) : String(x).replace("T", " ").replace(/\.\d+|Z$/g, ""));
function incidentsView(section, incidents) {
  section.hidden = incidents == null;
  if (incidents == null) return;
  const list = $("#incidents");
  list.replaceChildren(el("tr", {}, ...["status", "severity", "incident", "opened", "resolved", "alerts", "summary"].map((h) => el("th", { text: h }))));
  if (!incidents.length) list.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No incidents." })));
  for (const i of incidents) {
    const row = el("tr", { class: "clickable", "data-incident": i.incident_id, tabindex: "0" },
      el("td", {}, el("span", { class: `badge ${i.status}`, text: i.status })),
      el("td", {}, el("span", { class: `badge ${i.severity}`, text: i.severity })),
      el("td", { text: i.incident_id }), el("td", { text: stamp(i.opened_at ?? i.started_at) }),
      el("td", { text: stamp(i.resolved_at) }), el("td", { text: String((i.members || []).length) }),
      el("td", { text: i.summary || "" }));
    const open = () => showIncident(i.incident_id);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    list.append(row);
  }
  if (state.incident && !incidents.some((i) => i.incident_id === state.incident)) state.incident = null;
  if (state.incident) showIncident(state.incident); else $("#incident").hidden = true;
}

async function showIncident(id) {
  state.incident = id;
  const box = $("#incident");
  const doc = await apiOptional(`/api/incidents/${encodeURIComponent(id)}`);
  for (const r of $("#incidents").querySelectorAll("tr[data-incident]")) r.classList.toggle("selected", r.dataset.incident === id);
  if (!doc) { box.hidden = true; return; }
  const inc = doc.incident || {};
  const hint = inc.hint || {};
  const members = el("table", { class: "table" }, el("tr", {}, ...["status", "severity", "alert", "summary"].map((h) => el("th", { text: h }))));
  for (const a of doc.members || []) {
    members.append(el("tr", {}, el("td", {}, el("span", { class: `badge ${a.status}`, text: a.status })),
      el("td", {}, el("span", { class: `badge ${a.severity}`, text: a.severity })),
      el("td", { text: (a.group_id ? "↳ " : "") + [a.kind, a.detector, a.feature, segName(a.segment)].filter(Boolean).join(" · ") }),
      el("td", { text: a.summary || "" })));
  }
  const steps = (hint.parts || []).map((p) => el("li", { text: typeof p === "string" ? p : (p.text || p.summary || JSON.stringify(p)) }));
  const tl = (doc.timeline || []).map((e) => el("li", { text: `${stamp(e.at)} — #${e.seq} ${e.status}${e.reason ? ` (${e.reason})` : ""}: ${e.summary || ""}` }));
  box.replaceChildren(
    el("h3", { text: `${inc.incident_id} · ${inc.status} · ${inc.severity}` }),
    el("p", { class: "hint-text", text: hint.text || "No hint." }),
    steps.length ? el("ol", { class: "history" }, ...steps) : null,
    el("h4", { text: "Members" }), members,
    el("h4", { text: "Timeline" }), el("ol", { class: "history" }, ...tl));
  box.hidden = false;
}

/* an alert's segment ({feature: value}) as alert messages name it: "country=BR"; null: all traffic */
const segName = (seg) => (seg && typeof seg === "object" && Object.keys(seg).length ? Object.entries(seg).map(([k, v]) => `${k}=${v}`).join(", ") : null);

function alertsTable(target, alerts) {
  const cols = ["status", "severity", "alert", "segment", "since", "summary"];
  target.replaceChildren(el("tr", {}, ...cols.map((h) => el("th", { text: h }))));
  if (!alerts.length) { target.append(el("tr", {}, el("td", { colspan: cols.length, class: "muted", text: "No active alerts." }))); return; }
  for (const a of alerts) {
    const seg = segName(a.segment);
    const row = el("tr", { "data-segment": seg || "" },
      el("td", {}, el("span", { class: `badge ${a.status}`, text: a.status })),
      el("td", {}, el("span", { class: `badge ${a.severity}`, text: a.severity })),
      el("td", { text: [a.kind, a.detector, a.feature].filter(Boolean).join(" · ") }),
      // a group gathers alerts of several slices: its members name theirs
      el("td", { class: seg ? "" : "muted", text: seg || (a.detector === "group" ? "–" : "all traffic") }),
      el("td", { text: ago(a.fired_at ?? a.started_at) }),
      el("td", { text: a.summary || "" }));
    if (seg && seg === state.segment) row.classList.add("selected");
    target.append(row);
  }
}

/* -- segments (issue 18): the last window each segment was judged on, against all traffic ------ */
const pct = (x) => (x == null || !isFinite(x) ? "–" : x === 0 ? "0 %" : `${+(100 * x).toPrecision(3)} %`);
const pval = (p) => (p == null || !isFinite(p) ? "–" : p < 1e-6 ? "<1e-6" : (+p).toPrecision(2));
/* the metric a segment's overview row shows: accuracy when there is one, else the first */
function headMetric(views) {
  const names = [...new Set(views.flatMap((v) => Object.keys(v.performance?.metrics || {})))];
  return names.includes("accuracy") ? "accuracy" : names.sort()[0] || null;
}

function segmentOptions(doc) {
  const sel = $("#segment");
  const segs = doc ? doc.segments : [];
  if (!segs.some((s) => s.segment === state.segment)) state.segment = "";
  const groups = new Map();
  for (const s of segs) { if (!groups.has(s.feature)) groups.set(s.feature, []); groups.get(s.feature).push(s); }
  sel.replaceChildren(el("option", { value: "", text: "all traffic" }), ...[...groups].map(([feature, list]) =>
    el("optgroup", { label: feature }, ...list.map((s) => el("option", { value: s.segment, text: s.segment })))));
  sel.value = state.segment;
  sel.disabled = !segs.length;
}

function segmentsView(doc) {
  const section = $("#segments-section");
  section.hidden = doc == null;      // a server without /api/models/{model}/segments
  if (doc == null) return;
  segmentOptions(doc);
  const segs = doc.segments, overall = doc.overall;
  const metric = headMetric(segs.concat([overall]));
  const table = $("#segments");
  const cols = ["segment", "predictions", "labelled", "windows judged", metric ? `${metric.replace("_", " ")} (all traffic)` : "performance", "drifting", "firing"];
  table.replaceChildren(el("tr", {}, ...cols.map((h) => el("th", { text: h }))));
  $("#segment-note").textContent = segs.length ? "or click a row" :
    (doc.configured.length ? "no segment judged yet" : `no segments: configure models.${state.model}.segments (e.g. [country])`);
  const allValue = metric ? overall.performance?.metrics?.[metric]?.value : null;
  for (const s of [overall].concat(segs)) {
    const m = metric ? s.performance?.metrics?.[metric] : null;
    const key = s.segment || "";
    const nFiring = s.segment == null ? null : (s.firing || []).length;
    const row = el("tr", { class: "clickable", tabindex: "0", "data-segment": key },
      el("td", {}, s.segment == null ? el("strong", { text: "all traffic" }) : s.segment),
      el("td", { text: fmt(s.rows?.predictions, 6) }), el("td", { text: fmt(s.rows?.labelled, 6) }),
      el("td", { text: s.judged ? `${fmt(s.judged.predictions, 6)} / ${fmt(s.judged.labelled, 6)}` : "–" }),
      el("td", { class: m && m.degraded ? "bad" : "", text: m ? (s.segment == null ? fmtStat(m.value) : `${fmtStat(m.value)} (${fmtStat(allValue)})`) : "–" }),
      el("td", { class: s.drifting.length ? "bad" : "", text: s.drifting.length ? s.drifting.join(", ") : "–" }),
      el("td", { class: nFiring ? "bad" : "", text: nFiring == null ? "" : String(nFiring) }));
    if (key === state.segment) row.classList.add("selected");
    const pick = () => selectSegment(key);
    row.addEventListener("click", pick);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
    table.append(row);
  }
  segmentDetail(doc);
}

function selectSegment(key) {
  state.segment = key;
  $("#segment").value = key;
  for (const r of $("#segments").querySelectorAll("tr[data-segment]")) r.classList.toggle("selected", r.dataset.segment === key);
  for (const r of $("#alerts").querySelectorAll("tr[data-segment]")) r.classList.toggle("selected", !!key && r.dataset.segment === key);
  if (state.segments) segmentDetail(state.segments);
}

/* the selected segment's performance metrics against all traffic's, and its drift statistics */
function segmentDetail(doc) {
  const box = $("#segment-detail");
  const overall = doc.overall;
  const seg = doc.segments.find((s) => s.segment === state.segment) || null;
  const view = seg || overall;
  const name = seg ? seg.segment : "all traffic";
  // performance
  const perf = $("#segment-performance");
  const pcols = seg ? ["metric", name, "all traffic", "baseline", "95% CI", "p (adj.)", "rows", ""] : ["metric", "all traffic", "baseline", "95% CI", "p (adj.)", "rows", ""];
  perf.replaceChildren(el("caption", { text: seg ? `Performance: ${name} vs all traffic` : "Performance: all traffic, last labelled window" }),
    el("tr", {}, ...pcols.map((h) => el("th", { text: h }))));
  const metrics = Object.entries(view.performance?.metrics || {});
  if (!metrics.length) {
    const pending = seg?.pending?.labelled;
    perf.append(el("tr", {}, el("td", { colspan: pcols.length, class: "muted",
      text: `No labelled window judged yet${seg ? ` for this segment (${fmt(pending ?? 0, 6)} labelled rows gathered)` : ""}.` })));
  }
  for (const [metric, m] of metrics) {
    const all = overall.performance?.metrics?.[metric];
    const ci = Array.isArray(m.ci) ? `${fmtStat(m.ci[0])} – ${fmtStat(m.ci[1])}` : "–";
    perf.append(el("tr", { "data-metric": metric },
      el("td", { text: metric.replace("_", " ") }),
      el("td", { class: m.degraded ? "bad" : "", text: fmtStat(m.value) }),
      seg ? el("td", { class: all?.degraded ? "bad" : "", text: fmtStat(all?.value) }) : null,
      el("td", { text: fmtStat(m.baseline) }), el("td", { text: ci }),
      el("td", { text: pval(m.p_adjusted ?? m.p_value) }), el("td", { text: fmt(view.performance?.n, 6) }),
      el("td", {}, m.degraded ? el("span", { class: "badge critical", text: "degraded" }) : null)));
  }
  // drift
  const drift = $("#segment-drift");
  const dcols = seg ? ["feature", "test", "effect", "all traffic", "threshold", "p (adj.)", ""] : ["feature", "test", "effect", "threshold", "p (adj.)", ""];
  drift.replaceChildren(el("caption", { text: `Drift: ${name}, last judged window` }), el("tr", {}, ...dcols.map((h) => el("th", { text: h }))));
  if (!view.drift.length) {
    const why = seg && seg.reference_rows != null && !seg.drift.length && seg.judged?.predictions
      ? `no drift tests: ${fmt(seg.reference_rows, 6)} reference rows (too few to compare with)` : "No window judged yet.";
    drift.append(el("tr", {}, el("td", { colspan: dcols.length, class: "muted", text: why })));
  }
  const allDrift = new Map(overall.drift.map((d) => [`${d.kind}|${d.feature}`, d]));
  for (const d of view.drift) {
    const all = allDrift.get(`${d.kind}|${d.feature}`);
    drift.append(el("tr", { "data-feature": d.feature },
      el("td", { text: d.kind === "prediction_drift" ? `${d.feature} (prediction)` : d.feature }),
      el("td", { text: d.detector.replace("_", " ") }),
      el("td", { class: d.drifting ? "bad" : "", text: fmtStat(d.effect) }),
      seg ? el("td", { class: all?.drifting ? "bad" : "", text: fmtStat(all?.effect) }) : null,
      el("td", { text: fmtStat(d.threshold) }), el("td", { text: pval(d.p_adjusted ?? d.p_value) }),
      el("td", {}, d.drifting ? el("span", { class: "badge critical", text: "drifting" }) : null)));
  }
  box.dataset.segment = state.segment;
}

/* -- data quality (issue 18): the last window's checks, breaching first, with their evidence --- */
const quote = (v) => (typeof v === "number" ? fmt(v, 4) : JSON.stringify(String(v)));
function evidence(c) {
  const e = c.evidence || {};
  const lines = [];
  const range = (r) => (Array.isArray(r) ? `[${fmt(r[0], 4)}, ${fmt(r[1], 4)}]` : "–");
  if (c.check === "unseen_categories") {
    if ((e.top_unseen || []).length) lines.push("unseen: " + e.top_unseen.map(([v, n]) => `${quote(v)} ×${fmt(n, 6)}`).join(", "));
    if (e.reference_categories != null) lines.push(`reference: ${fmt(e.reference_categories, 6)} categories`);
  } else if (c.check === "out_of_range") {
    if (e.reference_range) lines.push(`reference range ${range(e.reference_range)}`);
    if (e.current_range) lines.push(`this window ${range(e.current_range)}`);
    if ((e.examples || []).length) lines.push(`outside: ${fmt(e.outside ?? e.examples.length, 6)}, e.g. ${e.examples.map((v) => fmt(v, 4)).join(", ")}`);
    if (e.scale != null && e.outside) lines.push(`median ×${fmt(e.scale, 3)} the reference's`);
  } else if (c.check === "constant") {
    lines.push(`one value: ${quote(e.value)} (reference: ${fmt(e.reference_distinct, 6)} distinct, the top one ${pct(e.reference_top_share)})`);
  } else if (c.check === "type_change") {
    lines.push(`refused ${fmt(e.refused, 6)} of ${fmt(e.received, 6)} events` + ((e.examples || []).length ? `, e.g. ${e.examples.join(", ")}` : ""));
  } else if (c.check === "schema_absent") {
    lines.push(`key absent in ${fmt(e.absent, 6)} of ${fmt(e.events, 6)} events` + ((e.new_keys || []).length ? `; new keys: ${e.new_keys.join(", ")}` : ""));
  } else if (c.check === "schema_new") {
    lines.push(`carried by ${fmt(e.events_with_key, 6)} of ${fmt(e.events, 6)} events`);
  } else if (c.check === "duplicates") {
    lines.push(`${fmt(e.duplicates, 6)} of ${fmt(e.received, 6)} events repeated an event id`);
  } else if (c.check !== "missing_rate") {
    for (const [k, v] of Object.entries(e)) lines.push(`${k.replace(/_/g, " ")}: ${typeof v === "object" ? JSON.stringify(v) : quote(v)}`);
  }
  return el("td", { class: "evidence" }, ...lines.map((t) => el("div", { text: t })));
}

function dataQualityTable(doc) {
  const section = $("#quality-section");
  section.hidden = doc == null;      // a server without /api/models/{model}/data-quality
  if (doc == null) return;
  const target = $("#data-quality");
  const count = $("#quality-count");
  count.textContent = doc.checks.length ? `${doc.breaching} of ${doc.checks.length} checks breaching` : "";
  count.className = doc.breaching ? "count bad" : "count";
  const cols = ["", "check", "feature", "share", "expected", "threshold", "p (adj.)", "events", "evidence"];
  target.replaceChildren(el("tr", {}, ...cols.map((h) => el("th", { text: h }))));
  if (!doc.checks.length) target.append(el("tr", {}, el("td", { colspan: cols.length, class: "muted", text: "No window judged yet." })));
  for (const c of doc.checks) {
    const badge = c.breach ? el("span", { class: "badge critical", text: "breach" })
      : c.firing ? el("span", { class: "badge warning", text: "firing" }) : el("span", { class: "badge ok", text: "ok" });
    target.append(el("tr", { "data-check": c.check, "data-feature": c.feature || "", "data-breach": c.breach ? "1" : "0" },
      el("td", {}, badge), el("td", { text: c.check.replace(/_/g, " ") }), el("td", { text: c.feature || "(events)" }),
      el("td", { class: c.breach ? "bad" : "", text: pct(c.share) }), el("td", { text: pct(c.expected) }),
      el("td", { text: pct(c.threshold) }), el("td", { text: pval(c.p_adjusted) }), el("td", { text: fmt(c.n, 6) }),
      evidence(c)));
  }
}

function versionsTable(target, list, versions) {
  target.replaceChildren(el("tr", {}, ...["version", "status", "created", "metrics", "note"].map((h) => el("th", { text: h }))));
  for (const v of [...versions].reverse()) {
    const metrics = Object.entries(v.metrics || {}).filter(([, x]) => typeof x === "number").slice(0, 4).map(([k, x]) => `${k} ${fmt(x)}`).join(", ");
    target.append(el("tr", {}, el("td", { text: `v${v.version}` }),
      el("td", {}, el("span", { class: `badge ${v.status}`, text: v.status })),
      el("td", { text: when(v.created_at) }), el("td", { text: metrics || "–" }), el("td", { text: v.note || "" })));
  }
  list.replaceChildren();
  for (const h of [...versionsHistory].reverse()) {
    const text = `${when(h.decided_at)} — ${h.event.replace("_", " ")} v${h.version}` +
      (h.champion_version != null ? ` (champion v${h.champion_version})` : "") + ` by ${h.actor}: ${h.reason}`;
    list.append(el("li", { text }));
  }
}
let versionsHistory = [];

/* the versions the detectors judge now (issue 14): phase, champion, traffic share, counts, alerts;
   below, each shadow challenger's comparison with the served version (its one-sentence summary) */
const vname = (v) => (v === "" ? "–" : /^\d+$/.test(v) ? `v${v}` : v);
function liveVersionsTable(target, list, detail) {
  const cols = ["version", "phase", "share of traffic", "predictions", "labelled", "firing alerts"];
  target.replaceChildren(el("tr", {}, ...cols.map((h) => el("th", { text: h }))));
  const live = Object.values(detail.live_versions || {});
  if (!live.length) target.append(el("tr", {}, el("td", { colspan: cols.length, class: "muted", text: "No version judged yet." })));
  live.sort((a, b) => (b.champion - a.champion) || a.version.localeCompare(b.version, undefined, { numeric: true }));
  for (const v of live) {
    target.append(el("tr", { "data-version": v.version },
      el("td", {}, vname(v.version), v.champion ? " " : null, v.champion ? el("span", { class: "badge champion", text: "champion" }) : null),
      el("td", {}, el("span", { class: `badge ${v.phase || "serving"}`, text: v.phase || "serving" })),
      el("td", { text: v.traffic_share == null ? "–" : `${(100 * v.traffic_share).toFixed(1)} %` }),
      el("td", { text: fmt(v.predictions, 6) }), el("td", { text: fmt(v.labelled, 6) }),
      el("td", { class: v.firing_alerts ? "bad" : "", text: String(v.firing_alerts ?? 0) })));
  }
  const capped = Object.entries(detail.versions_capped || {});
  if (capped.length) {
    const text = "not judged (versions.max_live reached): " + capped.map(([v, n]) => `${vname(v)} (${fmt(n, 6)} events)`).join(", ");
    target.append(el("tr", {}, el("td", { colspan: cols.length, class: "muted", text })));
  }
  list.replaceChildren(...Object.values(detail.shadows || {}).map((r) =>
    el("li", { class: r.better ? "better" : r.worse ? "worse" : "", text: r.summary || "" })));
}

/* where the detectors' reference comes from: the registry's champion, else the configured file */
function referenceCard(m) {
  const ref = m.reference || {};
  if (ref.source === "registry" || m.champion_version != null) {
    return ["champion (registry)", `v${ref.champion_version ?? m.champion_version}`, "", "reference: the champion's training sample"];
  }
  if (ref.source === "config") return ["reference", "configured reference", "small", `configured reference (${ref.path})`];
  return ["reference", "none yet", "small", "no champion and no configured reference"];
}

function cards(target, m, perf, incidents) {
  const lastReal = perf.filter((p) => p.source === "realised" && p.metric === "accuracy").pop();
  const lastEst = perf.filter((p) => p.source === "estimated" && p.metric === "accuracy").pop();
  const c = m.counts || {};
  const ev = m.events || {};
  const openIncidents = incidents == null ? null : incidents.filter((i) => i.status === "open").length;
  const items = [
    [...referenceCard(m), "champion"],
    ["predictions", fmt(c.predictions, 6), "", null, "predictions"], ["labels joined", fmt(c.joined, 6), "", null, "joined"],
    ["invalid", fmt(c.invalid, 6), c.invalid > 0 ? "bad" : "", null, "invalid"],
    ["firing alerts (groups count once)", String(m.firing_alerts ?? 0), m.firing_alerts ? "bad" : "good",
     "as driftloop stats counts them: a group of alerts counts once, its members not again", "firing_alerts"],
    // open incidents: only when /api/incidents answers (absent: the tile is left out)
    openIncidents == null ? null : ["open incidents", String(openIncidents), openIncidents ? "bad" : "good", "incidents open now (/api/incidents)", "open_incidents"],
    ["accuracy (realised)", lastReal ? fmtStat(lastReal.value) : "–", lastReal && lastReal.degraded ? "bad" : ""],
    ["accuracy (estimated)", lastEst ? fmtStat(lastEst.value) : "–", lastEst && lastEst.degraded ? "bad" : ""],
    ["newest event", ev.newest == null ? "–" : when(ev.newest), "small", `end of the newest judged window (event time); judged ${ago(m.last_judged_at)}`, "newest_event"],
  ].filter(Boolean);
  target.replaceChildren(...items.map(([label, value, cls, title, key]) => {
    const card = el("div", { class: `card ${cls || ""}` },
      el("div", { class: "label", text: label }), el("div", { class: "value", text: value }),
      title ? el("div", { class: "sub", text: title }) : null);
    if (key) card.dataset.tile = key;
    return card;
  }));
}

/* -- loading --------------------------------------------------------------------------------- */
async function loadModels() {
  const { models } = await api("/api/models");
  state.models = models;
  const nav = $("#models");
  nav.replaceChildren(...models.map((m) => {
    const b = el("button", { type: "button", text: m.name + (m.firing_alerts ? ` (${m.firing_alerts})` : "") });
    if (m.name === state.model) b.classList.add("active");
    b.addEventListener("click", () => { if (state.model !== m.name) state.segment = ""; state.model = m.name; location.hash = encodeURIComponent(m.name); render(); });
    return b;
  }));
  if (!state.model || !models.some((m) => m.name === state.model)) {
    const fromHash = decodeURIComponent(location.hash.slice(1));
    state.model = models.some((m) => m.name === fromHash) ? fromHash : models.length ? models[0].name : null;
  }
}

async function render() {
  try {
    document.body.dataset.ready = "0";
    await loadModels();
    for (const b of $("#models").children) b.classList.toggle("active", b.textContent.split(" (")[0] === state.model);
    if (!state.model) { showError("No model is configured."); return; }
    const m = encodeURIComponent(state.model);
    const range = +$("#range").value;   // relative to the model's newest event; 0: all
    const sel = range ? `range_ms=${range}` : "";
    const [drift, perf, tl, active, detail, inc, segs, quality] = await Promise.all([
      api(`/api/models/${m}/drift?${sel}`), api(`/api/models/${m}/performance?${sel}`),
      api(`/api/alerts/timeline?model=${m}`), api(`/api/alerts?model=${m}&status=active`),
      api(`/api/models/${m}`), apiOptional(`/api/incidents?model=${m}&limit=10000`),
      apiOptional(`/api/models/${m}/segments`), apiOptional(`/api/models/${m}/data-quality`),
    ]);
    for (const c of state.charts) c.u.destroy();
    state.charts = [];
    window.driftloopCharts = [];
    state.extent = extent(drift, perf);
    // promotions and rollbacks happen on the wall clock: drawn where the event time then stood
    const judged = drift.points.concat(perf.points);
    const promos = detail.history.filter((h) => h.event === "promoted" || h.event === "rolled_back")
      .map((h) => ({ t: (wallToEvent(h.decided_at, judged) ?? NaN) / 1000, label: `v${h.champion_version}` }))
      .filter((p) => isFinite(p.t));
    const summary = state.models.find((x) => x.name === state.model) || {};
    cards($("#cards"), summary, perf.points, inc ? inc.incidents : null);
    $("#extent").textContent = `event time ${when(state.extent[0] * 1000)} → ${when(state.extent[1] * 1000)}`;
    const n1 = driftPanels($("#data-drift"), drift.points, promos, ["data_drift"]);
    const n2 = driftPanels($("#prediction-drift"), drift.points, promos, ["prediction_drift", "multivariate_drift"]);
    const n3 = performancePanels($("#performance"), perf.points, promos);
    timeline($("#timeline"), tl.episodes, promos, judged);
    incidentsView($("#incidents-section"), inc ? inc.incidents : null);
    alertsTable($("#alerts"), active.alerts);
    state.segments = segs;
    segmentsView(segs);
    dataQualityTable(quality);
    versionsHistory = detail.history;
    versionsTable($("#versions"), $("#history"), detail.versions);
    liveVersionsTable($("#live-versions"), $("#shadows"), detail);
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    showError("");
    document.body.dataset.charts = String(n1 + n2 + n3);
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));   // drawn (uPlot draws in a microtask)
    document.body.dataset.ready = "1";
  } catch (err) {
    showError(`Cannot load the dashboard data: ${err.message}`);
    document.body.dataset.ready = "error";
  }
}

function schedule() {
  clearInterval(state.timer);
  if ($("#auto").checked) state.timer = setInterval(render, 30000);
}

window.addEventListener("resize", () => {
  for (const { u, container } of state.charts) u.setSize({ width: Math.max(300, container.clientWidth), height: 180 });
});
$("#range").addEventListener("change", render);
$("#segment").addEventListener("change", (e) => selectSegment(e.target.value));
$("#auto").addEventListener("change", schedule);
render();
schedule();
