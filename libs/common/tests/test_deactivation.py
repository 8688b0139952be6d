"""The deactivated-users policy and its handlers (DESIGN §4: a deactivated user's still-valid
tokens are refused by every service)."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from taskflow_common.deactivation import COLLECTION, DeactivatedUsers
from taskflow_common.events.envelope import Event
from taskflow_common.tokens import Principal

from tests.support.infra import Infra


@pytest.fixture
def db(infra: Infra) -> Iterator[Database]:
    client = MongoClient(infra.mongodb_uri, tz_aware=True)
    database = client[f"deactivation_{uuid.uuid4().hex[:10]}"]
    yield database
    client.drop_database(database.name)
    client.close()


def status_event(user_id: str, version: int, active: bool) -> Event:
    return Event(
        id=str(uuid.uuid4()),
        type="user.activated" if active else "user.deactivated",
        source="taskflow/auth",
        subject=user_id,
        time=datetime.now(UTC),
        data={"id": user_id, "active": active, "version": version},
    )


def handle(users: DeactivatedUsers, event: Event) -> None:
    users.handlers[event.type](event)


def test_a_deactivated_user_is_refused_and_an_activated_one_allowed_again(db: Database) -> None:
    users = DeactivatedUsers(lambda: db, refresh_seconds=0)
    principal = Principal(user_id="u1", role="user", token_id="t")
    assert users.allows(principal)
    handle(users, status_event("u1", 2, active=False))
    assert not users.allows(principal)
    handle(users, status_event("u1", 3, active=True))
    assert users.allows(principal)


def test_an_older_event_arriving_late_changes_nothing(db: Database) -> None:
    users = DeactivatedUsers(lambda: db, refresh_seconds=0)
    handle(users, status_event("u1", 5, active=False))
    handle(users, status_event("u1", 4, active=True))
    handle(users, status_event("u1", 5, active=False))  # redelivered
    assert not users.allows(Principal(user_id="u1", role="user", token_id="t"))


def test_concurrent_events_of_one_user_leave_the_newest_state(db: Database) -> None:
    """Consumers in several worker replicas may handle one user's events at the same moment; on
    FerretDB a conditional update is no compare-and-swap, so without the user's lock an older
    state can overwrite a newer one."""
    users = DeactivatedUsers(lambda: db, refresh_seconds=0)
    rng = random.Random(7)
    for round_ in range(6):
        user_id = f"user-{round_}"
        events = [status_event(user_id, version, active=version % 2 == 1) for version in range(2, 10)]
        rng.shuffle(events)
        barrier = threading.Barrier(len(events))

        def apply(event: Event, barrier: threading.Barrier) -> None:
            barrier.wait()
            handle(users, event)

        threads = [threading.Thread(target=apply, args=(event, barrier)) for event in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert db[COLLECTION].find_one({"_id": user_id}) == {"_id": user_id, "deactivated": False, "version": 9}
