"""Due-date reminders from ``task.*`` events (DESIGN §4 notify): one per task and due date, moved
by re-dating, cancelled by completing or deleting, rescheduled by reopening, sent once by
competing scheduler replicas, and caught up after downtime unless stale.

Events go through the real broker to the real consumers. Where a test needs time to pass, it
runs the consumers alone and calls the scheduler with the moment it wants (``send_due(at)``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import MongoClient
from taskflow_notify import Notify
from taskflow_notify.notifications import notification_id
from taskflow_notify.reminders import SENDING_GRACE, Reminders
from taskflow_notify.store import ReminderStore, now

from tests.support.commands import Commands

from .conftest import Bus, SmtpServer, Workers, eventually, new_id, task_event, user_event

LEAD = timedelta(minutes=60)


def reminders(notify: Notify, task_id: str | None = None) -> list[dict]:
    query = {"kind": "reminder", **({"subject_id": task_id} if task_id else {})}
    return list(notify.mongo.db["notifications"].find(query).sort("created_at", 1))


def handled(notify: Notify, count: int) -> None:
    """Wait until the consumers have applied ``count`` events."""
    eventually(lambda: notify.mongo.db["processed_events"].count_documents({}) >= count, what=f"{count} events handled")


def reminder_key(task_id: str, due: datetime) -> str:
    return f"reminder:{task_id}:{due.isoformat(timespec='milliseconds')}"


def test_a_task_due_soon_gets_exactly_one_reminder_even_with_two_worker_replicas(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer
) -> None:
    replicas = [make_notify(smtp_url=smtp.url) for _ in range(2)]
    for replica in replicas:
        workers.start(replica)
    owner, task_id = new_id(), new_id()
    due = now() + timedelta(minutes=5)
    bus.publish(user_event("user.registered", owner, name="Grace"), task_event("task.created", task_id, owner, due=due, title="Ship it"))

    address = f"{owner}@example.com"
    eventually(lambda: any(m["Subject"] == "Reminder: Ship it" for m in smtp.catcher.to(address)), what="the reminder email")
    eventually(lambda: len(smtp.catcher.to(address)) == 2, what="welcome and reminder")
    notify = replicas[0]
    eventually(lambda: notify.mongo.db["reminders"].find_one({"_id": task_id})["reminder_outcome"] == "sent", what="settled")
    threading.Event().wait(1.5)  # several more scans by both schedulers and mailers: nothing more
    assert sorted(m["Subject"] for m in smtp.catcher.to(address)) == ["Reminder: Ship it", "Welcome to TaskFlow"]
    [item] = reminders(notify, task_id)
    assert item["_id"] == notification_id(reminder_key(task_id, due))
    assert item["title"] == "Reminder: Ship it" and item["user_id"] == owner
    assert item["body"] == f"Your task “Ship it” is due {due:%Y-%m-%d %H:%M} UTC."
    assert item["due_date"].replace(tzinfo=UTC) == due.replace(microsecond=due.microsecond // 1000 * 1000)
    assert notify.mongo.db["deliveries"].count_documents({"_id": item["_id"], "status": "sent", "attempts": 1}) == 1


def test_concurrent_schedulers_send_each_reminder_once(make_notify: Callable[..., Notify]) -> None:
    """Four scheduler replicas, each with its own connections, scanning the same due reminders at once."""
    replicas = [make_notify() for _ in range(4)]
    owner = new_id()
    tasks = [new_id() for _ in range(15)]
    due = now() + timedelta(minutes=10)
    for task_id in tasks:
        replicas[0].handlers.handle_task_event(task_event("task.created", task_id, owner, due=due))
    start = threading.Barrier(len(replicas))
    errors: list[BaseException] = []

    def scan(replica: Notify) -> None:
        try:
            start.wait()
            for _ in range(3):
                replica.reminders.send_due()
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=scan, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    db = replicas[0].mongo.db
    assert db["notifications"].count_documents({"kind": "reminder"}) == len(tasks)
    assert db["deliveries"].count_documents({}) == len(tasks)
    assert db["reminders"].count_documents({"reminder_due": None, "reminded_due": {"$ne": None}}) == len(tasks)


def test_re_dating_moves_the_reminder_and_each_due_date_gets_one(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers
) -> None:
    notify = make_notify()
    workers.start(notify, without=("scheduler",))
    owner, task_id = new_id(), new_id()
    first, second = now() + timedelta(hours=3), now() + timedelta(hours=5)
    bus.publish(task_event("task.created", task_id, owner, due=first))
    handled(notify, 1)
    assert notify.reminders.send_due() == 0  # not yet within the lead time
    # Re-dated before its reminder: the first date's reminder is no longer owed.
    bus.publish(task_event("task.updated", task_id, owner, due=second, version=2, changed=["due_date"]))
    handled(notify, 2)
    notify.reminders.send_due(first - LEAD + timedelta(minutes=1))
    assert reminders(notify, task_id) == []
    notify.reminders.send_due(second - LEAD + timedelta(minutes=1))
    assert [item["_id"] for item in reminders(notify, task_id)] == [notification_id(reminder_key(task_id, second))]
    # Re-dated after its reminder: the new date gets its own; going back to a reminded date does not.
    third = second + timedelta(days=1)
    bus.publish(task_event("task.updated", task_id, owner, due=third, version=3, changed=["due_date"]))
    bus.publish(task_event("task.updated", task_id, owner, due=second, version=4, changed=["due_date"]))
    handled(notify, 4)
    notify.reminders.send_due(second - LEAD + timedelta(minutes=2))
    assert len(reminders(notify, task_id)) == 1
    bus.publish(task_event("task.updated", task_id, owner, due=third, version=5, changed=["due_date"]))
    handled(notify, 5)
    notify.reminders.send_due(third - timedelta(minutes=5))
    assert [item["_id"] for item in reminders(notify, task_id)] == [
        notification_id(reminder_key(task_id, second)), notification_id(reminder_key(task_id, third))
    ]


def test_completing_cancels_the_reminder_and_reopening_reschedules_it(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers
) -> None:
    notify = make_notify()
    workers.start(notify, without=("scheduler",))
    owner, task_id = new_id(), new_id()
    due = now() + timedelta(hours=4)
    bus.publish(
        task_event("task.created", task_id, owner, due=due),
        task_event("task.updated", task_id, owner, due=due, status="done", version=2, changed=["status"]),
        task_event("task.completed", task_id, owner, due=due, status="done", version=2),
    )
    handled(notify, 3)
    notify.reminders.send_due(due - timedelta(minutes=30))
    assert reminders(notify, task_id) == []
    bus.publish(task_event("task.updated", task_id, owner, due=due, status="in_progress", version=3, changed=["status"]))
    handled(notify, 4)
    notify.reminders.send_due(due - timedelta(minutes=30))
    assert len(reminders(notify, task_id)) == 1


def test_deleting_cancels_the_reminder_for_good(make_notify: Callable[..., Notify], bus: Bus, workers: Workers) -> None:
    notify = make_notify()
    workers.start(notify, without=("scheduler",))
    owner, task_id = new_id(), new_id()
    due = now() + timedelta(hours=2)
    bus.publish(
        task_event("task.created", task_id, owner, due=due),
        task_event("task.deleted", task_id, owner, due=due, version=2),
        # A late, out-of-order update must not bring the task back.
        task_event("task.updated", task_id, owner, due=due, version=3, changed=["title"]),
    )
    handled(notify, 3)
    notify.reminders.send_due(due - timedelta(minutes=10))
    assert reminders(notify, task_id) == []
    assert notify.mongo.db["reminders"].find_one({"_id": task_id})["deleted"] is True


def test_snapshots_arriving_out_of_order_keep_the_newest(make_notify: Callable[..., Notify], bus: Bus, workers: Workers) -> None:
    notify = make_notify()
    workers.start(notify, without=("scheduler",))
    owner, task_id = new_id(), new_id()
    old_due, new_due = now() + timedelta(hours=2), now() + timedelta(hours=6)
    bus.publish(
        task_event("task.updated", task_id, owner, due=new_due, version=2, changed=["due_date"]),
        task_event("task.created", task_id, owner, due=old_due, version=1),
    )
    handled(notify, 2)
    notify.reminders.send_due(old_due - timedelta(minutes=10))
    assert reminders(notify, task_id) == []
    notify.reminders.send_due(new_due - timedelta(minutes=10))
    assert len(reminders(notify, task_id)) == 1


def test_a_created_task_is_scheduled_in_one_command_and_a_late_created_changes_nothing(notify: Notify) -> None:
    """Issue 19: ``task.created`` inserts the schedule unread (one command, not a read and an
    insert); arriving after a newer snapshot, or a second time, its insert is a duplicate key and
    the newer schedule stays."""
    commands = Commands()
    client = MongoClient(notify.mongo.uri, tz_aware=True, event_listeners=[commands])
    try:
        store = ReminderStore(lambda: client[notify.mongo.database_name])
        schedule = Reminders(store, notify.reminders.recipients, notify.reminders.notifications, lead=LEAD)
        owner, fresh, redated = new_id(), new_id(), new_id()
        due, later = now() + timedelta(hours=2), now() + timedelta(hours=6)
        schedule.apply(task_event("task.created", fresh, owner, due=due))
        assert commands.names("reminders") == ["insert"]
        schedule.apply(task_event("task.updated", redated, owner, due=later, version=2, changed=["due_date"]))
        schedule.apply(task_event("task.created", redated, owner, due=due, version=1))
        schedule.apply(task_event("task.created", fresh, owner, due=due))
        assert store.get(fresh)["reminder_due"] == due.replace(microsecond=due.microsecond // 1000 * 1000)
        assert store.get(redated)["reminder_due"] == later.replace(microsecond=later.microsecond // 1000 * 1000)
        assert store.get(redated)["version"] == 2
    finally:
        client.close()


def test_reminders_missed_while_notify_was_down_are_sent_unless_stale(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer
) -> None:
    first = make_notify(smtp_url=smtp.url)
    workers.start(first)()  # declares the queues, then stops: notify is down from here
    owner = new_id()
    missed, stale, soon, later, done, undated = (new_id() for _ in range(6))
    moment = now()
    bus.publish(
        user_event("user.registered", owner),
        task_event("task.created", missed, owner, due=moment - timedelta(hours=3), title="missed"),
        task_event("task.created", stale, owner, due=moment - timedelta(days=2), title="stale"),
        task_event("task.created", soon, owner, due=moment + timedelta(minutes=20), title="soon"),
        task_event("task.created", later, owner, due=moment + timedelta(hours=3), title="later"),
        task_event("task.created", done, owner, due=moment - timedelta(hours=1), status="done", title="done"),
        task_event("task.created", undated, owner, due=None, title="undated"),
    )
    notify = make_notify(smtp_url=smtp.url)
    workers.start(notify)  # back up
    address = f"{owner}@example.com"
    eventually(lambda: len(smtp.catcher.to(address)) == 3, what="welcome and two reminders")
    threading.Event().wait(1.0)
    assert sorted(m["Subject"] for m in smtp.catcher.to(address)) == ["Reminder: missed", "Reminder: soon", "Welcome to TaskFlow"]
    assert {item["subject_id"] for item in reminders(notify)} == {missed, soon}
    assert notify.mongo.db["reminders"].find_one({"_id": stale})["reminder_outcome"] == "stale"


def test_a_deactivated_owner_gets_no_reminder(make_notify: Callable[..., Notify], bus: Bus, workers: Workers) -> None:
    notify = make_notify()
    workers.start(notify, without=("scheduler",))
    owner, task_id = new_id(), new_id()
    due = now() + timedelta(minutes=30)
    bus.publish(
        user_event("user.registered", owner),
        user_event("user.deactivated", owner, active=False, version=2, actor_id=new_id()),
        task_event("task.created", task_id, owner, due=due),
    )
    # Four records: user.deactivated is consumed twice, by notify.inbox and notify.user-status.
    handled(notify, 4)
    notify.reminders.send_due()
    assert reminders(notify, task_id) == []
    assert notify.mongo.db["reminders"].find_one({"_id": task_id})["reminder_outcome"] == "owner deactivated"


def test_lead_time_comes_from_the_settings(make_notify: Callable[..., Notify]) -> None:
    notify = make_notify(reminder_lead_minutes=5)
    owner, task_id = new_id(), new_id()
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
    notify.handlers.handle_task_event(task_event("task.created", task_id, owner, due=due))
    assert notify.reminders.send_due(due - timedelta(minutes=6)) == 0
    assert notify.reminders.send_due(due - timedelta(minutes=5)) == 1
    assert len(reminders(notify, task_id)) == 1


def test_a_task_completed_while_the_scheduler_looks_at_it_gets_no_reminder(
    make_notify: Callable[..., Notify], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler reads a task owed a reminder; before it decides, the ``task.completed``
    snapshot is applied. The decision is conditional on the reminder still being owed: none is sent."""
    notify = make_notify()
    task_id, owner = new_id(), new_id()
    due = now() + timedelta(minutes=10)
    notify.reminders.apply(task_event("task.created", task_id, owner, due=due))
    read = notify.reminders.store.get

    def completed_meanwhile(found_id: str) -> dict | None:
        found = read(found_id)
        monkeypatch.setattr(notify.reminders.store, "get", read)
        notify.reminders.apply(task_event("task.completed", task_id, owner, due=due, status="done", version=2))
        return found

    monkeypatch.setattr(notify.reminders.store, "get", completed_meanwhile)
    assert notify.reminders.send_due() == 0
    assert reminders(notify, task_id) == []
    assert notify.mongo.db["reminders"].find_one({"_id": task_id})["reminder_due"] is None


