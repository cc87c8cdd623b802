"""Settings and engines come from the environment, with safe development defaults."""

from __future__ import annotations

import stat

import pytest
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from server import piccolo_app
from server.core import db
from server.core import settings as settings_module
from server.core.settings import ConfigError, load_settings


def test_a_development_secret_is_generated_once_into_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setattr(settings_module, "DATA_DIR", tmp_path)
    first = load_settings()
    assert len(first.secret_key) >= 32
    secret_file = tmp_path / "secret_key"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert load_settings().secret_key == first.secret_key


def test_defaults_are_sqlite_and_a_local_redis(tmp_path, monkeypatch):
    for name in ["DATABASE_URL", "REDIS_URL", "STRIPE_SECRET_KEY", "AFFNET_ENV"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "DATA_DIR", tmp_path)
    s = load_settings()
    assert s.is_sqlite and s.database_url.endswith("affnet.sqlite3")
    assert s.redis_url.startswith("redis://127.0.0.1")
    assert s.stripe_secret_key == "" and not s.production


@pytest.mark.parametrize("secret", ["", "change-me", "x" * 31])
def test_production_refuses_a_default_or_short_secret(monkeypatch, secret):
    monkeypatch.setenv("AFFNET_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/affnet")
    monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings()


def test_production_needs_an_explicit_database(monkeypatch):
    monkeypatch.setenv("AFFNET_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 48)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings()


def test_database_url_selects_the_engine():
    sqlite = db.engine_for("sqlite:////var/lib/affnet/db.sqlite3")
    assert isinstance(sqlite, SQLiteEngine) and sqlite.path == "/var/lib/affnet/db.sqlite3"
    assert db.engine_for("sqlite:///relative.db").path == "relative.db"
    pg = db.engine_for("postgres://app:p%40ss@db.internal:6543/affnet")
    assert isinstance(pg, PostgresEngine)
    assert pg.config == {
        "host": "db.internal",
        "port": 6543,
        "user": "app",
        "password": "p@ss",
        "database": "affnet",
        "server_settings": {"jit": "off"},
    }  # no JIT: it costs more than it saves on affnet's reads
    with pytest.raises(ValueError, match="DATABASE_URL"):
        db.engine_for("mysql://x/y")


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(app, settings):
    if not settings.is_sqlite:
        pytest.skip("a SQLite property")
    rows = await piccolo_app.all_tables()[0].raw("PRAGMA journal_mode")
    assert rows[0]["journal_mode"] == "wal"
    assert db.engine().connection_kwargs["timeout"] == db.SQLITE_BUSY_TIMEOUT


async def test_postgresql_connections_run_without_jit(app, settings):
    if settings.is_sqlite:
        pytest.skip("a PostgreSQL property")
    rows = await piccolo_app.all_tables()[0].raw("SHOW jit")
    assert rows[0]["jit"] == "off"


def test_production_needs_a_mail_server_and_a_sender(monkeypatch):
    monkeypatch.setenv("AFFNET_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 48)
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/affnet")
    monkeypatch.delenv("SMTP_URL", raising=False)
    monkeypatch.setenv("MAIL_FROM", "affnet <no-reply@example.com>")
    with pytest.raises(ConfigError, match="SMTP_URL"):
        load_settings()
    monkeypatch.setenv("SMTP_URL", "smtp://user:pw@smtp.example.com:587")
    settings = load_settings()
    assert settings.smtp_url == "smtp://user:pw@smtp.example.com:587"
    assert settings.mail_from == "affnet <no-reply@example.com>"


def test_smtp_url_reads_tls_starttls_and_credentials():
    from server.mail import smtp

    plain = smtp.parse("smtp://127.0.0.1:1025")
    assert (plain.host, plain.port, plain.use_tls, plain.start_tls, plain.username) == (
        "127.0.0.1",
        1025,
        False,
        None,
        None,
    )
    submission = smtp.parse("smtp://me%40example.com:p%3Ass@smtp.example.com:587")
    assert submission.start_tls is True and submission.username == "me@example.com" and submission.password == "p:ss"
    assert smtp.parse("smtps://smtp.example.com").port == 465 and smtp.parse("smtps://smtp.example.com").use_tls
    assert smtp.parse("smtp://relay:2525?starttls=1").start_tls is True
    assert smtp.parse("smtp://relay:587?starttls=0").start_tls is False
    for wrong in ["http://smtp.example.com", "smtp://", "smtp:///x"]:
        with pytest.raises(ValueError, match="SMTP_URL"):
            smtp.parse(wrong)
