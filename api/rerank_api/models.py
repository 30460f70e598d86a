"""Which model a request goes to: the models are whatever the live workers' heartbeat records say they serve.

Nothing is configured on the API but, optionally, the default (``RERANK_DEFAULT_MODEL``): a worker that
starts for a new model is routed to as soon as the monitor reads its record, and one that stops drops out
the same way. A request's ``model`` is looked up among every served name (canonical names and aliases);
the answer is the canonical name, whose queue the job goes to, so a batch never mixes models.

- no ``model``: the default model: ``RERANK_DEFAULT_MODEL``, else the model whose workers serve the
  default queues (started without a default: the only model of a one-model deployment).
- a name of a live model: that model.
- a name of a model known in the last day (:class:`~rerank_contract.jobs.ModelRecord`) with no live
  worker: 503 ``no_worker`` naming it, at once; the other models keep serving.
- any other name: 404 ``model_not_found`` listing the served names, except in a one-model deployment
  (one model known), where it gets that model, as this server did before it served several: clients that
  must send a name (``rerank-english-v3.0``, ``rerank-v3.5``) keep working. Aliases
  (``RERANK_SERVED_MODEL_NAME``) are the explicit way to accept such names once there are several.
"""

from __future__ import annotations

from dataclasses import dataclass

from rerank_api.errors import ApiError, ErrorType
from rerank_api.monitor import Snapshot
from rerank_contract.jobs import QUEUES, SYNC_QUEUE, WorkerInfo, model_queues


@dataclass(frozen=True)
class Model:
    """One model as the API routes to it: its jobs go to ``sync_queue``/``bulk_queue``, which only its workers
    consume: today's ``rerank``/``rerank-bulk`` for the model whose workers serve the default queues, else its own."""

    name: str
    served_names: tuple[str, ...]
    workers: tuple[WorkerInfo, ...]
    default: bool
    sync_queue: str
    bulk_queue: str


class Models:
    """The models of one :class:`Snapshot`, and ``default`` (RERANK_DEFAULT_MODEL, any of a model's names)."""

    def __init__(self, snapshot: Snapshot, default: str | None) -> None:
        workers: dict[str, list[WorkerInfo]] = {}
        for worker in snapshot.workers:
            workers.setdefault(worker.model, []).append(worker)
        names: dict[str, tuple[str, ...]] = {r.name: tuple(r.served_names) for r in snapshot.known}
        for name, group in workers.items():  # the live workers' names win over a day-old record's
            names[name] = tuple(dict.fromkeys(n for w in group for n in w.names))
        self._lookup = {alias: name for name, aliases in names.items() for alias in aliases}
        self._lookup.update({name: name for name in names})
        self.default_name = self._default(default, workers)
        self.all = {name: self._model(name, aliases, workers.get(name, [])) for name, aliases in sorted(names.items())}

    def _model(self, name: str, aliases: tuple[str, ...], workers: list[WorkerInfo]) -> Model:
        # Only the one model consuming today's queues gets them: should two (misconfigured) share them, each
        # keeps to its own queues, so the API never sends a job where another model could score it.
        queues = QUEUES if self._serving_default == [name] else model_queues(name)
        return Model(name, aliases, tuple(workers), name == self.default_name, *queues)

    def _default(self, setting: str | None, workers: dict[str, list[WorkerInfo]]) -> str | None:
        self._serving_default = sorted(
            name for name, group in workers.items() if any(SYNC_QUEUE in w.queues for w in group)
        )
        if setting is not None:
            return self._lookup.get(setting, setting)
        if len(self._serving_default) == 1:
            return self._serving_default[0]
        if len(workers) == 1:
            return next(iter(workers))
        return None

    @property
    def live(self) -> dict[str, Model]:
        """The models with at least one live worker."""
        return {name: model for name, model in self.all.items() if model.workers}

    def find(self, requested: str | None) -> Model | None:
        """The model ``requested`` names (None: the default), whether or not it has a live worker; None if unknown."""
        name = self.default_name if requested is None else self._lookup.get(requested)
        if name is None and requested is not None and len(self.all) == 1:
            name = self.default_name  # one-model deployment: any name is that model (see the module's docstring)
        if name is None:
            return None
        return self.all.get(name) or self._model(name, (name,), [])

    def route(self, requested: str | None) -> Model:
        """The live model for ``requested``, or the error: 404 unknown, 503 known but no worker, 422 no default."""
        model = self.find(requested)
        if model is None:
            if requested is not None and self.all:
                raise ApiError(ErrorType.MODEL_NOT_FOUND, f"model {requested!r} is not served; {self.served()}")
            if len(self.live) > 1:
                raise ApiError(
                    ErrorType.VALIDATION,
                    f"`model` is required: several models are served and none is the default "
                    f"(RERANK_DEFAULT_MODEL); {self.served()}",
                )
            raise ApiError(ErrorType.NO_WORKER, "no worker is alive: start one with `rerank-server worker`")
        if not model.workers:
            raise ApiError(
                ErrorType.NO_WORKER,
                f"no worker of model {model.name!r} is alive: start one with "
                f"`RERANK_SERVED_MODEL_NAME={model.name} rerank-server worker`; {self.served()}",
            )
        return model

    def served(self) -> str:
        """'served: a (aliases: b), c' or 'no model is served'."""
        parts = []
        for model in self.live.values():
            aliases = [n for n in model.served_names if n != model.name]
            parts.append(model.name + (f" (aliases: {', '.join(aliases)})" if aliases else ""))
        return f"served: {', '.join(parts)}" if parts else "no model is served (no worker is alive)"
