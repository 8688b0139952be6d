"""Admin's user search reads its trigram index first (issue 19: a search costs what its matches
cost, not what every user costs) and still finds exactly what the engine's case-insensitive regex
over every user finds."""

from __future__ import annotations

import random
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from pymongo import MongoClient
from taskflow_admin.store import CANDIDATES, FEW, SEARCH, USERS, ReadModels

from tests.support.commands import Commands
from tests.support.infra import Infra

ALPHABET = "abcdeksABCKS019.-_ @éÉſ\u212aß+"
"""Letters the folding treats apart: ASCII in both cases, long s and the Kelvin sign (which fold
onto s and k), é/É (non-ASCII, folded by the regex only), ß, punctuation the regex escapes."""


def read_models(app: Flask) -> ReadModels:
    """The app's read models, with the search index marked whole (as the worker does at start)."""
    models = app.extensions["taskflow_admin"].read_models
    models.index_existing_users()
    return models


def snapshot(number: int, version: int = 1, **changes: Any) -> dict[str, Any]:
    return {"id": f"user-{number:04d}", "email": f"person{number}@example.com", "name": f"Person {number}",
            "role": "user", "active": True, "created_at": f"2026-01-01T00:{number // 60 % 60:02d}:{number % 60:02d}Z",
            "last_login_at": None, "version": version, **changes}


def regex_alone(app: Flask, q: str) -> list[str]:
    """The ids the engine's regex finds over every user: what the search must answer."""
    pattern = {"$regex": re.escape(q), "$options": "i"}
    users = app.extensions["taskflow.mongo"].db[USERS]
    return sorted(user["_id"] for user in users.find({"$or": [{"email": pattern}, {"name": pattern}]}, {"_id": 1}))


def searched(app: Flask, q: str) -> tuple[list[str], int]:
    found, total = app.extensions["taskflow_admin"].read_models.users(q=q, role=None, active=None, skip=0, limit=1000)
    return sorted(user["_id"] for user in found), total


def test_a_search_finds_what_the_regex_over_every_user_finds(admin_app: Flask) -> None:
    rng = random.Random(19)
    words = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 14))) for _ in range(300)]
    for number, word in enumerate(words):
        read_models(admin_app).apply_user(snapshot(number, email=f"{word.replace(' ', '')}{number}@example.com",
                                                   name=f"{rng.choice(words)} {word}"))
    queries = ["PERSON", "ſ", "kelvin", "é", "xyz", "@EXAMPLE.COM", "s.-", "0@ex"]
    for _ in range(150):
        word = rng.choice(words)
        start = rng.randrange(len(word))
        piece = word[start:start + rng.randint(1, 6)]
        queries.append("".join(character.swapcase() if rng.random() < 0.4 else character for character in piece))
    queries += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 5))) for _ in range(50)]
    differences = []
    for q in queries:
        expected = regex_alone(admin_app, q)
        if searched(admin_app, q) != (expected, len(expected)):
            differences.append(q)
    assert differences == []


def test_a_selective_search_reads_a_few_candidates_from_the_index(admin_app: Flask) -> None:
    models = read_models(admin_app)
    for number in range(1, 1201):
        models.apply_user(snapshot(number))
    exact = models.candidates("person1137@")  # the rarest trigram's users: a superset, and small
    assert exact is not None and "user-1137" in exact and len(exact) <= 20
    few = models.candidates("Person 113")  # a superset: "Person 1113" holds every trigram probed
    assert few is not None and len(few) <= 30 and {f"user-{n:04d}" for n in (113, *range(1130, 1140))} <= set(few)
    assert models.candidates("person") is None  # every user holds it: searched by the regex alone
    assert models.candidates("on") is None  # no trigram
    assert searched(admin_app, "PERSON1137@EXAMPLE") == (["user-1137"], 1)


def counted(commands: Commands) -> list[tuple[str, int]]:
    """The trigram and limit of every count of ``search`` postings sent, in order."""
    counts = []
    for command in commands.to(SEARCH, "aggregate"):
        stages = {name: value for stage in command["pipeline"] for name, value in stage.items()}
        counts.append((stages["$match"]["trigram"], stages["$limit"]))
    return counts


def test_probing_stops_at_a_trigram_of_few_users_and_never_counts_past_the_rarest_so_far(infra: Infra) -> None:
    """Users "Person 1" to "Person 400": of "person137@"'s trigrams, "per" to "son" are held by all
    400, "on1" by 111 (1, 10-19, 100-199), "n13" by 11 (13, 130-139): few, so probing stops there."""
    commands = Commands()
    client: MongoClient = MongoClient(infra.mongodb_uri, tz_aware=True, event_listeners=[commands])
    name = f"search_{uuid.uuid4().hex[:10]}"
    try:
        models = ReadModels(lambda: client[name])
        for number in range(1, 401):
            models.apply_user(snapshot(number))
        models.index_existing_users()
        commands.sent.clear()
        found = models.candidates("person137@")
        assert counted(commands) == [("per", CANDIDATES + 1), ("ers", 400), ("rso", 400), ("son", 400), ("on1", 400), ("n13", 111)]
        assert 11 <= FEW and [read["filter"]["trigram"] for read in commands.to(SEARCH, "find")] == ["n13"]
        assert found == sorted(f"user-{n:04d}" for n in (13, *range(130, 140)))
    finally:
        client.drop_database(name)
        client.close()


def test_a_changed_email_is_found_by_its_new_value_only_whatever_the_order_of_its_events(admin_app: Flask) -> None:
    """Versions 1 to 4 of one user, the fourth changing the email back to the second's, applied by
    four threads at once in a shuffled order: the stored (newest) email is found, the others not."""
    models = read_models(admin_app)
    for round_ in range(10):
        emails = [f"first{round_}@example.com", f"second{round_}@example.com", f"third{round_}@example.com", f"second{round_}@example.com"]
        versions = [snapshot(9000 + round_, version, email=email) for version, email in enumerate(emails, start=1)]
        random.Random(round_).shuffle(versions)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(models.apply_user, versions))
        assert searched(admin_app, f"second{round_}@")[0] == [f"user-{9000 + round_}"]
        assert searched(admin_app, f"first{round_}@")[0] == searched(admin_app, f"third{round_}@")[0] == []
    search = admin_app.extensions["taskflow.mongo"].db[SEARCH]
    models.apply_user(snapshot(9000, 5, email="final@example.com"))
    assert {posting["version"] for posting in search.find({"user_id": "user-9000"})} == {5}


def test_users_stored_before_the_index_are_found_before_and_after_the_worker_indexes_them(admin_app: Flask) -> None:
    """A database of an earlier build holds users without postings: until the worker's one pass
    has indexed them, every search is the regex over every user; after it, the index finds them."""
    models = admin_app.extensions["taskflow_admin"].read_models
    users = admin_app.extensions["taskflow.mongo"].db[USERS]
    users.insert_many([{**snapshot(n), "_id": snapshot(n)["id"]} for n in range(40)])  # as stored before
    models.apply_user(snapshot(40))
    assert models.candidates("person7@") is None
    assert searched(admin_app, "person7@") == (["user-0007"], 1)

    assert models.index_existing_users() == 40
    assert models.candidates("person7@") is not None and searched(admin_app, "person7@") == (["user-0007"], 1)
    assert models.index_existing_users() == 0
