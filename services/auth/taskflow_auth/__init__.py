"""The auth service: accounts, credentials and the tokens every other service trusts (DESIGN §4 auth)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask
from taskflow_common.app import create_service_app
from taskflow_common import email_links
from taskflow_common.docs import docs_blueprint
from taskflow_common.events.plumbing import ServiceEvents
from taskflow_common.expiry import expiry_indexes
from taskflow_common.locks import DocumentLocks
from taskflow_common.mongo import Mongo
from taskflow_common.settings import Environment
from taskflow_common.tokens import StaticJWKS, TokenVerifier

from . import keys as signing_keys
from . import verify_page
from .accounts import Accounts, NotAnAdmin
from .api import api
from .events import UserEvents
from .internal import internal
from .passwords import PasswordHasher
from .settings import AuthSettings
from .store import EXPIRIES, INDEXES, USERS, AttemptBudgets, Devices, RefreshTokenStore, UserStore, VerificationLinkStore
from .throttling import SignInThrottle
from .verification import VerificationLinks

log = logging.getLogger(__name__)


API_DOCUMENTS = {
    "auth": "/api/v1/auth/openapi.json",
    "tasks": "/api/v1/tasks/openapi.json",
    "admin": "/api/v1/admin/openapi.json",
    "notify": "/api/v1/notifications/openapi.json",
}


@dataclass(frozen=True)
class Auth:
    """The auth service's parts, assembled once per process from its settings."""

    settings: AuthSettings
    mongo: Mongo
    events: ServiceEvents
    keys: signing_keys.SigningKeys
    accounts: Accounts


def assemble(settings: AuthSettings) -> Auth:
    """Connect the stores, load (or, outside production, generate) the signing key, create indexes."""
    mongo = Mongo(settings.mongodb_uri, settings.database_name, app_name="taskflow-auth",
                  timeout_seconds=settings.dependency_timeout_seconds)
    events = ServiceEvents("auth", settings.rabbitmq_url, mongo, [USERS])
    keys = signing_keys.load(
        settings.jwt_private_key_file,
        settings.previous_key_files,
        generate_missing=settings.taskflow_env is not Environment.PRODUCTION,
    )
    db = lambda: mongo.db  # noqa: E731 (resolved per call: fork-safe)
    locks = DocumentLocks(db)
    accounts = Accounts(
        settings,
        UserStore(db, events.outbox),
        RefreshTokenStore(db, ttl_seconds=settings.refresh_token_ttl),
        SignInThrottle(
            AttemptBudgets(db, window_seconds=settings.login_failure_window),
            Devices(db, ttl_seconds=settings.device_cookie_ttl),
            settings,
        ),
        VerificationLinks(
            VerificationLinkStore(db),
            email_links.load_key(settings.email_link_key_file, generate_missing=settings.taskflow_env is not Environment.PRODUCTION),
            base=settings.link_base,
            ttl_seconds=settings.email_verification_ttl,
        ),
        AttemptBudgets(db, window_seconds=3600),
        locks,
        keys,
        PasswordHasher(settings.bcrypt_rounds),
        UserEvents(events),
    )
    mongo.ensure_indexes([*INDEXES, *events.indexes, *expiry_indexes(mongo.db, [*EXPIRIES, *events.expiries])])
    return Auth(settings, mongo, events, keys, accounts)


def create_app(settings: AuthSettings | None = None) -> Flask:
    """The auth service's WSGI app; ``settings`` default to the environment's.

    At start-up the first admin of ``ADMIN_EMAIL`` / ``ADMIN_PASSWORD`` is created when no account
    has that email; an existing account is never changed (one that is not an admin is logged).
    """
    auth = assemble(settings or AuthSettings.load())
    if auth.settings.admin_email and auth.settings.admin_password:
        try:
            auth.accounts.create_first_admin(auth.settings.admin_email, auth.settings.admin_password.get_secret_value())
        except NotAnAdmin as refused:
            log.error("%s", refused)
    app = create_service_app(
        auth.settings,
        [api, internal],
        mongo=auth.mongo,
        verifier=TokenVerifier(StaticJWKS(auth.keys.jwks)),
        access_policy=auth.accounts,
    )
    # Auth hosts the one documentation page of the API (Kong serves no files): see taskflow_common.docs.
    app.register_blueprint(docs_blueprint(API_DOCUMENTS))
    app.register_blueprint(verify_page.page)
    app.extensions["taskflow_auth.accounts"] = auth.accounts
    app.extensions["taskflow_auth.keys"] = auth.keys
    return app
