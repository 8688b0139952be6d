"""Operator commands of the auth service.

    python -m taskflow_auth.cli create-admin EMAIL     # password from ADMIN_PASSWORD or the prompt
    python -m taskflow_auth.cli promote EMAIL          # an existing account becomes an admin

``create-admin`` creates the account as an active admin, as start-up does for ``ADMIN_EMAIL``; it
never changes an existing account. ``promote`` makes an existing account an admin, keeping its
password and its active flag: the one way, besides an admin's own call, to hand out the role.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from pydantic import TypeAdapter, ValidationError

from . import assemble
from .accounts import NotAnAdmin
from .errors import UserNotFound
from .schemas import Email, NewPassword
from .settings import AuthSettings


def _invalid(error: ValidationError) -> int:
    """Say which argument was refused and why; the exit status of a refused argument (2)."""
    print(f"invalid: {error.errors(include_input=False)[0]['msg']}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskflow_auth.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create-admin", help="create an admin account").add_argument("email")
    commands.add_parser("promote", help="make an existing account an admin").add_argument("email")
    args = parser.parse_args(argv)
    try:
        email = TypeAdapter(Email).validate_python(args.email)
    except ValidationError as error:
        return _invalid(error)
    accounts = assemble(AuthSettings.load()).accounts
    if args.command == "promote":
        try:
            user = accounts.promote(email)
        except UserNotFound:
            print(f"no account has the email {email}", file=sys.stderr)
            return 1
        print(f"{user['email']} is an admin (id {user['_id']}, {'active' if user['active'] else 'deactivated'})")
        return 0
    password = os.environ.get("ADMIN_PASSWORD") or getpass.getpass("Password for the admin: ")
    try:
        TypeAdapter(NewPassword).validate_python(password)
    except ValidationError as error:
        return _invalid(error)
    try:
        user = accounts.create_first_admin(email, password)
    except NotAnAdmin as refused:
        print(refused, file=sys.stderr)
        return 1
    print(f"{user['email']} is an active admin (id {user['_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
