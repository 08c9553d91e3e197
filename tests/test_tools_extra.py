"""The runtime serves without the ``tools`` extra (rich, markdown), and each tools feature used without it
says in one line what to install, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cds_service.cli import main
from cds_service.config import ConfigError, Settings
from cds_service.integration.fixtures import fixtures_dir

ROOT = Path(__file__).resolve().parents[1]
SEIZURE = fixtures_dir() / "requests" / "seizure-epilepsy.json"
HINT = "install 'cds-service[tools]'"


def without(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``import <package>`` fail as it does where the package is not installed."""
    for name in list(sys.modules):
        if name.partition(".")[0] in packages:
            monkeypatch.delitem(sys.modules, name)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def test_rich_and_markdown_are_in_the_tools_extra_not_the_runtime() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {dep.split(">")[0].split("[")[0].split("=")[0] for dep in project["dependencies"]}
    assert not runtime & {"rich", "markdown", "pygments"}
    tools = {dep.split(">")[0] for dep in project["optional-dependencies"]["tools"]}
    assert tools == {"rich", "markdown"}


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", str(SEIZURE)],
        ["evaluate", str(SEIZURE), "--json"],
        ["simulate", "--fhir-server", "http://127.0.0.1:9", "--patient", "p", "--order", str(SEIZURE)],
    ],
    ids=["evaluate", "evaluate-json", "simulate"],
)
def test_evaluate_and_simulate_without_rich_say_what_to_install(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without(monkeypatch, "rich")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"cds-service: cds-service {argv[0]} needs the 'rich' package: ")
    assert HINT in captured.err and captured.err.count("\n") == 1


def test_a_tools_import_deep_in_a_command_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cds_service.knowledge import cli as knowledge_cli

    def needs_rich(args: object) -> int:
        import rich.console  # noqa: F401

        return 0

    monkeypatch.setattr(knowledge_cli, "run_check", needs_rich)
    without(monkeypatch, "rich")
    assert main(["knowledge", "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cds-service: cds-service knowledge needs the 'rich' package") and HINT in err


def test_the_preview_page_without_markdown_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cds_service.app import create_app

    without(monkeypatch, "markdown")
    env = {"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path), "CDS_PREVIEW_ENABLED": "true"}
    with pytest.raises(ConfigError, match=r"preview page \(CDS_PREVIEW_ENABLED=true\) needs the 'markdown'"):
        create_app(Settings.from_env(env))

    # `serve` checks before gunicorn starts (a worker that fails to boot prints a traceback each).
    from gunicorn.app import wsgiapp

    def must_not_start(self: object) -> None:
        raise AssertionError("gunicorn started without the tools extra")

    monkeypatch.setattr(wsgiapp.WSGIApplication, "run", must_not_start)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CDS_PREVIEW_ENABLED=true" in err and HINT in err


def test_dev_with_the_preview_page_and_no_markdown_says_one_line_and_nothing_else(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['markdown'] = None; "
        "from cds_service.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path), "CDS_PREVIEW_ENABLED": "true"}
    result = subprocess.run(
        [sys.executable, "-c", script, "dev", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # no warning or migration log before it
    assert "CDS_PREVIEW_ENABLED=true" in result.stderr and HINT in result.stderr


def test_the_service_serves_hook_calls_without_the_tools_extra(tmp_path: Path) -> None:
    """What the image runs: no rich, markdown or pygments importable, a hook call answered with its cards."""
    script = """
import json, sys
for name in ("rich", "markdown", "pygments"):
    sys.modules[name] = None
from cds_service.app import create_app
app = create_app()
body = json.loads(open(sys.argv[1]).read())
response = app.test_client().post("/cds-services/amifampridine-order-sign", json=body)
print(json.dumps([response.status_code, [c["source"]["topic"]["code"] for c in response.json["cards"]]]))
app.extensions["cds.audit"].close(timeout=5)
"""
    env = {
        **os.environ,
        "CDS_AUTH": "off",
        "CDS_DATA_DIR": str(tmp_path),
        "CDS_PREVIEW_ENABLED": "false",
        "CDS_LOG_FORMAT": "text",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(SEIZURE)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    status, topics = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 200 and "seizure-history" in topics
