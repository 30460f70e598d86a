"""``rerank-server up`` on a machine with no Redis configured: it brings everything and stops it all."""

from __future__ import annotations

import signal
import socket
import subprocess

import httpx
import pytest

from tests.conftest import CLI, SEED_CANDIDATES, SEED_QUERY, free_port, service_env, wait_until

pytestmark = pytest.mark.e2e


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_starts_private_redis_serves_and_stops_cleanly(model_dir, tmp_path) -> None:
    api_port, redis_port = free_port(), free_port()
    key = "k3y-given-to-up"  # the children must get the key itself, not its mask
    env = service_env(f"redis://127.0.0.1:{redis_port}/0", model_dir, PORT=str(api_port), API_KEY=key)
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen([*CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{api_port}"

    try:
        wait_until(lambda: "is up at" in (tmp_path / "up.log").read_text(), 90, "rerank-server up to announce")
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        assert _port_open(redis_port)
        body = {"query": SEED_QUERY, "candidates": SEED_CANDIDATES}
        wrong = httpx.post(f"{url}/v1/rerank", json=body, headers={"Authorization": "Bearer **********"})
        assert wrong.status_code == 401
        response = httpx.post(f"{url}/v1/rerank", json=body, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert [r["index"] for r in response.json()["results"]][-1] == 1
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert "starting a private one" in output
    assert not _port_open(api_port)
    assert not _port_open(redis_port)


def test_up_starts_no_redis_for_a_tls_url(model_dir) -> None:
    """A configured rediss:// (TLS) Redis that is down is an error to report, not a cue to start our own."""
    env = service_env(f"rediss://127.0.0.1:{free_port()}/0", model_dir, PORT=str(free_port()))
    result = subprocess.run([*CLI, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "not a local redis:// URL" in result.stderr
