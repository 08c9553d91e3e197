"""Subcommands ``report``, ``db upgrade``, ``purge`` and ``keys rotate-patient-key`` of ``cds-service``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from cds_service.config import Settings
from cds_service.storage.report import parse_since

if TYPE_CHECKING:
    from cds_service.storage.store import AuditStore

# Heavier imports happen inside the commands: this module is loaded for every ``cds-service`` command,
# including ``serve``, whose gunicorn master must not import the metrics module early.


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="card acceptance and override analytics",
        description="Per card topic: cards shown, accepted, overridden, the override rate and the top "
        "override reasons, from the audit database (CDS_DATABASE_URL, else the SQLite file under "
        "CDS_DATA_DIR). Reads only: it never creates or migrates a database.",
    )
    report.add_argument("--since", type=_since, help="only cards issued on or after this date (ISO 8601)")
    report.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table (needs the 'tools' extra), json or csv (default table)",
    )
    report.set_defaults(func=_database_command(_report))

    db = subparsers.add_parser(
        "db", help="database maintenance", description="Database schema: show it (current) or migrate it."
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser(
        "upgrade", help="create or upgrade the schema to the latest version (needs DDL rights)"
    )
    upgrade.set_defaults(func=_database_command(_db_upgrade))
    current = db_commands.add_parser(
        "current", help="print the schema revision of the database and the newest one this version ships"
    )
    current.set_defaults(func=_database_command(_db_current))

    from cds_service.cli import KEYS_HELP, command_group

    rotate = command_group(subparsers, "keys", KEYS_HELP).add_parser(
        "rotate-patient-key",
        help="replace the key file with a new random key (restart the service afterwards)",
    )
    rotate.set_defaults(func=_rotate_patient_key)

    purge = subparsers.add_parser(
        "purge",
        help="delete audit records older than the retention period",
        description="Delete cards and feedback older than --days (default CDS_AUDIT_RETENTION_DAYS). "
        "With --dry-run, count them and delete nothing.",
    )
    purge.add_argument("--days", type=_days, help="retention in days (default CDS_AUDIT_RETENTION_DAYS, 400)")
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    purge.set_defaults(func=_database_command(_purge))


class MissingDatabase(Exception):
    """A command that reads the audit trail was pointed at an SQLite file that does not exist."""


def _database_command(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One line and exit status 1 when the database cannot be reached, instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return command(args)
        except MissingDatabase as exc:
            print(f"cds-service: {exc}", file=sys.stderr)
            return 1
        except SQLAlchemyError as exc:
            # The exception text may hold the URL with its password: name the type only.
            print(
                f"cds-service: database error ({type(exc).__name__}); check CDS_DATABASE_URL", file=sys.stderr
            )
            return 1

    return run


def _report(args: argparse.Namespace) -> int:
    from cds_service.knowledge.loader import load_knowledge
    from cds_service.storage.formats import to_csv, to_json, to_table
    from cds_service.storage.report import ReasonDisplays

    settings = Settings.from_env()
    displays = ReasonDisplays.of(load_knowledge(settings.cards_dir, settings.site_knowledge_dir))
    store = _open_store(read_only=True)
    try:
        report = store.report(since=args.since, reason_displays=displays)
    finally:
        store.close(timeout=1.0)
    if args.format == "json":
        sys.stdout.write(to_json(report) + "\n")
    elif args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        from rich.console import Console

        # Piped or redirected output would wrap at 80 columns; a wide table is easier to read in a file.
        to_table(report, Console() if sys.stdout.isatty() else Console(width=200))
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from cds_service.storage import migrate
    from cds_service.storage.config import StorageConfig
    from cds_service.storage.engine import make_engine

    config = StorageConfig.from_settings(Settings.from_env())
    _require_existing_sqlite(config.database_url)
    engine = make_engine(config.database_url)
    try:
        current = migrate.current_revision(engine)
    finally:
        engine.dispose()
    head = migrate.head_revision()
    state = "up to date" if current == head else "behind: run `cds-service db upgrade`"
    found = current or "none (empty database)"
    print(f"database schema at revision {found}; this version ships {head} ({state})")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from cds_service.storage import migrate
    from cds_service.storage.config import StorageConfig
    from cds_service.storage.engine import make_engine

    config = StorageConfig.from_settings(Settings.from_env())
    from cds_service.storage.identity import move_legacy_salt

    engine = make_engine(config.database_url)
    try:
        migrate.upgrade(engine)
        print(f"database schema at revision {migrate.current_revision(engine)}")
        # An older version's salt leaves the database here only when the key's home is named: a migration
        # job's own disk would take the salt with it when the job ends.
        if config.patient_id_key or config.patient_id_key_file:
            with engine.begin() as conn:
                move_legacy_salt(conn, config.patient_id_key, config.key_file)
    finally:
        engine.dispose()
    return 0


def _rotate_patient_key(args: argparse.Namespace) -> int:
    from cds_service.storage.config import StorageConfig
    from cds_service.storage.identity import rotate_key_file

    config = StorageConfig.from_settings(Settings.from_env())
    if config.patient_id_key:
        print(
            "cds-service: the patient-id key comes from CDS_PATIENT_ID_KEY (or CDS_PATIENT_ID_SALT): "
            "set a new value there (openssl rand -hex 32) and restart every instance",
            file=sys.stderr,
        )
        return 1
    try:
        rotate_key_file(config.key_file)
    except OSError as exc:
        print(
            f"cds-service: cannot write {config.key_file} ({type(exc).__name__}); a mounted secret is "
            "rotated where it is managed",
            file=sys.stderr,
        )
        return 1
    print(
        f"new patient-id key written to {config.key_file}. Restart the service (every instance using this "
        "file) to use it. Cards issued from then on carry hashes under the new key; hashes made with the "
        "old key can no longer be linked to them (the old key is gone unless you kept a copy)."
    )
    return 0


def _purge(args: argparse.Namespace) -> int:
    store = _open_store(read_only=args.dry_run)
    days = args.days or store.config.retention_days
    try:
        if args.dry_run:
            cards, feedback = store.count_older_than(older_than_days=days)
            print(
                f"would delete {cards + feedback} audit records older than {days} days "
                f"({cards} cards, {feedback} feedback entries); nothing deleted (--dry-run)"
            )
            return 0
        deleted = store.purge(older_than_days=days)
    finally:
        store.close(timeout=1.0)
    print(f"deleted {deleted} audit records older than {days} days")
    return 0


def _open_store(*, read_only: bool = False) -> AuditStore:
    """The audit store as configured. A reading command never creates a database: run from another
    directory, the default ./data/cds.sqlite3 would otherwise be made empty and reported as 0 cards."""
    from cds_service.storage import build_store

    settings = Settings.from_env()
    if read_only:
        from cds_service.storage.config import StorageConfig

        _require_existing_sqlite(StorageConfig.from_settings(settings).database_url)
    # The CLI never migrates implicitly except as configured (CDS_DB_AUTO_UPGRADE), like the service.
    return build_store(settings)


def _require_existing_sqlite(database_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        from pathlib import Path

        if not Path(url.database).is_file():
            raise MissingDatabase(
                f"no audit database at {url.database} (set CDS_DATA_DIR or CDS_DATABASE_URL to the "
                "service's database; this command does not create one)"
            )


def _since(raw: str) -> datetime:
    try:
        return parse_since(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected an ISO date such as 2025-01-31") from exc


def _days(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected a whole number of days") from exc
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
