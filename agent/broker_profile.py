"""The broker security profile: who may publish what on an ecgcast broker (docs/SECURITY.md, "Broker security
profile").

MQTT does not tell a receiver who published a message, so identity has to come from the broker: every client signs
in with its own user name (``allow_anonymous false``, ``password_file``) and an ACL lets each identity write only
what its role publishes. The agent then trusts a topic, never a payload: an ack on ``…/alert/ack/nurse.kim`` is
nurse.kim's because only nurse.kim, or the station relaying for the nurse.kim it signed in, may write there.

:func:`acl_text` writes mosquitto's ACL file for a set of :class:`BrokerUser`; ``config/mosquitto/ecgcast.acl`` is
its output for the example identities, and the demo (``--secure-broker``) and the end-to-end test run a private
mosquitto with it (:meth:`agent.local_broker.LocalMosquitto.secured`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from core.protocol import PATIENT_ID_PATTERN, USER_ID_PATTERN, Topics

__all__ = ["BrokerUser", "acl_text", "example_users"]

ACL_HEADER: Final = """\
# ecgcast broker security profile: who may publish what (docs/SECURITY.md, "Broker security profile").
# Use with allow_anonymous false, password_file and acl_file (config/mosquitto/ecgcast.conf). Anything not
# granted here is denied: mosquitto answers an MQTT 5 publish with "Not authorized" and drops it.
# %u is the signed-in user name. %c (the client id) is never used: a client chooses its own id.
"""


@dataclass(frozen=True)
class BrokerUser:
    """One broker identity and what it may publish. A user with no role set is a clinician (a pager, the alert
    CLI): it reads the agents' outputs and acknowledges or mutes under its own name only. One user may hold several
    roles: an agent that serves the station from its process signs in once, so it is also the station relay.
    """

    name: str
    password: str = field(repr=False)
    agent_id: str | None = None  # an agent: every patient's outputs, only its own _agents/<agent_id> topics
    station_client_id: str | None = None  # the station: relays acks and mutes for users it signed in
    patient_id: str | None = None  # a bedside monitor: only this patient's wave
    gateway: bool = False  # a central gateway (or the simulator): every patient's wave

    def __post_init__(self) -> None:
        if not USER_ID_PATTERN.fullmatch(self.name):
            raise ValueError(f"broker user name {self.name[:80]!r} must match {USER_ID_PATTERN.pattern}")
        for what, value in (("agent_id", self.agent_id), ("patient_id", self.patient_id)):
            if value is not None and not PATIENT_ID_PATTERN.fullmatch(value):
                raise ValueError(f"{what} {value[:80]!r} of broker user {self.name!r} is not a topic-safe id")
        if self.station_client_id is not None and not USER_ID_PATTERN.fullmatch(self.station_client_id):
            raise ValueError(f"station client id {self.station_client_id[:80]!r} is not a topic-safe id")

    def grants(self, topics: Topics) -> list[str]:
        """This user's own ACL lines (``topic read|write …``), beyond the patterns every user gets."""
        lines: list[str] = []
        if self.agent_id is not None:
            lines += _agent_grants(topics, self.agent_id)
        if self.station_client_id is not None:
            lines += _station_grants(topics, self.station_client_id)
        if self.patient_id is not None:
            lines.append(f"topic write {topics.wave(self.patient_id)}")
        if self.gateway:
            lines.append(f"topic write {topics.wave_subscription}")
        return list(dict.fromkeys(lines))  # one line per grant, in order, when roles overlap


def _agent_grants(topics: Topics, agent_id: str) -> list[str]:
    """Reads waves and nurses' requests; writes every patient's status, forecast, alerts and mute state, and only
    its own presence and counters, so no other identity can say that this agent is online."""
    return [
        f"topic read {topics.wave_subscription}",
        f"topic read {topics.ack_subscription}",
        f"topic read {topics.mute_subscription}",
        f"topic write {topics.status('+')}",
        f"topic write {topics.forecast('+')}",
        f"topic write {topics.alert('+')}",
        f"topic write {topics.alert_muted('+')}",
        f"topic write {topics.presence(agent_id)}",
        f"topic write {topics.agent_status(agent_id)}",
    ]


def _station_grants(topics: Topics, client_id: str) -> list[str]:
    """Reads strips; writes acks and mutes on any user's topic: the one identity trusted to relay for the users
    it authenticated (it names the user from the signed-in web session, never from the page)."""
    return [
        f"topic read {topics.wave_subscription}",
        f"topic write {topics.alert_ack('+', '+')}",
        f"topic write {topics.alert_mute('+', '+')}",
        f"topic write {topics.station_presence(client_id)}",
    ]


def _everyone(topics: Topics) -> list[str]:
    """Every signed-in identity reads the agents' outputs and presence, and writes requests under its own name."""
    return [
        f"pattern read {topics.status('+')}",
        f"pattern read {topics.forecast('+')}",
        f"pattern read {topics.alert('+')}",
        f"pattern read {topics.alert_muted('+')}",
        f"pattern read {topics.presence('+')}",
        f"pattern read {topics.agent_status('+')}",
        f"pattern write {topics.alert_ack('+', '%u')}",
        f"pattern write {topics.alert_mute('+', '%u')}",
    ]


def acl_text(prefix: str, users: Iterable[BrokerUser]) -> str:
    """mosquitto's ACL file for ``users`` under topic ``prefix``: the patterns every user gets, then one block per
    user that holds a role."""
    topics = Topics(prefix)
    blocks = [
        "# Every signed-in user: read the agents' outputs; acknowledge and mute as itself only.",
        *_everyone(topics),
    ]
    for user in users:
        grants = user.grants(topics)
        if grants:
            blocks += ["", f"# {_roles(user)}", f"user {user.name}", *grants]
    return ACL_HEADER + "\n" + "\n".join(blocks) + "\n"


def _roles(user: BrokerUser) -> str:
    roles = [
        f"agent {user.agent_id}" if user.agent_id else "",
        f"station relay ({user.station_client_id})" if user.station_client_id else "",
        f"monitor of {user.patient_id}" if user.patient_id else "",
        "wave gateway" if user.gateway else "",
    ]
    return ", ".join(role for role in roles if role)


def example_users() -> Sequence[BrokerUser]:
    """The identities of ``config/mosquitto/ecgcast.acl`` (a test keeps the shipped file equal to this)."""
    return (
        BrokerUser("agent-1", "", agent_id="agent-1", station_client_id="ecgcast-station"),
        BrokerUser("monitor-bed-12", "", patient_id="bed-12"),
        BrokerUser("ward7-gateway", "", gateway=True),
    )
