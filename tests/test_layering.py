"""Layers import one way: ``protocol`` (HTTP) -> ``pipeline`` -> the CDS Hooks model (``hooks``).

The model, the prefetch plan and its fetch, and the pipeline run without Flask (the offline ``evaluate``
command and the rule tests use them so) and never reach back into the HTTP layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cds_service

PACKAGE = Path(cds_service.__file__).parent
HTTP_FREE = [*sorted((PACKAGE / "hooks").glob("*.py")), PACKAGE / "pipeline.py", PACKAGE / "patient_data.py"]
HTTP_MODULES = ("flask", "werkzeug", "cds_service.protocol")
BLOCK_HTTP = "import sys; sys.modules['flask'] = None; sys.modules['werkzeug'] = None; "


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at any place in it (in a function too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("path", HTTP_FREE, ids=lambda p: p.name)
def test_the_model_and_the_pipeline_import_nothing_of_http(path: Path) -> None:
    reaching = sorted(name for name in _imported(path) if name.startswith(HTTP_MODULES))
    assert reaching == [], f"{path.relative_to(PACKAGE)} imports {reaching}"


def test_the_pipeline_runs_with_flask_unimportable_and_loads_no_protocol_module() -> None:
    modules = ", ".join(
        ["cds_service.pipeline", "cds_service.patient_data"]
        + [f"cds_service.hooks.{path.stem}" for path in HTTP_FREE if path.parent.name == "hooks"]
    )
    code = (
        BLOCK_HTTP + f"import {modules}; "
        "print(sorted(name for name, module in sys.modules.items() "
        f"if module is not None and name.startswith({HTTP_MODULES})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_block_is_real_the_http_layer_does_not_load_without_flask() -> None:
    code = BLOCK_HTTP + "import cds_service.protocol.routes"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "ModuleNotFoundError" in done.stderr or "ImportError" in done.stderr
