"""The ``tools`` extra: what people at a terminal or a browser need, and serving does not.

``evaluate``, ``simulate`` and ``--explain`` print with rich; the card preview page (CDS_PREVIEW_ENABLED)
renders card details with markdown. The container image installs the wheel without extras, so these
features check for their packages first and say in one line what to install, instead of a traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from cds_service.config import ConfigError

TOOLS_EXTRA = "cds-service[tools]"
# Every top-level package the extra brings; an ImportError naming one of them is a missing extra.
TOOLS_PACKAGES = ("rich", "markdown")
INSTALL_HINT = f"install '{TOOLS_EXTRA}' (pip install '{TOOLS_EXTRA}', or make install in a checkout)"


class ToolsMissing(ConfigError):
    """A feature of the tools extra was used where the extra is not installed."""

    def __init__(self, feature: str, package: str) -> None:
        super().__init__(f"{feature} needs the '{package}' package: {INSTALL_HINT}")


def require_tools(feature: str, packages: Iterable[str] = TOOLS_PACKAGES) -> None:
    """Raise ToolsMissing naming ``feature`` when one of ``packages`` cannot be imported."""
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise ToolsMissing(feature, package) from exc


def missing_tools_package(error: ImportError) -> str | None:
    """The tools package an ImportError is about, or None when it is about something else."""
    name = (getattr(error, "name", None) or "").partition(".")[0]
    return name if name in TOOLS_PACKAGES else None
