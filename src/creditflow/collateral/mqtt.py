"""MQTT over paho-mqtt 2 (MQTT 5), at the edge of the system.

`MqttIngest` subscribes with QoS 1 to ``$share/<group>/<prefix>/devices/+/telemetry``: several ingest
workers (processes or connections) in one share group split the stream, each message going to one of them.
Acknowledgement is manual: PUBACK is sent only after the pipeline committed the message (or rejected it
for good), so a worker that dies loses nothing: the broker redelivers what it had not acknowledged, and the
pipeline recognises a redelivery by (device, seq). The broker holds at most its in-flight window of
unacknowledged messages per connection; ``connections`` > 1 opens several connections in the group to
widen it. A full pipeline queue blocks the network thread: the broker buffers (back-pressure).
"""

from __future__ import annotations

import functools
import logging
import struct
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from creditflow.kernel.errors import DomainError, InvalidInput

log = logging.getLogger(__name__)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise InvalidInput("the broker URL must look like mqtt://host:1883", code="invalid_mqtt_url", field="mqtt_url")
    return parsed.hostname, parsed.port or 1883


def telemetry_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/devices/{device_id}/telemetry"


def device_from_topic(prefix: str, topic: str) -> str | None:
    head = f"{prefix}/devices/"
    if not topic.startswith(head) or not topic.endswith("/telemetry"):
        return None
    device = topic[len(head) : -len("/telemetry")]
    return device if device and "/" not in device else None


def _client(client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )


def _connect(
    client: mqtt.Client, url: str, keepalive_s: int, properties: Properties | None = None, clean_start: bool = True
) -> None:
    host, port = parse_mqtt_url(url)
    connected = threading.Event()
    failure: list[str] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            failure.append(str(reason))
        connected.set()

    previous = client.on_connect
    client.on_connect = on_connect
    client.connect(host, port, keepalive=keepalive_s, clean_start=clean_start, properties=properties)
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        raise ConnectionError(f"no CONNACK from {host}:{port}")
    if failure:
        client.loop_stop()
        raise ConnectionError(f"broker refused the connection: {failure[0]}")
    client.on_connect = previous


_PUBACK = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id: reason "success" left implicit


class _Acks:
    """The PUBACKs one connection owes, sent together once per committed batch.

    paho's `Client.ack` queues every PUBACK as its own packet: a wake-up of the network thread (a write on its
    socket pair, and the GIL handed over and back) and one send() per message, which at a few thousand
    messages a second cost the writer thread more than storing the message did. Here the PUBACKs of a batch
    are written as one buffer: the same bytes on the wire, one wake-up and one send(). That uses paho's
    internal packet queue (``Client._packet_queue``, paho-mqtt 2.x, pinned in constraints.txt); a paho without
    it gets the public `Client.ack`, one by one."""

    def __init__(self, client: mqtt.Client):
        self._client = client
        self._mids: list[int] = []
        self._lock = threading.Lock()
        self._queue_packet = getattr(client, "_packet_queue", None)
        self.session = 0  # counts connections: a packet id is only meaningful within its own session
        self.flush_once = self.flush  # one bound method for every message (the pipeline calls it once per batch)

    def new_session(self) -> None:
        """After a (re)connect with a clean start the broker redelivers what was not acknowledged, under new
        packet ids; an acknowledgement still owed for the old session could hit another message now."""
        with self._lock:
            self.session += 1
            self._mids = []

    def owe(self, session: int, mid: int, _outcome: Any = None) -> None:
        with self._lock:
            if session == self.session:
                self._mids.append(mid)

    def flush(self) -> None:
        with self._lock:
            mids, self._mids = self._mids, []
        if not mids:
            return
        if self._queue_packet is None:
            for mid in mids:
                self._client.ack(mid, 1)
            return
        self._queue_packet(PUBACK, b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in mids), 0, 0)


