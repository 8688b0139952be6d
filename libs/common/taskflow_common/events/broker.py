"""Connecting to RabbitMQ: the parameters every TaskFlow connection uses."""

from __future__ import annotations

import pika
from pika.exceptions import AMQPChannelError, AMQPConnectionError, ChannelClosed, ConnectionClosed, StreamLostError

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
