"""Admin's read models from events: order-proof, duplicate-proof, rebuildable (issue 6)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Flask
from taskflow_admin.administration import Administration
from taskflow_admin.schemas import AuditEntry
from taskflow_admin.store import AUDIT, TASKS, USERS, pair_key
from taskflow_common.events.envelope import Event, new_event

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def user(version: int, **changes: Any) -> dict[str, Any]:
    snapshot = {"id": "u1", "email": "ada@example.com", "name": "Ada", "role": "user", "active": True,
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "last_login_at": None, "version": version}
    return {**snapshot, **changes}


def administration(app: Flask) -> Administration:
    return app.extensions["taskflow_admin"]


def read_models(app: Flask) -> dict[str, list[dict[str, Any]]]:
    db = app.extensions["taskflow.mongo"].db
    return {name: list(db[name].find({}).sort("_id", 1)) for name in (USERS, TASKS, AUDIT)}


def feed(app: Flask, events: list[Event]) -> None:
    handlers = administration(app).projections.handlers
    for item in events:
        handlers[item.type](item)


def test_out_of_order_snapshots_leave_the_newest(admin_app: Flask) -> None:
    feed(admin_app, [
        new_event("user.role_changed", service="auth", subject="u1", data={**user(3, role="admin"), "previous_role": "user"}, actor_id="a1"),
        new_event("user.registered", service="auth", subject="u1", data=user(1), actor_id="u1"),
        new_event("user.updated", service="auth", subject="u1", data={**user(2, name="Ada L."), "changed": ["name"]}, actor_id="u1"),
    ])
    stored = read_models(admin_app)[USERS][0]
    assert (stored["role"], stored["name"], stored["version"]) == ("admin", "Ada", 3)


def test_logins_move_last_login_forward_only(admin_app: Flask) -> None:
    feed(admin_app, [
        new_event("user.logged_in", service="auth", subject="u1", data=user(1, last_login_at="2026-02-02T00:00:00Z"), actor_id="u1"),
        new_event("user.logged_in", service="auth", subject="u1", data=user(1, last_login_at="2026-01-15T00:00:00Z"), actor_id="u1"),
    ])
    assert read_models(admin_app)[USERS][0]["last_login_at"].isoformat().startswith("2026-02-02")


def test_each_event_is_audited_once_with_actor_summary_and_trace(admin_app: Flask) -> None:
    changed = new_event("user.role_changed", service="auth", subject="u1", data={**user(2, role="admin"), "previous_role": "user"}, actor_id="boss")
    changed = Event(changed.id, changed.type, changed.source, changed.subject, changed.time, changed.data, TRACEPARENT)
    feed(admin_app, [changed, changed])
    [entry] = read_models(admin_app)[AUDIT]
    assert entry["_id"] == changed.id and entry["actor_id"] == "boss" and entry["subject_id"] == "u1"
    assert entry["summary"] == "role changed from user to admin"
    assert entry["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_event_id_another_source_took_first_does_not_hide_the_event(admin_app: Flask) -> None:
    """CloudEvents makes only source + id unique: notify's event under the id of auth's (by chance,
    or a hostile service pushing auth's event out of the log) leaves both audited, each once."""
    registered = new_event("user.registered", service="auth", subject="u1", data=user(1), actor_id="u1")
    sent = new_event("notification.sent", service="notify", subject="n1", data={"kind": "welcome", "channels": ["email"]})
    sent = replace(sent, id=registered.id)
    for order in ([sent, registered, registered, sent], [registered, sent, sent, registered]):
        admin_app.extensions["taskflow.mongo"].db[AUDIT].drop()
        feed(admin_app, order)
        entries, total = administration(admin_app).audit(type=None, actor_id=None, subject_id=None, since=None, skip=0, limit=20)
        assert total == 2
        assert sorted((entry["id"], entry["type"]) for entry in entries) == [
            (registered.id, "notification.sent"), (registered.id, "user.registered")]
        # Keys of types the engine's typed indexes order (a string and a number): a document key
        # would make every sorted read of the log a full sort on FerretDB (sqlite-typed-keys patch).
        keys = [entry["_id"] for entry in read_models(admin_app)[AUDIT]]
        assert sorted(isinstance(key, str) for key in keys) == [False, True] and all(isinstance(key, str | int) for key in keys)


def test_an_id_spelling_the_key_of_another_sources_event_does_not_hide_that_event(admin_app: Flask) -> None:
    """A hostile publisher that takes auth's event id and also publishes an event whose id spells
    the key auth's event would move to still leaves auth's event audited (FerretDB's ``_id`` index
    compares JSON text, in which an ObjectId is its hex string)."""
    registered = new_event("user.registered", service="auth", subject="u1", data=user(1), actor_id="u1")
    spellings = [registered.id, str(pair_key(registered.source, registered.id))]
    sent = new_event("notification.sent", service="notify", subject="n1", data={"kind": "welcome", "channels": ["email"]})
    feed(admin_app, [replace(sent, id=spelling) for spelling in spellings])
    feed(admin_app, [registered, registered])
    assert sorted(entry["type"] for entry in read_models(admin_app)[AUDIT]) == ["notification.sent"] * 2 + ["user.registered"]


def test_an_actor_that_is_not_a_string_is_audited_without_one(admin_app: Flask) -> None:
    """A publisher's malformed ``actor_id`` (a number, an object) must not make the audit page fail."""
    sent = new_event("notification.sent", service="notify", subject="n1", data={"kind": "welcome", "channels": ["email"]})
    feed(admin_app, [replace(sent, data={**sent.data, "actor_id": {"id": 5}})])
    entries, _ = administration(admin_app).audit(type=None, actor_id=None, subject_id=None, since=None, skip=0, limit=20)
    assert [AuditEntry.model_validate(entry).actor_id for entry in entries] == [None]


def test_an_entry_recorded_before_entries_kept_their_source_is_told_by_its_type(admin_app: Flask) -> None:
    registered = new_event("user.registered", service="auth", subject="u1", data=user(1), actor_id="u1")
    db = admin_app.extensions["taskflow.mongo"].db
    db[AUDIT].insert_one({"_id": registered.id, "time": registered.time, "type": registered.type, "actor_id": "u1",
                          "subject_id": "u1", "summary": "registered", "trace_id": None, "data": registered.data})
    sent = new_event("notification.sent", service="notify", subject="n1", data={"kind": "welcome", "channels": ["email"]})
    feed(admin_app, [registered, replace(sent, id=registered.id)])
    assert sorted(entry["type"] for entry in read_models(admin_app)[AUDIT]) == ["notification.sent", "user.registered"]


def test_replaying_the_same_events_twice_changes_nothing(admin_app: Flask) -> None:
    events = [
        new_event("user.registered", service="auth", subject="u1", data=user(1), actor_id="u1"),
        new_event("task.created", service="tasks", subject="t1", data=_task("t1", 1, "todo"), actor_id="u1"),
        new_event("task.updated", service="tasks", subject="t1", data={**_task("t1", 2, "done"), "changed": ["status"]}, actor_id="u1"),
        new_event("task.deleted", service="tasks", subject="t1", data=_task("t1", 2, "done"), actor_id="u1"),
    ]
    feed(admin_app, events)
    once = read_models(admin_app)
    feed(admin_app, events)
    assert read_models(admin_app) == once
    assert once[TASKS][0]["deleted"] is True


def test_a_rebuild_produces_the_same_read_models(admin_app: Flask) -> None:
    feed(admin_app, [
        new_event("user.registered", service="auth", subject="u1", data=user(1), actor_id="u1"),
        new_event("user.logged_in", service="auth", subject="u1", data=user(1, last_login_at="2026-03-01T00:00:00Z"), actor_id="u1"),
        new_event("task.created", service="tasks", subject="t1", data=_task("t1", 1, "todo"), actor_id="u1"),
        new_event("task.created", service="tasks", subject="t2", data=_task("t2", 1, "in_progress"), actor_id="u1"),
        new_event("task.deleted", service="tasks", subject="t2", data=_task("t2", 1, "in_progress"), actor_id="u1"),
    ])
    before = read_models(admin_app)
    assert administration(admin_app).rebuild() == 5
    assert read_models(admin_app) == before


def _task(task_id: str, version: int, status: str) -> dict[str, Any]:
    return {"id": task_id, "title": "T", "description": "", "status": status, "priority": "high",
            "due_date": "2026-06-01T00:00:00Z", "tags": [], "owner_id": "u1", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "completed_at": None, "version": version}
