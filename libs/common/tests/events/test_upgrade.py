"""Upgrading past the release that keyed the consumer's records by queue, source and id (and its
parking records by body digest): records the earlier release wrote under ``<queue>:<event id>``
still count, so no event applied, retried or parked before the upgrade is applied again or parked
as forged after it. Each test imports deploy/rabbitmq/definitions.json into a vhost of its own."""

from __future__ import annotations

import hashlib
import io
import time
from datetime import UTC, datetime

import pika
import pytest
from pymongo.database import Database
from taskflow_common.events import cli
from taskflow_common.events.consumer import ATTEMPT_HEADER, ERROR_HEADER, PARKED, PROCESSED, RETRIED
from taskflow_common.events.publisher import Publisher

from tests.support.processes import wait_for

from .helpers import effects, queue_depth, record_effect
from .test_forgery import ADMIN_STATUS, accounts, consuming, deactivation, publishing_as  # noqa: F401 (a fixture)


@pytest.mark.parametrize("where", ["parked", "retrying"])
def test_a_genuine_event_the_previous_version_parked_or_retried_is_applied_after_the_upgrade(
    accounts, db: Database, background, where: str,
) -> None:
    """Upgrade path. Up to the fourth round (38754e3) the consumer keyed its records by
    ``<queue>:<event id>``: ``dead_letters`` (with ``trusted`` and ``body_sha256``) and
    ``retried_events``. Today's ``_vouched`` looks only for ``<queue>:<digest>`` and
    ``<queue>:<source>:<id>``, and no migration rewrites the old records: a genuine event parked
    before the deploy is parked again as forged on every requeue, and one waiting in a retry queue
    during the deploy is parked as forged when it comes back: either way never applied."""
    honest = deactivation("victim")
    body = honest.encode()
    old_key = f"{ADMIN_STATUS.queue}:{honest.id}"
    if where == "parked":  # what the previous consumer wrote when it parked it after its last attempt
        db[PARKED].insert_one({
            "_id": old_key, "queue": ADMIN_STATUS.queue, "event_id": honest.id, "source": honest.source,
            "type": honest.type, "error": "RuntimeError: the handler failed", "parked_at": datetime.now(UTC),
            "body_sha256": hashlib.sha256(body).hexdigest(), "trusted": True,
        })
        target, attempt = ADMIN_STATUS.dead_letter_queue, ADMIN_STATUS.max_attempts
    else:  # ... and when it sent it to its first retry queue, just before the deploy
        db[RETRIED].insert_one({"_id": old_key, "body_sha256": hashlib.sha256(body).hexdigest(),
                                "retried_at": datetime.now(UTC)})
        target, attempt = ADMIN_STATUS.retry_queue(1), 2
    with publishing_as(accounts("admin")) as channel:
        channel.basic_publish(ADMIN_STATUS.queues_exchange, target, body, pika.BasicProperties(
            message_id=honest.id, delivery_mode=2,
            headers={ATTEMPT_HEADER: attempt, ERROR_HEADER: "RuntimeError: the handler failed"}), mandatory=True)

    consuming(background, accounts("admin"), ADMIN_STATUS, {"user.deactivated": record_effect(db)}, db)  # the new version
    if where == "parked":
        out = io.StringIO()
        arguments = cli.parser().parse_args(["--url", accounts("admin"), "--queue", ADMIN_STATUS.queue, "requeue", honest.id])
        assert cli.run(arguments, out) == 0, out.getvalue()
    wait_for(lambda: honest.id in effects(db) or db[PARKED].count_documents({"error": {"$regex": "^forged"}}) > 0,
             timeout=20, what="the genuine event applied or parked again")
    assert effects(db) == [honest.id], [record["error"] for record in db[PARKED].find()]


def test_an_event_the_previous_version_applied_is_not_applied_again_after_the_upgrade(
    accounts, db: Database, background,
) -> None:
    """Upgrade path: ``processed_events`` was keyed ``<queue>:<event id>`` until 38754e3. An event
    applied just before the deploy and delivered again just after (the relay's at-least-once
    republish, a redelivery after the old worker was killed mid-ack) is applied a second time."""
    honest = deactivation("victim")
    db[PROCESSED].insert_one({"_id": f"{ADMIN_STATUS.queue}:{honest.id}", "type": honest.type,
                              "processed_at": datetime.now(UTC)})  # what the previous version recorded
    consuming(background, accounts("admin"), ADMIN_STATUS, {"user.deactivated": record_effect(db)}, db)
    auth = Publisher(accounts("auth"))
    auth.publish(honest)  # delivered again
    auth.close()
    wait_for(lambda: queue_depth(accounts("admin"), ADMIN_STATUS.queue) == 0, timeout=20, what="the redelivery consumed")
    time.sleep(2)
    assert effects(db) == []
