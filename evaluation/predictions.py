"""What every method returns for the samples of one cell: class probabilities and onset probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluation.data import CLASSES, ONSETS

__all__ = ["Predictions"]


@dataclass(frozen=True)
class Predictions:
    rhythm: npt.NDArray[np.float64]  # (n, len(CLASSES)): P(class at T + h)
    onset: npt.NDArray[np.float64]  # (n, len(ONSETS)): P(onset within (T, T + h])

    def __post_init__(self) -> None:
        if self.rhythm.shape[1:] != (len(CLASSES),) or self.onset.shape[1:] != (len(ONSETS),):
            raise ValueError(f"bad prediction shapes {self.rhythm.shape}, {self.onset.shape}")

    def rows(self, lo: int, hi: int) -> Predictions:
        """The predictions of samples ``lo`` to ``hi``: one fit predicts several sample lists at once."""
        return Predictions(self.rhythm[lo:hi], self.onset[lo:hi])

    def predicted(self, classes: tuple[str, ...] = CLASSES) -> list[str]:
        """Arg-max class among ``classes`` (CAMEL's protocol restricts the choice to sinus / AF / flutter)."""
        columns = [CLASSES.index(c) for c in classes]
        return [classes[i] for i in np.argmax(self.rhythm[:, columns], axis=1)]
