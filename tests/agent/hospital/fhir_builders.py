"""A model forecast for the FHIR tests (the hospital mapping and the station's FHIR routes)."""

from __future__ import annotations

from llm_runtime.forecast import Forecast

ONSET = {60: {"af": 0.12, "flutter": 0.03, "vt": 0.07}, 300: {"af": 0.41, "flutter": 0.05, "vt": 0.09}}


def model_forecast(patient_id: str, explanation: str | None = None) -> Forecast:
    """Onset risks ``ONSET``, the rest of each horizon's rhythm split between sinus and the onsets."""
    rhythm = {h: {"sinus": 1 - sum(p.values()) / 2, **{k: v / 2 for k, v in p.items()}} for h, p in ONSET.items()}
    return Forecast.model_validate(
        {
            "patient_id": patient_id,
            "t_forecast": 600.0,
            "window_s": 300,
            "horizons_s": tuple(ONSET),
            "rhythm_probs": rhythm,
            "onset_probs": ONSET,
            "explanation": explanation,
            "model_id": "ecgcast-test",
            "model_version": "0.0-test",
            "latency_ms": 12.0,
        }
    )
