"""The ``cds-service`` command: run the server, and the tools operators and integration testers use.

    cds-service serve [--host H --port P]   production server (gunicorn, JSON access log)
    cds-service dev [--host H --port P]     Flask development server (auto-reload off, clear logs)
    cds-service report | db upgrade | purge audit trail and override analytics (storage)
    cds-service evaluate | simulate         integration testing (see the README)
    cds-service knowledge check | report    validate / describe cards/ and the site knowledge directory

A configuration error or a broken knowledge base prints one line and exits with status 2, so a
container that cannot start says why in its first log line (``knowledge check`` exits 1: its answer).
Every other error of a command is one line on stderr and a non-zero status too, never a traceback.
``evaluate``, ``simulate``, ``--explain`` and the preview page need the ``tools`` extra
(``pip install 'cds-service[tools]'``); without it they say so in one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from cds_service import __version__
from cds_service.config import ConfigError, env_flag
from cds_service.integration.tools import ToolsMissing, missing_tools_package, require_tools
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

    if env_flag(os.environ, "CDS_PREVIEW_ENABLED", False):
        # Checked before gunicorn starts: a worker failing to boot would print a traceback per worker.
        require_tools("the card preview page (CDS_PREVIEW_ENABLED=true)", ("markdown",))

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
    _describe_commands(parser)
    return parser


def _describe_commands(parser: argparse.ArgumentParser) -> None:
    """``cds-service COMMAND --help`` shows the command's one-line help when it has no description."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, command in action.choices.items():
            if command.description is None and helps.get(name):
                text = str(helps[name])
                command.description = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
            _describe_commands(command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ToolsMissing as exc:
        print(f"cds-service: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"cds-service: configuration error: {exc}", file=sys.stderr)
        return 2
    except KnowledgeError as exc:  # evaluate on a damaged cards/: the loader's line, not a traceback
        print(f"cds-service: knowledge base is broken: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or socket the command needed; the path, never a traceback
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"cds-service: {args.command}:{where} {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cds-service: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line for the user; CDS_CLI_TRACEBACK=1 shows where
        package = missing_tools_package(exc) if isinstance(exc, ImportError) else None
        if package is not None:  # a tools import deep inside a command
            print(f"cds-service: {ToolsMissing(f'cds-service {args.command}', package)}", file=sys.stderr)
            return 2
        if os.environ.get("CDS_CLI_TRACEBACK", "").strip().lower() in {"1", "true", "yes", "on"}:
            raise
        detail = " ".join(str(exc).split())[:200]
        print(
            f"cds-service: {args.command} failed ({type(exc).__name__}{': ' if detail else ''}{detail}); "
            "set CDS_CLI_TRACEBACK=1 for the traceback",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
