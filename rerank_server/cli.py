"""The ``rerank-server`` command: ``worker``, ``api``, ``up`` (everything on one machine) and ``launchd``.

The CLI only parses arguments into :class:`Settings` and hands over; every option is also a
``RERANK_*`` environment variable.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rerank_server.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "func") and v is not None}
    return Settings(**overrides)


def _worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rerank_worker.main import run  # imports torch: only here

    return run(settings)


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from rerank_api.app import create_app

    settings = _settings(args)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


def _up(args: argparse.Namespace) -> int:
    from rerank_server.up import run

    return run(_settings(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerank-server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--redis-url", dest="redis_url", help="env RERANK_REDIS_URL")
        p.add_argument("--log-level", dest="log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="env RERANK_MODEL")
        p.add_argument("--device", help="env RERANK_DEVICE (auto, cpu, cuda, cuda:1, mps)")

    def http_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="env RERANK_HOST (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="env RERANK_PORT (default 8080)")

    worker = sub.add_parser("worker", help="load the model and serve the queues")
    common(worker)
    model_options(worker)
    worker.set_defaults(func=_worker)

    api = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    common(api)
    http_options(api)
    api.set_defaults(func=_api)

    up = sub.add_parser("up", help="run Redis (if none is reachable), a worker and the API on this machine")
    common(up)
    model_options(up)
    http_options(up)
    up.set_defaults(func=_up)

    from rerank_server.deploy import launchd

    launchd.register(sub, [common, model_options, http_options])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
