"""The station as one resource: state, MQTT feed, push hub and web server, started and stopped together."""

from __future__ import annotations

from types import TracebackType

from agent.hospital.settings import HospitalSettings
from agent.station._feed import PushHub, StationFeed
from agent.station._http import StationHttp
from agent.station._state import AlertSource, StationState
from agent.station.settings import StationSettings
from core.errors import LifecycleError
from core.protocol import PayloadLimits, Topics
from core.settings import MqttSettings

__all__ = ["StationServer"]


class StationServer:
    """``with StationServer(...) as station: station.url``. Binding happens in the constructor, so a taken port
    fails at start-up of the agent, not later."""

    def __init__(
        self,
        settings: StationSettings,
        mqtt: MqttSettings,
        topics: Topics,
        limits: PayloadLimits | None = None,
        source: AlertSource | None = None,
        hospital: HospitalSettings | None = None,
    ) -> None:
        """``hospital``: who each patient is (MRN, bed) in the FHIR resources the station serves."""
        self.settings = settings
        self.state = StationState(settings, source)
        self.hub = PushHub()
        self.feed = StationFeed(settings, mqtt, topics, self.state, self.hub, limits or PayloadLimits())
        self.http = StationHttp(settings, self.state, self.hub, self.feed, hospital=hospital)
        self._started = False

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def port(self) -> int:
        return self.http.port

    def start(self) -> StationServer:
        if self._started:
            raise LifecycleError("StationServer.start() was already called; build a new one to restart")
        self._started = True
        self.http.start()
        self.feed.start()
        return self

    def close(self) -> None:
        """Web server first (pages see the stream end and show 'stale'), then the feed. Idempotent."""
        self.http.close()
        self.feed.stop()

    def __enter__(self) -> StationServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
