"""The one ecgcast exception tree.

Every error the project raises on purpose derives from :class:`EcgcastError`, and errors from third-party
libraries (paho, onnxruntime, transformers) are translated at the edge with ``raise … from exc`` into the
nearest class here::

    EcgcastError
    ├── ConfigError            bad YAML, unknown key, out-of-range value; names section.key and the value
    ├── ProtocolError          a wire message that breaks docs/PROTOCOL.md; carries a machine-readable reason
    ├── BrokerError            cannot connect, refused by the broker, TLS failure
    ├── SignalError            a signal or record that cannot be processed (wrong shape, bad fs, bad units)
    ├── EncoderError           ONNX export, parity or session failures
    ├── ModelError             LM backbone, checkpoint and forecast failures
    │   └── CheckpointError    a checkpoint that is not in the expected layout or is unsafe to load
    └── LifecycleError         a resource used outside its open/close lifecycle
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CheckpointError",
    "ConfigError",
    "EcgcastError",
    "EncoderError",
    "LifecycleError",
    "ModelError",
    "ProtocolError",
    "SignalError",
]


class EcgcastError(Exception):
    """Base class of every error ecgcast raises on purpose."""


class ConfigError(EcgcastError):
    """A configuration file or override is invalid."""


class ProtocolError(EcgcastError):
    """A wire message is malformed or hostile.

    ``reason`` is a short, stable snake_case code used as a counter label (``bad_json``, ``missing_field``, …);
    ``field`` names the offending field when there is one.
    """

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{reason}{where}: {detail}")


class BrokerError(EcgcastError):
    """The MQTT broker cannot be reached or refused us."""


class SignalError(EcgcastError):
    """A signal or record cannot be processed as given."""


class EncoderError(EcgcastError):
    """ONNX encoder export, parity check or runtime failure."""


class ModelError(EcgcastError):
    """Language-model backbone or forecast failure."""


class CheckpointError(ModelError):
    """A checkpoint is not in the expected layout or is unsafe to load."""


class LifecycleError(EcgcastError):
    """A resource was used before it was opened or after it was closed."""
