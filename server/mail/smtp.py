"""Where mail goes: SMTP_URL, read once, and one delivery connection per batch (aiosmtplib).

    smtp://host:25                   plain (a relay on the host or a local catcher)
    smtp://user:pass@host:587        STARTTLS, required (port 587, or ?starttls=1 on any port)
    smtps://user:pass@host:465       TLS from the first byte
    ?starttls=0 on smtp:// turns STARTTLS off; user and password are URL-encoded.

SMTP_URL unset: mail goes to 127.0.0.1:1025, where `make run` starts its catcher (dev/mailcatcher.py);
in production SMTP_URL must be set (server/core/settings.py refuses to start otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

CONNECT_TIMEOUT = 15  # seconds: a server that does not answer is a failed try, retried later


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    use_tls: bool = False  # TLS from the first byte (smtps://)
    start_tls: bool | None = None  # True: required; None: aiosmtplib's default (when offered)
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        scheme = "smtps" if self.use_tls else "smtp"
        who = f"{self.username}@" if self.username else ""
        return f"{scheme}://{who}{self.host}:{self.port}"


def parse(url: str) -> SmtpTarget:
    """An SMTP_URL, checked: ValueError says what is wrong with it."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme or url!r}")
    if not parts.hostname:
        raise ValueError("SMTP_URL names no host (smtp://host:port)")
    query = parse_qs(parts.query)
    tls = parts.scheme == "smtps"
    port = parts.port or (465 if tls else 25)
    start_tls: bool | None = None
    if not tls:
        flag = (query.get("starttls") or [""])[0].lower()
        if flag in {"1", "true", "yes", "on"} or (port == 587 and flag == ""):
            start_tls = True
        elif flag in {"0", "false", "no", "off"}:
            start_tls = False
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        use_tls=tls,
        start_tls=start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class Connection:
    """One SMTP session for a batch of messages; `send` raises aiosmtplib's errors as they come."""

    def __init__(self, target: SmtpTarget) -> None:
        self.target = target
        self.client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            use_tls=target.use_tls,
            start_tls=target.start_tls,
            username=target.username,
            password=target.password,
            timeout=CONNECT_TIMEOUT,
        )

    async def __aenter__(self) -> Connection:
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.client.quit()
        except aiosmtplib.SMTPException:
            self.client.close()
        except OSError:
            self.client.close()

    async def send(self, message: EmailMessage) -> None:
        await self.client.send_message(message)


# The server answered this message with a refusal (the session goes on with the next one).
REFUSED = (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException)
# No session: refused connection, timeout, dropped line, failed TLS or login. Every unsent row waits.
UNREACHABLE = (aiosmtplib.SMTPException, OSError, TimeoutError)


def permanent(exc: BaseException) -> bool:
    """A refusal that retrying will not change: the server answered 5xx (no such mailbox, refused)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= e.code < 600 for e in exc.recipients)
    code = getattr(exc, "code", None)
    return isinstance(exc, aiosmtplib.SMTPResponseException) and isinstance(code, int) and 500 <= code < 600
