"""The requests tests send: queries whose ranking the tiny model learned (see ``tiny_model.TOPICS``)."""

from __future__ import annotations

SEED_QUERY = "machine learning"
SEED_CANDIDATES = ["deep learning", "cooking recipes", "neural networks"]

#: Several requests of different sizes, as a batch of waiting jobs.
REQUESTS = [
    ("machine learning", ["cooking recipes", "deep learning", "neural networks", "stock market"]),
    ("astronomy", ["black holes", "pasta sauce"]),
    ("gardening", ["growing tomatoes", "interest rates", "garden soil"]),
    ("finance", ["bank loans"]),
]
