"""Every constant default of the service in one place, each with its reason.

Settings (``rerank_contract.settings``) hold what a user tunes; these are the fixed choices below them.
"""

#: Job ids taken from the sync queue per round trip while a batch is collected: few round trips, little overshoot.
POP_GROUP = 16
#: How long one worker call keeps feeding the model before RQ's own loop runs its upkeep (maintenance, heartbeats).
PIPELINE_S = 5.0
#: RQ's worker TTL; its blocking dequeue waits ``WORKER_TTL_S - 15`` seconds per call.
WORKER_TTL_S = 60
#: A process that cannot start (model cannot load, Redis unreachable) exits with this, as uvicorn does,
#: so supervisors can tell "cannot start" from "crashed".
EXIT_STARTUP_FAILED = 3
