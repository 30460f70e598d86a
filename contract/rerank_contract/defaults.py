"""Every built-in default of rerank-server, each with the reason for its value (as in RQ's ``rq/defaults.py``).

The first part are the defaults of the ``RERANK_*`` settings: :class:`rerank_contract.settings.Settings`
takes its field defaults from here. The second part are fixed values that are not settings: timings,
timeouts and exit codes used by the API, the worker and the ``rerank-server`` commands. docs/settings.md shows
both, with each ``#:`` comment as the reason, read from this file when the site is built (``# --- `` lines
name its sections there). This module imports nothing but ``typing``, so every floor can use it.
"""

from __future__ import annotations

from typing import Final

# --- defaults of the RERANK_* settings ---------------------------------------------------------
# ``Final`` marks the defaults of ``Literal`` settings: a type checker keeps "INFO" as Literal["INFO"], not str.

#: What a local redis-server answers with no configuration: its own port on this machine, database 0.
REDIS_URL = "redis://127.0.0.1:6379/0"
#: A service's usual level: what it does at start and stop, and everything that goes wrong.
LOG_LEVEL: Final = "INFO"
#: Per user, next to the launchd logs: the append-only file outlives reboots and upgrades of the code.
REDIS_DIR = "~/.rerank-server/redis"
#: Multilingual, Apache-2.0 licensed, and small enough (568M parameters) to run on a laptop's MPS.
MODEL = "BAAI/bge-reranker-v2-m3"
#: The same settings then work on a Mac (mps), a GPU machine (cuda) and anywhere else (cpu).
DEVICE = "auto"
#: float16 on GPUs (half the memory; scores within 3e-4 of float32, bench/README.md); CPUs are slow at it.
DTYPE: Final = "auto"
#: The best micro-batch depends on the hardware (16 for MiniLM-L6 on a 2-core CPU, hundreds on a GPU): measured
#: at start-up (rerank_worker.batch_tuning), a few seconds at most.
BATCH_SIZE: Final = "auto"
#: Before the measurement, and for the fake scorer: sentence-transformers' own default for CrossEncoder.predict.
BATCH_SIZE_UNMEASURED = 32
#: A GPU's best batch in bench/README.md; waiting jobs past it are scored in the next model call.
MAX_BATCH_PAIRS = 512
#: None: the model's own limit, so nothing the model could read is cut off.
MAX_LENGTH = None
#: A sync request waits at most one chunk behind a bulk job: about 0.1 s on a GPU, 1.7 s on a 2-core CPU.
BULK_CHUNK_PAIRS = 256
#: Otherwise the first request pays for the device's kernel set-up and lazy loading.
WARMUP = True
#: The real model; ``fake`` exists so the worker's plumbing can be tested and shown without torch or weights.
SCORER: Final = "cross-encoder"
#: None: the model's own default prompt if it saved one (Qwen3-Reranker's folders on the hub save none).
INSTRUCTION = None
#: PyTorch runs every model sentence-transformers loads; onnx and openvino are opt-in (an extra, an export once).
BACKEND: Final = "torch"
#: The exported float32 graph with fused attention: the same scores as torch (within 1e-6); int8 is faster on a
#: CPU but moves scores, so it is chosen only after reading ``rerank-server model export --quantize``'s report.
BACKEND_VARIANT: Final = "optimized"
#: None: a too-long document is cut, as every peer server does; chunking multiplies the work per document.
MAX_CHUNKS_PER_DOC = None
#: MPS keeps a compiled graph per input shape for good: pad to a few lengths there; elsewhere padding only costs.
BUCKET_PADDING: Final = "auto"
#: None: a worker serves until stopped; set a count to replace workers regularly (their supervisor restarts them).
WORKER_MAX_JOBS = None
#: None: no limit; with one, a worker past it finishes its job and exits, and a fresh process gives the memory back.
WORKER_MAX_MEMORY_MB = None
#: A second: on a slow CPU a 512-pair batch takes 10 s and every job in it waits for all of it; a GPU scores
#: MAX_BATCH_PAIRS in a fraction of that, so there the pair cap is what binds.
MAX_BATCH_S = 1.0
#: Frequent enough that a dead worker is noticed within HEARTBEAT_TTL_S; one small Redis write each.
HEARTBEAT_INTERVAL_S = 1.0
#: Three intervals: a live worker may miss two beats (a long GC pause, a slow Redis) before it counts as dead.
HEARTBEAT_TTL_S = 3.0
#: This machine only, until the user chooses to expose the API (which has no key by default).
HOST = "127.0.0.1"
#: The usual unprivileged HTTP port: no root needed.
PORT = 8080
#: One: every process costs a core's worth of CPU at load, and on a 2-core host the worker needs them; one
#: asyncio process already keeps hundreds of requests waiting. More pay off on hosts with cores to spare.
API_PROCESSES = 1
#: None: each API process makes up its own id; `up` sets one per run to tell its own API from another on the port.
INSTANCE = None
#: A 1000-candidate request takes about 7 s on a 2-core CPU (150 pairs/s); 30 s leaves room for a queue.
REQUEST_TIMEOUT_S = 30.0
#: Cohere's recommended maximum of documents per rerank request, so clients written for it fit.
MAX_CANDIDATES = 1000
#: MAX_CANDIDATES texts of 2000 characters each; a bound on what one request can make a worker score.
MAX_REQUEST_CHARS = 2_000_000
#: Far past the default model's 8192-token limit (about 30,000 characters): the rest would be cut off anyway.
MAX_TEXT_CHARS = 100_000
#: Room for the largest allowed request as JSON (up to 6 bytes per \\u-escaped character); bounds memory.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Past this many waiting requests one API process answers 429 at once instead of queueing seconds of backlog.
MAX_INFLIGHT = 512
#: Past this many queued sync jobs (seconds of work for a few workers) new ones get 429 with Retry-After.
MAX_QUEUE_DEPTH = 2048
#: The API reads a result as soon as it is there; a minute covers a slow reader and keeps Redis small.
RESULT_TTL_S = 60
#: Minutes on a GPU (2,000 pairs/s), about two hours on a 2-core CPU; larger work is split into jobs.
BULK_MAX_PAIRS = 1_000_000
#: A week: a nightly or weekly pipeline can still fetch its results after a weekend.
BULK_RESULT_TTL_S = 7 * 86400
#: A week, like results: there is time to look at what failed.
BULK_FAILURE_TTL_S = 7 * 86400
#: A day: BULK_MAX_PAIRS on a 2-core CPU takes about two hours, so this stops only a stuck job.
BULK_JOB_TIMEOUT_S = 86400
#: A worker killed mid-job (out of memory, a redeploy) costs a few tries; a job that always fails stops.
BULK_RETRIES = 3
#: None: the model RERANK_MODEL names, as given (a hub id or a folder).
SERVED_MODEL_NAME = None
#: None: with one model served, that one; with several, the model whose workers were started without a default
#: (``up`` sets it to its first ``--model`` for every process it starts).
DEFAULT_MODEL = None
#: None: no key, as the API listens on loopback only by default (HOST); set one before exposing it.
API_KEY = None

