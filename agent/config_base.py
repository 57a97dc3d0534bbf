"""The base of every config section. Its own module so that section models living in other packages
(encoder_onnx, llm_runtime, agent.alerts) and the root ``Settings`` that composes them import it without a cycle."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must stop start-up), and objects are immutable after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
