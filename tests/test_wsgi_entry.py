"""The gunicorn entry point freezes what the start loaded, so full collections no longer walk it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_wsgi_module_builds_the_app_and_freezes_the_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path / "data")})
    code = "import gc, cds_service.wsgi as w; print(type(w.app).__name__, gc.get_freeze_count() > 10000)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["Flask", "True"]
