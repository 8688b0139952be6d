"""``POST /tasks`` with an ``Idempotency-Key`` creates its task once, however often it is sent
(issue 21: a create whose answer was lost, 502 from a killed instance, can be sent again, by the
client or by the gateway on another instance, without a second task)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database
from taskflow_tasks.idempotency import KEYS, fingerprint
from taskflow_tasks.schemas import TaskCreate
from taskflow_tasks.tasks import Tasks

from tests.support.events import EventProbe
from tests.support.infra import Infra

from .conftest import TASKS, User


def post(client: FlaskClient, user: User, body: dict[str, Any], key: str) -> Any:
    return client.post(TASKS, json=body, headers={**user.headers, "Idempotency-Key": key})


def total(client: FlaskClient, user: User) -> int:
    return client.get(f"{TASKS}/stats", headers=user.headers).json["total"]


def test_a_repeated_create_answers_the_same_task_and_creates_one(client: FlaskClient, alice: User) -> None:
    key = str(uuid.uuid4())
    first = post(client, alice, {"title": "once"}, key)
    again = post(client, alice, {"title": "once"}, f'"{key}"')  # as a structured-field string too
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"] and again.headers["ETag"] == first.headers["ETag"]
    assert client.get(TASKS, headers=alice.headers).json["total"] == 1 == total(client, alice)


def test_concurrent_tries_of_one_create_make_one_task_and_one_event(app: Flask, alice: User, infra: Infra) -> None:
    probe = EventProbe(infra.rabbitmq_url)
    key, tries = str(uuid.uuid4()), 4
    barrier = threading.Barrier(tries)
    answers: list[Any] = []

    def send() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(post(client, alice, {"title": "raced"}, key))

    threads = [threading.Thread(target=send) for _ in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert [answer.status_code for answer in answers] == [201] * tries
        [task_id] = {answer.json["id"] for answer in answers}
        probe.wait_for(lambda event: event["subject"] == task_id)
        time.sleep(1)  # a second task.created would have arrived by now
        created = probe.wait_for(lambda event: event["subject"] == task_id)
    finally:
        probe.close()
    assert [event["type"] for event in created] == ["task.created"]
    assert total(app.test_client(), alice) == 1


def test_a_try_whose_task_was_written_but_not_recorded_answers_that_task(
    client: FlaskClient, alice: User, db: Database
) -> None:
    """The first try died between the task's write and the key's ``created`` mark."""
    key = str(uuid.uuid4())
    first = post(client, alice, {"title": "written"}, key).json
    db[KEYS].update_one({"_id": f"{alice.id}:{key}"}, {"$unset": {"created": ""}})
    again = post(client, alice, {"title": "written"}, key)
    assert (again.status_code, again.json["id"]) == (201, first["id"])
    assert total(client, alice) == 1


def test_a_key_whose_id_was_fenced_off_creates_its_task_under_a_new_id(
    client: FlaskClient, alice: User, db: Database, domain: Tasks
) -> None:
    """The first try reserved an id, then stalled past its claim's lease and was fenced off: it
    never wrote the task, and never will; the next try creates it under a new id."""
    key, fenced = str(uuid.uuid4()), ObjectId()
    db[KEYS].insert_one({"_id": f"{alice.id}:{key}", "fingerprint": fingerprint(TaskCreate(title="fenced")),
                         "task_id": fenced, "created_at": domain.clock()})
    assert domain.tasks.fence_new(fenced, "stalled", domain.clock())
    again = post(client, alice, {"title": "fenced"}, key)
    assert again.status_code == 201 and again.json["id"] != str(fenced)
    assert db[KEYS].find_one({"_id": f"{alice.id}:{key}"})["task_id"] == ObjectId(again.json["id"])
    assert total(client, alice) == 1


def test_the_key_with_another_body_is_refused_and_changes_nothing(client: FlaskClient, alice: User) -> None:
    key = str(uuid.uuid4())
    post(client, alice, {"title": "first"}, key)
    other = post(client, alice, {"title": "second"}, key)
    assert other.status_code == 422 and other.mimetype == "application/problem+json"
    assert other.json["type"] == "urn:taskflow:problem:idempotency-key-reused"
    assert total(client, alice) == 1


def test_the_key_of_a_deleted_task_answers_409(client: FlaskClient, alice: User) -> None:
    key = str(uuid.uuid4())
    created = post(client, alice, {"title": "gone"}, key).json
    assert client.delete(f"{TASKS}/{created['id']}", headers=alice.headers).status_code == 204
    again = post(client, alice, {"title": "gone"}, key)
    assert again.status_code == 409 and "deleted" in again.json["detail"]
    assert total(client, alice) == 0


def test_keys_are_per_user(client: FlaskClient, alice: User, bob: User) -> None:
    key = str(uuid.uuid4())
    mine, theirs = post(client, alice, {"title": "same"}, key).json, post(client, bob, {"title": "same"}, key).json
    assert mine["id"] != theirs["id"] and total(client, alice) == total(client, bob) == 1


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "clé", "a b"])
def test_a_malformed_key_is_400_and_creates_nothing(client: FlaskClient, alice: User, key: str) -> None:
    answer = post(client, alice, {"title": "bad key"}, key)
    assert answer.status_code == 400 and "Idempotency-Key" in answer.json["detail"]
    assert total(client, alice) == 0
