"""The error table: every type has a status and a description, and the OpenAPI responses follow it."""

from __future__ import annotations

from rerank_api.errors import DESCRIPTION, STATUS, ErrorBody, ErrorType, responses


def test_every_error_type_has_a_status_and_description() -> None:
    assert set(STATUS) == set(ErrorType) == set(DESCRIPTION)
    assert all(400 <= code < 600 for code in STATUS.values())


def test_responses_merge_types_sharing_a_status() -> None:
    out = responses(ErrorType.NO_WORKER, ErrorType.QUEUE_UNAVAILABLE, ErrorType.TIMEOUT)
    assert set(out) == {503, 504}
    assert out[503]["model"] is ErrorBody
    assert DESCRIPTION[ErrorType.NO_WORKER] in out[503]["description"]
    assert DESCRIPTION[ErrorType.QUEUE_UNAVAILABLE] in out[503]["description"]
