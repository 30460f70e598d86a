"""The ``rerank-server`` command: ``up``, ``worker``, ``api``, ``bulk``, ``model`` and ``launchd``.

The CLI only parses arguments into :class:`Settings` and hands over; every option is also a
``RERANK_*`` environment variable. Expected failures (a bad flag or setting, an API that does not
answer, a missing file) are one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from pydantic import ValidationError

from rerank_contract import __version__, defaults
from rerank_contract.settings import Settings
from rerank_server.logs import configure_logging


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings, overridden by the flags that were given."""
    return Settings(**{k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None})


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from rerank_worker.main import run  # the worker side (torch once a model loads): imported only here

    return run(settings)


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from rerank_server.serve_api import serve

    serve(settings)
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from rerank_server.up import ModelSpecError, model_specs, run

    try:
        models = model_specs(args.models, settings)
    except ModelSpecError as exc:
        return _fail("up", str(exc))
    return run(settings, models)


def _bulk(args: argparse.Namespace, settings: Settings) -> int:
    import httpx
    from redis.exceptions import RedisError

    from rerank_contract.jobs import ScoreMode
    from rerank_server import bulk_cli
    from rerank_server.client import ClientError, HttpClient, QueueClient

    url = args.url or f"http://{settings.host}:{settings.port}"
    if args.via == "redis":
        client: HttpClient | QueueClient = QueueClient(settings=settings)
    else:
        client = HttpClient(url, api_key=args.api_key)
    try:
        return bulk_cli.run(
            args.input,
            args.output,
            client,
            items_per_job=args.items_per_job,
            score_mode=ScoreMode.RAW if args.raw_scores else ScoreMode.ACTIVATED,
            instruction=args.job_instruction,
            max_chunks_per_doc=args.job_max_chunks,
            model=args.job_model,
        )
    except httpx.TransportError as exc:
        problem = f"cannot reach the API at {url} ({type(exc).__name__}: {exc}): start it with `rerank-server up`"
        return _fail("bulk", problem + " or point --url at it")
    except ClientError as exc:
        key = " (pass --api-key)" if exc.status == 401 else ""
        return _fail("bulk", f"the API at {url} answered {exc.status} {exc.error_type}: {exc.error}{key}")
    except LookupError as exc:  # --via redis: no worker ever served that name
        return _fail("bulk", str(exc))
    except RedisError as exc:
        where = urlsplit(settings.redis_url)
        return _fail("bulk", f"cannot reach Redis at {where.hostname}:{where.port or 6379} ({exc}): check --redis-url")
    finally:
        client.close()


def _fail(command: str, problem: str) -> int:
    """An expected failure: one line and exit code 2."""
    print(f"rerank-server {command}: {problem}", file=sys.stderr)
    return defaults.EXIT_USAGE


