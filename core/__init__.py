"""The foundation every other package stands on: errors, config base and loader, shared config sections, the wire
protocol, 1-second windows, the ring buffer, deterministic measurements, logging set-up and MQTT credentials.

It imports no other ecgcast package (tests/test_architecture.py checks it); see docs/ARCHITECTURE.md.
"""