def test_a_reminder_decided_by_a_scheduler_that_died_is_sent_once_by_the_next(
    make_notify: Callable[..., Notify], monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = make_notify()
    task_id, owner = new_id(), new_id()
    due = now() + timedelta(minutes=10)
    notify.reminders.apply(task_event("task.created", task_id, owner, due=due))

    def dies(*_: object) -> None:
        raise ProcessDied("after deciding, before creating the reminder")

    with monkeypatch.context() as patched:
        patched.setattr(notify.reminders.notifications, "create", dies)
        with pytest.raises(ProcessDied):
            notify.reminders.send_due()
    assert notify.mongo.db["reminders"].find_one({"_id": task_id})["reminder_outcome"] == "sending"
    assert notify.reminders.send_due() == 0 and reminders(notify, task_id) == []  # it may still be alive
    later = now() + SENDING_GRACE + timedelta(seconds=1)
    assert notify.reminders.send_due(later) == 1
    assert notify.reminders.send_due(later) == 0
    assert [item["subject_id"] for item in reminders(notify, task_id)] == [task_id]
    assert notify.mongo.db["reminders"].find_one({"_id": task_id})["reminder_outcome"] == "sent"


class ProcessDied(BaseException):
    """Stands for the process stopping at this point (kill -9): no handler of the service runs."""
