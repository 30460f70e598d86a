"""The bottom floor: the job contract, settings and Redis clients shared by the API, the worker and clients.

Imports neither the API nor the worker, nor torch: a Docker container with only ``redis``, ``rq`` and
``pydantic`` can enqueue jobs with :mod:`rerank_contract.jobs`.
"""

__version__ = "0.1.0"
