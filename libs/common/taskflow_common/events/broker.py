"""Connecting to RabbitMQ: the parameters every TaskFlow connection uses, and a header decoder
that survives what any client may publish."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pika
import pika.data
from pika.exceptions import AMQPChannelError, AMQPConnectionError, ChannelClosed, ConnectionClosed, StreamLostError

_decode_value = pika.data.decode_value


def _tolerant_decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
    """pika's ``decode_value``, but an AMQP timestamp (``T``, seconds since the epoch, a 64-bit
    unsigned integer) out of ``datetime``'s range decodes as its integer instead of raising
    ``OSError``/``OverflowError`` inside frame decoding, which would end the connection on every
    delivery of such a message (any client can publish one; RabbitMQ passes it through)."""
    if encoded[offset:offset + 1] == b"T":
        seconds = struct.unpack_from(">Q", encoded, offset + 1)[0]
        try:
            return datetime.fromtimestamp(seconds, UTC), offset + 9
        except (OverflowError, OSError, ValueError):
            return seconds, offset + 9
    return _decode_value(encoded, offset)


pika.data.decode_value = _tolerant_decode_value  # decode_table and decode_value itself look it up here

# Everything that means "this connection or channel is gone; reconnect and try again".
CONNECTION_ERRORS = (AMQPConnectionError, AMQPChannelError, ConnectionClosed, ChannelClosed, StreamLostError, OSError)


def parameters(url: str, *, timeout_seconds: float = 5.0, heartbeat_seconds: int | None = None) -> pika.URLParameters:
    """Connection parameters for ``url`` (an AMQP URL; ``?heartbeat=N`` in it is honoured).

    One connection attempt, bounded by ``timeout_seconds``; callers own their retry policy.
    """
    result = pika.URLParameters(url)
    result.connection_attempts = 1
    result.socket_timeout = timeout_seconds
    result.stack_timeout = timeout_seconds
    result.blocked_connection_timeout = timeout_seconds * 6
    if heartbeat_seconds is not None:
        result.heartbeat = heartbeat_seconds
    return result


def connect(url: str, *, timeout_seconds: float = 5.0, heartbeat_seconds: int | None = None) -> pika.BlockingConnection:
    """A blocking connection; raises one of :data:`CONNECTION_ERRORS` when the broker does not answer.

    pika's BlockingConnection is not thread-safe: use one per thread.
    """
    return pika.BlockingConnection(parameters(url, timeout_seconds=timeout_seconds, heartbeat_seconds=heartbeat_seconds))
