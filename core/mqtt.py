"""How every MQTT client of ours (agent, simulator, station, alert CLI) authenticates and encrypts: one place."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import paho.mqtt.client as mqtt

from core.settings import MqttSettings

__all__ = ["apply_credentials", "publish_confirmed"]


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


def publish_confirmed(
    settings: MqttSettings, messages: Sequence[tuple[str, bytes]], timeout: float, client_id: str
) -> str | None:
    """Publish ``(topic, payload)`` in order at QoS 1 with a client of its own, each confirmed by the broker before
    the next: for the command-line tools (an acknowledgement, an HL7 gateway's waves). None when every message was
    confirmed, else why not, in words (the URL's password masked)."""
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from core.config import mask_secrets
    from core.tls import connection_failure

    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    apply_credentials(client, settings)
    refused: list[str] = []

    def on_publish(client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode, props: Properties) -> None:
        if reason.is_failure:  # MQTT 5 says so; a 3.1.1 broker drops a message its ACL refuses in silence
            refused.append(str(reason))

    client.on_publish = on_publish
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except OSError as exc:
        return f"cannot connect to {mask_secrets(settings.url)}: {connection_failure(exc)}"
    client.loop_start()
    try:
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout)
            if not info.is_published():
                return f"the broker did not confirm a message on {topic} within {timeout} s"
            if refused:
                return f"the broker refused a message on {topic} ({refused[0]}): is it this user's topic?"
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    finally:
        client.disconnect()
        client.loop_stop()
    return None
