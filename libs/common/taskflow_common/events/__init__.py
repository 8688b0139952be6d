"""Domain events: CloudEvents over RabbitMQ with an outbox, idempotent consumers, retries and
dead letters (DESIGN §5).

- :mod:`.envelope`: the CloudEvents 1.0 structured-JSON envelope, built and parsed by the SDK.
- :mod:`.topology`: the exchange, each consumer's quorum queue, its retry queues and its DLQ.
- :mod:`.publisher`: confirmed, persistent, mandatory publishing that reconnects.
- :mod:`.outbox`: events recorded atomically with the write, handed to a publisher afterwards.
- :mod:`.relay`: publishes whatever the hand-off missed (crash, broker outage), in any replica.
- :mod:`.consumer`: the consumer runner: dedupe, ack after the handler, retry, park.
- :mod:`.cli`: the operator tool for parked messages.
"""
