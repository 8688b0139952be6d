"""B7, scale: what a request costs in a store of 1,000, 100,000 and 1,000,000 tasks among 100,000
users (issue 19 item 4), p50 and p99 of one client, per size, and the ratio largest ÷ smallest.

Each size gets a system of its own, started as `make run` starts it (FerretDB on SQLite with the
project's patches, RabbitMQ, the four services, their workers, on free ports; see
:mod:`bench.stack`), filled in this order:

1. through the API: the measured user (the *probe*, :data:`seed.PROBE_TASKS` tasks, the same at
   every size) and the *template* user with their tasks; their events flow to admin and notify as
   always, and the arm waits until every read model holds them and no reminder is due;
2. admin's first request, so its one-time backfill runs while the store is small;
3. the *big* owner's tenth of the store with :func:`seed.seed_owner` (the tasks service's own
   document format, through FerretDB; in the tasks database only: admin's and notify's read
   models do not hold these tasks, see the entry's notes);
4. copies of the template user inside SQLite (:func:`seed.copy_template`): 100,000 users in all,
   the first of them owning tasks like the template's, with their read models and audit trails.

Then one client times each row in turn, straight to the service (no gateway): requests of the
probe and of the big owner, a login of a copied user, the probe's inbox, an admin's user search
and audit page, and, in-process against the same FerretDB, the two periodic scans as their
workers run them (the relay's look for due outbox documents, the reminder scheduler's look for
due reminders). Each row: 3 warm-ups, then up to :data:`SAMPLES` samples or ``--seconds`` of
them (at least :data:`MIN_SAMPLES`; see :func:`timed`).
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from pymongo import MongoClient
from pymongo.database import Database

from .. import seed
from ..context import PASSWORD, Bench, User
from ..figures import Target, percentile, ratio
from ..stack import start_infra, start_system
from . import entry

SIZES = (1_000, 100_000, 1_000_000)
SAMPLES, MIN_SAMPLES, WARMUPS = 200, 3, 3
ADMIN_EMAIL = "admin@bench.example"
QUERY = "task 7"
"""The ``q`` of the search rows: matches titles "Seeded task 7", "… 70" to "… 79", "… 700"…"""
SINGLE_TASK_P50_MS, PAGE_P50_MS, GROWTH = 10, 25, 1.5
SINGLE = ("GET /tasks/{id}", "POST /tasks", "PATCH /tasks/{id}", "DELETE /tasks/{id}")
PAGES = ("GET /tasks", "GET /tasks?status", "GET /tasks?sort=due_date", "GET /tasks?q", "GET /tasks/stats",
         "GET /notifications", "GET /admin/users?q", "GET /admin/audit")


@dataclass
class Store:
    """One size's running system, its database, and the users the rows act as."""

    infra: Any
    system: Any
    db: Callable[[str], Database]
    probe: User
    big: User
    admin: User
    template: User
    layout: seed.Layout


def timed(call: Callable[[], None], budget_s: float) -> list[float]:
    """Seconds each ``call`` took, one at a time, after :data:`WARMUPS` untimed ones (one when it
    takes over a second): up to :data:`SAMPLES`, for ``budget_s`` seconds but at least
    :data:`MIN_SAMPLES` (fewer only if ``call`` raises StopIteration: nothing left to do)."""
    times: list[float] = []
    try:
        for _ in range(WARMUPS):
            before = time.perf_counter()
            call()
            if time.perf_counter() - before > 1:
                break  # a call of seconds (admin's user search) is warm after one
        started = time.monotonic()
        while len(times) < SAMPLES and (time.monotonic() - started < budget_s or len(times) < MIN_SAMPLES):
            before = time.perf_counter()
            call()
            times.append(time.perf_counter() - before)
    except StopIteration:
        pass
    return times


def _checked(answer: requests.Response, status: int) -> requests.Response:
    if answer.status_code != status:
        raise RuntimeError(f"{answer.request.method} {answer.url}: {answer.status_code} {answer.text[:300]}")
    return answer


