"""Patient-id hashes are keyed with a secret that is not in the database (issue 15, item 6); the SQLite
file and its folder are private to the service's user."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from cds_service.cli import main
from cds_service.storage import migrate
from cds_service.storage.config import StorageConfig
from cds_service.storage.models import IssuedCard, StoreMeta
from cds_service.storage.store import AuditStore

pytest_plugins = ["conftest_postgres"]

PATIENT = "patient-4711"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_store(url: str, data_dir: Path, **overrides: Any) -> AuditStore:
    store = AuditStore(StorageConfig(database_url=url, data_dir=data_dir, **overrides), rule_version="t")
    assert store.start()
    return store


def issue(store: AuditStore) -> str:
    store.record_response(
        service_id="amifampridine-order-sign",
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        patient_id=PATIENT,
        cards=[{"uuid": str(uuid.uuid4()), "indicator": "warning", "source": {"topic": {"code": "t"}}}],
        client=None,
    )
    assert store.flush(10)
    with store.engine.connect() as conn:
        return conn.execute(select(IssuedCard.patient_hash).order_by(IssuedCard.id.desc())).first()[0]


def everything_in(store: AuditStore) -> str:
    with store.engine.connect() as conn:
        return " ".join(
            str(value)
            for table in ("issued_card", "feedback", "store_meta")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
            for value in row
        )


def test_the_key_is_generated_into_a_private_file_never_into_the_database(
    database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    store = make_store(database_url, data)
    try:
        digest = issue(store)
        key_file = data / "patient-id.key"
        assert mode(key_file) == 0o600
        key = key_file.read_text().strip()
        assert len(key) == 64 and bytes.fromhex(key)  # 32 random bytes
        assert digest == hmac.new(key.encode(), PATIENT.encode(), hashlib.sha256).hexdigest()
        stored = everything_in(store)
        assert key not in stored and PATIENT not in stored
        with store.engine.connect() as conn:
            assert conn.execute(select(StoreMeta)).all() == []
    finally:
        store.close()
    # The same key at the next start: hashes stay comparable.
    again = make_store(database_url, data)
    try:
        assert issue(again) == digest
    finally:
        again.close()


def test_a_configured_key_or_key_file_is_used_and_nothing_is_generated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    store = make_store(url, tmp_path, patient_id_key="k" * 64)
    try:
        assert issue(store) == hmac.new(b"k" * 64, PATIENT.encode(), hashlib.sha256).hexdigest()
        assert not (tmp_path / "patient-id.key").exists()
    finally:
        store.close()
    secret = tmp_path / "secret" / "key"
    secret.parent.mkdir()
    secret.write_text("s" * 64 + "\n")
    store = make_store(url, tmp_path, patient_id_key_file=secret)
    try:
        assert issue(store) == hmac.new(b"s" * 64, PATIENT.encode(), hashlib.sha256).hexdigest()
    finally:
        store.close()


def test_an_old_salt_moves_from_the_database_to_the_key_file(database_url: str, tmp_path: Path) -> None:
    # A database written by the previous version: the salt sits in store_meta beside the hashes.
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    salt = "ab" * 32
    with engine.begin() as conn:
        conn.execute(StoreMeta.__table__.insert(), [{"key": "patient_id_salt", "value": salt}])
    engine.dispose()
    old_hash = hmac.new(salt.encode(), PATIENT.encode(), hashlib.sha256).hexdigest()

    store = make_store(database_url, tmp_path / "data")
    try:
        assert issue(store) == old_hash  # old and new hashes stay linked
        assert (tmp_path / "data" / "patient-id.key").read_text().strip() == salt
        assert mode(tmp_path / "data" / "patient-id.key") == 0o600
        with store.engine.connect() as conn:
            assert conn.execute(select(StoreMeta)).all() == []
    finally:
        store.close()


def test_sqlite_file_and_folder_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = make_store(f"sqlite:///{data / 'cds.sqlite3'}", data)
    try:
        issue(store)
        assert mode(data) == 0o700
        for name in ("cds.sqlite3", "cds.sqlite3-wal", "cds.sqlite3-shm"):
            if (data / name).exists():
                assert mode(data / name) == 0o600, name
    finally:
        store.close()


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    database = data / "cds.sqlite3"
    database.touch()
    os.chmod(database, 0o644)
    store = make_store(f"sqlite:///{database}", data)
    try:
        issue(store)
        assert (mode(data), mode(database)) == (0o700, 0o600)
    finally:
        store.close()


def test_rotate_patient_key_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'cds.sqlite3'}"
    store = make_store(url, data)
    before = issue(store)
    store.close()
    old_key = (data / "patient-id.key").read_text()
    for name in ("CDS_PATIENT_ID_KEY", "CDS_PATIENT_ID_SALT", "CDS_PATIENT_ID_KEY_FILE", "CDS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDS_DATA_DIR", str(data))

    assert main(["keys", "rotate-patient-key"]) == 0
    assert "restart" in capsys.readouterr().out.lower()
    new_key = (data / "patient-id.key").read_text()
    assert new_key != old_key and len(new_key.strip()) == 64
    assert mode(data / "patient-id.key") == 0o600
    after_store = make_store(url, data)
    try:
        assert issue(after_store) != before  # new hashes under the new key
    finally:
        after_store.close()

    monkeypatch.setenv("CDS_PATIENT_ID_KEY", "x" * 64)
    assert main(["keys", "rotate-patient-key"]) == 1
    assert "CDS_PATIENT_ID_KEY" in capsys.readouterr().err


def test_the_kubernetes_deployment_mounts_one_shared_key_for_every_replica() -> None:
    import yaml

    manifest = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "deployment.yaml"
    [deployment] = [d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    key_file = Path(env["CDS_PATIENT_ID_KEY_FILE"]["value"])
    [mount] = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == key_file.parent]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "cds-service-patient-id-key"
    assert "items" not in volume["secret"] and key_file.name == "key"  # the secret's key "key" is the file


def test_no_key_is_generated_before_a_card_is_recorded(tmp_path: Path) -> None:
    # `cds-service report` run on an admin machine must leave no stray key behind.
    store = make_store(f"sqlite:///{tmp_path / 'cds.sqlite3'}", tmp_path)
    try:
        store.report()
        assert not (tmp_path / "patient-id.key").exists()
        issue(store)
        assert (tmp_path / "patient-id.key").exists()
    finally:
        store.close()


def test_a_broken_key_file_stops_the_start(tmp_path: Path) -> None:
    from cds_service.config import ConfigError

    (tmp_path / "patient-id.key").write_text("\n")
    store = AuditStore(
        StorageConfig(database_url=f"sqlite:///{tmp_path / 'cds.sqlite3'}", data_dir=tmp_path),
        rule_version="t",
    )
    try:
        with pytest.raises(ConfigError, match="CDS_PATIENT_ID_KEY_FILE"):
            store.start()
    finally:
        store.close()


def _database_with_old_salt(url: str, salt: str) -> None:
    engine = create_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(StoreMeta.__table__.insert(), [{"key": "patient_id_salt", "value": salt}])
    engine.dispose()


def _salt_rows(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(StoreMeta.value)).scalars())
    finally:
        engine.dispose()


def test_an_old_salt_that_cannot_be_moved_stays_in_use_and_in_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    salt = "cd" * 32
    _database_with_old_salt(url, salt)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    store = make_store(url, tmp_path, patient_id_key_file=not_a_folder / "key")
    try:
        assert issue(store) == hmac.new(salt.encode(), PATIENT.encode(), hashlib.sha256).hexdigest()
    finally:
        store.close()
    assert _salt_rows(url) == [salt]  # not lost: moved once a key file can be written


def test_db_upgrade_moves_the_salt_only_to_a_named_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    salt = "ef" * 32
    _database_with_old_salt(url, salt)
    for name in ("CDS_PATIENT_ID_KEY", "CDS_PATIENT_ID_SALT", "CDS_PATIENT_ID_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "job-disk"))
    assert main(["db", "upgrade"]) == 0
    assert _salt_rows(url) == [salt]  # a migration job's own disk is no home for the key
    key_file = tmp_path / "secret" / "key"
    monkeypatch.setenv("CDS_PATIENT_ID_KEY_FILE", str(key_file))
    assert main(["db", "upgrade"]) == 0
    assert _salt_rows(url) == []
    assert key_file.read_text().strip() == salt and mode(key_file) == 0o600
