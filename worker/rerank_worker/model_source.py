"""Where the model comes from: a local folder, the Hugging Face cache, or the hub, checked before loading.

Loading a model that can only fail (offline and not cached, a folder that does not exist) otherwise takes
about a minute of retries and ends in a long traceback; here it fails at once, in one line that names the
two ways out.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rerank_contract.defaults import HUB_CHECK_TIMEOUT_S


class ModelUnavailable(RuntimeError):
    """The model is neither a local folder nor in the Hugging Face cache, and cannot be downloaded now."""


class BackendUnavailable(ModelUnavailable):
    """The model loaded, but the chosen backend (RERANK_BACKEND) cannot run it: a package missing, a model its
    exporter does not take, nowhere to save the export. The message names why and the way out."""


#: The two ways out, named in every :class:`ModelUnavailable` message.
WAYS_OUT = (
    "either serve a local folder (--model FOLDER or RERANK_MODEL=FOLDER; `rerank-server model build ./models/tiny` "
    "makes a toy one offline, `rerank-server model fetch ./models/minilm` downloads a small real one), "
    "or connect to the internet (with HF_HUB_OFFLINE unset) so the model can be downloaded"
)


class DropNewModelNotice(logging.Filter):
    """sentence-transformers says 'No modules.json found ..., initializing a new CrossEncoder model' for every
    plain transformers folder; the weights are loaded all the same, so the line only misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No modules.json found")


def check_available(model: str, *, hub_timeout_s: float = HUB_CHECK_TIMEOUT_S) -> None:
    """Raise :class:`ModelUnavailable` at once when loading ``model`` could only fail (after a minute of retries)."""
    if Path(model).expanduser().exists():
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelUnavailable(f"cannot load model {model}: there is no such folder; {WAYS_OUT}")
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(model, "config.json"), str):
            return  # downloaded before: loads offline
    except ValueError:  # not a valid repository id
        raise ModelUnavailable(f"cannot load model {model}: not a folder nor a Hugging Face id; {WAYS_OUT}") from None
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        import httpx

        try:
            httpx.head(constants.ENDPOINT, timeout=hub_timeout_s)
            return
        except httpx.HTTPError as exc:
            reason = f"{constants.ENDPOINT} cannot be reached ({type(exc).__name__}: {exc})"
    raise ModelUnavailable(
        f"cannot load model {model}: it is not a local folder nor in the Hugging Face cache, and {reason}; {WAYS_OUT}"
    )