# --- Redis clients (rerank_contract.redis_conn) ------------------------------------------------

#: redis-py waits forever by default; no command we send takes near 5 s on a live Redis.
REDIS_SOCKET_TIMEOUT_S = 5.0
#: A Redis that does not accept a connection in 2 s is down or unreachable, not slow.
REDIS_CONNECT_TIMEOUT_S = 2.0
#: One retry rides out a dropped connection; more would stretch a call far past its socket timeout.
REDIS_RETRIES = 1
#: The retry's backoff, first step and cap: short, so a retried call still ends near its timeout.
REDIS_RETRY_BACKOFF_BASE_S = 0.05
REDIS_RETRY_BACKOFF_CAP_S = 0.5
#: An idle pooled connection is PINGed before use after this long, so a connection dropped by a proxy is replaced.
REDIS_HEALTH_CHECK_INTERVAL_S = 30
#: ``is_reachable``'s PING: answering at all within a second is what "reachable" means here.
REDIS_PING_TIMEOUT_S = 1.0

#: A model whose workers all stopped is still known this long (its requests get 503 "no worker", not 404):
#: a day covers a restart, a redeploy or a night without its machine.
KNOWN_MODEL_TTL_S = 86400

# --- API (rerank_api) --------------------------------------------------------------------------

#: Longest single XREAD block; also how quickly a dead worker is noticed once its heartbeat expires.
WAIT_SLICE_S = 0.5
#: How often the monitor re-reads heartbeats and queue depths: /health and 429s lag by at most this.
MONITOR_INTERVAL_S = 0.5
#: The monitor's view is stale once it is this many intervals old (10 s at 0.5 s): longer than a Redis call takes
#: to time out, so a slow Redis reads as "unreachable", not as a stalled monitor.
MONITOR_STALE_INTERVALS = 20
#: A live worker's reaper is stale once its last sweep is this many heartbeat intervals old (the worker sweeps
#: every interval and publishes the time on its next heartbeat); a worker that has not swept yet is given as
#: long after its start. /health then says "degraded".
REAPER_STALE_INTERVALS = 5
#: An API process's wake stream (its result reader's doorbell) outlives a process that died by this long.
WAKE_STREAM_TTL_S = 3600
#: Redis connections of one API process's client pool, and at most as many again for enqueues (rerank_api.atomic,
#: which sends every enqueue of an event-loop turn as one script, so it rarely holds more than one or two):
#: waiting requests hold none (one result reader reads for all); past this a request waits for one (redis-py's
#: own pool fails past 100 with "Too many connections", which 100 waiting requests used to reach).
API_REDIS_CONNECTIONS = 64

