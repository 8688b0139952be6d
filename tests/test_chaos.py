"""Issue 18 §9: the chaos test. A whole system of its own (scripts/run, as `make run`), steady writes
through the gateway from several users (register; create, update, complete and delete tasks) while
a schedule SIGKILLs, one at a time and again and again, every kind of process (gunicorn masters and
workers, the workers with their relays and consumers, FerretDB, RabbitMQ, nginx's master and
workers) and stops the broker and the database for a while. Afterwards, with everything back:

- every acknowledged (2xx) write is in the store, as acknowledged;
- every event of those writes was applied exactly once by each subscriber: admin's read models
  equal the store and a rebuild from its audit log, counts and statistics are exact; notify made one
  welcome per user and one reminder per open task due soon, mailed once each (one Message-ID, one
  mail), and announced each notification once;
- every parking queue is empty and no consumer recorded a dead letter; every process runs.

``pytest -m chaos`` runs it alone. The short form (the default, part of `make test`) injects each
kind of fault once, with 10 s outages; the long form, ``CHAOS_FORM=long`` (`make chaos`), runs
``CHAOS_MINUTES`` (10) of faults, outages of 30 to 120 s. The system runs ``CHAOS_REPLICAS`` (2,
as `make run`) instances of each service and copies of each worker, side by side, and a fault hits
one of them. It prints its figures.
"""

from __future__ import annotations

import collections
import json
import mailbox
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from taskflow_common.events import broker, subscribers

from tests.support.processes import ROOT, wait_for
from tests.support.system import Client, System

FORM = os.environ.get("CHAOS_FORM", "short")
LONG = FORM == "long"
MINUTES = float(os.environ.get("CHAOS_MINUTES", "10"))
pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(MINUTES * 60 + 2400 if LONG else 900)]
OUTAGE_SECONDS = (30.0, 120.0) if LONG else (10.0, 10.0)
SERVICES = ("auth", "tasks", "admin", "notify")
REPLICAS = int(os.environ.get("CHAOS_REPLICAS", "2"))
"""Instances of each service and copies of each worker, as ``make run`` runs them (``REPLICAS``)."""
WRITERS = 4
PASSWORD = "a chaos passphrase"
RECOVERY_SECONDS = 240
SETTLE_SECONDS = 1200 if LONG else 300
"""How long the backlog may take to drain: after a 2-minute database outage on a busy 2-core machine the
long form found 3,400 messages queued and 440 documents' events in outboxes, applied at ~30 events/s."""


# -- the system ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chaos_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    system = System(tmp_path_factory.mktemp("chaos"), None, replicas=REPLICAS, BCRYPT_ROUNDS="4",
                    REMINDER_SCAN_SECONDS="1", MONGODB_DB_PREFIX="chaos_")
    yield system.start(timeout=300)
    system.stop()


def pid(system: System, program: str) -> int:
    return int(system.supervisorctl("pid", program).strip() or 0)


def programs(system: System) -> list[str]:
    """supervisor's name of every program of the system: each instance of each service and worker."""
    instances = [system.program(name, k) for name in (*SERVICES, *(f"{s}-worker" for s in SERVICES))
                 for k in range(1, system.replicas + 1)]
    return ["ferretdb", "rabbitmq", *instances, "gateway"]


def any_instance(system: System, name: str) -> str:
    """One instance of service or worker ``name``, picked at random."""
    return system.program(name, random.randint(1, system.replicas))


def all_running(system: System, *, starting: bool = False) -> bool:
    """Every program RUNNING (or, with ``starting``, at least started again: STARTING)."""
    states = ("RUNNING", "STARTING") if starting else ("RUNNING",)
    lines = {line.split()[0]: line for line in system.supervisorctl("status").splitlines() if line.strip()}
    return all(program in lines and lines[program].split()[1] in states for program in programs(system))


def serves(system: System) -> bool:
    """Every service answers through the gateway and is ready."""
    try:
        return system.ready()
    except requests.RequestException:
        return False


# -- the writes ----------------------------------------------------------------------------------


@dataclass
class TaskRecord:
    """What the writer knows of one task: its last acknowledged state, and whether a later write
    went unanswered (then the store may hold either)."""

    id: str
    title: str
    status: str
    due_date: str | None
    version: int
    deleted: bool = False
    certain: bool = True


