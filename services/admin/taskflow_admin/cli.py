"""Operator commands of the admin service.

    python -m taskflow_admin.cli rebuild    # drop the read models and replay the audit log

The audit log keeps every event admin received with its data; replaying it in time order through
the same version-guarded projections gives the same read models. Users that predate the audit
log come back from auth and tasks on the next admin request (the backfill).
"""

from __future__ import annotations

import argparse
import sys

from . import assemble
from .settings import AdminSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskflow_admin.cli", description=__doc__.splitlines()[0])
    parser.add_subparsers(dest="command", required=True).add_parser("rebuild", help="rebuild the read models")
    parser.parse_args(argv)
    replayed = assemble(AdminSettings.load()).administration.rebuild()
    print(f"read models rebuilt from {replayed} recorded events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
