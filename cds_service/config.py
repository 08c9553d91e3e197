"""Service configuration, read once from the environment (prefix ``CDS_``).

Every variable is documented in the README's configuration table. Defaults are the safe production
choice; ``make run`` sets what a local developer needs (auth off, CORS ``*``, preview page on).
Subsystems with many knobs (security, storage) parse their own variables from ``Settings.env`` so that
this module stays small.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The knowledge base beside the package (a source checkout); the image sets CDS_CARDS_DIR=/app/cards.
DEFAULT_CARDS_DIR = PACKAGE_DIR.parent / "cards"


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the service refuses to start."""


# Parsers for CDS_* variables, shared by every subsystem that reads its own variables from
# ``Settings.env``: one spelling of on/off, one message shape for a bad value.


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be on/off (true/false), got {raw!r}")


def env_number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"{name} must be at least {minimum:g}{upper}, got {raw!r}")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Settings the protocol layer needs. ``env`` keeps the raw mapping for subsystems."""

    cards_dir: Path = DEFAULT_CARDS_DIR
    # A site's own codes and topic tuning, added to cards/ (cds_service/knowledge/site.py); None: none.
    site_knowledge_dir: Path | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 5 * 1024 * 1024
    max_json_depth: int = 64
    max_draft_orders: int = 200
    fhir_connect_timeout: float = 2.0
    fhir_read_timeout: float = 4.0
    fhir_deadline: float = 6.0
    fhir_max_pages: int = 20
    fhir_max_response_bytes: int = 20 * 1024 * 1024
    fhir_max_workers: int = 8
    # Bytes read from FHIR servers for one hook call, every query and page together.
    fhir_max_call_bytes: int = 16 * 1024 * 1024
    # Fallback queries in flight to one FHIR server (0: CDS_FHIR_MAX_WORKERS x CDS_THREADS).
    fhir_max_per_origin: int = 0
    # Hook calls one process serves at once (gunicorn's CDS_THREADS): sizes the fallback query pool.
    request_threads: int = 4
    weight_max_age_days: int = 90
    renal_max_age_days: int = 365
    dose_caps_version: str = "2024-05"
    # Bounds on the dose-text reader's work per order (issue 15): dosage lines read, characters per text.
    dose_max_lines: int = 20
    dose_text_max_chars: int = 1000
    dose_order_text_max_chars: int = 5000
    preview_enabled: bool = False
    feedback_max_entries: int = 100
    feedback_max_comment_chars: int = 1000
    # 200: a card says which checks did not run when no patient data could be had; 412: the spec's answer.
    no_data_status: int = 200
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        cards_dir = Path(env.get("CDS_CARDS_DIR") or DEFAULT_CARDS_DIR)
        site_dir = (env.get("CDS_SITE_KNOWLEDGE") or "").strip()
        settings = cls(
            cards_dir=cards_dir,
            site_knowledge_dir=Path(site_dir) if site_dir else None,
            cors_origins=env_list(env, "CDS_CORS_ORIGINS"),
            max_body_bytes=env_int(env, "CDS_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024),
            max_json_depth=env_int(env, "CDS_MAX_JSON_DEPTH", 64, minimum=8),
            max_draft_orders=env_int(env, "CDS_MAX_DRAFT_ORDERS", 200, minimum=1),
            fhir_connect_timeout=env_number(env, "CDS_FHIR_CONNECT_TIMEOUT", 2.0, minimum=0.1),
            fhir_read_timeout=env_number(env, "CDS_FHIR_READ_TIMEOUT", 4.0, minimum=0.1),
            fhir_deadline=env_number(env, "CDS_FHIR_DEADLINE", 6.0, minimum=0.1),
            fhir_max_pages=env_int(env, "CDS_FHIR_MAX_PAGES", 20, minimum=1),
            fhir_max_response_bytes=env_int(
                env, "CDS_FHIR_MAX_RESPONSE_BYTES", 20 * 1024 * 1024, minimum=1024
            ),
            fhir_max_workers=env_int(env, "CDS_FHIR_MAX_WORKERS", 8, minimum=1),
            fhir_max_call_bytes=env_int(env, "CDS_FHIR_MAX_CALL_BYTES", 16 * 1024 * 1024, minimum=1024),
            fhir_max_per_origin=env_int(env, "CDS_FHIR_MAX_PER_ORIGIN", 0, minimum=0),
            request_threads=env_int(env, "CDS_THREADS", 4, minimum=1),
            weight_max_age_days=env_int(env, "CDS_WEIGHT_MAX_AGE_DAYS", 90, minimum=1),
            renal_max_age_days=env_int(env, "CDS_RENAL_MAX_AGE_DAYS", 365, minimum=1),
            dose_caps_version=env.get("CDS_DOSE_CAPS_VERSION", "2024-05").strip() or "2024-05",
            dose_max_lines=env_int(env, "CDS_DOSE_MAX_LINES", 20, minimum=1),
            dose_text_max_chars=env_int(env, "CDS_DOSE_TEXT_MAX_CHARS", 1000, minimum=100),
            dose_order_text_max_chars=env_int(env, "CDS_DOSE_TEXT_MAX_CHARS_PER_ORDER", 5000, minimum=100),
            preview_enabled=env_flag(env, "CDS_PREVIEW_ENABLED", False),
            feedback_max_entries=env_int(env, "CDS_FEEDBACK_MAX_ENTRIES", 100, minimum=1),
            feedback_max_comment_chars=env_int(env, "CDS_FEEDBACK_MAX_COMMENT_CHARS", 1000, minimum=1),
            no_data_status=_no_data_status(env),
            env=env,
        )
        if not settings.cards_dir.is_dir():
            raise ConfigError(f"CDS_CARDS_DIR {settings.cards_dir} is not a directory")
        if settings.site_knowledge_dir is not None and not settings.site_knowledge_dir.is_dir():
            raise ConfigError(f"CDS_SITE_KNOWLEDGE {settings.site_knowledge_dir} is not a directory")
        return settings

    def flag(self, name: str, default: bool) -> bool:
        """Read an on/off variable from the raw environment (for subsystems)."""
        return env_flag(self.env, name, default)


def _no_data_status(env: Mapping[str, str]) -> int:
    raw = (env.get("CDS_NO_DATA_STATUS") or "").strip()
    if raw in ("", "200"):
        return 200
    if raw == "412":
        return 412
    raise ConfigError(f"CDS_NO_DATA_STATUS must be 200 or 412, got {raw!r}")
