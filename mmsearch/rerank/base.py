"""The interface every reranker implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image


class Reranker(ABC):
    """Scores how well each image matches a text; higher is a better match.

    Implementations batch internally and run on `device`. Scores are comparable within one
    call (one query), not necessarily across models.
    """

    spec: str
    device: str

    @abstractmethod
    def score(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        """Match scores of `text` against each image, as a float32 array of len(images)."""

    def match_logits(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        """What the planner adds to a hit's calibrated first-stage score: the log-odds that
        each image matches `text` (0 = undecided).

        The default reads `score` as a match probability (BLIP's ITM head); rerankers whose
        scores are not probabilities override this.
        """
        p = np.clip(np.asarray(self.score(text, images), dtype=np.float64), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)).astype(np.float32)
