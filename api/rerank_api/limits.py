"""Size limits, checked before anything reaches Redis: the body, each text, each request.

Every limit answers with the error table's JSON (413 too large, 422 invalid), never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rerank_api.errors import ApiError, ErrorType, error_response
from rerank_contract.jobs import valid_unicode
from rerank_contract.settings import Settings


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than {self.max_bytes} bytes (RERANK_MAX_BODY_BYTES)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(ErrorType.TOO_LARGE, message)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            chunk = await receive()
            received += len(chunk.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, message)  # answered by the error table's handler
            return chunk

        await self.app(scope, limited, send)


def check_texts(texts: Iterable[str], settings: Settings) -> int:
    """413 for a text over ``max_text_chars``, 422 for one that is not valid Unicode (a lone surrogate,
    which JSON allows but no tokenizer takes); returns the number of characters."""
    total = 0
    for text in texts:
        if len(text) > settings.max_text_chars:
            raise ApiError(
                ErrorType.TOO_LARGE,
                f"a text of {len(text)} characters, at most {settings.max_text_chars} allowed (RERANK_MAX_TEXT_CHARS)",
            )
        try:
            valid_unicode(text)
        except ValueError as exc:
            raise ApiError(ErrorType.VALIDATION, str(exc)) from None
        total += len(text)
    return total


def check_limits(query: str, candidates: list[str], settings: Settings) -> None:
    """413 past the configured number of candidates or characters; see also :func:`check_texts`."""
    if len(candidates) > settings.max_candidates:
        raise ApiError(
            ErrorType.TOO_LARGE,
            f"{len(candidates)} texts given, at most {settings.max_candidates} allowed (RERANK_MAX_CANDIDATES)",
        )
    chars = check_texts([query, *candidates], settings)
    if chars > settings.max_request_chars:
        raise ApiError(
            ErrorType.TOO_LARGE,
            f"request holds {chars} characters, at most {settings.max_request_chars} allowed "
            "(RERANK_MAX_REQUEST_CHARS)",
        )
