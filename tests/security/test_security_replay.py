"""JWT replay protection across workers, and degrading to a local cache when the database is down (issue 15).

Two app instances on one database stand in for two gunicorn workers (or two replicas); a race between two
OS processes checks that the database's primary key, not luck, makes the decision.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from helpers.security import ISS, PUBLIC_BASE, bearer, client_entry, jwks_of, make_keypair, mint_token
from helpers.security import write_trusted_clients as write_clients
from sqlalchemy import inspect, text

from cds_service import metrics
from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.security.replay import DatabaseReplayCache, jwt_replay, replay_engine
from cds_service.security.replay import _key as replay_key
from cds_service.storage.engine import make_engine
from cds_service.storage.migrate import alembic_config, current_revision, upgrade

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()  # the newest migration

pytest_plugins = ["conftest_postgres"]  # database_url: SQLite, and PostgreSQL with CDS_TEST_POSTGRES=1

ROOT = Path(__file__).resolve().parents[2]
DISCOVERY = f"{PUBLIC_BASE}/cds-services"
POSTGRES_WANTED = os.environ.get("CDS_TEST_POSTGRES", "").strip().lower() in {"1", "true", "yes", "on"}


@pytest.fixture(scope="module")
def key() -> Any:
    return make_keypair("ES384")


def fallbacks() -> float:
    return metrics.JWT_REPLAY_FALLBACK._value.get()


def build(tmp_path: Path, key: Any, database_url: str, **extra: str) -> Flask:
    clients = write_clients(tmp_path, [client_entry(ISS, jwks=jwks_of(key))])
    env = {
        "CDS_TRUSTED_CLIENTS": str(clients),
        "CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_DATABASE_URL": database_url,
        **extra,
    }
    return create_app(Settings.from_env(env))


def status(app: Flask, token: str) -> int:
    return app.test_client().get("/cds-services", headers=bearer(token)).status_code


# ---------------------------------------------------------------- shared across workers


def test_a_replayed_token_is_refused_by_every_worker_sharing_the_database(tmp_path, key, database_url):
    first, second = build(tmp_path, key, database_url), build(tmp_path, key, database_url)
    before = fallbacks()
    token = mint_token(key, aud=DISCOVERY)
    assert status(first, token) == 200
    assert status(second, token) == 401  # another worker: the database remembers the jti
    assert status(first, token) == 401
    other = mint_token(key, aud=DISCOVERY)
    assert status(second, other) == 200
    assert status(first, other) == 401
    assert fallbacks() == before  # the database answered every check


def test_the_default_settings_share_the_cache_through_the_sqlite_file(tmp_path, key):
    # No CDS_DATABASE_URL and no CDS_JWT_REPLAY_CACHE: the default SQLite file in CDS_DATA_DIR.
    clients = write_clients(tmp_path, [client_entry(ISS, jwks=jwks_of(key))])
    env = {"CDS_TRUSTED_CLIENTS": str(clients), "CDS_PUBLIC_BASE_URL": PUBLIC_BASE}
    env["CDS_DATA_DIR"] = str(tmp_path / "data")
    first, second = (create_app(Settings.from_env(env)) for _ in range(2))
    token = mint_token(key, aud=DISCOVERY)
    assert [status(first, token), status(second, token)] == [200, 401]
    readyz = first.test_client().get("/readyz").get_json()
    assert readyz["replayCache"] == {"mode": "database", "degraded": False}


RACE = textwrap.dedent(
    """
    import json, sys
    from cds_service.security.replay import DatabaseReplayCache
    cache = DatabaseReplayCache.from_url(sys.argv[1])
    sys.stdin.readline()  # start together
    accepted = [cache.check_and_store("https://ehr.example.org", f"jti-{i}", 4e9) for i in range(50)]
    print(json.dumps(accepted))
    """
)


def test_two_processes_racing_on_the_same_jtis_accept_each_exactly_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    upgrade(make_engine(url))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    per_jti = [a + b for a, b in zip(*results, strict=True)]
    assert per_jti == [1] * 50  # never twice, never zero (a lock wait would fall back, and accept twice)


# ---------------------------------------------------------------- the migration


def test_migration_0002_creates_the_replay_table_on_a_fresh_database(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    assert current_revision(engine) == HEAD  # 0002 and every later migration (0003: card suppression)
    inspector = inspect(engine)
    assert {c["name"] for c in inspector.get_columns("jwt_replay")} == {"key", "expires_at"}
    assert inspector.get_pk_constraint("jwt_replay")["constrained_columns"] == ["key"]
    assert "ix_jwt_replay_expires_at" in {i["name"] for i in inspector.get_indexes("jwt_replay")}
    with engine.begin() as conn:
        from alembic import command

        from cds_service.storage.migrate import alembic_config

        command.downgrade(alembic_config(conn), "0001")
    assert not inspect(engine).has_table("jwt_replay")


def test_migration_0002_adopts_a_table_the_old_service_created(database_url):
    engine = make_engine(database_url)
    upgrade(engine, "0001")
    jwt_replay.create(engine)  # what the service did before 0002 (its metadata had no later tables)
    upgrade(engine)
    assert current_revision(engine) == HEAD
    assert inspect(engine).has_table("jwt_replay")


# ---------------------------------------------------------------- degrade, don't fail shut


def test_with_the_database_unreachable_authentication_still_works(tmp_path, key, closed_port):
    url = f"postgresql+psycopg://cds@127.0.0.1:{closed_port}/cds"
    app = build(tmp_path, key, url)
    before = fallbacks()
    token = mint_token(key, aud=DISCOVERY)
    assert status(app, token) == 200
    assert fallbacks() == before + 1
    assert status(app, token) == 401  # a replay to the same process is still refused (local cache)
    readyz = app.test_client().get("/readyz")
    assert readyz.status_code == 200
    body = readyz.get_json()
    assert body["status"] == "ready"
    assert body["replayCache"]["mode"] == "database" and body["replayCache"]["degraded"] is True
    assert body["replayCache"]["since"].endswith("Z")
    assert "cds_jwt_replay_fallback_total" in app.test_client().get("/metrics").get_data(as_text=True)


def test_a_missing_replay_table_degrades_and_the_next_good_check_recovers(tmp_path, key):
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    app = build(tmp_path, key, url)
    assert status(app, mint_token(key, aud=DISCOVERY)) == 200
    with make_engine(url).begin() as conn:
        conn.execute(text("DROP TABLE jwt_replay"))  # the SQLite file made unusable for the cache
    before = fallbacks()
    token = mint_token(key, aud=DISCOVERY)
    assert status(app, token) == 200
    assert status(app, token) == 401
    assert fallbacks() == before + 2  # the second check waited for the retry pause: local cache too
    assert app.test_client().get("/readyz").get_json()["replayCache"]["degraded"] is True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fallback_logs_at_most_once_a_minute_without_jti_and_retries_the_database(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    make_engine(url).dispose()
    monotonic = FakeClock()
    cache = DatabaseReplayCache(replay_engine(url), monotonic=monotonic, retry_after=5, log_every=60)
    caplog.set_level(logging.INFO, logger="cds_service.security.replay")
    jtis = [f"secret-jti-{i}" for i in range(30)]
    for i, jti in enumerate(jtis):  # no table yet: unreachable for the cache
        monotonic.now = 1000 + i  # 30 s of calls, one a second
        assert cache.check_and_store(ISS, jti, 4e9) is True
        assert cache.check_and_store(ISS, jti, 4e9) is False  # replay in this process: still refused
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert not any("secret-jti" in r.getMessage() for r in caplog.records)
    monotonic.now = 1061
    cache.check_and_store(ISS, "one-more", 4e9)
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 2
    assert "check(s)" in caplog.records[-1].getMessage()

    upgrade(make_engine(url))  # the database is back
    monotonic.now = 1100  # past the retry pause
    assert cache.check_and_store(ISS, "after", 4e9) is True
    assert cache.status() == {"mode": "database", "degraded": False}
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    with make_engine(url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jwt_replay")).scalar_one() == 1


def test_a_database_held_locked_does_not_hold_the_check(tmp_path):
    # Another process holds SQLite's write lock: after the short busy timeout the check answers locally.
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    upgrade(make_engine(url))
    cache = DatabaseReplayCache(replay_engine(url, timeout=0.1))
    before = fallbacks()
    holder = make_engine(url).raw_connection()
    try:
        holder.execute("BEGIN IMMEDIATE")
        assert cache.check_and_store(ISS, "while-locked", 4e9) is True
        assert cache.check_and_store(ISS, "while-locked", 4e9) is False
    finally:
        holder.rollback()
        holder.close()
    assert fallbacks() == before + 2
    assert cache.status()["degraded"] is True


def test_memory_mode_stays_available_for_a_single_process(tmp_path, key):
    app = build(tmp_path, key, f"sqlite:///{tmp_path / 'cds.sqlite3'}", CDS_JWT_REPLAY_CACHE="memory")
    token = mint_token(key, aud=DISCOVERY)
    assert [status(app, token), status(app, token)] == [200, 401]
    assert app.test_client().get("/readyz").get_json()["replayCache"] == {"mode": "memory", "degraded": False}


@pytest.mark.skipif(not POSTGRES_WANTED, reason="set CDS_TEST_POSTGRES=1")
def test_a_locked_row_does_not_hold_the_check_postgresql(postgres_server):
    # Another session inserted the same key and has not committed: our INSERT would wait for it. The
    # lock_timeout set on the replay engine's sessions ends the wait, and the check answers locally.
    name = postgres_server.create_database()
    url = postgres_server.url(name)
    upgrade(make_engine(url))
    cache = DatabaseReplayCache(replay_engine(url, timeout=0.2))
    before = fallbacks()
    holder = make_engine(url).connect()
    try:
        holder.execute(jwt_replay.insert().values(key=replay_key(ISS, "held"), expires_at=4e9))
        assert cache.check_and_store(ISS, "held", 4e9) is True
        assert cache.check_and_store(ISS, "held", 4e9) is False
    finally:
        holder.rollback()
        holder.close()
        postgres_server.drop_database(name)
    assert fallbacks() == before + 2
