"""The mail catcher `make run` starts: a real SMTP server on loopback and a page that lists what it
caught, run as `affnet-dev mailcatcher` in its own process, as `make run` runs it."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from email.message import EmailMessage

import httpx

from dev.services import free_port, wait_for_port
from server.core.settings import ROOT


def test_the_catcher_keeps_what_it_is_sent_and_shows_it_escaped():
    smtp_port, web_port = free_port(), free_port()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "dev.cli", "mailcatcher", "--smtp-port", str(smtp_port), "--web-port", str(web_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(smtp_port, timeout=30, proc=proc)
        wait_for_port(web_port, timeout=30, proc=proc)
        web = f"http://127.0.0.1:{web_port}"
        assert "No mail yet" in httpx.get(web + "/").text
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "affnet <a@affnet.test>", "blogger@example.fr", "Bienvenue <b>!"
        msg.set_content("Ouvrez http://127.0.0.1:8000/verify-email/abc")
        msg.add_alternative('<p>Hi</p><script>alert("x")</script>', subtype="html")
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.send_message(msg)
        listing = httpx.get(web + "/")
        assert "Bienvenue &lt;b&gt;!" in listing.text and "blogger@example.fr" in listing.text
        page = httpx.get(web + "/messages/1")
        assert page.status_code == 200
        assert "<script>" not in page.text  # the HTML part only inside the sandboxed frame's srcdoc, escaped
        assert 'sandbox="allow-popups' in page.text and "verify-email/abc" in page.text
        raw = httpx.get(web + "/messages/1.eml")
        assert raw.headers["content-type"] == "message/rfc822" and b"Subject: Bienvenue <b>!" in raw.content
        assert httpx.get(web + "/messages/2").status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
