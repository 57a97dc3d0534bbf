"""An ``ecgcast.wave/1`` message for the decoder tests: two leads, three samples; keyword arguments replace fields
(``...`` drops one)."""

from __future__ import annotations

import json
from typing import Any


def wave(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "schema": "ecgcast.wave/1",
        "patient_id": "bed-12",
        "stream_id": "dev-a1",
        "seq": 7,
        "t0": 1700000000.25,
        "fs": 250,
        "leads": ["MLII", "V1"],
        "units": "mV",
        "samples": [[0.1, 0.2, 0.3], [0.0, -0.1, -0.2]],
    }
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()
