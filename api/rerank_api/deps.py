"""FastAPI dependencies shared by the routes: what ``create_app`` put on ``app.state``.

They are ``async`` so FastAPI calls them on the event loop; a plain ``def`` dependency costs a
thread-pool hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rerank_api.dispatch import Dispatcher
from rerank_api.metrics import Metrics
from rerank_api.monitor import WorkerMonitor
from rerank_contract.settings import Settings


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


async def _monitor(request: Request) -> WorkerMonitor:
    return request.app.state.monitor


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
MonitorDep = Annotated[WorkerMonitor, Depends(_monitor)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
