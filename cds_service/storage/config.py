"""Storage settings, parsed from ``Settings.env`` so that ``cds_service.config`` stays small."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cds_service.config import ConfigError, Settings, env_flag, env_int, env_number


@dataclass(frozen=True)
class StorageConfig:
    database_url: str
    data_dir: Path
    auto_upgrade: bool = True
    admin_enabled: bool = False
    retention_days: int = 400
    patient_id_key: str | None = None  # CDS_PATIENT_ID_KEY (or the deprecated CDS_PATIENT_ID_SALT)
    patient_id_key_file: Path | None = None  # default <data_dir>/patient-id.key
    queue_size: int = 10_000
    spill_dir: Path | None = None  # default <data_dir>/audit-spill
    spill_max_bytes: int = 64 * 1024 * 1024
    # A card answered at order-select is not shown again at order-sign (same patient, order and finding).
    sign_suppression: bool = True
    sign_suppression_hours: float = 12.0

    @property
    def key_file(self) -> Path:
        return self.patient_id_key_file or self.data_dir / "patient-id.key"

    @property
    def spill_path(self) -> Path:
        return self.spill_dir or self.data_dir / "audit-spill"

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
            auto_upgrade=env_flag(env, "CDS_DB_AUTO_UPGRADE", True),
            admin_enabled=env_flag(env, "CDS_ADMIN_ENABLED", False),
            retention_days=env_int(env, "CDS_AUDIT_RETENTION_DAYS", 400, minimum=1),
            patient_id_key=(env.get("CDS_PATIENT_ID_KEY") or env.get("CDS_PATIENT_ID_SALT") or "").strip()
            or None,
            patient_id_key_file=_path(env, "CDS_PATIENT_ID_KEY_FILE"),
            queue_size=env_int(env, "CDS_AUDIT_QUEUE_SIZE", 10_000, minimum=1),
            spill_dir=_path(env, "CDS_AUDIT_SPILL_DIR"),
            spill_max_bytes=env_int(env, "CDS_AUDIT_SPILL_MAX_BYTES", 64 * 1024 * 1024, minimum=0),
            sign_suppression=env_flag(env, "CDS_SIGN_SUPPRESSION", True),
            sign_suppression_hours=env_number(env, "CDS_SIGN_SUPPRESSION_HOURS", 12.0, minimum=0.01),
        )


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = (env.get(name) or "").strip()
    return Path(raw) if raw else None
