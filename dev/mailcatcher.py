"""A local SMTP server that keeps every message it is sent (aiosmtpd): what `make run` starts so the
product's mail can be read without a mail account, and the real SMTP server of the tests.

Nothing is relayed anywhere. Each message is kept in memory (the tests read `messages`; the viewer
`serve` starts lists them at http://127.0.0.1:8025/) and, when a directory is given, also written
there as <n>.eml."""

from __future__ import annotations

import email
import email.policy
import html
import http.server
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
        return body.get_content().replace("\r\n", "\n") if body is not None else ""  # as written, not as sent

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


# --- the development viewer: what `make run` prints as "mail" -----------------------------------

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:0;padding:16px;color:#1f2933;background:#f4f5f7}}
main{{max-width:960px;margin:0 auto}}table{{width:100%;border-collapse:collapse;background:#fff}}
td,th{{text-align:left;padding:8px;border-bottom:1px solid #e4e7eb;vertical-align:top}}
pre{{white-space:pre-wrap;background:#fff;padding:12px;border-radius:6px}}
iframe{{width:100%;height:640px;border:1px solid #e4e7eb;background:#fff}}
.muted{{color:#616e7c;font-size:14px}}</style></head><body><main>{body}</main></body></html>"""


def _listing(messages: list[Caught]) -> str:
    if not messages:
        rows = '<tr><td colspan="3" class="muted">No mail yet. What affnet sends appears here.</td></tr>'
    else:
        rows = "".join(
            f'<tr><td><a href="/messages/{n}">{html.escape(m.subject or "(no subject)")}</a></td>'
            f"<td>{html.escape(', '.join(m.recipients))}</td>"
            f'<td class="muted">{html.escape(str(m.message["Date"] or ""))}</td></tr>'
            for n, m in reversed(list(enumerate(messages, start=1)))
        )
    body = (
        "<h1>Caught mail</h1><p class='muted'>Every message affnet sent to this local SMTP server "
        "(nothing is delivered anywhere). Newest first; the page does not refresh itself.</p>"
        f"<table><tr><th>Subject</th><th>To</th><th>Date</th></tr>{rows}</table>"
    )
    return _PAGE.format(title="Caught mail", body=body)


def _one(number: int, m: Caught) -> str:
    headers = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in m.message.items()
        if k in {"From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"}
    )
    # The HTML part in a sandbox: no script, no same-origin; its links open in a new tab.
    frame = html.escape(m.html.replace("<head>", '<head><base target="_blank">', 1), quote=True)
    body = (
        f'<p><a href="/">← all mail</a></p><h1>{html.escape(m.subject)}</h1><table>{headers}</table>'
        f'<h2>HTML part</h2><iframe sandbox="allow-popups allow-popups-to-escape-sandbox" srcdoc="{frame}"></iframe>'
        f"<h2>Plain-text part</h2><pre>{html.escape(m.text)}</pre>"
        f'<p><a href="/messages/{number}.eml">Download the message (.eml)</a></p>'
    )
    return _PAGE.format(title=html.escape(m.subject), body=body)


class _Viewer(http.server.BaseHTTPRequestHandler):
    catcher: Catcher

    def log_message(self, *args: object) -> None:  # quiet: `make run` prints enough
        return

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        messages = list(self.catcher.messages)
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, _listing(messages).encode(), "text/html; charset=utf-8")
            return
        name = path.removeprefix("/messages/")
        number = name.removesuffix(".eml")
        if path.startswith("/messages/") and number.isdigit() and 1 <= int(number) <= len(messages):
            m = messages[int(number) - 1]
            if name.endswith(".eml"):
                self._send(200, m.raw, "message/rfc822")
            else:
                self._send(200, _one(int(number), m).encode(), "text/html; charset=utf-8")
            return
        self._send(404, b"No such message.", "text/plain; charset=utf-8")


def serve(smtp_port: int, web_port: int, directory: Path | None, host: str = "127.0.0.1") -> None:
    """The catcher on smtp_port and its viewer on web_port, until interrupted."""
    server = MailServer(host, smtp_port, directory).start()
    handler = type("Viewer", (_Viewer,), {"catcher": server.catcher})
    web = http.server.ThreadingHTTPServer((host, web_port), handler)
    try:
        web.serve_forever()
    finally:
        web.server_close()
        server.stop()
