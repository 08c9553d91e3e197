"""Every ``cds-service`` command says what it does (``COMMAND --help``) and every option has help text."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from cds_service.cli import build_parser, main

# The storage commands (storage/cli.py) are checked by their own owner's tests.
STORAGE_COMMANDS = {"report", "db", "purge"}


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from commands(command, (*path, name))


def checked() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    return [(path, p) for path, p in commands(build_parser()) if path and path[0] not in STORAGE_COMMANDS]


def test_the_commands_of_every_subsystem_are_checked() -> None:
    names = {path[0] for path, _ in checked()}
    assert {"serve", "dev", "evaluate", "simulate", "trusted-clients", "keys", "mint-token"} <= names
    assert "knowledge" in names


def test_every_command_has_a_description_and_every_option_help() -> None:
    missing = []
    for path, parser in checked():
        if not parser.description:
            missing.append(f"{' '.join(path)}: no description")
        for action in parser._actions:
            if action.help is None and not isinstance(action, argparse._SubParsersAction):
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}: no help")
    assert not missing, missing


@pytest.mark.parametrize("argv", [["simulate"], ["keys", "new"], ["knowledge", "check"], ["serve"]])
def test_command_help_shows_the_description(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    description = dict(checked())[tuple(argv)].description
    assert description and description.split()[0] in out.split("options:")[0]


def test_simulate_help_names_the_token_sources(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--fhir-token-file" in out and "CDS_FHIR_TOKEN" in out
