"""The worker: a long-lived RQ process that keeps one model resident and runs rerank jobs.

``main`` is the process; ``worker`` the thin RQ worker class; ``admission`` which jobs it runs;
``batching`` collecting waiting jobs within a budget, ``batches`` scoring and finishing them together,
``scheduling`` when batches run (the GPU overlap); ``bulk`` bulk jobs chunk by chunk, resumable; ``jobs``
payloads to results; ``rq_seam`` every RQ member relied on beyond RQ's documented API; ``scoring``
the scorer interface (``runtime``, the CrossEncoder and the only torch user with ``device``, or a
fake), ``model_source`` whether the model can be had, ``padding`` bucketed sequence lengths,
``micro_batch`` the micro-batch size measured at start-up;
``lengths`` token-length rules; ``heartbeat`` the liveness record; ``reaper`` jobs of dead workers
back to RQ; ``retire`` a worker's job-count and memory limits.
"""
