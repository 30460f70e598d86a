"""How a seam module lists the RQ (and redis-py) members it relies on beyond their documented API.

Each side has one seam (``rerank_api.rq_seam``, ``rerank_worker.rq_seam``) that lists its members as
:class:`Member` entries in ``SURFACE`` and the instance attributes it reads in ``INSTANCE_ATTRIBUTES``;
``tests/contract/test_rq_seam.py`` checks both lists against the installed libraries, so an upgrade that moves
one fails that test and names it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """A library member relied on, and the parameters of it that are used."""

    owner: type
    name: str
    params: tuple[str, ...] = ()

    def problem(self) -> str | None:
        """Why the installed library does not offer this member as used, or None when it does."""
        where = f"{self.owner.__module__}.{self.owner.__qualname__}.{self.name}"
        found = inspect.getattr_static(self.owner, self.name, None)
        if found is None:
            return f"{where} is gone"
        if not self.params:
            return None
        func = found.fget if isinstance(found, property) else getattr(self.owner, self.name)
        if func is None:  # a property without a getter
            return f"{where} has no readable signature"
        try:
            have = inspect.signature(func).parameters
        except (TypeError, ValueError):
            return f"{where} has no readable signature"
        missing = [p for p in self.params if p not in have]
        return f"{where} lacks parameters {missing} (has {list(have)})" if missing else None
