"""Read models keep the newest snapshot whatever the order of arrival."""

from __future__ import annotations

import random
import threading

from pymongo.database import Database
from taskflow_common.deactivation import DeactivatedUsers
from taskflow_common.events.envelope import new_event
from taskflow_common.projections import apply_all_if_newer, apply_if_newer
from taskflow_common.problems import Forbidden
from taskflow_common.tokens import Principal


def test_an_older_snapshot_after_a_newer_one_changes_nothing(db: Database) -> None:
    assert apply_if_newer(db["users"], "u1", 3, {"name": "three"})
    assert not apply_if_newer(db["users"], "u1", 2, {"name": "two"})
    assert not apply_if_newer(db["users"], "u1", 3, {"name": "three again"})
    assert db["users"].find_one({"_id": "u1"}) == {"_id": "u1", "name": "three", "version": 3}


def test_concurrent_snapshots_leave_the_newest_and_each_is_stored_at_most_once(db: Database) -> None:
    barrier = threading.Barrier(8)
    stored: list[tuple[str, int]] = []

    def apply(worker: int) -> None:
        versions = list(range(1, 31))
        random.Random(worker).shuffle(versions)
        barrier.wait()
        for version in versions:
            for key in ("u1", "u2"):
                if apply_if_newer(db["users"], key, version, {"name": f"v{version}"}):
                    stored.append((key, version))

    threads = [threading.Thread(target=apply, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for key in ("u1", "u2"):
        assert db["users"].find_one({"_id": key}) == {"_id": key, "name": "v30", "version": 30}
    assert len(stored) == len(set(stored))  # two appliers of one snapshot: exactly one stored it


def test_a_page_of_snapshots_applied_at_once_keeps_the_newest_of_each_whatever_raced_it(db: Database) -> None:
    """The backfill's bulk form: new keys are inserted, older documents updated, newer ones left,
    also while single snapshots of the same keys are applied concurrently."""
    users = db["users"]
    apply_if_newer(users, "old", 1, {"name": "v1"})
    apply_if_newer(users, "new", 9, {"name": "v9"})
    barrier = threading.Barrier(5)

    def race(worker: int) -> None:
        barrier.wait()
        for key in ("a", "b", "c"):
            apply_if_newer(users, key, worker, {"name": f"v{worker}"})

    threads = [threading.Thread(target=race, args=(worker,)) for worker in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    barrier.wait()
    apply_all_if_newer(users, [(key, 3, {"name": "v3"}) for key in ("old", "new", "a", "b", "c", "fresh")])
    for thread in threads:
        thread.join(60)
    names = {document["_id"]: (document["name"], document["version"]) for document in users.find()}
    assert names == {"old": ("v3", 3), "new": ("v9", 9), "fresh": ("v3", 3),
                     "a": ("v4", 4), "b": ("v4", 4), "c": ("v4", 4)}


def test_a_page_with_a_snapshot_older_than_the_stored_one_changes_only_the_others(db: Database) -> None:
    apply_if_newer(db["users"], "kept", 5, {"name": "v5"})
    apply_all_if_newer(db["users"], [("kept", 2, {"name": "v2"}), ("added", 1, {"name": "v1"})])
    assert db["users"].find_one({"_id": "kept"}) == {"_id": "kept", "name": "v5", "version": 5}
    assert db["users"].find_one({"_id": "added"}) == {"_id": "added", "name": "v1", "version": 1}


def user_event(type: str, version: int, subject: str = "u1"):  # noqa: ANN201
    return new_event(type, service="auth", subject=subject,
                     data={"version": version, "active": type != "user.deactivated"})


def allowed(policy: DeactivatedUsers, principal: Principal) -> bool:
    try:
        policy.admit(principal)
    except Forbidden:
        return False
    return True


def test_deactivation_follows_the_newest_event_whatever_the_order(db: Database) -> None:
    policy = DeactivatedUsers(lambda: db, refresh_seconds=0)
    principal = Principal(user_id="u1", role="user", token_id="t")
    policy.handle(user_event("user.activated", 5))
    policy.handle(user_event("user.deactivated", 4))
    assert allowed(policy, principal)
    policy.handle(user_event("user.deactivated", 6))
    assert not allowed(policy, principal)
    assert allowed(policy, Principal(user_id="u2", role="user", token_id="t"))


def test_the_policy_reads_a_user_at_most_every_refresh_interval(db: Database) -> None:
    policy = DeactivatedUsers(lambda: db, refresh_seconds=3600)
    principal = Principal(user_id="u1", role="user", token_id="t")
    assert allowed(policy, principal)
    policy.handle(user_event("user.deactivated", 2))
    assert allowed(policy, principal)  # the copy read a moment ago is still fresh enough
    assert not allowed(DeactivatedUsers(lambda: db, refresh_seconds=0), principal)
