// The page at /: polls v1/status for the live state, and reranks pasted passages with v1/rerank.
// No framework and no build step; every text from the server is set with textContent.
"use strict";

const POLL_MS = 2000;
const HISTORY = 150; // readings kept for the trend chart: five minutes at POLL_MS
const WINDOW = 15; // readings a latency point spans: the calls of the last 30 s
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const history = []; // [{at, models: {name: {count, buckets: [[le, cumulative]]}}}]
const KEY = "rerank-api-key";
let previous = null; // the last status reading: rates are the difference of two readings

const $ = (id) => document.getElementById(id);

function headers(json) {
  const out = json ? { "Content-Type": "application/json" } : {};
  const key = sessionStorage.getItem(KEY);
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function call(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    askForKey(sessionStorage.getItem(KEY) ? "that key was refused" : "");
    throw new Error("this server needs its API key");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function askForKey(problem) {
  $("key-form").hidden = false;
  $("key-error").textContent = problem;
  $("key").focus();
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(table, rows, columns, empty) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    cell(body.insertRow(), empty, "muted").colSpan = columns;
    return;
  }
  return body;
}

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// A quantile of the calls between two readings, from their cumulative histogram buckets (Prometheus'
// histogram_quantile: linear within the bucket that holds it).
function quantile(q, now, before) {
  if (!now) return null;
  const diff = now.buckets.map(([le, n], i) => [le, n - (before ? before.buckets[i][1] : 0)]);
  const total = diff.length ? diff[diff.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const [le, n] of diff) {
    if (n >= rank) {
      if (!isFinite(le)) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(n - below, 1e-9);
    }
    lower = isFinite(le) ? le : lower;
    below = n;
  }
  return lower;
}

function series(name) {
  const rate = [], p50 = [], p99 = [];
  for (let i = 1; i < history.length; i++) {
    const now = history[i].models[name], prev = history[i - 1].models[name];
    const dt = Math.max(history[i].at - history[i - 1].at, 1e-3);
    rate.push(now && prev ? Math.max(0, (now.count - prev.count) / dt) : 0);
    const from = history[Math.max(0, i - WINDOW)].models[name];
    p50.push(quantile(0.5, now, from));
    p99.push(quantile(0.99, now, from));
  }
  return { rate, p50, p99 };
}

function draw(canvas, lines, unit) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const values = lines.flatMap((l) => l.points.filter((v) => v !== null));
  const top = Math.max(1e-9, ...values) * 1.1;
  ctx.fillStyle = "#666";
  ctx.font = "11px sans-serif";
  ctx.fillText(`${unit(top)}`, 4, 12);
  for (const line of lines) {
    ctx.strokeStyle = line.color;
    ctx.setLineDash(line.dashed ? [4, 3] : []);
    ctx.beginPath();
    let pen = false;
    line.points.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const x = (i / Math.max(HISTORY - 2, 1)) * width;
      const y = height - (v / top) * (height - 16);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

function renderModels(s) {
  const reading = { at: s.at, models: {} };
  for (const [name, m] of Object.entries(s.model_latency || {})) {
    const buckets = m.buckets.map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n]);
    reading.models[name] = { count: m.count, buckets };
  }
  history.push(reading);
  if (history.length > HISTORY) history.shift();

  const names = (s.models || []).map((m) => m.name);
  const select = $("model");
  const chosen = select.value;
  select.replaceChildren(new Option("default", ""));
  for (const m of s.models || []) {
    if (!m.workers_alive) continue;
    select.add(new Option(m.default ? `${m.name} (default)` : m.name, m.name));
  }
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";

  const table = fill($("models"), s.models || [], 7, "no model served");
  const rateLines = [], latencyLines = [], legend = $("chart-legend");
  legend.replaceChildren("calls / s (top), latency p50 — and p99 - - (bottom), last minutes:");
  names.forEach((name, i) => {
    const m = s.models[i];
    const color = COLORS[i % COLORS.length];
    const { rate, p50, p99 } = series(name);
    const row = table.insertRow();
    cell(row, m.default ? `${name} (default)` : name);
    cell(row, m.served_names.filter((n) => n !== name).join(", "));
    cell(row, m.workers_alive, m.workers_alive ? "num" : "num error");
    cell(row, Object.values(m.queue_depth).reduce((a, b) => a + b, 0), "num");
    const last = (xs) => (xs.length ? xs[xs.length - 1] : null);
    const ms = (v) => (v === null ? "–" : `${(v * 1000).toFixed(0)} ms`);
    cell(row, (last(rate) ?? 0).toFixed(1), "num");
    cell(row, ms(last(p50)), "num");
    cell(row, ms(last(p99)), "num");
    rateLines.push({ points: rate, color });
    latencyLines.push({ points: p50, color }, { points: p99, color, dashed: true });
    const swatch = legend.appendChild(document.createElement("span"));
    swatch.className = "swatch";
    swatch.style.background = color;
    legend.append(name);
  });
  draw($("chart-rate"), rateLines, (v) => `${v.toFixed(1)} calls/s`);
  draw($("chart-latency"), latencyLines, (v) => `${(v * 1000).toFixed(0)} ms`);
}