@dataclass
class Tally:
    acknowledged: int = 0
    unanswered: int = 0
    registered: list[str] = field(default_factory=list)
    # (subject, type) of every acknowledged write's event; versions where the answer carries one
    events: list[tuple[str, str, int | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, subject: str, type: str, version: int | None) -> None:
        with self.lock:
            self.acknowledged += 1
            self.events.append((subject, type, version))


def register(gateway_url: str, tally: Tally) -> dict[str, Any] | None:
    """One registration from an address of its own; the account, or None when not acknowledged."""
    email = f"chaos-{uuid.uuid4().hex[:12]}@example.com"
    try:
        response = Client(gateway_url).post("/api/v1/auth/register", timeout=10,
                                            json={"email": email, "password": PASSWORD, "name": "Chaos"})
    except requests.RequestException:
        response = None
    if response is None or response.status_code != 201:
        with tally.lock:
            tally.unanswered += 1
        return None
    body = response.json()
    tally.ack(body["user"]["id"], "user.registered", None)
    with tally.lock:
        tally.registered.append(body["user"]["id"])
    return body


class Writer(threading.Thread):
    """One user's steady writes on their tasks; a registration now and then for the registrar."""

    def __init__(self, gateway_url: str, tally: Tally, stop: threading.Event, *, registrar: bool = False) -> None:
        super().__init__(daemon=True)
        self.gateway_url = gateway_url
        self.tally = tally
        self.stop_event = stop
        self.registrar = registrar
        self.client = Client(gateway_url)
        self.tasks: dict[str, TaskRecord] = {}
        self.random = random.Random()
        self.account: dict[str, Any] | None = None

    def run(self) -> None:
        while self.account is None and not self.stop_event.is_set():
            self.account = register(self.gateway_url, self.tally)
            if self.account is None:
                self.stop_event.wait(1)
        while not self.stop_event.wait(0.1 if not self.registrar else 1.0):
            if self.registrar:
                register(self.gateway_url, self.tally)
            else:
                self.step()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.account['access_token']}"}

    def refresh(self) -> None:
        try:
            response = self.client.post("/api/v1/auth/refresh", json={"refresh_token": self.account["refresh_token"]},
                                        timeout=10)
        except requests.RequestException:
            return
        if response.status_code == 200:
            self.account.update(response.json())

    def step(self) -> None:
        live = [task for task in self.tasks.values() if not task.deleted]
        roll = self.random.random()
        if len(live) < 3 or roll < 0.35:
            due = datetime.now(UTC) + timedelta(minutes=30) if self.random.random() < 0.5 else None
            body = {"title": f"chaos {uuid.uuid4().hex[:8]}", "due_date": due.isoformat() if due else None}
            self.send("POST", "/api/v1/tasks", body, None)
            return
        task = self.random.choice(live)
        if roll < 0.65:
            self.send("PATCH", f"/api/v1/tasks/{task.id}", {"title": f"renamed {uuid.uuid4().hex[:8]}"}, task)
        elif roll < 0.85:
            status = "done" if task.status != "done" else "in_progress"
            self.send("PATCH", f"/api/v1/tasks/{task.id}", {"status": status}, task)
        else:
            self.send("DELETE", f"/api/v1/tasks/{task.id}", None, task)

    def send(self, method: str, path: str, body: dict[str, Any] | None, task: TaskRecord | None) -> None:
        try:
            response = self.client.request(method, path, json=body, headers=self.headers, timeout=10)
        except requests.RequestException:
            response = None
        if response is not None and response.status_code == 401:
            self.refresh()
        if response is None or not 200 <= response.status_code < 300:
            with self.tally.lock:
                self.tally.unanswered += 1
            if task is not None:
                task.certain = False
            return
        if method == "DELETE":
            assert task is not None
            task.deleted, task.certain = True, True
            self.tally.ack(task.id, "task.deleted", None)
            return
        answer = response.json()
        self.tasks[answer["id"]] = TaskRecord(answer["id"], answer["title"], answer["status"], answer["due_date"],
                                              answer["version"])
        self.tally.ack(answer["id"], "task.created" if method == "POST" else "task.updated", answer["version"])


# -- the faults ----------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    program: str
    inject: Callable[[System], None]


def kill(program: str, *, child: bool = False) -> Callable[[System], None]:
    """SIGKILL ``program`` (its supervisor pid: gunicorn's or nginx's master, a worker, FerretDB,
    RabbitMQ), or with ``child`` one of its children (a gunicorn or nginx worker)."""

    def inject(system: System) -> None:
        # A master restarted by an earlier fault may not have forked its workers yet, and a worker
        # may exit between the listing and the kill: pick and strike again until one lands.
        wait_for(lambda: _strike(pid(system, program), child), timeout=60, what=f"a live {program} to kill")

    return inject


