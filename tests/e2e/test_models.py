"""End to end: several models behind one API, routed by ``model``, found from the workers' heartbeats.

One redis-server, one API and two workers for the module: the tiny BERT cross-encoder as ``bert`` (alias
``bert-alias``, the default) and the tiny decoder reranker as ``qwen``, whose scores differ for the same pair.
Every score is checked against that model's own ``CrossEncoder.predict``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import cohere
import httpx
import pytest
from redis import Redis
from rq import Queue

from rerank_contract.jobs import BULK_JOB, SERIALIZER, bulk_queue
from tests.support.error_answers import assert_error
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.services import CLI, Service, Stack, service_env
from tests.support.waiting import wait_until

QUERY = "machine learning"
DOCS = ["cooking recipes", "deep learning", "stock market", "neural networks"]


@pytest.fixture(scope="module")
def models_redis() -> Iterator[RedisServer]:
    server = RedisServer(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def decoder_dir(decoder_dirs: dict[str, Path]) -> Path:
    return decoder_dirs["st"]


@pytest.fixture(scope="module")
def two(
    models_redis: RedisServer, model_dir: Path, decoder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The API (default model ``bert``) and one worker per model."""
    # A 2 s heartbeat TTL (the default is 3 s): a killed worker's model answers 503 within 3 s.
    s = Stack(
        models_redis.url, model_dir, tmp_path_factory.mktemp("models-logs"), DEFAULT_MODEL="bert", HEARTBEAT_TTL_S="2"
    )
    s.start_api()
    start_worker(s, model_dir, "bert,bert-alias")
    start_worker(s, decoder_dir, "qwen")
    yield s
    s.stop()


def start_worker(stack: Stack, folder: Path, names: str) -> Service:
    env = {**stack.env, "RERANK_MODEL": str(folder), "RERANK_SERVED_MODEL_NAME": names}
    worker = Service([*CLI, "worker"], env, stack.logs / f"worker-{names.split(',')[0]}.log").start()
    stack.workers.append(worker)
    wait_until(lambda: names.split(",")[0] in live_models(stack), 90, f"a worker of {names}")
    return worker


def live_models(stack: Stack | str) -> list[str]:
    url = stack if isinstance(stack, str) else stack.url
    try:
        return [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=5).json()["data"]]
    except (httpx.HTTPError, KeyError):
        return []


@pytest.fixture(scope="module")
def references(cross_encoder, decoder_dir: Path) -> dict[str, object]:
    from sentence_transformers import CrossEncoder

    return {"bert": cross_encoder, "qwen": CrossEncoder(str(decoder_dir), device="cpu")}


def predict(model, docs: list[str] = DOCS, query: str = QUERY) -> list[float]:
    """The model's scores as the server gives them by default: sigmoid of its logit (the decoder saves Identity)."""
    import torch

    return [float(s) for s in model.predict([(query, d) for d in docs], activation_fn=torch.nn.Sigmoid())]


def by_index(pairs: list[tuple[int, float]]) -> dict[int, float]:
    return dict(pairs)


def assert_scores(got: dict[int, float], want: list[float]) -> None:
    assert sorted(got) == list(range(len(want)))
    for index, score in got.items():
        assert score == pytest.approx(want[index], abs=1e-5), (index, got, want)


