"""The MQTT5 link to IoT Core (mTLS) or a local Mosquitto (plain TCP): the only awsiotsdk user.

awscrt reconnects by itself with jittered exponential backoff; we resubscribe on every connection
and keep our own bounded queue of outgoing messages while offline (awscrt's queue is unbounded),
dropping the oldest when it is full and flushing in order once connected again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, Protocol

from awscrt import mqtt5
from awsiot import mqtt5_client_builder

from .config import MqttConfig, Transport
from .errors import ConfigError

log = logging.getLogger(__name__)

OnMessage = Callable[[bytes], None]
# Called after each connection is subscribed and its queue flushed, with how many there have been (1 first).
OnConnected = Callable[[int], None]
_ACK_TIMEOUT_S: Final = 10


class Link(Protocol):
    """What the agent needs from a message transport."""

    def start(self, on_message: OnMessage, on_connected: OnConnected | None = None) -> None:
        """Connect (in the background) and deliver each ``cmd`` payload to ``on_message``; tell
        ``on_connected`` of every connection (the session is clean: a reconnect lost what came meanwhile)."""
        ...

    def send(self, payload: bytes) -> None:
        """Publish on the ``evt`` topic, or queue it while offline."""
        ...

    def stop(self) -> None:
        """Flush what can be flushed and disconnect."""
        ...


class MqttLink:
    """Link over awscrt's MQTT5 client, QoS 1 both ways."""

    def __init__(self, cfg: MqttConfig, *, sub_topic: str, pub_topic: str) -> None:
        self._cfg = cfg
        self._sub_topic = sub_topic
        self._pub_topic = pub_topic
        self._queue: deque[bytes] = deque(maxlen=cfg.offline_queue)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopped = threading.Event()
        self._on_message: OnMessage | None = None
        self._on_connected_cb: OnConnected | None = None
        self.connections = 0
        self._client: Any = None
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, on_message: OnMessage, on_connected: OnConnected | None = None) -> None:
        self._on_message = on_message
        self._on_connected_cb = on_connected
        self._client = self._build()
        self._client.start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until subscribed on the ``cmd`` topic (tests, start-up)."""
        return self._connected.wait(timeout)

    def send(self, payload: bytes) -> None:
        with self._lock:
            if not self._connected.is_set():
                if len(self._queue) == self._queue.maxlen:
                    self.dropped += 1
                self._queue.append(payload)
                return
        self._publish(payload)

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Wait (bounded) for in-flight publishes, e.g. the reply to ``shutdown``, then disconnect."""
        if self._client is None:
            return
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, flush_timeout)
        self._connected.clear()
        self._client.stop()
        self._stopped.wait(5)
        self._client = None

    def publish_to(self, topic: str, payload: bytes) -> int:
        """Publish to any topic and return the PUBACK reason code (tests prove the ACL with it)."""
        packet = mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        fut = self._client.publish(packet)
        result = fut.result(_ACK_TIMEOUT_S)
        return int(result.puback.reason_code)

    def subscribe_to(self, topic: str) -> int:
        """Subscribe to any topic and return the SUBACK reason code."""
        return self._subscribe(topic).result(_ACK_TIMEOUT_S)

    def _subscribe(self, topic: str) -> Future[int]:
        packet = mqtt5.SubscribePacket(subscriptions=[mqtt5.Subscription(topic, mqtt5.QoS.AT_LEAST_ONCE)])
        out: Future[int] = Future()

        def done(fut: Future[Any]) -> None:
            try:
                out.set_result(int(fut.result().reason_codes[0]))
            except Exception as exc:
                out.set_exception(exc)

        self._client.subscribe(packet).add_done_callback(done)
        return out

    def _publish(self, payload: bytes) -> None:
        packet = mqtt5.PublishPacket(topic=self._pub_topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)

        def done(fut: Future[Any]) -> None:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
            try:
                code = int(fut.result().puback.reason_code)
            except Exception as exc:
                # Usually a disconnect failed it: queue it again (or resend, if we are back already).
                log.warning("publish failed (%s); sending it again", exc)
                if self._client is not None:
                    self.send(payload)
                return
            if code >= 0x80:
                log.error("broker refused publish on %s: reason %d", self._pub_topic, code)

        client = self._client
        if client is None:
            return
        with self._lock:
            self._in_flight += 1
        client.publish(packet).add_done_callback(done)

    def _on_connected(self, _data: Any) -> None:
        def subscribed(fut: Future[int]) -> None:
            try:
                code = fut.result()
            except Exception as exc:
                log.error("subscribe to %s failed: %s", self._sub_topic, exc)
                return
            if code >= 0x80:
                log.error("broker refused subscription to %s: reason %d", self._sub_topic, code)
                return
            with self._lock:
                pending = list(self._queue)
                self._queue.clear()
                self._connected.set()
                self.connections += 1
                count = self.connections
            for payload in pending:
                self._publish(payload)
            log.info("connected; %d queued message(s) flushed", len(pending))
            if self._on_connected_cb is not None:
                try:
                    self._on_connected_cb(count)
                except Exception:
                    log.exception("connection callback failed")

        self._subscribe(self._sub_topic).add_done_callback(subscribed)

    def _on_disconnected(self, data: Any) -> None:
        self._connected.clear()
        log.warning("disconnected: %s", getattr(data, "exception", None))

    def _on_publish(self, data: Any) -> None:
        if self._on_message is not None:
            self._on_message(bytes(data.publish_packet.payload or b""))

    def _build(self) -> Any:
        cfg = self._cfg
        common: dict[str, Any] = {
            "offline_queue_behavior": mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            "min_reconnect_delay_ms": int(cfg.min_reconnect_s * 1000),
            "max_reconnect_delay_ms": int(cfg.max_reconnect_s * 1000),
            "retry_jitter_mode": mqtt5.ExponentialBackoffJitterMode.FULL,
            "session_behavior": mqtt5.ClientSessionBehaviorType.CLEAN,
        }
        callbacks: dict[str, Any] = {
            "on_publish_received": self._on_publish,
            "on_lifecycle_connection_success": self._on_connected,
            "on_lifecycle_disconnection": self._on_disconnected,
            "on_lifecycle_stopped": lambda _d: self._stopped.set(),
        }
        if cfg.transport is Transport.MTLS:
            if cfg.cert is None or cfg.key is None or cfg.ca is None:
                raise ConfigError("mtls needs cert, key and ca")
            return mqtt5_client_builder.mtls_from_path(
                endpoint=cfg.endpoint, port=cfg.port, cert_filepath=str(cfg.cert),
                pri_key_filepath=str(cfg.key), ca_filepath=str(cfg.ca), client_id=cfg.client_id,
                **common, **callbacks,
            )
        options = mqtt5.ClientOptions(
            host_name=cfg.endpoint, port=cfg.port,
            connect_options=mqtt5.ConnectPacket(client_id=cfg.client_id),
            on_publish_callback_fn=callbacks["on_publish_received"],
            on_lifecycle_event_connection_success_fn=callbacks["on_lifecycle_connection_success"],
            on_lifecycle_event_disconnection_fn=callbacks["on_lifecycle_disconnection"],
            on_lifecycle_event_stopped_fn=callbacks["on_lifecycle_stopped"],
            offline_queue_behavior=common["offline_queue_behavior"],
            min_reconnect_delay_ms=common["min_reconnect_delay_ms"],
            max_reconnect_delay_ms=common["max_reconnect_delay_ms"],
            retry_jitter_mode=common["retry_jitter_mode"],
            session_behavior=common["session_behavior"],
        )
        return mqtt5.Client(options)
