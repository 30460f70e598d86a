// The page at /: polls v1/status for the live state, and reranks pasted passages with v1/rerank.
// No framework and no build step; every text from the server is set with textContent.
"use strict";

const POLL_MS = 2000;
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

function render(s) {
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
    const answer = await call("v1/rerank", { query: $("query").value, candidates: passages });
    list.replaceChildren();
    for (const r of answer.results) {
      const item = list.appendChild(document.createElement("li"));
      item.dataset.index = r.index;
      const score = item.appendChild(document.createElement("span"));
      score.className = "score";
      score.textContent = r.score.toFixed(4);
      item.appendChild(document.createElement("span")).textContent = passages[r.index];
    }
    status.textContent = `${answer.results.length} passages in ${Math.round(performance.now() - started)} ms`;
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
