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


#: ``instruction``: every format's optional task instruction, passed to the model as its prompt.
INSTRUCTION_DESCRIPTION = (
    "Task instruction for the model, e.g. 'Given a web search query, retrieve relevant passages'. A decoder "
    "reranker (Qwen3-Reranker) reads it as its `<Instruct>` (a system message of its chat template); other "
    "models get it prefixed to the query, as sentence-transformers' prompt. Default: RERANK_INSTRUCTION."
)
Instruction = Annotated[UnicodeStr | None, Field(description=INSTRUCTION_DESCRIPTION)]

#: ``max_chunks_per_doc``: opt-in chunking of documents too long for the model.
MaxChunks = Annotated[
    int | None,
    Field(
        strict=True,
        ge=1,
        description="Split a document too long for the model into at most this many chunks that fit beside the "
        "query and score it by its best chunk (Cohere's rerank behaviour). Default: RERANK_MAX_CHUNKS_PER_DOC, "
        "else the document is cut to the model's max length.",
    ),
]


class Usage(BaseModel):
    """Tokens the model read (Jina reads ``total_tokens``, Infinity and vLLM both): nothing is generated."""

    prompt_tokens: int
    total_tokens: int


def usage(tokens: int | None) -> Usage:
    return Usage(prompt_tokens=tokens or 0, total_tokens=tokens or 0)


class Tokens(BaseModel):
    input_tokens: int = Field(description="Tokens the model read: instruction, template and chunks included.")
    output_tokens: int = 0


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int = Field(description="Cohere's unit: one per started 100 documents.")


class CohereMeta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits
    tokens: Tokens


def cohere_meta(version: str, documents: int, tokens: int | None) -> CohereMeta:
    return CohereMeta(
        api_version=ApiVersion(version=version),
        billed_units=BilledUnits(search_units=math.ceil(documents / 100)),
        tokens=Tokens(input_tokens=tokens or 0),
    )


def response_id() -> str:
    """A fresh ``id`` for a Cohere-style response."""
    return str(uuid.uuid4())