#: How long the API keeps an idle HTTP keep-alive connection open (uvicorn's own default is 5 s). A server
#: must outlive its clients' idle pools: one that closes a connection while a client sends its next request on
#: it makes that request fail (ECONNRESET, httpx's ReadError), and clients keep idle connections longer than
#: 5 s (aiohttp 15 s, Go 90 s, requests without limit) or, starved of CPU, reuse them late. nginx's default.
API_KEEP_ALIVE_S = 75
#: The API's Redis socket timeout is the longest XREAD block plus this, so a slow answer is never taken for a
#: dead socket.
API_SOCKET_MARGIN_S = 5.0
#: After a failed XREAD the result reader tells its waiters and reads again this soon: no busy loop while Redis
#: is away, and little delay once it is back.
RESULT_READER_RETRY_S = 0.05
#: At shutdown the API waits this long (beyond one read's block) for its background readers to end.
TASK_STOP_GRACE_S = 5.0
#: A 429's ``Retry-After``: the queue drains in about a second at the rates this service sees.
RETRY_AFTER_S = 1
#: A failed sync job is kept at least this long (or its result TTL when longer), so a failure can be looked into.
SYNC_FAILURE_TTL_MIN_S = 3600

# --- worker (rerank_worker) --------------------------------------------------------------------

#: RQ's worker TTL: a worker that died without cleaning up leaves RQ's registry within a minute. RQ's
#: blocking dequeue waits ``WORKER_TTL_S - 15`` seconds per call, so that connection's socket timeout is this.
WORKER_TTL_S = 60
#: Job ids taken from the sync queue per round trip while a batch is collected.
POP_GROUP = 16
#: An idle worker waits on the sync queue (BLMOVE, woken at once) in slices of this, looking at the bulk queue
#: between them (no Redis command waits on two lists and moves): an idle worker starts a bulk job within it.
TAKE_WAIT_S = 1.0
#: How long one ``execute_job`` keeps feeding the model before RQ's own loop runs its upkeep again.
PIPELINE_S = 5.0
#: A worker that lost Redis tries again after this long, doubling with each failed try: a blip costs a quarter second.
WORKER_RECONNECT_FIRST_S = 0.25
#: The longest wait between tries, however long Redis stays away: a returning Redis is served again within it
#: (plus a reconnect), so the API answers 200 again within a few seconds of Redis answering.
WORKER_RECONNECT_CAP_S = 2.0
#: How often a worker with RERANK_WORKER_MAX_JOBS / _MAX_MEMORY_MB checks them: a reading of a file, or one query.
RETIRE_CHECK_S = 1.0
#: How often a worker waiting to reconnect looks for a stop request: a SIGTERM during an outage ends it this soon.
STOP_CHECK_S = 0.1
#: How long the start-up check waits for the Hugging Face hub before it counts a model as not reachable.
HUB_CHECK_TIMEOUT_S = 5.0
#: While the model scores on its own thread (GPU, MPS), the queue is looked at every this share of the last
#: model call, and at least every OVERLAP_POLL_MIN_S: arriving jobs join the next batch without a busy loop.
OVERLAP_POLL_SHARE = 0.05
OVERLAP_POLL_MIN_S = 0.002
#: RERANK_BATCH_SIZE=auto: a trial (one size) that took longer than this ends the search (bigger sizes take
#: longer still), so a large model on a slow CPU adds seconds, not minutes, to the start.
TUNE_TRIAL_BUDGET_S = 3.0

