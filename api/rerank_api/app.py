"""Build the FastAPI app: :func:`create_app` takes its settings; importing this module builds nothing.

``uvicorn rerank_server:app`` serves one with settings from the environment (``rerank_server`` reads them
and configures logging); ``rerank-server api`` does the same from its command line.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from rerank_api import bulk, docs, errors, metrics, model_list, page
from rerank_api.auth import protection
from rerank_api.dispatch import Dispatcher
from rerank_api.formats import ROUTERS
from rerank_api.limits import BodySizeLimit
from rerank_api.monitor import WorkerMonitor
from rerank_api.routes import router
from rerank_contract import __version__
from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.defaults import (
    API_REDIS_CONNECTIONS,
    API_SOCKET_MARGIN_S,
    MONITOR_INTERVAL_S,
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_RETRIES,
    REDIS_RETRY_BACKOFF_BASE_S,
    REDIS_RETRY_BACKOFF_CAP_S,
    REDIS_SOCKET_TIMEOUT_S,
    WAIT_SLICE_S,
)
from rerank_contract.redis_conn import connect
from rerank_contract.settings import Settings


def _async_redis(url: str) -> AsyncRedis:
    # Above the longest XREAD block, so a slow answer is never mistaken for a dead socket. A blocking pool: past
    # its size a request waits for a free connection instead of failing with "Too many connections".
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=API_REDIS_CONNECTIONS,
        timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_timeout=WAIT_SLICE_S + API_SOCKET_MARGIN_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        retry=Retry(
            ExponentialBackoff(cap=REDIS_RETRY_BACKOFF_CAP_S, base=REDIS_RETRY_BACKOFF_BASE_S), REDIS_RETRIES
        ),  # the asyncio Retry: redis-py 8.2 warns (an error under pytest) when given the synchronous one
    )
    return AsyncRedis.from_pool(pool)


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; it configures no logging (the entry point does) and connects to Redis only on start."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async_redis = _async_redis(settings.redis_url)
        sync_redis = connect(settings.redis_url)
        monitor = WorkerMonitor(async_redis, interval_s=MONITOR_INTERVAL_S)
        app.state.monitor = monitor
        app.state.dispatcher = Dispatcher(
            sync_redis,
            async_redis,
            monitor,
            timeout_s=settings.request_timeout_s,
            result_ttl_s=settings.result_ttl_s,
            max_inflight=settings.max_inflight,
            max_queue_depth=settings.max_queue_depth,
            default_model=settings.default_model,
        )
        app.state.bulk_jobs = BulkJobs.from_settings(sync_redis, settings)
        await monitor.start()
        try:
            yield
        finally:
            await app.state.dispatcher.close()
            await monitor.stop()
            await async_redis.aclose()
            sync_redis.close()

    app = FastAPI(
        title="rerank-server",
        version=__version__,
        description="Cross-encoder reranking over a Redis/RQ queue of resident-model workers.",
        lifespan=lifespan,
        docs_url=None,  # served by rerank_api.docs from installed assets, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.instance = settings.instance or uuid.uuid4().hex
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.metrics = metrics.Metrics(
        lambda: app.state.monitor.snapshot if hasattr(app.state, "monitor") else None,
        multiprocess_dir=metrics.multiprocess_dir(),  # set when this is one of several API processes
    )
    app.add_middleware(metrics.HttpMetrics, metrics=app.state.metrics)
    errors.install(app)
    docs.install(app)
    app.include_router(router)
    # /health, /docs, /redoc, /openapi.json and / stay open; rerank routes, /info, /models, /metrics need the key.
    for protected in (*ROUTERS, model_list.router, bulk.router, metrics.router):
        app.include_router(protected, **protection(settings))
    page.install(app, protection(settings))  # `/` open (it holds no data), its /v1/status protected
    return app
