"""Builders for alert tests: forecasts with chosen onset probabilities, and evidence with chosen measurements."""

from __future__ import annotations

from typing import Any

from agent.alerts import Evidence
from llm_runtime.forecast import Forecast

HORIZONS = (60, 300)


def forecast(
    af: float | tuple[float, float] = 0.05,
    flutter: float = 0.02,
    vt: float = 0.01,
    *,
    patient_id: str = "P001",
    t: float = 600.0,
    explanation: str | None = None,
    window_s: int = 300,
) -> Forecast:
    """A valid forecast; ``af`` may give (p at 60 s, p at 300 s)."""
    af_by_h = dict(zip(HORIZONS, af if isinstance(af, tuple) else (af, af), strict=True))
    onset = {h: {"af": af_by_h[h], "flutter": flutter, "vt": vt} for h in HORIZONS}
    rhythm = {}
    for h in HORIZONS:
        probs = {"af": af_by_h[h] * 0.5, "flutter": flutter * 0.5, "vt": vt * 0.5}
        rhythm[h] = {"sinus": 1.0 - sum(probs.values()), **probs}
    return Forecast.model_validate(
        {
            "patient_id": patient_id,
            "t_forecast": t,
            "window_s": window_s,
            "horizons_s": HORIZONS,
            "rhythm_probs": rhythm,
            "onset_probs": onset,
            "explanation": explanation,
            "model_id": "ecgcast-test",
            "model_version": "0.0-test",
            "latency_ms": 12.0,
        }
    )


def evidence(**changes: Any) -> Evidence:
    """Evidence of a clean sinus strip at 78 bpm with a few PACs; keyword arguments replace fields."""
    base: dict[str, Any] = {
        "lead": "II",
        "window_s": 60.0,
        "t_end_s": 600.0,
        "hr_bpm": 78.0,
        "hr_change_bpm": 6.0,
        "rr_irregularity": 0.04,
        "rr_cv": 0.05,
        "pac_per_min": 3.0,
        "pac_per_min_before": 1.0,
        "pvc_per_min": 0.0,
        "pvc_per_min_before": 0.0,
        "couplets": 0,
        "ventricular_runs": 0,
        "longest_ventricular_run": 0,
        "usable_fraction": 0.98,
        "signal_quality": {"II": "good", "V1": "good"},
    }
    return Evidence(**{**base, **changes})