DESCRIPTION = """\
A self-hosted reranking service: an HTTP API, a Redis queue and workers that keep the model loaded.

Try it without downloading anything:
  rerank-server model build ./models/tiny        a toy model that knows five topics (needs the worker extra)
  rerank-server up --model ./models/tiny         then open http://127.0.0.1:8080/
  RERANK_SCORER=fake rerank-server up            no model and no torch: a word-overlap scorer

Every flag is also a RERANK_* environment variable; see `rerank-server COMMAND --help`."""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (what is wrong, and where help is) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(defaults.EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _setting(field: str, text: str) -> str:
    """Help for a flag that sets ``field``: its text, its variable and its default."""
    default = Settings.model_fields[field].default
    shown = "the model's own" if default is None else default
    return f"{text} (env RERANK_{field.upper()}; default: {shown})"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="rerank-server", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"rerank-server {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--redis-url", dest="redis_url", help=_setting("redis_url", "Redis holding the queues"))
        p.add_argument(
            "--log-level",
            dest="log_level",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help=_setting("log_level", "what to log"),
        )

    def model_options(p: argparse.ArgumentParser, several: bool = False) -> None:
        what = (
            "a Hugging Face id (downloaded on first use) or a local folder holding a CrossEncoder, "
            "e.g. one made by `rerank-server model build FOLDER`"
        )
        if several:
            p.add_argument(
                "--model",
                dest="models",
                action="append",
                metavar="[NAMES=]MODEL",
                help=_setting("model", what)
                + "; repeat it to serve several models, one worker each, the first the default; NAMES=, "
                "comma-separated, gives the names requests use (the first canonical; default: MODEL)",
            )
        else:
            p.add_argument("--model", help=_setting("model", what))
            p.add_argument(
                "--served-model-name",
                dest="served_model_name",
                metavar="NAMES",
                help=_setting(
                    "served_model_name", "comma-separated names requests use for this model, first canonical"
                ),
            )
        p.add_argument("--device", help=_setting("device", "auto (mps, then cuda, then cpu), cpu, cuda, cuda:1, mps"))
        p.add_argument(
            "--default-model",
            dest="default_model",
            metavar="NAME",
            help=_setting("default_model", "the model requests without `model` get"),
        )

    def http_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help=_setting("host", "address the API listens on (0.0.0.0: every interface)"))
        p.add_argument("--port", type=int, help=_setting("port", "port the API listens on"))
        p.add_argument(
            "--api-processes",
            dest="api_processes",
            type=int,
            help=_setting(
                "api_processes",
                "API processes serving the port, for hosts with cores to spare; each has its own Redis "
                "connections and worker monitor, and /metrics sums them all",
            ),
        )

    worker = sub.add_parser("worker", help="load the model and serve the queues")
    common(worker)
    model_options(worker)
    worker.set_defaults(func=_worker)

    api = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    common(api)
    http_options(api)
    api.add_argument(
        "--default-model",
        dest="default_model",
        metavar="NAME",
        help=_setting("default_model", "the model requests without `model` get"),
    )
    api.set_defaults(func=_api)

    up = sub.add_parser("up", help="run Redis (if none is reachable), a worker per model and the API on this machine")
    common(up)
    model_options(up, several=True)
    http_options(up)
    up.set_defaults(func=_up)

    bulk = sub.add_parser("bulk", help="rerank a JSONL file of {id, query, candidates} items as bulk jobs")
    bulk.add_argument("input", type=Path, help="JSONL input, one item per line")
    bulk.add_argument("-o", "--output", type=Path, required=True, help="JSONL output, one result per input line")
    bulk.add_argument("--via", choices=["http", "redis"], default="http", help="submit over HTTP (default) or to Redis")
    bulk.add_argument("--url", help="API base URL (default http://RERANK_HOST:RERANK_PORT)")
    bulk.add_argument("--redis-url", dest="redis_url", help="with --via redis; env RERANK_REDIS_URL")
    bulk.add_argument("--api-key", dest="api_key", help="sent as Authorization: Bearer <key>")
    bulk.add_argument(
        "--items-per-job",
        dest="items_per_job",
        type=int,
        default=defaults.BULK_ITEMS_PER_JOB,
        help=f"default {defaults.BULK_ITEMS_PER_JOB}",
    )
    bulk.add_argument("--raw-scores", dest="raw_scores", action="store_true", help="raw logits, not activated scores")
    # Own dests: RERANK_INSTRUCTION and RERANK_MAX_CHUNKS_PER_DOC are the worker's defaults, not these flags'.
    bulk.add_argument(
        "--instruction",
        dest="job_instruction",
        metavar="TEXT",
        help="task instruction for every item (the model's prompt); default: the worker's (RERANK_INSTRUCTION)",
    )
    bulk.add_argument(
        "--max-chunks-per-doc",
        dest="job_max_chunks",
        metavar="N",
        type=_at_least_one,
        help="split a candidate too long for the model into at most N chunks and score it by its best; "
        "default: the worker's (RERANK_MAX_CHUNKS_PER_DOC), else cut it",
    )
    bulk.add_argument(
        "--model",
        dest="job_model",
        metavar="NAME",
        help="the served model to score with (any of its names, see GET /v1/models); default: the default model",
    )
    bulk.set_defaults(func=_bulk)

    from rerank_server import model_cli
    from rerank_server.deploy import launchd

    model_cli.register(sub)
    launchd.register(sub, [common, partial(model_options, several=True), http_options])
    return parser


def invalid_settings(error: ValidationError) -> str:
    """One line naming each invalid setting as its variable; values of secrets and URLs are not shown. A setting
    of several forms (a number or ``auto``) gets one entry, its forms' messages joined by "or"."""
    problems: dict[str, list[str]] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if not field:  # a check across fields
            problems.setdefault(item["msg"].removeprefix("Value error, "), [])
            continue
        shown = "" if field in ("api_key", "redis_url") else f"={item['input']}"
        problems.setdefault(f"RERANK_{field.upper()}{shown}", []).append(item["msg"])
    joined = {
        what: " or ".join([m[0], *(x[:1].lower() + x[1:] for x in m[1:])]) if m else "" for what, m in problems.items()
    }
    return "invalid settings: " + "; ".join(f"{what}: {why}" if why else what for what, why in joined.items())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"rerank-server {args.command}: {invalid_settings(exc)}", file=sys.stderr)
        return defaults.EXIT_USAGE
    configure_logging(settings.log_level)
    return args.func(args, settings)


if __name__ == "__main__":
    sys.exit(main())
