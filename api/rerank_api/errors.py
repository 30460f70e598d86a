"""One table of error types, their status codes and their JSON body, used by every route.

Every error answer is ``{"error": <what went wrong>, "error_type": <ErrorType>, "detail": <the same message>}``
(``detail`` is what Jina's and FastAPI's clients read); the OpenAPI
``responses`` of each route come from :func:`responses` over the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorType(StrEnum):
    VALIDATION = "validation"
    TOO_LARGE = "too_large"
    INPUT_TOO_LONG = "input_too_long"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    MODEL_NOT_FOUND = "model_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    OVERLOADED = "overloaded"
    CLIENT_CLOSED = "client_closed"
    NO_WORKER = "no_worker"
    WORKER_LOST = "worker_lost"
    QUEUE_UNAVAILABLE = "queue_unavailable"
    TIMEOUT = "timeout"
    INFERENCE_FAILED = "inference_failed"
    INTERNAL = "internal"


STATUS: dict[ErrorType, int] = {
    ErrorType.VALIDATION: 422,
    ErrorType.TOO_LARGE: 413,
    ErrorType.INPUT_TOO_LONG: 413,
    ErrorType.UNAUTHORIZED: 401,
    ErrorType.NOT_FOUND: 404,
    ErrorType.MODEL_NOT_FOUND: 404,
    ErrorType.METHOD_NOT_ALLOWED: 405,
    ErrorType.CONFLICT: 409,
    ErrorType.OVERLOADED: 429,
    ErrorType.CLIENT_CLOSED: 499,
    ErrorType.NO_WORKER: 503,
    ErrorType.WORKER_LOST: 503,
    ErrorType.QUEUE_UNAVAILABLE: 503,
    ErrorType.TIMEOUT: 504,
    ErrorType.INFERENCE_FAILED: 500,
    ErrorType.INTERNAL: 500,
}

DESCRIPTION: dict[ErrorType, str] = {
    ErrorType.VALIDATION: "A field is missing or has the wrong type; the message names it.",
    ErrorType.TOO_LARGE: "More candidates or characters than the server accepts.",
    ErrorType.INPUT_TOO_LONG: "With truncate=false: a (query, text) pair is longer than the model's max length.",
    ErrorType.UNAUTHORIZED: "RERANK_API_KEY is set and the request lacks `Authorization: Bearer <key>` with it.",
    ErrorType.NOT_FOUND: "No such route, or no such job (unknown id, or its results expired).",
    ErrorType.MODEL_NOT_FOUND: "No served model has the `model` name given; the message lists the served names.",
    ErrorType.METHOD_NOT_ALLOWED: "The route exists, but not for this method; the `Allow` header lists its methods.",
    ErrorType.CONFLICT: "The job is already finished or failed and cannot be cancelled.",
    ErrorType.OVERLOADED: "Too many requests waiting (RERANK_MAX_INFLIGHT, RERANK_MAX_QUEUE_DEPTH); see `Retry-After`.",
    ErrorType.CLIENT_CLOSED: "The client went away before its result was ready; its job was cancelled (never sent).",
    ErrorType.NO_WORKER: "No worker is alive to run the job (of the model asked for, when several are served).",
    ErrorType.WORKER_LOST: "The worker running the job died before finishing it.",
    ErrorType.QUEUE_UNAVAILABLE: "Redis cannot be reached.",
    ErrorType.TIMEOUT: "The result did not come back within the request timeout.",
    ErrorType.INFERENCE_FAILED: "The worker failed while scoring.",
    ErrorType.INTERNAL: "An unexpected server error.",
}


class ErrorBody(BaseModel):
    error: str
    error_type: ErrorType
    detail: str = Field(description="The same message as `error`, where Jina's and FastAPI's clients look for it.")


class ApiError(Exception):
    """Raise anywhere in a request to answer with this error type and message."""

    def __init__(self, error_type: ErrorType, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.headers = headers

    @property
    def status_code(self) -> int:
        return STATUS[self.error_type]


def error_response(error_type: ErrorType, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=message, error_type=error_type, detail=message).model_dump(mode="json")
    return JSONResponse(body, status_code=STATUS[error_type], headers=headers)


def responses(*types: ErrorType) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route that can answer with ``types``."""
    out: dict[int | str, dict[str, Any]] = {}
    for t in types:
        entry = out.setdefault(STATUS[t], {"model": ErrorBody, "description": ""})
        entry["description"] = " ".join(filter(None, [entry["description"], DESCRIPTION[t]]))
    return out


def describe_validation(exc: RequestValidationError, content_type: str | None = None) -> str:
    """'candidates: Field required; query: Input should be a valid string' from pydantic's errors.

    A body that is not JSON, or that was not read as JSON for want of a JSON ``Content-Type``, gets a
    message saying what to fix instead of pydantic's.
    """
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            where = f" at character {loc[0]}" if loc else ""
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            parts.append(f"body is not valid JSON ({reason}{where}): send one JSON object")
            continue
        empty = err.get("type") == "missing" and err.get("input") in (None, b"", "")
        if not loc and (empty or err.get("type") in ("model_attributes_type", "dict_type")):
            parts.append(_not_an_object(content_type, empty))
            continue
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _not_an_object(content_type: str | None, empty: bool) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        sent = f"Content-Type {media}" if media else "no Content-Type"
        return (
            f"body: the request has {sent}, so its body was not read as JSON: "
            "send the header Content-Type: application/json (curl: -H 'Content-Type: application/json')"
        )
    if empty:
        return "body: empty (or null): send one JSON object"
    return "body: send one JSON object ({...}), not a list or value"


def install(app: FastAPI) -> None:
    """Route every error through :class:`ErrorBody`."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.error_type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(ErrorType.VALIDATION, describe_validation(exc, request.headers.get("content-type")))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not parse the body: not UTF-8, nested too deeply, a huge number
            cause = f": {type(exc.__cause__).__name__}: {exc.__cause__}" if exc.__cause__ else ""
            return error_response(ErrorType.VALIDATION, f"body: {exc.detail}{cause}")
        error_type = {
            404: ErrorType.NOT_FOUND,
            405: ErrorType.METHOD_NOT_ALLOWED,
            413: ErrorType.TOO_LARGE,
            422: ErrorType.VALIDATION,
        }.get(exc.status_code)
        if error_type is None:
            return JSONResponse(
                {"error": str(exc.detail), "error_type": "http", "detail": str(exc.detail)},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        return error_response(error_type, str(exc.detail), exc.headers)  # 405 keeps its `Allow` header

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(ErrorType.INTERNAL, f"unexpected error: {type(exc).__name__}")
