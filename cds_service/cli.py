"""The ``cds-service`` command: run the server, and the tools operators and integration testers use.

    cds-service serve [--host H --port P]   production server (gunicorn, JSON access log)
    cds-service dev [--host H --port P]     Flask development server (auto-reload off, clear logs)
    cds-service report | db upgrade | purge audit trail and override analytics (storage)
    cds-service evaluate | simulate         integration testing (see the README)
    cds-service knowledge check | report    validate / describe cards/ and the site knowledge directory

A configuration error or a broken knowledge base prints one line and exits with status 2, so a
container that cannot start says why in its first log line (``knowledge check`` exits 1: its answer).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from cds_service import __version__
from cds_service.config import ConfigError
from cds_service.knowledge.loader import KnowledgeError

# Subsystems that add their own subcommands: module -> its register_cli(subparsers).
_SUBCOMMAND_MODULES = (
    "cds_service.storage.cli",
    "cds_service.security.cli",
    "cds_service.integration.cli",
    "cds_service.knowledge.cli",
)


KEYS_HELP = "keys: a test client's signing key pair (new), the patient-id hash key (rotate-patient-key)"


def command_group(subparsers: argparse._SubParsersAction, name: str, text: str) -> argparse._SubParsersAction:
    """The actions of the command group ``name`` (``cds-service keys …``), made by whichever subsystem
    registers first, so several subsystems can add actions to one group."""
    parser = subparsers.choices.get(name)
    if parser is None:
        parser = subparsers.add_parser(name, help=text, description=text)
        parser.group_actions = parser.add_subparsers(  # type: ignore[attr-defined]
            dest=f"{name}_command", required=True, metavar="ACTION"
        )
    return parser.group_actions  # type: ignore[attr-defined,no-any-return]


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.wsgiapp import WSGIApplication

    # The gunicorn config reads HOST/PORT; flags win over the environment.
    if args.host:
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    if args.host or args.port:
        os.environ.pop("CDS_BIND", None)
    sys.argv = ["cds-service", "-c", "python:cds_service.gunicorn_conf", "cds_service.wsgi:app"]
    WSGIApplication("%(prog)s [OPTIONS]").run()
    return 0


def _dev(args: argparse.Namespace) -> int:
    from cds_service.app import create_app
    from cds_service.observability import configure_logging

    configure_logging()
    app = create_app()
    host = args.host or os.environ.get("HOST", "127.0.0.1")
    port = args.port or int(os.environ.get("PORT", "8080"))
    app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description="Amifampridine safety CDS Hooks service")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, text in (
        ("serve", _serve, "run the production server (gunicorn)"),
        ("dev", _dev, "run the Flask development server"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--host", help="address to listen on (default $HOST or 127.0.0.1)")
        command.add_argument("--port", type=int, help="port to listen on (default $PORT or 8080)")
        command.set_defaults(func=func)
    for module_name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subsystem not installed in this build is simply absent; a broken one still fails loudly.
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue
        module.register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"cds-service: configuration error: {exc}", file=sys.stderr)
        return 2
    except KnowledgeError as exc:  # evaluate on a damaged cards/: the loader's line, not a traceback
        print(f"cds-service: knowledge base is broken: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
