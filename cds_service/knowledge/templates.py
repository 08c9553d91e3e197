"""Filling the texts of ``cards/topics`` with a finding's values."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any


class _Formatter(string.Formatter):
    """Fills templates; a placeholder the rule did not provide shows as a visible gap, never a crash."""

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str):
            return kwargs.get(key, f"[{key}]")
        return super().get_value(key, args, kwargs)


_FORMATTER = _Formatter()


def fill(template: str, params: Mapping[str, Any]) -> str:
    return _FORMATTER.vformat(template, (), params)