def post(stack: Stack, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{stack.url}{path}", json=body, timeout=30)


def test_the_two_models_score_differently(references) -> None:
    """Otherwise routing could not be told apart by the scores."""
    assert predict(references["bert"]) != pytest.approx(predict(references["qwen"]), abs=1e-3)


@pytest.mark.parametrize("name", ["bert", "qwen"])
def test_every_format_is_routed_to_the_named_model(two: Stack, references, name: str) -> None:
    want = predict(references[name])
    seed = post(two, "/v1/rerank", {"model": name, "query": QUERY, "candidates": DOCS})
    assert seed.status_code == 200, seed.text
    assert seed.json()["model"] == name
    assert_scores({r["index"]: r["score"] for r in seed.json()["results"]}, want)

    cohere_v1 = post(two, "/v1/rerank", {"model": name, "query": QUERY, "documents": DOCS})
    assert cohere_v1.json()["model"] == name
    assert_scores({r["index"]: r["relevance_score"] for r in cohere_v1.json()["results"]}, want)

    v2 = post(two, "/v2/rerank", {"model": name, "query": QUERY, "documents": DOCS})
    assert v2.status_code == 200, v2.text
    assert_scores({r["index"]: r["relevance_score"] for r in v2.json()["results"]}, want)

    infinity = post(two, "/rerank", {"model": name, "query": QUERY, "documents": DOCS})
    assert infinity.json()["model"] == name
    assert_scores({r["index"]: r["relevance_score"] for r in infinity.json()["results"]}, want)


def test_bodies_without_model_go_to_the_default(two: Stack, references) -> None:
    want = predict(references["bert"])
    seed = post(two, "/v1/rerank", {"query": QUERY, "candidates": DOCS})
    assert seed.json()["model"] == "bert"
    assert_scores({r["index"]: r["score"] for r in seed.json()["results"]}, want)
    tei = post(two, "/rerank", {"query": QUERY, "texts": DOCS})
    assert_scores({r["index"]: r["score"] for r in tei.json()}, want)
    info = httpx.get(f"{two.url}/info", timeout=5).json()
    assert info["model_id"] == "bert"


def test_an_alias_is_answered_with_the_canonical_name(two: Stack, references) -> None:
    response = post(two, "/v1/rerank", {"model": "bert-alias", "query": QUERY, "documents": DOCS})
    assert response.json()["model"] == "bert"
    assert_scores({r["index"]: r["relevance_score"] for r in response.json()["results"]}, predict(references["bert"]))


def test_an_unknown_model_is_a_404_naming_the_served_ones(two: Stack) -> None:
    response = post(two, "/v1/rerank", {"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCS})
    message = assert_error(response, 404, "model_not_found")
    assert "'rerank-english-v3.0'" in message and "bert (aliases: bert-alias)" in message and "qwen" in message
    bulk = post(two, "/v1/jobs", {"model": "nope", "items": [{"query": "q", "candidates": ["a"]}]})
    assert_error(bulk, 404, "model_not_found")


def test_models_are_listed_in_openais_shape(two: Stack) -> None:
    for path in ("/v1/models", "/models"):
        body = httpx.get(f"{two.url}{path}", timeout=5).json()
        assert body["object"] == "list"
        cards = {m["id"]: m for m in body["data"]}
        assert {"bert", "qwen"} <= set(cards)
        bert = cards["bert"]
        assert bert["object"] == "model" and bert["owned_by"] and bert["created"] > 0
        assert bert["aliases"] == ["bert-alias"] and bert["default"] is True and cards["qwen"]["default"] is False
        assert bert["workers"][0]["device"] == "cpu" and bert["workers"][0]["dtype"] and bert["max_length"] > 0
        assert bert["batch_size"] == 16
        assert set(bert["queue_depth"]) == {"rerank", "rerank-bulk"}
        assert set(cards["qwen"]["queue_depth"]) == {"rerank@qwen", "rerank-bulk@qwen"}
    health = httpx.get(f"{two.url}/health", timeout=5).json()
    assert health["model"] == "bert" and health["status"] == "ok"
    metrics = httpx.get(f"{two.url}/metrics", timeout=5).text
    assert 'rerank_model_workers_alive{model="qwen"} 1.0' in metrics
    assert 'rerank_queue_depth{queue="rerank@qwen"}' in metrics
    models = {m["name"]: m for m in health["models"]}
    assert models["bert"]["default"] and models["bert"]["served_names"] == ["bert", "bert-alias"]
    assert models["qwen"]["workers_alive"] == 1


def test_concurrent_calls_alternating_models_are_each_scored_by_their_own(two: Stack, references) -> None:
    wants = {name: predict(references[name], DOCS[:2]) for name in ("bert", "qwen")}

    def call(i: int) -> tuple[str, httpx.Response]:
        name = ("bert", "qwen")[i % 2]
        return name, post(two, "/v1/rerank", {"model": name, "query": QUERY, "candidates": DOCS[:2]})

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(call, range(120)))
    for name, response in answers:
        assert response.status_code == 200, response.text
        assert response.json()["model"] == name
        assert_scores({r["index"]: r["score"] for r in response.json()["results"]}, wants[name])
    metrics = httpx.get(f"{two.url}/metrics", timeout=5).text
    for name in ("bert", "qwen"):
        count = next(
            line
            for line in metrics.splitlines()
            if line.startswith(f'rerank_model_request_seconds_count{{model="{name}"}}')
        )
        assert float(count.split()[-1]) >= 60


def test_the_page_shows_models_and_gets_their_latency_histograms(two: Stack) -> None:
    """The page (its own files, no CDN) lists the models, lets the playground pick one, and charts calls/s and
    p50/p99 per model from the per-model histograms /v1/status carries."""
    page = httpx.get(f"{two.url}/", timeout=5).text
    assert 'id="model"' in page and 'id="chart-rate"' in page and 'id="chart-latency"' in page
    assert "https://" not in page and "http://" not in page
    status = httpx.get(f"{two.url}/v1/status", timeout=5).json()
    assert {m["name"] for m in status["models"]} >= {"bert", "qwen"}
    for name in ("bert", "qwen"):
        latency = status["model_latency"][name]
        assert latency["count"] >= 60 and latency["buckets"][-1] == ["+Inf", latency["count"]]
        counts = [n for _, n in latency["buckets"]]
        assert counts == sorted(counts)  # cumulative


def test_a_bulk_job_for_the_second_model(two: Stack, references, models_redis: RedisServer) -> None:
    items = [{"id": "a", "query": QUERY, "candidates": DOCS}]
    accepted = post(two, "/v1/jobs", {"model": "qwen", "items": items})
    assert accepted.status_code == 202, accepted.text
    # A direct enqueue on the named model's queue, as docs/models.md shows.
    direct = Queue(bulk_queue("qwen"), connection=Redis.from_url(models_redis.url), serializer=SERIALIZER)
    job = direct.enqueue(BULK_JOB, {"items": items}, result_ttl=600)
    want = predict(references["qwen"])
    for job_id in (accepted.json()["id"], job.id):
        state: dict = {}

        def finished(job_id: str = job_id) -> bool:
            nonlocal state
            state = httpx.get(f"{two.url}/v1/jobs/{job_id}", timeout=5).json()
            return state["status"] in ("finished", "failed")

        wait_until(finished, 60, f"bulk job {job_id}")
        assert state["status"] == "finished", state
        assert state["result"]["model"] == "qwen"
        assert_scores({r["index"]: r["score"] for r in state["result"]["items"][0]["results"]}, want)


@pytest.fixture(scope="module")
def litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of its price list
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    with warnings.catch_warnings():  # its own import warns (pydantic on its TypedDicts): not this project's concern
        warnings.simplefilter("ignore")
        import litellm

        return litellm


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_real_clients_choose_the_model_by_name(two: Stack, references, litellm) -> None:
    client = cohere.ClientV2(api_key="any", base_url=two.url, max_retries=0)
    for name in ("bert", "qwen"):
        answer = client.rerank(model=name, query=QUERY, documents=DOCS)
        assert_scores({r.index: r.relevance_score for r in answer.results}, predict(references[name]))
        options = {"api_base": two.url, "api_key": "any", "return_documents": False}
        lite = litellm.rerank(model=f"infinity/{name}", query=QUERY, documents=DOCS, **options)
        assert_scores({r["index"]: r["relevance_score"] for r in lite.results}, predict(references[name]))


@pytest.mark.parametrize("via", ["http", "redis"])
def test_the_bulk_command_and_clients_take_a_model(two: Stack, references, tmp_path: Path, via: str) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps({"id": "x", "query": QUERY, "candidates": DOCS}) + "\n")
    args = [*CLI, "bulk", str(source), "-o", str(target), "--via", via, "--url", two.url, "--model", "qwen"]
    done = subprocess.run(args, env=two.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [line] = target.read_text().splitlines()
    assert_scores({r["index"]: r["score"] for r in json.loads(line)["results"]}, predict(references["qwen"]))
    unknown = subprocess.run([*args[:-1], "nope"], env=two.env, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "'nope'" in unknown.stderr, unknown.stderr


def test_the_python_client_reranks_with_a_named_model(two: Stack, references) -> None:
    from rerank_server.client import HttpClient

    client = HttpClient(two.url)
    try:
        got = client.rerank(QUERY, DOCS, model="qwen")
    finally:
        client.close()
    assert_scores({r.index: r.score for r in got}, predict(references["qwen"]))


def test_a_second_default_worker_of_another_model_refuses_to_start(two: Stack, model_dir: Path) -> None:
    """Without RERANK_DEFAULT_MODEL it would consume `rerank-bulk` beside bert's worker: it says so and exits 3."""
    env = {k: v for k, v in two.env.items() if k != "RERANK_DEFAULT_MODEL"}
    env.update(RERANK_MODEL=str(model_dir), RERANK_SERVED_MODEL_NAME="clash")
    done = subprocess.run([*CLI, "worker"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "RERANK_DEFAULT_MODEL" in done.stdout + done.stderr


def test_a_worker_started_later_for_a_third_name_is_served(two: Stack, references, model_dir: Path) -> None:
    """Discovered from its heartbeat, without restarting the API; once it stops, its name is a 503, not a 404."""
    started = time.monotonic()
    third = start_worker(two, model_dir, "third")
    assert time.monotonic() - started < 90
    response = post(two, "/v1/rerank", {"model": "third", "query": QUERY, "candidates": DOCS})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "third"
    assert_scores({r["index"]: r["score"] for r in response.json()["results"]}, predict(references["bert"]))
    third.stop()
    wait_until(lambda: "third" not in live_models(two), 5, "the third model to drop out")
    gone = post(two, "/v1/rerank", {"model": "third", "query": QUERY, "candidates": DOCS})
    assert "'third'" in assert_error(gone, 503, "no_worker")


def test_killing_the_second_models_worker_gives_503_for_it_while_the_first_serves(two: Stack) -> None:
    qwen = next(w for w in two.workers if "qwen" in str(w.log_path))
    qwen.proc.kill()  # type: ignore[union-attr]
    qwen.proc.wait()  # type: ignore[union-attr]
    killed = time.monotonic()
    while True:
        response = post(two, "/v1/rerank", {"model": "qwen", "query": QUERY, "candidates": DOCS})
        if response.status_code == 503:
            break
        assert time.monotonic() - killed < 3, response.text
    assert time.monotonic() - killed < 3
    assert "'qwen'" in assert_error(response, 503, "no_worker")
    assert post(two, "/v1/rerank", {"model": "bert", "query": QUERY, "candidates": DOCS}).status_code == 200
    assert post(two, "/v1/rerank", {"query": QUERY, "candidates": DOCS}).status_code == 200


def test_up_serves_two_models_the_first_the_default(model_dir: Path, decoder_dir: Path, references, tmp_path) -> None:
    api_port, redis_port = free_port(), free_port()
    env = service_env(f"redis://127.0.0.1:{redis_port}/0", model_dir, PORT=str(api_port), REDIS_DIR=str(tmp_path / "r"))
    url = f"http://127.0.0.1:{api_port}"
    args = [*CLI, "up", "--model", f"bert,b={model_dir}", "--model", f"qwen={decoder_dir}"]
    with (tmp_path / "up.log").open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: "is up at" in (tmp_path / "up.log").read_text(), 120, "rerank-server up to announce")
            wait_until(lambda: {"bert", "qwen"} <= set(live_models(url)), 60, "both models")
            for name, body in (("bert", {}), ("qwen", {"model": "qwen"}), ("bert", {"model": "b"})):
                response = httpx.post(f"{url}/v1/rerank", json={**body, "query": QUERY, "candidates": DOCS}, timeout=30)
                assert response.json()["model"] == name, response.text
                assert_scores({r["index"]: r["score"] for r in response.json()["results"]}, predict(references[name]))
            assert httpx.get(f"{url}/health", timeout=5).json()["model"] == "bert"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(90) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    output = (tmp_path / "up.log").read_text()
    assert f"for model {model_dir}" in output and f"for model {decoder_dir}" in output
