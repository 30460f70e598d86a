"""The shape of every error answer, checked in one place."""

from __future__ import annotations

import httpx


def assert_error(response: httpx.Response, status: int, error_type: str) -> str:
    """Check an error answer's status and ``{"error", "error_type", "detail"}`` body; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type", "detail"} and body["detail"] == body["error"]
    assert body["error_type"] == error_type
    return body["error"]
