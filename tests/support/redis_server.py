"""A redis-server of the test's own, on a port of its own: TLS, a password or an append-only file as asked."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from tests.support.waiting import wait_until


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a free port."""

    port: int
    proc: subprocess.Popen[bytes] | None = None
    password: str | None = None
    #: A folder with ``ca.crt``, ``redis.crt`` and ``redis.key``: serve TLS only (``rediss://``).
    tls: Path | None = None
    binary: str = "redis-server"
    #: A folder for an append-only file (fsync every second), so a restart keeps what Redis acknowledged.
    appendonly_dir: Path | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls / 'ca.crt'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--save", ""]
        if self.appendonly_dir is None:
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.appendonly_dir)]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.tls / "redis.crt"), "--tls-key-file", str(self.tls / "redis.key")]
            args += ["--tls-ca-cert-file", str(self.tls / "ca.crt")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_until(self._ping, 10, f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> Redis:
        return Redis.from_url(self.url, socket_timeout=5)

    def _ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False