#: Max tokens per pair when RERANK_MAX_LENGTH is unset and the model's own limit is larger: bge-reranker-v2-m3's
#: 8192 stays whole, while a decoder's huge position limit (40,960 for Qwen3-Reranker-0.6B) would let one pair
#: take seconds and gigabytes of attention; RERANK_MAX_LENGTH raises it.
MODEL_MAX_LENGTH_CAP = 8192

#: Where a backend's export goes when the model's own folder cannot be written (a Hugging Face id, a read-only
#: folder): per user, next to the Redis files, so later starts find it.
EXPORT_DIR = "~/.rerank-server/exports"

# --- processes and their supervisors (rerank_server: up, launchd; systemd/ and compose/ agree) -----

#: A process that cannot start (Redis unreachable, model not loadable) exits with this, distinct from a
#: crash (1) and a bad command line or setting (2), so ``launchd status`` and ``systemctl status`` tell them apart.
EXIT_STARTUP_FAILED = 3
#: argparse's exit code for a bad command line; an invalid RERANK_* value is the same kind of mistake.
EXIT_USAGE = 2
#: launchd waits this long before restarting a service that exited (launchd's own default is also 10 s).
THROTTLE_INTERVAL_S = 10
#: SIGTERM lets the worker finish the job in hand; SIGKILL follows after this long. Also systemd's
#: TimeoutStopSec and compose's stop_grace_period (1m30s).
WORKER_EXIT_TIMEOUT_S = 90
#: ``up`` stops the API with SIGTERM, then SIGKILL after this long: uvicorn's graceful stop is quick.
API_EXIT_TIMEOUT_S = 15
#: ``up`` gives the private redis-server it starts this long to answer PING. It answers only once it has
#: loaded its append-only file (about 100 MB/s): a week of large bulk results takes seconds to tens of seconds.
PRIVATE_REDIS_START_S = 120
#: ``up`` restarts a crashed child after this long, doubling with each quick exit in a row: a crash
#: loop costs little, and a one-off crash (out of memory, say) is back within a second.
SUPERVISE_BACKOFF_S = 1.0
#: The longest wait before a restart: a child that crashes over and over still gets a try every half minute.
SUPERVISE_BACKOFF_CAP_S = 30.0
#: A run longer than this counts as having started fine (a model loads within it), so its exit starts the
#: backoff over; shorter ones are quick exits.
SUPERVISE_STABLE_S = 60.0
#: Quick exits in a row after which ``up`` stops with a message instead of looping (systemd's StartLimitBurst).
SUPERVISE_MAX_QUICK_EXITS = 5
#: ``up`` asks ``/health`` at most this often while the worker loads: one ready line soon after, no flood of 503s.
UP_PROBE_INTERVAL_S = 1.0
#: ``up``'s own checks (the private Redis answering, a worker's heartbeat, the API's ``/health``) give up on one
#: try after this long: on loopback an answer takes milliseconds, so a slow one means "not yet".
UP_CHECK_TIMEOUT_S = 1.0
#: ``up``'s loop (starting children in turn, restarting crashed ones) wakes this often.
UP_LOOP_S = 0.2
#: ``up`` looks for its private Redis answering this often while it loads its append-only file.
UP_REDIS_POLL_S = 0.1
#: ``launchd uninstall``/``install`` checks this often whether launchd has let a service go.
LAUNCHD_POLL_S = 0.5
#: ``launchd`` waits for a worker's unload this long beyond its stop timeout (launchd's own SIGKILL comes first).
LAUNCHD_BOOTOUT_MARGIN_S = 10
#: ``launchd status``'s ``/health`` request: the API answers it in milliseconds when it is up.
HEALTH_CHECK_TIMEOUT_S = 5.0
#: How often an API process started by ``up`` checks that its parent is still alive (it exits with it).
PARENT_CHECK_S = 1.0

# --- clients (rerank_server.client, rerank-server bulk) ------------------------------------------

#: Longer than REQUEST_TIMEOUT_S, so the server's own 504 arrives before the client gives up.
CLIENT_TIMEOUT_S = 60.0
#: How often a bulk job's state is polled while waiting for it: progress shows, Redis barely notices.
BULK_POLL_S = 0.5
#: Items per bulk job submitted by ``rerank-server bulk``: progress per job, and a failure costs one job.
BULK_ITEMS_PER_JOB = 1000
#: How long the worker's RQ command-channel thread blocks in one read: a worker stop waits for that read to end.
PUBSUB_POLL_S = 1.0
