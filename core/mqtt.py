"""How every MQTT client of ours (agent, simulator, station, alert CLI) authenticates and encrypts: one place."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from core.settings import MqttSettings

__all__ = ["apply_credentials"]


def apply_credentials(client: mqtt.Client, settings: MqttSettings) -> None:
    """Username/password and TLS (CA, optional client certificate) from config: one place for every client."""
    user, password = settings.credentials
    if user is not None:
        client.username_pw_set(user, password)
    if settings.use_tls:
        client.tls_set(
            ca_certs=str(settings.tls_ca_file) if settings.tls_ca_file else None,
            certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
            keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(settings.tls_insecure)
