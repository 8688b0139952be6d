"""Who may check a password now: sign-in throttling with device cookies (OWASP Authentication
Cheat Sheet, "Slow down online guessing attacks with device cookies"; DESIGN §4 auth).

A device that signed in to an account before (its cookie names it; :class:`~.store.Devices`)
tries that account's password on a budget of its own. Every other attempt spends the account's
budget for unknown devices and its client address's. An attacker guessing from anywhere so
exhausts only budgets that the owner's known devices never spend: the owner keeps signing in from
them, while the right password from an unknown device stays throttled. Budgets are reserved
before the password is checked (:class:`~.store.LoginFailures`), so parallel attempts check at
most the budget.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from .errors import LoginThrottled
from .settings import AuthSettings
from .store import Devices, LoginFailures

DEVICE_COOKIE = "taskflow_device"
"""The cookie that names a device: HttpOnly, SameSite=Strict, path ``/api/v1/auth``."""

_DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def device_token(cookie: str | None) -> str | None:
    """The device token a cookie value carries, or None when it is missing or not one of ours."""
    return cookie if cookie is not None and _DEVICE_TOKEN.fullmatch(cookie) else None


def _device_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Attempt:
    """The budgets one password check reserved (keys of :class:`~.store.LoginFailures`), and
    the known device's budget among them, if the device is known to the account."""

    keys: tuple[str, ...]
    device_key: str | None


class SignInThrottle:
    """Reserves the budgets of password checks and remembers the devices that signed in.

    Args:
        failures: the budget counters.
        devices: the devices known to accounts.
        settings: the budgets (``login_max_failures_per_*``) and the window.
    """

    def __init__(self, failures: LoginFailures, devices: Devices, settings: AuthSettings) -> None:
        self.failures = failures
        self.devices = devices
        self.settings = settings

    def attempt(self, email: str, client: str, device: str | None) -> Attempt:
        """Reserve one password check of the account of ``email`` (which need not exist).

        Args:
            email: the account's normalised email.
            client: the caller's address.
            device: the token of the caller's device cookie (see :func:`device_token`), or None.

        Raises:
            LoginThrottled: a budget this attempt would spend is exhausted in its window.
        """
        if device is not None and self.devices.known(_device_hash(device), email):
            device_key = f"device:{_device_hash(device)}:{email}"
            budgets = [(device_key, self.settings.login_max_failures_per_device)]
        else:
            device_key = None
            budgets = [
                (f"account:{email}", self.settings.login_max_failures_per_account),
                (f"client:{client}", self.settings.login_max_failures_per_client),
            ]
        reserved: list[str] = []
        for key, limit in budgets:
            wait = self.failures.reserve(key, limit)
            if wait is not None:
                for spent in reserved:
                    self.failures.release(spent)
                raise LoginThrottled(wait)
            reserved.append(key)
        return Attempt(tuple(reserved), device_key)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: give the reservations back and forget a known device's
        failures (an unknown devices' budget keeps its failures until its window ends)."""
        for key in attempt.keys:
            self.failures.release(key)
        if attempt.device_key is not None:
            self.failures.reset(attempt.device_key)

    def remember(self, email: str, device: str | None) -> str:
        """Record that the device signed in to the account of ``email``.

        Returns:
            the device's token for its cookie: ``device`` itself, or a new one (256 random bits)
            when the caller had none.
        """
        token = device or secrets.token_urlsafe(32)
        self.devices.remember(_device_hash(token), email)
        return token
