"""A local SMTP server that keeps every message it is sent (aiosmtpd): what `make run` starts so the
product's mail can be read without a mail account, and the real SMTP server of the tests.

Nothing is relayed anywhere. Each message is kept in memory (the tests read `messages`) and, when a
directory is given, written there as <n>.eml (what the development viewer lists)."""

from __future__ import annotations

import email
import email.policy
import logging
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP line at INFO


@dataclass
class Caught:
    sender: str
    recipients: list[str]
    raw: bytes
    message: EmailMessage = field(repr=False)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "")

    @property
    def to(self) -> str:
        return str(self.message["To"] or "")

    def part(self, subtype: str) -> str:
        """The text of the plain ('plain') or HTML ('html') part."""
        body = self.message.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None else ""

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")


class Catcher:
    """The aiosmtpd handler: accepts every message (or answers as told: `refuse_with`), keeps it."""

    def __init__(self, directory: Path | None = None) -> None:
        self.messages: list[Caught] = []
        self.directory = directory
        self.refuse_with: str | None = None  # e.g. "550 5.1.1 no such mailbox": refuse every message
        self._lock = threading.Lock()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        if self.refuse_with:
            return self.refuse_with
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        caught = Caught(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], raw, parsed)  # type: ignore[arg-type]
        with self._lock:
            self.messages.append(caught)
            number = len(self.messages)
        if self.directory is not None:
            (self.directory / f"{number:06d}.eml").write_bytes(raw)
        return "250 Message accepted for delivery"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def to(self, address: str) -> list[Caught]:
        """The messages sent to this address, oldest first."""
        return [m for m in list(self.messages) if address.lower() in (r.lower() for r in m.recipients)]


class MailServer:
    """A Catcher listening on host:port in a thread of its own; stop() and start() again at will (the
    tests take it away to play an SMTP outage)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1025, directory: Path | None = None) -> None:
        self.host, self.port = host, port
        self.catcher = Catcher(directory)
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self) -> list[Caught]:
        return self.catcher.messages

    def start(self) -> MailServer:
        if self._controller is None:
            self._controller = Controller(self.catcher, hostname=self.host, port=self.port, ready_timeout=10)
            self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None
