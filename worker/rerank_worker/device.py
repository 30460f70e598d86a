"""Pick the torch device the model runs on (imports torch: used only by the model loader)."""

from __future__ import annotations

import torch


def resolve_device(requested: str) -> str:
    """``auto`` means the best available device: mps, then cuda, then cpu; anything else is taken as given."""
    if requested != "auto":
        return requested
    if torch.backends.mps.is_available():
        return "mps"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"
