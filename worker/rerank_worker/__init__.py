"""The worker: a long-lived RQ process that keeps one CrossEncoder resident and runs rerank jobs.

Only this package imports torch. ``runtime`` is the model, ``jobs`` the job functions RQ calls,
``worker`` the RQ worker class, ``heartbeat`` the liveness record, ``main`` the entry point.
"""
