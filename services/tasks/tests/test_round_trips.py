"""Each write of a task costs a fixed, small number of database round trips, its events included
(issue 19: ``POST /tasks`` in at most three), also when writes of one owner run at once in one
process: they take turns there (``CountStore.turn``) instead of polling the database."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from taskflow_common.events.outbox import Outbox, OutboxStore
from taskflow_common.events.plumbing import ServiceEvents
from taskflow_common.mongo import Mongo
from taskflow_tasks.events import TaskEvents
from taskflow_tasks.schemas import TaskCreate
from taskflow_tasks.store import TASKS, CountStore, TaskStore
from taskflow_tasks.tasks import Tasks

from tests.support.commands import Commands
from tests.support.infra import Infra


@pytest.fixture
def counted(infra: Infra) -> Iterator[tuple[Tasks, Commands]]:
    """The tasks domain on a database of its own, every command to it recorded; no dispatcher
    (the hand-off publishes after the request, off its path)."""
    name = f"rt_{uuid.uuid4().hex[:10]}"
    commands = Commands(name)
    client: MongoClient = MongoClient(infra.mongodb_uri, tz_aware=True, event_listeners=[commands])
    database = client[name]
    mongo = Mongo(infra.mongodb_uri, name, app_name="round-trips")
    events = ServiceEvents("tasks", infra.rabbitmq_url, mongo, [TASKS])  # builds events; publishes nothing
    tasks = Tasks(TaskStore(lambda: database, Outbox(OutboxStore(lambda: database, [TASKS]))),
                  CountStore(lambda: database), TaskEvents(events))
    yield tasks, commands
    client.drop_database(name)
    client.close()
    mongo.close()


def test_each_write_makes_a_fixed_number_of_round_trips(counted: tuple[Tasks, Commands]) -> None:
    tasks, commands = counted
    tasks.create("owner", TaskCreate(title="the owner's first"))

    def trips(write: Any) -> list[tuple[str, Any]]:
        commands.sent.clear()
        write()
        return commands.calls()

    created: dict[str, Any] = {}
    assert trips(lambda: created.update(tasks.create("owner", TaskCreate(title="second")))) == [
        ("findAndModify", "task_counts"),  # claim the counters, take the next seq
        ("insert", "tasks"),  # the task with its events
        ("update", "task_counts"),  # the counters
    ]
    task_id = str(created["_id"])
    assert trips(lambda: tasks.update("owner", task_id, {"title": "renamed"}, None)) == [
        ("find", "tasks"),  # the task as it is
        ("update", "tasks"),  # the change with its event: no counter changes
    ]
    assert trips(lambda: tasks.update("owner", task_id, {"status": "done"}, None)) == [
        ("find", "tasks"), ("findAndModify", "task_counts"), ("update", "tasks"), ("update", "task_counts"),
    ]
    assert trips(lambda: tasks.delete("owner", task_id, None)) == [
        ("find", "tasks"), ("findAndModify", "task_counts"), ("update", "tasks"), ("update", "task_counts"),
    ]


def test_concurrent_writes_of_one_owner_in_one_process_claim_one_after_another(counted: tuple[Tasks, Commands]) -> None:
    """8 threads of one process create 5 tasks each for one owner at once: they take turns in the
    process, so each create claims the counters once (no refused claim and its read, polled with
    back-off), and the counters stay exact."""
    tasks, commands = counted
    tasks.create("owner", TaskCreate(title="first"))
    commands.sent.clear()
    barrier = threading.Barrier(8)

    def create(writer: int) -> None:
        barrier.wait()
        for number in range(5):
            tasks.create("owner", TaskCreate(title=f"{writer}-{number}"))

    threads = [threading.Thread(target=create, args=(writer,)) for writer in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Counter(commands.calls()) == Counter({("findAndModify", "task_counts"): 40, ("insert", "tasks"): 40,
                                              ("update", "task_counts"): 40})
    counters = tasks.counts.get("owner")
    assert counters["pending"] is None and counters["total"] == 41 and counters["next_seq"] == 41


def test_a_change_stalled_past_its_lease_holds_up_no_later_change_of_the_owner(counted: tuple[Tasks, Commands]) -> None:
    """A create stalls in its task write (a hung connection) for 3 s, six leases. Once its lease
    has passed, the owner's next create settles its claim, and none of the 8 creates after it
    waits for the turn the stalled one still holds: all are done while it is still stalled."""
    tasks, _ = counted
    tasks.counts.lease = timedelta(seconds=0.5)
    tasks.create("owner", TaskCreate(title="first"))
    insert, stalled, woke = tasks.tasks.insert, threading.Event(), threading.Event()

    def stalling_insert(*args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "stalled" and not stalled.is_set():
            stalled.set()
            time.sleep(3.0)
            woke.set()
        insert(*args, **kwargs)

    tasks.tasks.insert = stalling_insert  # type: ignore[method-assign]
    holder = threading.Thread(name="stalled", target=lambda: tasks.create("owner", TaskCreate(title="stalled")))
    holder.start()
    stalled.wait(5)
    time.sleep(0.6)  # the stalled create's lease has passed
    for number in range(8):
        tasks.create("owner", TaskCreate(title=f"later {number}"))
    assert not woke.is_set()
    holder.join(10)
    counters = tasks.counts.get("owner")
    # the stalled insert was fenced off, and its request made the task again: 1 + 8 + 1
    assert counters["pending"] is None and counters["total"] == tasks.tasks.count({"owner_id": "owner"}) == 10


ENDED_WHILE_WAITING = """
import json
from gevent import monkey
monkey.patch_all()
import gevent
from taskflow_tasks.store import _Turns

turns = _Turns()

def holder():
    with turns.hold("owner", 5.0):
        gevent.sleep(0.3)

def impatient():
    with gevent.Timeout(0.1), turns.hold("owner", 5.0):
        pass

greenlets = [gevent.spawn(holder)]
gevent.sleep(0.01)
greenlets.append(gevent.spawn(impatient))
gevent.joinall(greenlets)
print(json.dumps({"ended_by": type(greenlets[1].exception).__name__, "turns_left": len(turns._turns)}))
"""


def test_a_request_ended_while_waiting_for_its_turn_leaves_no_turn_behind() -> None:
    """Under gevent (as gunicorn's workers run), a request greenlet ended by a timeout while it
    waits for the owner's turn: once the holder is done, the process keeps no turn for the owner."""
    done = subprocess.run([sys.executable, "-c", ENDED_WHILE_WAITING], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"ended_by": "Timeout", "turns_left": 0}
