"""The account-change policy and its handlers (DESIGN §4: a deactivated user's still-valid tokens,
and tokens issued before a role change, password change or logout-all, are refused by every
service)."""

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
from taskflow_common.problems import Forbidden
from taskflow_common.tokens import Principal, TokenRevoked

from tests.support.infra import Infra


@pytest.fixture
def db(infra: Infra) -> Iterator[Database]:
    client = MongoClient(infra.mongodb_uri, tz_aware=True)
    database = client[f"deactivation_{uuid.uuid4().hex[:10]}"]
    yield database
    client.drop_database(database.name)
    client.close()


def status_event(user_id: str, version: int, active: bool, *, type: str | None = None, generation: int = 0) -> Event:
    return Event(
        id=str(uuid.uuid4()),
        type=type or ("user.activated" if active else "user.deactivated"),
        source="taskflow/auth",
        subject=user_id,
        time=datetime.now(UTC),
        data={"id": user_id, "active": active, "version": version, "access_generation": generation},
    )


def handle(users: DeactivatedUsers, event: Event) -> None:
    users.handlers[event.type](event)


def refusal(users: DeactivatedUsers, principal: Principal) -> int | None:
    """The status the policy answers ``principal`` with (403, 401), or None when admitted."""
    try:
        users.admit(principal)
    except (Forbidden, TokenRevoked) as problem:
        return problem.status
    return None


def test_a_deactivated_user_is_refused_and_an_activated_one_allowed_again(db: Database) -> None:
    users = DeactivatedUsers(lambda: db, refresh_seconds=0)
    principal = Principal(user_id="u1", role="user", token_id="t", generation=1)
    assert refusal(users, principal) is None
    handle(users, status_event("u1", 2, active=False, generation=1))
    assert refusal(users, principal) == 403
    handle(users, status_event("u1", 3, active=True, generation=1))
    assert refusal(users, principal) is None


@pytest.mark.parametrize("change", ["user.role_changed", "user.password_changed", "user.sessions_revoked",
                                    "user.activated"])
def test_tokens_of_an_earlier_access_generation_are_refused_after_a_change(db: Database, change: str) -> None:
    """Every change that ends access tokens carries the account's new generation; tokens issued
    before it (a lower ``gen``) are refused with 401, tokens issued after it pass."""
    users = DeactivatedUsers(lambda: db, refresh_seconds=0)
    before, after = (Principal(user_id="u1", role="admin", token_id="t", generation=g) for g in (3, 4))
    handle(users, status_event("u1", 7, active=True, type=change, generation=4))
    assert refusal(users, before) == 401
    assert refusal(users, after) is None
    assert refusal(users, Principal(user_id="u2", role="user", token_id="t")) is None


def test_an_older_event_arriving_late_changes_nothing(db: Database) -> None:
    users = DeactivatedUsers(lambda: db, refresh_seconds=0)
    handle(users, status_event("u1", 5, active=False, generation=2))
    handle(users, status_event("u1", 4, active=True, generation=1))
    handle(users, status_event("u1", 5, active=False, generation=2))  # redelivered
    assert refusal(users, Principal(user_id="u1", role="user", token_id="t", generation=2)) == 403


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
        assert db[COLLECTION].find_one({"_id": user_id}) == {
            "_id": user_id, "deactivated": False, "access_generation": 0, "version": 9}
