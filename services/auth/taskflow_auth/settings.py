"""Settings of the auth service, read from the environment (DESIGN §7)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from taskflow_common import email_links
from taskflow_common.settings import Environment, ServiceSettings

from .schemas import Email, password_length


EXAMPLE_ADMIN = ("admin@example.com", "change-me")
"""``ADMIN_EMAIL`` and ``ADMIN_PASSWORD`` as ``deploy/compose.env.example`` spells them: refused in
production, where they would make a known password an admin's."""


LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
EXAMPLE_PUBLIC_HOST = "taskflow.example.com"
HOST_NAME = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.?)+|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\]", re.IGNORECASE)
"""A host as pydantic gives it: DNS labels (IDNA already applied), an IPv4 or a bracketed IPv6 address."""
"""The host of ``PUBLIC_URL`` in k8s/base: an overlay must set its own."""


def _default_key_file() -> Path:
    return Path(os.environ.get("TASKFLOW_VAR", "var")) / "auth" / "jwt-private.pem"


class AuthSettings(ServiceSettings):
    """The shared settings plus auth's own.

    Attributes:
        jwt_private_key_file: ``JWT_PRIVATE_KEY_FILE``; the PEM RSA key that signs access
            tokens. Outside production a missing file is generated (under ``TASKFLOW_VAR``).
        jwt_previous_key_files: ``JWT_PREVIOUS_KEY_FILES``; comma-separated PEM keys (private or
            public) that still verify, so a rotation logs nobody out.
        access_token_ttl: ``ACCESS_TOKEN_TTL`` in seconds (15 min).
        refresh_token_ttl: ``REFRESH_TOKEN_TTL`` in seconds (30 days).
        bcrypt_rounds: ``BCRYPT_ROUNDS``, the bcrypt cost (12; tests lower it).
        admin_email, admin_password: ``ADMIN_EMAIL`` / ``ADMIN_PASSWORD``; the first admin,
            created at start-up when no account has that email (an existing one is never changed).
            The password follows a user's rule (8..128 characters); production refuses the
            example values (:data:`EXAMPLE_ADMIN`).
        login_max_failures_per_account, login_max_failures_per_client, login_failure_window:
            failed password checks tolerated per account from unknown devices and per client
            address within the window (seconds) before login and password change answer 429.
        login_max_failures_per_device: ``LOGIN_MAX_FAILURES_PER_DEVICE``; the same for one device
            known to the account (see :mod:`.throttling`).
        device_cookie_ttl: ``DEVICE_COOKIE_TTL`` in seconds (180 days): how long a device stays
            known to an account after its last sign-in.
        public_url: ``PUBLIC_URL``; where users reach TaskFlow (the gateway), the base of the
            links in emails: no user, query or fragment. Required in production, and there
            HTTPS unless the host is this machine (a Compose trial); ``http://localhost:8000``
            otherwise.
        email_link_key_file: ``EMAIL_LINK_KEY_FILE``; the key auth and notify derive link tokens
            with (:mod:`taskflow_common.email_links`); generated outside production.
        email_verification_ttl: ``EMAIL_VERIFICATION_TTL`` in seconds (48 h): how long a
            verification link works.
        verification_resends_per_hour: ``VERIFICATION_RESENDS_PER_HOUR``; verification emails a
            user may ask for again within an hour.
    """

    service: ClassVar[str] = "auth"

    jwt_private_key_file: Path = Field(default_factory=_default_key_file)
    jwt_previous_key_files: str = ""
    access_token_ttl: int = Field(default=900, ge=60, le=86400)
    refresh_token_ttl: int = Field(default=30 * 86400, ge=300)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    admin_email: Email | None = None
    admin_password: SecretStr | None = None
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_client: int = Field(default=20, ge=1)
    login_max_failures_per_device: int = Field(default=5, ge=1)
    login_failure_window: int = Field(default=900, ge=1)
    device_cookie_ttl: int = Field(default=180 * 86400, ge=60)
    public_url: AnyHttpUrl | None = None
    email_link_key_file: Path = Field(default_factory=email_links.default_key_file)
    email_verification_ttl: int = Field(default=48 * 3600, ge=60)
    verification_resends_per_hour: int = Field(default=3, ge=1)

    @property
    def link_base(self) -> str:
        """``PUBLIC_URL`` without a trailing slash, the base of links in emails."""
        return str(self.public_url or "http://localhost:8000").rstrip("/")

    @property
    def previous_key_files(self) -> list[Path]:
        return [Path(name.strip()) for name in self.jwt_previous_key_files.split(",") if name.strip()]

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_base(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is None:
            return value
        if value.username or value.password or value.query is not None or value.fragment is not None:
            raise ValueError("must be a base URL: no user, password, query or fragment")
        if not HOST_NAME.fullmatch(value.host or ""):
            raise ValueError("must name a host by a DNS name or an address")
        return value

    @field_validator("public_url", mode="before")
    @classmethod
    def _no_empty_query_or_fragment(cls, value: object) -> object:
        if isinstance(value, str) and ("?" in value or "#" in value):
            raise ValueError("must be a base URL: no user, password, query or fragment")
        return value

    @field_validator("admin_password")
    @classmethod
    def _admin_password_is_a_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            password_length(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> AuthSettings:
        if self.taskflow_env is Environment.PRODUCTION:
            if not self.jwt_private_key_file.is_file():
                raise ValueError("JWT_PRIVATE_KEY_FILE must name an existing key file in production")
            if self.public_url is None:
                raise ValueError("PUBLIC_URL is required in production (the base of the links in emails)")
            if self.public_url.scheme != "https" and self.public_url.host not in LOCAL_HOSTS:
                raise ValueError("PUBLIC_URL must be https in production, unless it names this machine")
            if (self.public_url.host or "").rstrip(".") == EXAMPLE_PUBLIC_HOST:
                raise ValueError("PUBLIC_URL must not be the Kubernetes base's placeholder in production")
            if self.bcrypt_rounds < 12:
                raise ValueError("BCRYPT_ROUNDS below 12 is for tests only")
            password = self.admin_password.get_secret_value() if self.admin_password else None
            if self.admin_email == EXAMPLE_ADMIN[0] or password == EXAMPLE_ADMIN[1]:
                raise ValueError(
                    "ADMIN_EMAIL and ADMIN_PASSWORD must not be deploy/compose.env.example's in production"
                )
        if (self.admin_email is None) != (self.admin_password is None):
            raise ValueError("ADMIN_EMAIL and ADMIN_PASSWORD go together")
        email_links.check_key_file(self.email_link_key_file, production=self.taskflow_env is Environment.PRODUCTION)
        return self
