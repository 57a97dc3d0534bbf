"""Forecast evaluation: an ECGForecastBench-style table (CAMEL's protocol and our extensions), supervised
baselines on the same samples, calibration, and an alert-level replay through the agent's forecasting path."""
