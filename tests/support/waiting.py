"""Waiting on a condition, the tests' one way to synchronise with other threads and processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def wait_until_async(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    """:func:`wait_until` inside an event loop: the loop runs (its callbacks and sockets) while this waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
