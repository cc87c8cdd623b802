"""One Settings object, read once from the environment, with safe development defaults."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("AFFNET_DATA_DIR", ROOT / ".data"))

# A secret that is known to be unsafe: refused in production.
_UNSAFE_SECRETS = {"", "change-me", "changeme", "secret", "dev", "development"}
MIN_SECRET_LENGTH = 32


class ConfigError(RuntimeError):
    """The environment does not describe a safe configuration."""


def _click_writer(value: str) -> str:
    value = value.strip().lower() or "inline"
    if value not in ("inline", "process"):
        raise ValueError(f"AFFNET_CLICK_WRITER must be inline or process, not {value!r}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _local_secret(path: Path) -> str:
    """Read the development secret, generating it (mode 0600) on first run."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6390/0"
    secret_key: str = ""
    base_url: str = "http://127.0.0.1:8000"
    stripe_secret_key: str = ""
    stripe_publishable_key: str = ""
    stripe_webhook_secret: str = ""
    # The Connect endpoint's own secret: Stripe sends connected accounts' events (a publisher's
    # account.updated) only there, to /stripe/connect-webhook.
    stripe_connect_webhook_secret: str = ""
    stripe_api_base: str = ""
    session_ttl_seconds: int = 7 * 24 * 3600
    # Attempts per window for one account from one network (/24, /48); for one account from every network
    # (looser: distributed guessing; networks the account logged in from are exempt); for one network over
    # every account (password spraying). See server/accounts/throttle.py.
    login_max_failures_per_account: int = 5
    login_max_failures_per_account_all_networks: int = 50
    login_max_failures_per_ip: int = 20
    login_failure_window_seconds: int = 15 * 60
    publisher_auto_approve: bool = False
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)
    # The header a trusted proxy names the visitor's country in (CF-IPCountry, …); "": countries unknown.
    geo_country_header: str = ""
    media_dir: str = str(DATA_DIR / "media")
    # Each process's journal of answered clicks and counted views not yet in the database
    # (server/tracking/journal.py): on a local disk of the host, kept across restarts.
    journal_dir: str = str(DATA_DIR / "journal")
    # Clicks held in memory at most while the database does not take them; past that they wait in
    # the journal only, read back as writes succeed again (server/tracking/buffer.py).
    click_buffer_max_rows: int = 200_000
    # Who stores the journaled clicks: "inline", this process's event loop between requests, or
    # "process", a click writer process of its own (server/tracking/writer_process.py), which
    # leaves the serving process's CPU to answering clicks.
    click_writer: str = "inline"
    max_upload_bytes: int = 512 * 1024
    # Click quality rules: prefetch and suspicious_headers (server/tracking/classify.py:
    # header_reason) and datacenter (server/tracking/datacenter.py); off: clicks are classified as before.
    click_quality_checks: bool = True
    # The click redirect's visitor cookie (server/tracking/visitor.py: a random id, an hour, /c/ only),
    # which tells apart readers sharing an address; off: duplicates are keyed on network + User-Agent.
    visitor_cookie: bool = True
    # Days raw clicks and impressions are kept once the reports have rolled them up (rollups are
    # kept for ever); 0 keeps them for ever. 90: past the default 30-day attribution window and
    # 30-day hold, so default campaigns never hold it back, and a quarter to look into a disputed
    # click. Longer windows and unpriced hours hold it back on their own (server/reports/retention.py).
    raw_event_retention_days: int = 90
    # Where the worker delivers mail (server/mail/smtp.py); unset in development: the local catcher
    # `make run` starts on 127.0.0.1:1025. The sender every message is from.
    smtp_url: str = "smtp://127.0.0.1:1025"
    mail_from: str = "affnet <no-reply@affnet.localhost>"
    # Webhooks and postbacks may go to 127.0.0.1 / ::1 (any port): development receivers only.
    webhooks_allow_loopback: bool = False
    # The network's own legal identity, printed on every invoice and statement as the seller (advertisers'
    # invoices) or the buyer (publishers' self-billed invoices), and the series its documents are numbered
    # in (server/invoicing/). Production must set them (the defaults are a demo company's).
    network_name: str = "affnet demo SAS"
    network_address: str = "10 rue de la Paix"
    network_postcode: str = "75002"
    network_city: str = "Paris"
    network_country: str = "FR"
    network_company_number: str = "73282932000074"  # FR: SIRET
    network_vat_number: str = "FR44732829320"
    invoice_series: str = "AF"  # advertisers' invoices and credit notes
    self_billing_series: str = "AC"  # self-billed invoices in publishers' names (autofacturation)
    statement_series: str = "RP"  # publishers' payout statements

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def load_settings() -> Settings:
    """Build Settings from the environment. In production a missing or weak secret is fatal."""
    env = os.environ.get("AFFNET_ENV", "development").strip().lower()
    secret = os.environ.get("SECRET_KEY", "")
    if env == "production":
        if secret.strip().lower() in _UNSAFE_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"SECRET_KEY must be set to a random value of at least {MIN_SECRET_LENGTH} characters "
                "in production (for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')."
            )
    elif not secret:
        secret = _local_secret(DATA_DIR / "secret_key")
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'affnet.sqlite3'}"
    if env == "production" and not os.environ.get("DATABASE_URL"):
        raise ConfigError("DATABASE_URL must be set in production.")
    if env == "production" and not (os.environ.get("SMTP_URL") and os.environ.get("MAIL_FROM")):
        raise ConfigError(
            "SMTP_URL and MAIL_FROM must be set in production (for example SMTP_URL=smtp://user:password@"
            "smtp.example.com:587 and MAIL_FROM='affnet <no-reply@example.com>'): people reset passwords by e-mail."
        )
    proxies = tuple(p.strip() for p in os.environ.get("TRUSTED_PROXIES", "").split(",") if p.strip())
    return Settings(
        env=env,
        database_url=database_url,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"),
        secret_key=secret,
        base_url=os.environ.get("BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
        stripe_secret_key=os.environ.get("STRIPE_SECRET_KEY", ""),
        stripe_publishable_key=os.environ.get("STRIPE_PUBLISHABLE_KEY", ""),
        stripe_webhook_secret=os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        stripe_connect_webhook_secret=os.environ.get("STRIPE_CONNECT_WEBHOOK_SECRET", ""),
        stripe_api_base=os.environ.get("STRIPE_API_BASE", ""),
        session_ttl_seconds=_int("SESSION_TTL_SECONDS", 7 * 24 * 3600),
        login_max_failures_per_account=_int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5),
        login_max_failures_per_account_all_networks=_int("LOGIN_MAX_FAILURES_PER_ACCOUNT_ALL_NETWORKS", 50),
        login_max_failures_per_ip=_int("LOGIN_MAX_FAILURES_PER_IP", 20),
        login_failure_window_seconds=_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60),
        publisher_auto_approve=_bool("PUBLISHER_AUTO_APPROVE", False),
        trusted_proxies=proxies,
        geo_country_header=os.environ.get("GEO_COUNTRY_HEADER", ""),
        media_dir=os.environ.get("MEDIA_DIR", str(DATA_DIR / "media")),
        journal_dir=os.environ.get("JOURNAL_DIR", str(DATA_DIR / "journal")),
        raw_event_retention_days=_int("AFFNET_RAW_EVENT_RETENTION_DAYS", 90),
        click_buffer_max_rows=_int("AFFNET_CLICK_BUFFER_MAX_ROWS", 200_000),
        click_writer=_click_writer(os.environ.get("AFFNET_CLICK_WRITER", "inline")),
        max_upload_bytes=_int("MAX_UPLOAD_BYTES", 512 * 1024),
        click_quality_checks=_bool("AFFNET_CLICK_QUALITY_CHECKS", True),
        visitor_cookie=_bool("AFFNET_VISITOR_COOKIE", True),
        smtp_url=os.environ.get("SMTP_URL") or "smtp://127.0.0.1:1025",
        mail_from=os.environ.get("MAIL_FROM") or "affnet <no-reply@affnet.localhost>",
        webhooks_allow_loopback=_bool("WEBHOOKS_ALLOW_LOOPBACK", False),
        **_network_identity(),
    )


_NETWORK_FIELDS = (
    "network_name",
    "network_address",
    "network_postcode",
    "network_city",
    "network_country",
    "network_company_number",
    "network_vat_number",
    "invoice_series",
    "self_billing_series",
    "statement_series",
)


def _network_identity() -> dict[str, str]:
    """NETWORK_NAME, NETWORK_ADDRESS … INVOICE_SERIES, SELF_BILLING_SERIES, STATEMENT_SERIES: each set one
    overrides its default (server/invoicing/identity.py validates them when a process starts)."""
    return {
        name: os.environ[name.upper()].strip() for name in _NETWORK_FIELDS if os.environ.get(name.upper(), "").strip()
    }
