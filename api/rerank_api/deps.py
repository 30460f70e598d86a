"""FastAPI dependencies shared by the routes: what ``create_app`` put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rerank_api.dispatch import Dispatcher
from rerank_api.metrics import Metrics
from rerank_api.monitor import WorkerMonitor
from rerank_server.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def _monitor(request: Request) -> WorkerMonitor:
    return request.app.state.monitor


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
MonitorDep = Annotated[WorkerMonitor, Depends(_monitor)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
