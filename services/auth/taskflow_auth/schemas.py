"""Request and response bodies of the auth service; they validate requests and produce the
OpenAPI document. Unknown fields (``role``, ``id``, ``active``…) are 422 and never honoured."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from taskflow_common.api import RequestBody, requires_one_of
from taskflow_common.pagination import PageQuery
from taskflow_common.text import NOT_BLANK, PRINTABLE_NOT_BLANK, printable_not_blank

from .passwords import MAX_LENGTH, MIN_LENGTH, normalized

Role = Literal["user", "admin"]


def _trimmed_lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def mailbox(value: str) -> str:
    """``value`` as email-validator normalises it, so that one mailbox has one spelling: the local
    part in Unicode NFC (RFC 6532 §3.1), the domain in its Unicode form (IDNA 2008; punycode is
    decoded). Raises ValueError when it is not an address."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None


def _mailbox_or_as_given(value: str) -> str:
    # A login with something that is no address matches nobody (401), like an unknown address.
    try:
        return mailbox(value)
    except ValueError:
        return value


def password_length(value: str) -> str:
    """``value`` when it is 8..128 characters in Unicode NFC; else ValueError saying so."""
    length = len(normalized(value))
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long")
    return value


def _case_insensitive(word: str) -> str:
    return "".join(f"[{letter.upper()}{letter.lower()}]" if letter.isalpha() else letter for letter in word)


_SPECIAL_USE_DOMAIN = "[.@](?:" + "|".join(map(_case_insensitive, SPECIAL_USE_DOMAIN_NAMES)) + ")$"

Email = Annotated[
    str,
    BeforeValidator(_trimmed_lower),
    Field(max_length=254, json_schema_extra={"format": "email", "not": {"pattern": _SPECIAL_USE_DOMAIN}}),
    AfterValidator(mailbox),
]
"""An email address, trimmed and lower-cased, then stored and compared in its :func:`mailbox`
form (DESIGN §4); the special-use domains of RFC 6761 (``.test``, ``.localhost``…) can never
receive mail and are refused."""
LoginEmail = Annotated[
    str,
    BeforeValidator(_trimmed_lower),
    Field(min_length=1, max_length=254, json_schema_extra={"pattern": NOT_BLANK}),
    AfterValidator(_mailbox_or_as_given),
]
NewPassword = Annotated[
    str,
    Field(
        max_length=4 * MAX_LENGTH,
        description=f"{MIN_LENGTH} to {MAX_LENGTH} characters of any script, counted in Unicode NFC.",
        json_schema_extra={"minLength": MIN_LENGTH, "maxLength": MAX_LENGTH},
    ),
    AfterValidator(password_length),
]
"""8..128 characters, any Unicode; the whole password counts (see :mod:`.passwords`)."""
GivenPassword = Annotated[str, Field(min_length=1, max_length=4 * MAX_LENGTH)]
Name = Annotated[
    str,
    Field(min_length=1, max_length=100, json_schema_extra={"pattern": PRINTABLE_NOT_BLANK}),
    AfterValidator(printable_not_blank),
]
"""1..100 characters as sent, no control characters, not blank; stored without surrounding spaces."""


class RegisterRequest(RequestBody):
    email: Email = Field(examples=["ada@example.com"])
    password: NewPassword = Field(examples=["correct horse battery staple"])
    name: Name = Field(examples=["Ada Lovelace"])


class LoginRequest(RequestBody):
    email: LoginEmail = Field(examples=["ada@example.com"])
    password: GivenPassword = Field(examples=["correct horse battery staple"])


class RefreshRequest(RequestBody):
    refresh_token: str = Field(min_length=1, max_length=512, examples=["ZFo2ZWJ0a1ZrUXhqT0JxV0hLd3N4dw"])


class VerifyEmailRequest(RequestBody):
    token: str = Field(
        min_length=1, max_length=512, description="The token of the verification link (after `#token=`).",
        examples=["bXlfdmVyaWZpY2F0aW9uX3Rva2VuX2V4YW1wbGVfMDAw"],
    )


class UpdateMeRequest(RequestBody):
    name: Name = Field(examples=["Ada King"])


class ChangePasswordRequest(RequestBody):
    current_password: GivenPassword = Field(examples=["correct horse battery staple"])
    new_password: NewPassword = Field(examples=["a longer passphrase of 2026"])


class User(BaseModel):
    """A user as clients see it (DESIGN §4)."""

    id: str
    email: str
    name: str
    role: Role
    active: bool
    email_verified: bool = Field(default=False, description="Whether the user opened a verification link sent to the address.")
    created_at: datetime

    @classmethod
    def from_document(cls, user: dict[str, Any]) -> Self:
        """From a stored user; fields the model does not name (the password hash…) are left out."""
        return cls.model_validate({**user, "id": str(user["_id"])}, strict=False)


class TokenResponse(BaseModel):
    """A new token pair (RFC 6749 §5.1 names) with the user it belongs to."""

    user: User
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class JsonWebKeySet(BaseModel):
    """RFC 7517 §5: the public keys that verify access tokens."""

    keys: list[dict[str, Any]]


class UserRecord(User):
    """A user as the internal API and the ``user.*`` events show it to other services."""

    updated_at: datetime
    last_login_at: datetime | None = None
    version: int


class UserListQuery(PageQuery):
    """Pages of all users, oldest first."""


class UserChange(RequestBody):
    """What an admin may change on a user, through the admin service."""

    model_config = ConfigDict(json_schema_extra=requires_one_of("role", "active"))

    role: Role | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> UserChange:
        if self.role is None and self.active is None:
            raise ValueError("give role, active or both")
        return self
