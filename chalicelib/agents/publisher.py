"""Publishing requests to agents: AWS IoT Core's data API in AWS, a real MQTT broker locally.

wiring.py picks one from Settings (DESIGN.md §2 "same code locally and in AWS": only the transport
differs). Both publish with QoS 1 to `gangway/{tenant}/{game}/cmd`.
"""

from __future__ import annotations

import logging
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chalicelib.errors import InfraError

if TYPE_CHECKING:
    from mypy_boto3_iot_data import IoTDataPlaneClient

__all__ = ["IotDataPublisher", "MqttPublisher", "Outgoing", "Publisher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One message for one topic."""

    topic: str
    payload: bytes


class Publisher(Protocol):
    """Sends messages to agents; raises InfraError when the transport fails."""

    def publish(self, messages: Sequence[Outgoing]) -> None: ...


class IotDataPublisher:
    """AWS IoT Core through the `iot-data` Publish API (the api and jobs Lambdas' role allows it)."""

    def __init__(self, client: IoTDataPlaneClient) -> None:
        self._client = client

    def publish(self, messages: Sequence[Outgoing]) -> None:
        for m in messages:
            try:
                self._client.publish(topic=m.topic, qos=1, payload=m.payload)
            except Exception as exc:  # botocore ClientError, endpoint or network failure
                raise InfraError(f"IoT publish to {m.topic} failed: {exc}") from exc


class MqttPublisher:
    """A broker at `mqtt://host:port` (the local stack's Mosquitto): one short connection per batch.

    paho-mqtt is a development dependency and is imported only here, so it never loads in Lambda.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "mqtt" or not parsed.hostname:
            raise ValueError(f"not an mqtt:// URL: {url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 1883
        self._timeout = timeout

    def publish(self, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"gangway-backend-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        try:
            client.connect(self.host, self.port, keepalive=30)
            client.loop_start()
            infos = [client.publish(m.topic, m.payload, qos=1) for m in messages]
            for info in infos:
                info.wait_for_publish(timeout=self._timeout)
                if not info.is_published():
                    raise InfraError(f"the broker did not acknowledge a publish within {self._timeout} s")
        except (OSError, RuntimeError, ValueError) as exc:
            raise InfraError(f"MQTT publish to {self.host}:{self.port} failed: {exc}") from exc
        finally:
            client.disconnect()
            client.loop_stop()
