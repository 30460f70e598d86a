"""Optional API key: with ``RERANK_API_KEY`` set, routes need ``Authorization: Bearer <key>``.

``create_app`` includes the protected routers with :func:`protection`, which adds the key check only
when a key is set, so the OpenAPI schema shows the Bearer scheme exactly when it is enforced. Clients
that always send a Bearer header (most do) keep working when no key is set: the header is not read.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rerank_api.errors import ApiError, ErrorType, responses
from rerank_contract.settings import Settings

bearer = HTTPBearer(auto_error=False, description="The value of RERANK_API_KEY.")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def protection(settings: Settings) -> dict[str, Any]:
    """``include_router`` options for a protected router: the key check and its 401, when a key is set."""
    key = settings.api_key.get_secret_value().encode() if settings.api_key is not None else b""
    if not key:
        return {}

    async def require_api_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        """401 unless the Bearer token equals the key (compared in constant time)."""
        if credentials is None:
            raise ApiError(ErrorType.UNAUTHORIZED, "missing `Authorization: Bearer <key>` header", _CHALLENGE)
        if not secrets.compare_digest(credentials.credentials.encode(), key):
            raise ApiError(ErrorType.UNAUTHORIZED, "wrong API key", _CHALLENGE)

    return {"dependencies": [Depends(require_api_key)], "responses": responses(ErrorType.UNAUTHORIZED)}
