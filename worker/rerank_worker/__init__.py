"""The worker: a long-lived RQ process that keeps one model resident and runs rerank jobs.

The process: ``main`` (the command's entry point), ``process`` (:class:`~rerank_worker.process.WorkerProcess`:
start, serve, stop), ``served`` (which model, names and queues), ``heartbeat`` (the liveness record),
``reaper`` (jobs of dead workers back to their queues), ``reconnect`` (riding out a Redis outage), ``retire``
(job-count and memory limits), ``faults`` (test-only kill points).

Taking and running jobs: ``worker`` (the RQ worker class), ``admission`` (which jobs it runs: the trust
boundary), ``taking`` (every taken job kept in a list), ``collector`` (the waiting sync jobs within a pair
budget), ``sync_batches`` (several sync jobs started, scored in one model call and finished together),
``batch_runner`` (batches in turn, or overlapping the model on a GPU), ``bulk`` (bulk jobs chunk by chunk,
resumable), ``jobs`` (payloads to results; the job functions' dotted paths are the contract's),
``rq_seam`` (every RQ member relied on beyond RQ's documented API).

The model: ``scorer`` (the Scorer protocol and its values), ``model_loader`` (which scorer, loaded and set up),
``model_source`` (whether the model can be had), ``runtime`` (the CrossEncoder), ``fake_scorer`` (torch-free),
``lengths`` (token-length rules), ``batch_tuning`` (the micro-batch size measured at start-up), ``padding``
(bucketed sequence lengths), ``device`` (the torch device), ``backends``, ``onnx_backend`` and
``openvino_backend`` (exported CPU runtimes). Only ``runtime``, ``device``, ``padding`` and the two backends
import torch at import time; nothing imports them before a real model is loaded.
"""