function render(s) {
  renderModels(s);
  const models = [...new Set(s.workers.map((w) => `${w.model} on ${w.device} (${w.backend ?? "torch"})`))];
  $("summary").textContent = s.workers.length
    ? `v${s.version} · ${models.join(", ")} · ${s.workers.length} worker${s.workers.length === 1 ? "" : "s"}`
    : `v${s.version} · no worker alive: start one with rerank-server worker`;
  $("summary").className = s.workers.length ? "" : "error";
  $("redis").textContent = s.redis;
  $("redis").className = `value ${s.redis === "ok" ? "ok" : "error"}`;
  $("queue-sync").textContent = s.queue_depth.rerank ?? 0;
  $("queue-bulk").textContent = s.queue_depth["rerank-bulk"] ?? 0;
  $("updated").textContent = `updated ${new Date(s.at * 1000).toLocaleTimeString()}`;

  const workers = fill($("workers"), s.workers, 7, "no worker alive");
  for (const w of s.workers) {
    const row = workers.insertRow();
    cell(row, w.name);
    cell(row, w.host);
    cell(row, w.model);
    cell(row, `${w.device} ${w.dtype} ${w.backend ?? "torch"}`).title = w.backend_file ?? "";
    cell(row, w.jobs_done, "num");
    cell(row, w.jobs_failed, "num");
    cell(row, ago(s.at - w.started_at), "num");
  }

  const bulk = fill($("bulk"), s.bulk_jobs, 3, "no bulk jobs");
  for (const job of s.bulk_jobs) {
    const row = bulk.insertRow();
    cell(row, job.id);
    cell(row, job.error ? `${job.status}: ${job.error}` : job.status, job.error ? "error" : "");
    const p = job.progress;
    const done = job.status === "finished" ? 1 : p && p.total ? p.done / p.total : 0;
    const td = cell(row, "");
    const bar = td.appendChild(document.createElement("div"));
    bar.className = "bar";
    bar.appendChild(document.createElement("span")).style.width = `${(done * 100).toFixed(1)}%`;
    td.title = p ? `${p.done} / ${p.total} pairs` : job.status;
  }

  const jobsDone = s.workers.reduce((n, w) => n + w.jobs_done, 0);
  if (previous) {
    const dt = Math.max(s.at - previous.at, 1e-3);
    const requests = s.rerank_requests - previous.rerank_requests;
    $("jobs-rate").textContent = Math.max(0, (jobsDone - previous.jobsDone) / dt).toFixed(1);
    $("req-rate").textContent = (requests / dt).toFixed(1);
    $("latency").textContent = requests > 0
      ? `${(((s.rerank_seconds - previous.rerank_seconds) / requests) * 1000).toFixed(0)} ms`
      : "–";
  }
  previous = { at: s.at, jobsDone, rerank_requests: s.rerank_requests, rerank_seconds: s.rerank_seconds };
}

async function poll() {
  try {
    render(await call("v1/status"));
  } catch (error) {
    $("summary").textContent = error.message;
    $("summary").className = "error";
  }
}

async function rerank(event) {
  event.preventDefault();
  const passages = $("passages").value.split("\n").map((p) => p.trim()).filter(Boolean);
  const status = $("rerank-status");
  const list = $("ranking");
  status.textContent = "scoring…";
  status.className = "muted";
  const started = performance.now();
  try {
    const body = { query: $("query").value, candidates: passages };
    if ($("model").value) body.model = $("model").value;
    const answer = await call("v1/rerank", body);
    list.replaceChildren();
    for (const r of answer.results) {
      const item = list.appendChild(document.createElement("li"));
      item.dataset.index = r.index;
      const score = item.appendChild(document.createElement("span"));
      score.className = "score";
      score.textContent = r.score.toFixed(4);
      item.appendChild(document.createElement("span")).textContent = passages[r.index];
    }
    const took = Math.round(performance.now() - started);
    status.textContent = `${answer.results.length} passages scored by ${answer.model} in ${took} ms`;
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value);
    $("key-form").hidden = true;
    poll();
  });
  $("rerank-form").addEventListener("submit", rerank);
  poll();
  setInterval(poll, POLL_MS);
});