class MqttIngest:
    """Feed the pipeline from the broker. ``submit(raw, topic_device_id=..., on_done=..., after_batch=...)`` is
    the pipeline's ``offer`` (or ``submit``): ``on_done`` runs per message after its commit, ``after_batch``
    once per committed batch."""

    def __init__(
        self,
        url: str,
        submit: Callable[..., Any],
        *,
        prefix: str,
        group: str,
        receive_max: int = 8_000,
        keepalive_s: int = 30,
        connections: int = 1,
        client_id: str | None = None,
    ):
        self._url = url
        self._submit = submit
        self._prefix = prefix
        self._filter = f"$share/{group}/{prefix}/devices/+/telemetry"
        self._receive_max = receive_max
        self._keepalive_s = keepalive_s
        self._base_id = client_id or f"creditflow-ingest-{uuid.uuid4().hex[:8]}"
        self._clients: list[mqtt.Client] = [
            _client(f"{self._base_id}-{i}", manual_ack=True) for i in range(max(1, connections))
        ]
        self._acks = {id(client): _Acks(client) for client in self._clients}
        self.received = 0
        self.submit_errors = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for client in self._clients:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.ReceiveMaximum = self._receive_max
            client.on_message = self._on_message
            client.on_connect = self._on_connect
            subscribed = threading.Event()
            client.on_subscribe = lambda *_a, _done=subscribed: _done.set()
            _connect(client, self._url, self._keepalive_s, props)
            client.subscribe(self._filter, qos=1)
            if not subscribed.wait(10):
                raise ConnectionError("no SUBACK from the broker")

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:  # a reconnect: subscribe again
            self._acks[id(client)].new_session()
            client.subscribe(self._filter, qos=1)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received += 1
        device_id = device_from_topic(self._prefix, message.topic)
        acks = self._acks[id(client)]
        owed = functools.partial(acks.owe, acks.session, message.mid) if message.qos == 1 else None  # QoS 0: no ack
        try:
            self._submit(
                bytes(message.payload),
                topic_device_id=device_id,
                source="mqtt",
                on_done=owed,
                after_batch=acks.flush_once if owed else None,
            )
        except DomainError as exc:  # overloaded or closing: leave it unacknowledged, the broker redelivers
            with self._lock:
                self.submit_errors += 1
            log.warning("telemetry not taken (%s); left for redelivery", exc.code)

    def stop(self) -> None:
        for client in self._clients:
            client.disconnect()
            client.loop_stop()


class MqttPublisher:
    """A device-side publisher (simulator, benchmark, tests): QoS 1, waits for the broker's PUBACKs."""

    def __init__(self, url: str, *, client_id: str | None = None, max_inflight: int = 1000, keepalive_s: int = 30):
        self._client = _client(client_id or f"creditflow-pub-{uuid.uuid4().hex[:8]}")
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._cond = threading.Condition()
        self.sent = 0  # QoS 1 publishes handed to the client
        self.acked = 0  # ... acknowledged by the broker
        self._client.on_publish = self._on_publish
        _connect(self._client, url, keepalive_s)

    def _on_publish(self, _c: Any, _u: Any, _mid: int, _reason: Any, _props: Any) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        # Never hold our lock across paho's publish: its network thread takes paho's lock, then ours.
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
        if qos:
            with self._cond:
                self.sent += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.acked < self.sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.sent - self.acked} publishes not acknowledged by the broker")
                self._cond.wait(left)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class BareCounter:
    """The bound: a bare subscriber on the same broker that only counts (auto-ack, no parsing, no storage).
    With ``connections`` > 1 it subscribes like the ingest does: that many connections in one share group."""

    def __init__(self, url: str, topic_filter: str, *, keepalive_s: int = 30, connections: int = 1):
        tag = uuid.uuid4().hex[:8]
        if connections > 1:
            topic_filter = f"$share/bare-{tag}/{topic_filter}"
        self._clients = [_client(f"creditflow-bare-{tag}-{i}") for i in range(connections)]
        self.count = 0
        self.first_s: float | None = None
        self.last_s: float | None = None
        self._lock = threading.Lock()
        for client in self._clients:
            client.on_message = self._on_message
            _connect(client, url, keepalive_s)
            done = threading.Event()
            client.on_subscribe = lambda *_a, _done=done: _done.set()
            client.subscribe(topic_filter, qos=1)
            if not done.wait(10):
                raise ConnectionError("no SUBACK from the broker")

    def _on_message(self, _c: Any, _u: Any, _m: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        with self._lock:
            self.count += 1
            if self.first_s is None:
                self.first_s = now
            self.last_s = now

    def close(self) -> None:
        for client in self._clients:
            client.disconnect()
            client.loop_stop()
