"""Operator commands of the auth service.

    python -m taskflow_auth.cli create-admin EMAIL     # password from ADMIN_PASSWORD or the prompt

Creates the account as an active admin, or promotes and reactivates an existing one (its
password is then left unchanged). The same happens at start-up for ``ADMIN_EMAIL``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from pydantic import TypeAdapter, ValidationError

from . import assemble
from .schemas import Email, NewPassword
from .settings import AuthSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskflow_auth.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create-admin", help="create or promote an admin").add_argument("email")
    args = parser.parse_args(argv)
    password = os.environ.get("ADMIN_PASSWORD") or getpass.getpass("Password for the admin: ")
    try:
        email = TypeAdapter(Email).validate_python(args.email)
        TypeAdapter(NewPassword).validate_python(password)
    except ValidationError as error:
        print(f"invalid: {error.errors(include_input=False)[0]['msg']}", file=sys.stderr)
        return 2
    user = assemble(AuthSettings.load()).accounts.ensure_admin(email, password)
    print(f"{user['email']} is an active admin (id {user['_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
