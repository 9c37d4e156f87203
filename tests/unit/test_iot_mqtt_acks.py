"""The MQTT adapter's batched PUBACKs: the wire bytes of one PUBACK per message, one write per batch, and
nothing owed across a reconnect (packet ids restart with the new session)."""

from __future__ import annotations

from typing import Any

from paho.mqtt.client import PUBACK

from creditflow.collateral.mqtt import _Acks


class FakeClient:
    def __init__(self, internal_queue: bool = True):
        self.writes: list[bytes] = []
        self.acked: list[int] = []
        if internal_queue:
            self._packet_queue = self._queue

    def _queue(self, command: int, packet: bytes, mid: int, qos: int) -> None:
        assert command == PUBACK
        self.writes.append(packet)

    def ack(self, mid: int, qos: int) -> None:
        assert qos == 1
        self.acked.append(mid)


def test_a_batch_of_pubacks_is_one_write_of_standard_pubacks() -> None:
    client = FakeClient()
    acks = _Acks(client)  # type: ignore[arg-type]
    for mid in (1, 2, 300, 65535):
        acks.owe(acks.session, mid, None)
    acks.flush()
    acks.flush()  # nothing more owed: nothing written
    assert client.writes == [b"\x40\x02\x00\x01" + b"\x40\x02\x00\x02" + b"\x40\x02\x01\x2c" + b"\x40\x02\xff\xff"]


def test_acks_owed_to_a_previous_session_are_dropped() -> None:
    client = FakeClient()
    acks = _Acks(client)  # type: ignore[arg-type]
    old = acks.session
    acks.owe(old, 7, None)
    acks.new_session()  # reconnected: the broker redelivers 7 under a new id
    acks.owe(old, 8, None)  # a batch from before the reconnect completes now
    acks.owe(acks.session, 1, None)
    acks.flush()
    assert client.writes == [b"\x40\x02\x00\x01"]


def test_without_pahos_internal_queue_the_public_ack_is_used() -> None:
    client: Any = FakeClient(internal_queue=False)
    acks = _Acks(client)
    acks.owe(acks.session, 5, None)
    acks.owe(acks.session, 6, None)
    acks.flush()
    assert (client.writes, client.acked) == ([], [5, 6])
