"""Log hygiene: a flood of one warning is rate-limited and says how much it dropped; errors are never dropped."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from core.logs import RepeatLimiter, configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    config, handlers = structlog.get_config(), logging.getLogger().handlers[:]
    yield
    structlog.configure(**config)
    logging.getLogger().handlers[:] = handlers


def test_a_flood_of_one_warning_writes_a_few_lines_and_counts_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    configure_logging("info", "json", RepeatLimiter(burst=5, window_s=60.0, clock=lambda: now[0]))
    log = structlog.get_logger("flood")
    for i in range(10_000):
        log.warning("wave_rejected", reason="bad_json", patient_id=f"P{i}")
    log.warning("mqtt_disconnected", reason="other event, own budget")
    for _ in range(3):
        log.error("store_failed", detail="never rate-limited")
    now[0] = 61.0
    log.warning("wave_rejected", reason="bad_json", patient_id="P-late")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    rejected = [line for line in lines if line["event"] == "wave_rejected"]
    assert len(rejected) == 6  # 5 in the first minute, one after it
    assert rejected[-1]["suppressed"] == 9_995 and rejected[-1]["patient_id"] == "P-late"
    assert sum(line["event"] == "store_failed" for line in lines) == 3
    assert any(line["event"] == "mqtt_disconnected" for line in lines)