def _strike(process_id: int, child: bool) -> bool:
    """SIGKILL process ``process_id`` or, with ``child``, one of its children picked at random;
    whether a signal was delivered (False when the program is stopped, gone or has no child)."""
    if process_id <= 0:  # supervisor's pid for a stopped program; os.kill(0) would hit our own group
        return False
    try:
        targets = psutil.Process(process_id).children() if child else [psutil.Process(process_id)]
        if not targets:
            return False
        os.kill(random.choice(targets).pid, signal.SIGKILL)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    return True


def outage(program: str) -> Callable[[System], None]:
    """Stop ``program`` (the broker or the database) for a while, then start it again."""

    def inject(system: System) -> None:
        system.supervisorctl("stop", program)
        time.sleep(random.uniform(*OUTAGE_SECONDS))
        system.supervisorctl("start", program)

    return inject


def every_kind(system: System) -> list[Fault]:
    """One fault of each kind, the service and instance of each picked at random."""
    master, worker = (any_instance(system, random.choice(SERVICES)) for _ in range(2))
    relay = any_instance(system, f"{random.choice(SERVICES)}-worker")
    return [
        Fault("gunicorn master", master, kill(master)),
        Fault("gunicorn worker", worker, kill(worker, child=True)),
        Fault("worker (relay and consumers)", relay, kill(relay)),
        Fault("FerretDB", "ferretdb", kill("ferretdb")),
        Fault("RabbitMQ", "rabbitmq", kill("rabbitmq")),
        Fault("nginx master", "gateway", kill("gateway")),
        Fault("nginx worker", "gateway", kill("gateway", child=True)),
        Fault("broker outage", "rabbitmq", outage("rabbitmq")),
        Fault("database outage", "ferretdb", outage("ferretdb")),
    ]


def schedule(system: System) -> Iterator[Fault]:
    """The short form: each kind once. The long form: rounds of every kind, shuffled, until
    ``CHAOS_MINUTES`` have passed."""
    if not LONG:
        yield from every_kind(system)
        return
    deadline = time.monotonic() + MINUTES * 60
    while time.monotonic() < deadline:
        workers = [any_instance(system, f"{name}-worker") for name in SERVICES]
        faults = every_kind(system) + [Fault("worker (relay and consumers)", worker, kill(worker)) for worker in workers]
        random.shuffle(faults)
        for fault in faults:
            if time.monotonic() >= deadline:
                return
            yield fault


def recover(system: System, *, starting: bool = False) -> None:
    wait_for(lambda: all_running(system, starting=starting) and serves(system), timeout=RECOVERY_SECONDS,
             interval=0.5, what="every process running and every service ready")


# -- the checks ----------------------------------------------------------------------------------


def queues() -> list[str]:
    return [name for subscription in subscribers.CATALOG for name in subscription.queue_arguments()]


def messages_ready(url: str) -> dict[str, int]:
    connection = broker.connect(url)
    try:
        channel = connection.channel()
        return {name: channel.queue_declare(name, passive=True).method.message_count for name in queues()}
    finally:
        connection.close()


def settled(system: System, client: MongoClient, previous: list[Any]) -> bool:
    """No outbox holds an event, no queue a message, no email or reminder is pending, and admin's
    audit log and notify's notifications stopped growing since the previous look (False while the
    broker or the database is still starting)."""
    try:
        return _settled(system, client, previous)
    except (*broker.CONNECTION_ERRORS, PyMongoError):
        return False


def _settled(system: System, client: MongoClient, previous: list[Any]) -> bool:
    pending = sum(
        client[f"chaos_{service}"][collection].count_documents({"_outbox_pending": True})
        for service, collection in (("auth", "users"), ("tasks", "tasks"), ("notify", "deliveries"))
    )
    mail = client["chaos_notify"]["deliveries"].count_documents({"status": "pending"})
    # A reminder whose scheduler was killed after deciding it is finished by a later scan, once
    # SENDING_GRACE has passed.
    sending = client["chaos_notify"]["reminders"].count_documents({"reminder_outcome": "sending"})
    ready = sum(messages_ready(system.rabbitmq_url).values())
    now = [client["chaos_admin"]["audit"].count_documents({}), client["chaos_notify"]["notifications"].count_documents({}),
           client["chaos_admin"]["processed_events"].count_documents({})]
    done = pending == 0 and mail == 0 and sending == 0 and ready == 0 and now == previous[:]
    previous[:] = now
    if not done:
        print(f"chaos: settling: outbox {pending}, mail {mail}, reminders sending {sending}, queued {ready}, "
              f"audit/notifications/processed {now}")
    return done


