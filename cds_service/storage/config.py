"""Storage settings, parsed from ``Settings.env`` so that ``cds_service.config`` stays small."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cds_service.config import ConfigError, Settings, _bool


@dataclass(frozen=True)
class StorageConfig:
    database_url: str
    data_dir: Path
    auto_upgrade: bool = True
    admin_enabled: bool = False
    retention_days: int = 400
    patient_id_salt: str | None = None
    queue_size: int = 10_000

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageConfig:
        return cls.from_env(settings.env)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageConfig:
        data_dir = Path(env.get("CDS_DATA_DIR") or "./data")
        url = (env.get("CDS_DATABASE_URL") or "").strip()
        if not url:
            url = f"sqlite:///{data_dir.resolve() / 'cds.sqlite3'}"
        elif not url.startswith(("sqlite", "postgresql")):
            # Only the two backends the migrations and tests cover.
            raise ConfigError("CDS_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL")
        return cls(
            database_url=url,
            data_dir=data_dir,
            auto_upgrade=_bool(env, "CDS_DB_AUTO_UPGRADE", True),
            admin_enabled=_bool(env, "CDS_ADMIN_ENABLED", False),
            retention_days=_positive_int(env, "CDS_AUDIT_RETENTION_DAYS", 400),
            patient_id_salt=(env.get("CDS_PATIENT_ID_SALT") or "").strip() or None,
            queue_size=_positive_int(env, "CDS_AUDIT_QUEUE_SIZE", 10_000),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {raw!r}")
    return value
