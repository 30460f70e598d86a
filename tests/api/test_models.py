"""Routing by ``model`` (rerank_api.models) over a monitor's view, and the contract's queue names per model."""

from __future__ import annotations

import time

import pytest

from rerank_api.errors import ApiError, ErrorType
from rerank_api.models import Models
from rerank_api.monitor import Snapshot
from rerank_contract.jobs import ModelRecord, WorkerInfo, bulk_queue, served_names, sync_queue, worker_queues


def worker(name: str, model: str, names: list[str] | None = None, *, default: bool = False) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        host="h",
        pid=1,
        model=model,
        device="cpu",
        dtype="float32",
        max_length=64,
        queues=worker_queues(model, default=default),
        started_at=time.time(),
        model_loads=1,
        jobs_done=0,
        jobs_failed=0,
        served_names=names or [model],
        default=default,
    )


def view(*workers: WorkerInfo, known: tuple[str, ...] = ()) -> Snapshot:
    records = tuple(ModelRecord(name=n, served_names=[n], last_seen=time.time()) for n in known)
    return Snapshot(redis_error=None, workers=workers, known=records)


def error(models: Models, requested: str | None) -> ApiError:
    with pytest.raises(ApiError) as raised:
        models.route(requested)
    return raised.value


def test_the_default_model_keeps_todays_queues_and_others_get_their_own() -> None:
    assert (sync_queue(), bulk_queue()) == ("rerank", "rerank-bulk")
    assert (sync_queue("qwen"), bulk_queue("qwen")) == ("rerank@qwen", "rerank-bulk@qwen")
    assert worker_queues("bge", default=True) == ["rerank", "rerank@bge", "rerank-bulk", "rerank-bulk@bge"]
    assert worker_queues("qwen", default=False) == ["rerank@qwen", "rerank-bulk@qwen"]
    models = Models(view(worker("a", "bge", default=True), worker("b", "qwen")), None)
    assert (models.route(None).sync_queue, models.route(None).bulk_queue) == ("rerank", "rerank-bulk")
    assert models.route("qwen").sync_queue == "rerank@qwen"


def test_served_names_are_checked() -> None:
    assert served_names("a, b ,a") == ["a", "b"]
    for bad in ("", "a,,b", "has space", "x" * 201):
        with pytest.raises(ValueError):
            served_names(bad)


def test_names_and_aliases_route_to_the_canonical_model() -> None:
    models = Models(view(worker("a", "bge", ["bge", "multilingual"], default=True), worker("b", "qwen")), None)
    assert models.route("multilingual").name == "bge"
    assert models.route(None).name == "bge"  # the model whose workers serve the default queues
    assert models.route("qwen").name == "qwen"


def test_the_default_setting_wins_and_may_be_an_alias() -> None:
    models = Models(view(worker("a", "bge", ["bge", "m"]), worker("b", "qwen")), "m")
    assert models.route(None).name == "bge" and models.all["bge"].default


def test_an_unknown_name_is_404_listing_the_served_ones() -> None:
    models = Models(view(worker("a", "bge", ["bge", "m"], default=True), worker("b", "qwen")), None)
    err = error(models, "rerank-english-v3.0")
    assert err.error_type == ErrorType.MODEL_NOT_FOUND and err.status_code == 404
    assert "bge (aliases: m)" in err.message and "qwen" in err.message


def test_a_one_model_deployment_answers_any_name_with_its_model() -> None:
    models = Models(view(worker("a", "bge", default=True)), None)
    assert models.route("rerank-english-v3.0").name == "bge"


def test_a_known_model_without_a_worker_is_503_naming_it() -> None:
    models = Models(view(worker("a", "bge", default=True), known=("bge", "qwen")), None)
    err = error(models, "qwen")
    assert err.error_type == ErrorType.NO_WORKER and "'qwen'" in err.message
    assert models.route(None).name == "bge"  # the others keep serving


def test_several_models_without_a_default_need_a_model() -> None:
    models = Models(view(worker("a", "bge"), worker("b", "qwen")), None)
    assert error(models, None).error_type == ErrorType.VALIDATION


def test_models_sharing_the_default_queues_keep_to_their_own() -> None:
    """Two workers started without RERANK_DEFAULT_MODEL both take `rerank`: the API sends neither's jobs there."""
    models = Models(view(worker("a", "bge", default=True), worker("b", "qwen", default=True)), None)
    assert models.all["bge"].sync_queue == "rerank@bge" and models.all["qwen"].sync_queue == "rerank@qwen"


def test_a_worker_serves_its_names_from_its_queues_and_the_default_also_todays() -> None:
    from rerank_contract.settings import Settings
    from rerank_worker.served import Served

    alone = Served.from_settings(Settings(model="/m/bge"), "/m/bge")
    assert alone.names == ["/m/bge"] and alone.default and alone.queues[0] == "rerank"
    named = Served.from_settings(Settings(served_model_name="qwen,q", default_model="bge"), "/m/qwen")
    assert named.name == "qwen" and not named.default and named.queues == ["rerank@qwen", "rerank-bulk@qwen"]
    by_alias = Served.from_settings(Settings(served_model_name="bge,m", default_model="m"), "/m/bge")
    assert by_alias.default


def test_the_reaper_sweeps_every_known_models_queues() -> None:
    import fakeredis

    from rerank_contract.jobs import MODELS_SET
    from rerank_worker.served import every_queue

    redis = fakeredis.FakeStrictRedis()
    redis.sadd(MODELS_SET, "qwen", "bge")
    assert every_queue(redis) == [
        "rerank",
        "rerank-bulk",
        "rerank@bge",
        "rerank-bulk@bge",
        "rerank@qwen",
        "rerank-bulk@qwen",
    ]