def rebuilt(system: System, client: MongoClient) -> tuple[list[Any], list[Any]]:
    """Admin's read models rebuilt from scratch from a copy of its audit log (its CLI, on a database
    of its own): users and tasks."""
    source, copy = client["chaos_admin"], client["rebuild_admin"]
    client.drop_database("rebuild_admin")
    entries = list(source["audit"].find({}))
    if entries:
        copy["audit"].insert_many(entries)
    completed = subprocess.run([sys.executable, "-m", "taskflow_admin.cli", "rebuild"], check=False, cwd=ROOT,
                               env={**system.env, "MONGODB_URI": system.mongodb_uri, "MONGODB_DB_PREFIX": "rebuild_"},
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return admin_users(copy), admin_tasks(copy)


def admin_users(db: Any) -> list[Any]:
    return sorted((str(u["_id"]), u["email"], u["role"], u["active"]) for u in db["users"].find({}))


def admin_tasks(db: Any) -> list[Any]:
    return sorted((str(t["_id"]), t["owner_id"], t["status"]) for t in db["tasks"].find({"deleted": False}))


def difference(what: str, actual: list[Any], expected: list[Any]) -> list[Any]:
    """Nothing when equal, else what only one side has."""
    if actual == expected:
        return []
    return [(what, {"only the first": sorted(set(actual) - set(expected))[:10],
                    "only the second": sorted(set(expected) - set(actual))[:10]})]


def mail_message_ids(system: System) -> list[str]:
    directory = Path(system.env["TASKFLOW_VAR"]) / "mail"
    if not (directory / "new").is_dir():
        return []
    return [message["Message-ID"] for message in mailbox.Maildir(directory, create=False)]


@pytest.fixture
def client(chaos_system: System) -> Iterator[MongoClient]:
    """The chaos system's FerretDB."""
    running = MongoClient(chaos_system.mongodb_uri, tz_aware=True)
    yield running
    running.close()


def test_chaos_loses_and_duplicates_nothing(
    chaos_system: System, client: MongoClient, capsys: pytest.CaptureFixture[str]
) -> None:
    system = chaos_system
    tally = Tally()
    stop = threading.Event()
    writers = [Writer(system.gateway_url, tally, stop) for _ in range(WRITERS)]
    writers.append(Writer(system.gateway_url, tally, stop, registrar=True))
    for writer in writers:
        writer.start()
    injected: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    try:
        wait_for(lambda: tally.acknowledged >= 20, timeout=60, what="writes before the first fault")
        for fault in schedule(system):
            with capsys.disabled():
                print(f"\nchaos: {time.monotonic() - started:5.0f} s  {fault.name} ({fault.program})", end="")
            fault.inject(system)
            injected[fault.name] += 1
            recover(system, starting=True)
            time.sleep(random.uniform(1, 3) if LONG else 1)
    finally:
        stop.set()
        for writer in writers:
            writer.join(30)
    recover(system)
    faults_over = time.monotonic()
    previous: list[Any] = []
    wait_for(lambda: settled(system, client, previous), timeout=SETTLE_SECONDS, interval=3,
             what="every event delivered and applied")
    settled_at = time.monotonic()

    auth, tasks_db, admin, notify = (client[f"chaos_{name}"] for name in SERVICES)
    lost: list[str] = []
    duplicated: list[str] = []

    # Every acknowledged write is in the store, as acknowledged.
    registered = set(tally.registered)
    lost += [f"user {user}" for user in registered - {str(u["_id"]) for u in auth["users"].find({}, {"_id": 1})}]
    stored = {str(task["_id"]): task for task in tasks_db["tasks"].find({"_placeholder": {"$ne": True}})}
    for writer in writers:
        for task in writer.tasks.values():
            found = stored.get(task.id)
            if not task.certain:
                continue
            if task.deleted and found is not None and not found.get("_deleted"):
                lost.append(f"deletion of task {task.id}")
            elif not task.deleted and (found is None or (found["title"], found["status"]) != (task.title, task.status)):
                lost.append(f"task {task.id} as acknowledged")

    # Every acknowledged write's event was applied by admin (its audit log keeps one entry per event).
    audit = list(admin["audit"].find({}, {"type": 1, "subject_id": 1, "data.version": 1, "data.id": 1}))
    applied = {(entry["subject_id"], entry["type"]) for entry in audit}
    versions = {(entry["subject_id"], (entry.get("data") or {}).get("version")) for entry in audit}
    for subject, type, version in tally.events:
        if version is not None and (subject, version) not in versions:
            lost.append(f"{type} v{version} of {subject}")
        elif version is None and (subject, type) not in applied:
            lost.append(f"{type} of {subject}")

    # Admin's read models: equal to the store, and to a rebuild from scratch; counts exact.
    live_tasks = sorted((id, t["owner_id"], t["status"]) for id, t in stored.items() if not t.get("_deleted"))
    users = sorted((str(u["_id"]), u["email"], u["role"], u["active"]) for u in auth["users"].find({}))
    differences = [
        *difference("admin's tasks and the store", admin_tasks(admin), live_tasks),
        *difference("admin's users and auth's", admin_users(admin), users),
    ]
    rebuilt_users, rebuilt_tasks = rebuilt(system, client)
    differences += difference("admin's users and a rebuild", admin_users(admin), rebuilt_users)
    differences += difference("admin's tasks and a rebuild", admin_tasks(admin), rebuilt_tasks)
    for writer in writers[:WRITERS]:
        if writer.account is None:
            continue
        answer = Client(system.gateway_url).get("/api/v1/tasks/stats", headers=writer.headers, timeout=30)
        if answer.status_code == 401:
            writer.refresh()
            answer = Client(system.gateway_url).get("/api/v1/tasks/stats", headers=writer.headers, timeout=30)
        owner = writer.account["user"]["id"]
        if answer.json()["total"] != sum(1 for task in live_tasks if task[1] == owner):
            differences.append(("task counters drifted", owner, answer.json()))

    # notify: one welcome per user, one reminder per open task due soon, one mail per Message-ID,
    # one notification.sent per notification.
    notifications = list(notify["notifications"].find({}, {"kind": 1, "user_id": 1, "subject_id": 1}))
    welcomes = collections.Counter(n["user_id"] for n in notifications if n["kind"] == "welcome")
    lost += [f"welcome of {user}" for user in registered if welcomes[user] == 0]
    duplicated += [f"welcome of {user} ×{count}" for user, count in welcomes.items() if count > 1]
    reminders = collections.Counter(n["subject_id"] for n in notifications if n["kind"] == "reminder")
    duplicated += [f"reminder of task {task} ×{count}" for task, count in reminders.items() if count > 1]
    due_open = [(id, task) for id, task in stored.items()
                if not task.get("_deleted") and task.get("due_date") is not None and task["status"] != "done"]
    schedule_of = {task["_id"]: task for task in notify["reminders"].find({})}
    lost += [f"reminder of task {id} (notify's schedule: {schedule_of.get(id)})"
             for id, task in due_open if reminders[id] == 0]
    mails = collections.Counter(mail_message_ids(system))
    duplicated += [f"mail {message_id} ×{count}" for message_id, count in mails.items() if count > 1]
    sent = [d["message_id"] for d in notify["deliveries"].find({"status": "sent"}, {"message_id": 1})]
    lost += [f"mail {message_id}" for message_id in sent if mails[message_id] == 0]
    announced = collections.Counter(entry["subject_id"] for entry in audit if entry["type"] == "notification.sent")
    duplicated += [f"notification.sent of {n} ×{count}" for n, count in announced.items() if count > 1]
    lost += [f"notification.sent of {n['_id']}" for n in notifications if announced[str(n["_id"])] == 0]

    # Nothing parked, nothing down.
    parked = {name: count for name, count in messages_ready(system.rabbitmq_url).items() if name.endswith(".dlq") and count}
    dead_letters = {name: client[f"chaos_{name}"]["dead_letters"].count_documents({}) for name in SERVICES}
    assert all_running(system), system.supervisorctl("status")

    figures = {
        "form": FORM,
        "minutes of faults": round((faults_over - started) / 60, 1),
        "seconds to settle": round(settled_at - faults_over),
        "writes acknowledged": tally.acknowledged,
        "writes unanswered": tally.unanswered,
        "faults injected": sum(injected.values()),
        "faults by kind": dict(injected),
        "events checked": len(audit),
        "notifications checked": len(notifications),
        "lost": len(lost),
        "duplicated": len(duplicated),
    }
    with capsys.disabled():
        print("\nchaos: " + json.dumps(figures))
    assert lost == [] and duplicated == [], {"lost": lost[:20], "duplicated": duplicated[:20]}
    assert differences == [], differences
    assert parked == {} and not any(dead_letters.values()), (parked, dead_letters)
