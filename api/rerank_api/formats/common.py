"""Wire pieces shared by the Cohere-style formats (Cohere v1, Cohere v2, Jina)."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rerank_contract.jobs import UnicodeStr, valid_unicode

#: ``top_n``: a positive JSON integer (no strings, floats or booleans); more than the documents returns all.
TopN = Annotated[
    int,
    Field(strict=True, ge=1, description="Keep the best n results; more than the number of documents returns all."),
]


class Document(BaseModel):
    """A document given as an object: ``text`` is scored, other fields are echoed back untouched."""

    model_config = ConfigDict(extra="allow")

    text: UnicodeStr
    # The other fields are echoed back in the answer: they must be encodable too.
    __pydantic_extra__: dict[str, Annotated[Any, AfterValidator(valid_unicode)]] = Field(init=False)


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int = Field(description="Cohere's unit: one per started 100 documents.")


class CohereMeta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits


def cohere_meta(version: str, documents: int) -> CohereMeta:
    return CohereMeta(
        api_version=ApiVersion(version=version), billed_units=BilledUnits(search_units=math.ceil(documents / 100))
    )


def response_id() -> str:
    """A fresh ``id`` for a Cohere-style response."""
    return str(uuid.uuid4())