def _ok(answer: requests.Response) -> None:
    _checked(answer, 200)


def _register(http: requests.Session, url: str, email: str, name: str) -> User:
    answer = _checked(http.post(f"{url}/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": name},
                                timeout=60), 201).json()
    return User(answer["user"]["id"], email, answer["access_token"])


def _login(http: requests.Session, url: str, email: str) -> User:
    answer = _checked(http.post(f"{url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=60), 200).json()
    return User(answer["user"]["id"], email, answer["access_token"])


def _create(url: str, user: User, count: int, now: datetime) -> list[str]:
    """``count`` tasks of ``user`` through the API, bodies as :func:`seed.body` makes them."""
    with requests.Session() as http:
        return [_checked(http.post(f"{url}/api/v1/tasks", headers=user.headers, timeout=60,
                                   json=seed.body(number, now).model_dump(mode="json")), 201).json()["id"]
                for number in range(count)]


def _settled(db: Callable[[str], Database], owners: dict[str, int], lead: timedelta) -> bool:
    """Whether every event of the API phase is applied: admin's and notify's read models hold each
    owner's tasks, no reminder is due, no write holds unpublished events."""
    admin, notify = db("taskflow_admin"), db("taskflow_notify")
    for owner, count in owners.items():
        if admin["tasks"].count_documents({"owner_id": owner}) != count:
            return False
        if notify["reminders"].count_documents({"owner_id": owner}) != count:
            return False
        if admin["users"].find_one({"_id": owner}) is None or notify["recipients"].find_one({"_id": owner}) is None:
            return False
    due = notify["reminders"].count_documents({"reminder_due": {"$lte": datetime.now(UTC) + lead}})
    sending = notify["reminders"].count_documents({"reminder_outcome": "sending"})
    pending = sum(db(name)[collection].count_documents({"_outbox_pending": True})
                  for name, collection in (("taskflow_tasks", "tasks"), ("taskflow_auth", "users"),
                                           ("taskflow_notify", "deliveries")))
    mailing = notify["deliveries"].count_documents({"status": "pending"})
    return due == 0 and sending == 0 and pending == 0 and mailing == 0


def build(bench: Bench, base: Path, size: int) -> tuple[Store, dict[str, Any]]:
    """Start a system under ``base`` and fill it to ``size`` tasks (see the module's docstring).
    Returns the store and what seeding took (seconds per phase, documents copied)."""
    layout = seed.layout(size)
    infra = start_infra(base / "infra")
    try:
        system = start_system(base / "system", infra, ACCESS_TOKEN_TTL="3600", ADMIN_EMAIL=ADMIN_EMAIL,
                              ADMIN_PASSWORD=PASSWORD)
    except BaseException:
        infra.stop()
        raise
    try:
        return _fill(bench, infra, system, layout)
    except BaseException:
        system.stop()
        infra.stop()
        raise


def _fill(bench: Bench, infra: Any, system: Any, layout: seed.Layout) -> tuple[Store, dict[str, Any]]:
    from taskflow_notify.settings import NotifySettings
    from taskflow_tasks.store import CountStore

    client = MongoClient(infra.mongodb_uri)
    db = lambda name: client[name]  # noqa: E731
    size = layout.size
    phases: dict[str, Any] = {}
    started = time.monotonic()
    auth, tasks = system.service_url("auth"), system.service_url("tasks")
    with requests.Session() as http:
        probe = _register(http, auth, f"probe-{size}@bench.example", "Probe")
        big = _register(http, auth, f"big-{size}@bench.example", "Big owner")
        template = _register(http, auth, seed.TEMPLATE_EMAIL, seed.TEMPLATE_NAME)
        admin = _login(http, auth, ADMIN_EMAIL)
    now = datetime.now(UTC)
    with ThreadPoolExecutor(2) as pool:
        probe_tasks, template_tasks = pool.map(lambda args: _create(tasks, *args, now),
                                               ((probe, layout.probe), (template, layout.per_owner)))
    phases["api_s"] = round(time.monotonic() - started, 1)
    _checked(requests.get(f"{system.service_url('admin')}/api/v1/admin/users?limit=1", headers=admin.headers, timeout=120), 200)
    lead = timedelta(minutes=NotifySettings.model_fields["reminder_lead_minutes"].default)  # the system runs with it
    deadline = time.monotonic() + 600
    while not _settled(db, {probe.id: layout.probe, template.id: layout.per_owner}, lead):
        if time.monotonic() > deadline:
            raise TimeoutError("B7: the system did not apply the API phase's events within 600 s")
        time.sleep(2)
    time.sleep(5)  # admin audits each notification.sent a moment after its delivery's outbox is empty
    phases["events_s"] = round(time.monotonic() - started - phases["api_s"], 1)
    mark = time.monotonic()
    seed.seed_owner(db("taskflow_tasks"), CountStore(lambda: db("taskflow_tasks")), big.id, layout.big, now)
    phases["big_owner_s"] = round(time.monotonic() - mark, 1)
    mark = time.monotonic()
    data_dir = Path(infra.env["TASKFLOW_VAR"]) / "ferretdb" / "data"
    phases["copied"] = seed.copy_template(data_dir, template.id, set(template_tasks), range(1, seed.USERS - 3),
                                          range(1, layout.owners), log=bench.log)
    phases["copies_s"] = round(time.monotonic() - mark, 1)
    phases["database_mb"] = {path.stem: round(path.stat().st_size / 2**20) for path in sorted(data_dir.glob("*.sqlite"))}
    store = Store(infra, system, db, probe, big, admin, template, layout)
    _check(store, probe_tasks)
    bench.log(f"B7 {size:,}: {layout.tasks:,} tasks seeded in {time.monotonic() - started:.0f} s ({phases})")
    return store, phases


def _check(store: Store, probe_tasks: list[str]) -> None:
    """The copies are users the system serves: the last owner copy logs in and sees its tasks;
    every owner's statistics count what was seeded."""
    auth, tasks = store.system.service_url("auth"), store.system.service_url("tasks")
    copy = _login(requests, auth, seed.TEMPLATE_EMAIL.replace("0000000000", seed.code(store.layout.owners - 1)))
    expected = ((copy, store.layout.per_owner), (store.probe, store.layout.probe), (store.big, store.layout.big))
    for user, count in expected:
        stats = _checked(requests.get(f"{tasks}/api/v1/tasks/stats", headers=user.headers, timeout=120), 200).json()
        page = _checked(requests.get(f"{tasks}/api/v1/tasks", headers=user.headers, timeout=120), 200).json()
        if stats["total"] != count or page["total"] != count or len(page["items"]) != min(count, 20):
            raise RuntimeError(f"B7: {user.email} sees {stats['total']} / {page['total']} tasks, not {count}")
    users = store.db("taskflow_auth")["users"].count_documents({})
    if users != seed.USERS:
        raise RuntimeError(f"B7: {users} users, not {seed.USERS}")
    assert len(probe_tasks) == store.layout.probe


def rows(store: Store, budget_s: float) -> dict[str, list[float]]:
    """Each row's times (seconds), in order."""
    from taskflow_common.events.outbox import EPOCH, OutboxStore
    from taskflow_common.events.relay import LEGACY_GRACE
    from taskflow_notify.reminders import SENDING_GRACE
    from taskflow_notify.store import ReminderStore

    http = requests.Session()
    url = {name: store.system.service_url(name) for name in ("auth", "tasks", "admin", "notify")}
    times: dict[str, list[float]] = {}

    def get(base: str, path: str, user: User) -> Callable[[], None]:
        return lambda: _ok(http.get(base + path, headers=user.headers, timeout=300))

    for label, user in (("", store.probe), ("big: ", store.big)):
        first = http.get(f"{url['tasks']}/api/v1/tasks?limit=1", headers=user.headers, timeout=300).json()["items"][0]["id"]
        for name, path in (("GET /tasks", "/api/v1/tasks?limit=20"),
                           ("GET /tasks?status", "/api/v1/tasks?status=in_progress&limit=20"),
                           ("GET /tasks?sort=due_date", "/api/v1/tasks?sort=due_date&limit=20"),
                           ("GET /tasks?q", f"/api/v1/tasks?q={QUERY.replace(' ', '+')}&limit=20"),
                           ("GET /tasks/{id}", f"/api/v1/tasks/{first}"),
                           ("GET /tasks/stats", "/api/v1/tasks/stats")):
            times[label + name] = timed(get(url["tasks"], path, user), budget_s)
        created: list[str] = []
        numbers = itertools.count()
        statuses = itertools.cycle(("in_progress", "todo"))

        def post(user: User = user) -> None:
            body = {"title": f"Timed task {next(numbers)}", "due_date": "2031-01-01T09:00:00Z", "priority": "high"}
            created.append(_checked(http.post(f"{url['tasks']}/api/v1/tasks", headers=user.headers, json=body, timeout=300),
                                    201).json()["id"])

        def patch(user: User = user, task: str = first) -> None:
            _checked(http.patch(f"{url['tasks']}/api/v1/tasks/{task}", headers=user.headers,
                                json={"status": next(statuses)}, timeout=300), 200)

        def delete(user: User = user) -> None:
            if not created:
                raise StopIteration
            _checked(http.delete(f"{url['tasks']}/api/v1/tasks/{created.pop()}", headers=user.headers, timeout=300), 204)

        times[label + "POST /tasks"] = timed(post, budget_s)
        times[label + "PATCH /tasks/{id}"] = timed(patch, budget_s)
        times[label + "DELETE /tasks/{id}"] = timed(delete, budget_s)
    some_user = seed.TEMPLATE_EMAIL.replace("0000000000", seed.code(seed.USERS // 2))
    login = {"email": some_user, "password": PASSWORD}
    times["POST /auth/login"] = timed(lambda: _ok(http.post(f"{url['auth']}/api/v1/auth/login", json=login, timeout=300)),
                                      budget_s)
    times["GET /notifications"] = timed(get(url["notify"], "/api/v1/notifications?limit=20", store.probe), budget_s)
    search = f"/api/v1/admin/users?q={store.probe.email.split('@')[0]}&limit=20"
    times["GET /admin/users?q"] = timed(get(url["admin"], search, store.admin), budget_s)
    times["GET /admin/audit"] = timed(get(url["admin"], "/api/v1/admin/audit?limit=20", store.admin), budget_s)
    outbox = OutboxStore(lambda: store.db("taskflow_tasks"), ["tasks"])

    def relay_look() -> None:
        # What Relay.run_once reads before it works anything: legacy pointers, then the marked documents.
        moment = datetime.now(UTC)
        outbox.adopt_legacy_pointers(moment, LEGACY_GRACE)
        [pending for collection in outbox.collections for pending in outbox.pending(collection)
         if (pending.due or EPOCH) <= moment]

    reminders = ReminderStore(lambda: store.db("taskflow_notify"))

    def reminder_look() -> None:
        # What Reminders.send_due reads before it settles anything (batch 100, lead 60 min).
        moment = datetime.now(UTC)
        reminders.due(moment + timedelta(minutes=60), 100)
        reminders.sending(moment - SENDING_GRACE)

    times["relay scan (tasks)"] = timed(relay_look, budget_s)
    times["reminder scan"] = timed(reminder_look, budget_s)
    http.close()
    return times


def summary(times: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds, and how many samples."""
    return {"p50_ms": round(percentile(times, 0.5) * 1000, 2), "p99_ms": round(percentile(times, 0.99) * 1000, 2),
            "n": len(times)}


def checks(by_size: dict[int, dict[str, dict[str, float]]]) -> list[tuple[Target, float]]:
    """The issue's targets: every probe row's p50 at the largest size ÷ at the smallest ≤ 1.5 (the
    big owner's rows are not compared: that owner grows with the store); at the largest size p50 ≤
    10 ms for single-task reads and writes and ≤ 25 ms for pages and statistics, the big owner's
    too except its ``q`` search, which may read all of its own tasks."""
    sizes = sorted(by_size)
    small, large = by_size[sizes[0]], by_size[sizes[-1]]
    found: list[tuple[Target, float]] = []
    if len(sizes) > 1:
        for name, figures in large.items():
            if not name.startswith("big: "):
                found.append((Target(f"{name} p50 {sizes[-1]:,} ÷ {sizes[0]:,}", GROWTH, at_most=True),
                              ratio(figures["p50_ms"], small[name]["p50_ms"])))
    for name, figures in large.items():
        row = name.removeprefix("big: ")
        bound = SINGLE_TASK_P50_MS if row in SINGLE else PAGE_P50_MS if row in PAGES else None
        if bound is not None and name != "big: GET /tasks?q":
            found.append((Target(f"{name} p50 at {sizes[-1]:,}", bound, at_most=True, unit="ms"), figures["p50_ms"]))
    return found


def run(bench: Bench, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    by_size: dict[int, dict[str, dict[str, float]]] = {}
    seeding: dict[int, dict[str, Any]] = {}
    layouts = {}
    for size in sizes:
        base = bench.base / f"b7-{size}"
        store, seeding[size] = build(bench, base, size)
        try:
            times = rows(store, bench.seconds)
        finally:
            store.system.stop()
            store.infra.stop()
        by_size[size] = {name: summary(found) for name, found in times.items()}
        layouts[size] = store.layout
        bench.log(f"B7 {size:,}: " + ", ".join(f"{name} {figures['p50_ms']:g}/{figures['p99_ms']:g} ms"
                                              for name, figures in by_size[size].items()))
        shutil.rmtree(base, ignore_errors=True)  # a million tasks take gigabytes
    table = {name: {f"{size:,}": by_size[size][name] for size in sizes} for name in by_size[sizes[0]]}
    if len(sizes) > 1:
        for name, figures in table.items():
            figures["ratio_p50"] = ratio(by_size[sizes[-1]][name]["p50_ms"], by_size[sizes[0]][name]["p50_ms"])
    return entry(
        "B7", "scale",
        method="one client (requests, keep-alive) straight to each service, rows timed in turn: 3 warm-ups (1 for a call "
               "over 1 s), then up to "
               f"{SAMPLES} samples or {bench.seconds:g} s (at least {MIN_SAMPLES}); the probe owns {seed.PROBE_TASKS} tasks "
               "at every size, the big owner a tenth of the store; the scans are timed in-process with the services' "
               "own store code (OutboxStore.adopt_legacy_pointers + pending as Relay.run_once looks; ReminderStore.due "
               "+ sending as Reminders.send_due looks). Each size is a fresh `make run` system: probe and template "
               "user made through the API (their events applied by the workers), the big owner by seed_owner, the "
               "template copied in SQLite (bench/seed.py)",
        tool="requests, pymongo", concurrency="1", duration=f"≤ {SAMPLES} samples or {bench.seconds:g} s per row",
        handler="sqlite",
        data="; ".join(f"{size:,}: {layouts[size].tasks:,} tasks = probe {layouts[size].probe} + big {layouts[size].big:,} "
                       f"+ {layouts[size].owners:,} owners × {layouts[size].per_owner:,}, {seed.USERS:,} users"
                       for size in sizes),
        measurements={"rows": table, "seeding": {f"{size:,}": phases for size, phases in seeding.items()}},
        checks=checks(by_size),
        notes="The big owner's tasks are in the tasks database only (written by seed_owner, no events): admin's "
              "tasks read model and audit log and notify's reminders hold the other owners' tasks. Deliveries, "
              "refresh tokens and processed-event ids are not copied (they expire).",
    )
