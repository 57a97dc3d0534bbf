"""The ecgcast agent: MQTT ingest → per-patient ring buffers → 1-second windows → encoder → forecaster → alerts."""
