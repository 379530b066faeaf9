"""The IoT rule's stand-in: every message agents publish on `gangway/+/+/evt` goes to the agent-intake
queue as `{...envelope, "topic": <topic>}`, as `SELECT *, topic() AS topic FROM 'gangway/+/+/evt'` does
(agent_intake then moves it to the fair agent-events queue by tenant).

The rule is not a validator: it forwards anything that is a JSON object and skips the rest (AWS would
hand a non-JSON payload to the rule's error action). The agent_events handler does the checking.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from typing import Any, Final

__all__ = ["MAX_IOT_PAYLOAD_BYTES", "MqttBridge", "rule_message"]

log = logging.getLogger("gangway.bridge")

EVT_TOPICS: Final = "gangway/+/+/evt"
# IoT Core refuses larger publishes; the bridge drops them the same way.
MAX_IOT_PAYLOAD_BYTES: Final = 128 * 1024


def rule_message(topic: str, payload: bytes) -> str | None:
    """The queue message the IoT rule would send for one publish, or None when it would send none."""
    if len(payload) > MAX_IOT_PAYLOAD_BYTES:
        log.warning("bridge: %d-byte message on %s is over IoT Core's limit; dropped", len(payload), topic)
        return None
    try:
        envelope = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        log.warning("bridge: message on %s is not JSON; skipped", topic)
        return None
    if not isinstance(envelope, dict):
        log.warning("bridge: message on %s is not a JSON object; skipped", topic)
        return None
    # topic() is computed by the broker: an agent cannot choose it by putting "topic" in its payload.
    return json.dumps({**envelope, "topic": topic}, separators=(",", ":"))


class MqttBridge:
    """A paho-mqtt client on the stack's broker that forwards agent events to SQS.

    Its session is persistent (clean_start off), so events published while it reconnects are kept by the
    broker and delivered afterwards, as IoT Core's rules engine never misses a publish.
    """

    def __init__(
        self, mqtt_url: str, sqs: Any, queue_url: str, *, client_id: str = "gangway-local-bridge"
    ) -> None:
        parsed = urllib.parse.urlsplit(mqtt_url)
        if parsed.scheme != "mqtt" or not parsed.hostname:
            raise ValueError(f"not an mqtt:// URL: {mqtt_url!r}")
        self._host, self._port = parsed.hostname, parsed.port or 1883
        self._sqs, self._queue_url = sqs, queue_url
        self._client_id = client_id
        self._subscribed = threading.Event()
        self._client: Any = None
        self.forwarded = 0

    def start(self, timeout: float = 10.0) -> MqttBridge:
        """Connect and subscribe; waits up to `timeout` for the subscription so no `ready` is missed."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv5)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
        props.SessionExpiryInterval = 3600
        client.connect_async(self._host, self._port, keepalive=30, clean_start=False, properties=props)
        client.loop_start()  # retries the first connection too: Mosquitto may still be starting
        self._client = client
        if not self._subscribed.wait(timeout):
            log.warning("bridge: not subscribed to %s after %.0f s; still trying", EVT_TOPICS, timeout)
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("bridge: broker refused the connection: %s", reason)
            return
        client.subscribe(EVT_TOPICS, qos=1)  # again on every connection

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        body = rule_message(str(msg.topic), bytes(msg.payload))
        if body is None:
            return
        try:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body)
            self.forwarded += 1
        except Exception:  # the emulator stopping, a throttle: the IoT rule's error action would log it
            log.exception("bridge: could not send the event from %s to its queue", msg.topic)
