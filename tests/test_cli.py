"""The `affnet` command: users create (password never on argv), production safety; `affnet-dev demo`."""

from __future__ import annotations

import os
import subprocess
import sys

from server.accounts.tables import User
from server.campaigns.tables import Campaign, Link
from server.core.settings import ROOT
from tests.conftest import TEST_SECRET


def affnet(
    args: list[str], settings, stdin: str = "", extra_env: dict[str, str] | None = None, module: str = "server.cli"
):
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": TEST_SECRET,
        "MEDIA_DIR": settings.media_dir,
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_users_create_reads_the_password_from_stdin(clean, settings):
    result = affnet(
        ["users", "create", "--role", "finance", "--email", "Fin@Affnet.Example"],
        settings,
        stdin="a long finance password\n",
    )
    assert result.returncode == 0, result.stderr
    assert "created finance user" in result.stdout
    row = await User.select().where(User.email == "fin@affnet.example").first()
    assert row["role"] == "finance" and row["password_hash"].startswith("$argon2id$")


async def test_users_create_refuses_a_weak_password_and_a_password_option(clean, settings):
    weak = affnet(["users", "create", "--role", "admin", "--email", "a@affnet.example"], settings, stdin="short\n")
    assert weak.returncode != 0 and "at least 10 characters" in weak.stderr
    on_argv = affnet(
        ["users", "create", "--role", "admin", "--email", "a@affnet.example", "--password", "x" * 12], settings
    )
    assert on_argv.returncode != 0 and "No such option" in on_argv.stderr
    assert await User.count() == 0


async def test_users_create_only_makes_finance_or_admin(clean, settings):
    result = affnet(
        ["users", "create", "--role", "publisher", "--email", "p@affnet.example"],
        settings,
        stdin="long enough password\n",
    )
    assert result.returncode != 0
    assert await User.count() == 0


async def test_demo_seeds_every_role_once_and_prints_the_logins(clean, settings):
    first = affnet(["demo"], settings, module="dev.cli")  # affnet-dev demo
    assert first.returncode == 0, first.stderr
    for email in [
        "admin@affnet.example",
        "finance@affnet.example",
        "advertiser@affnet.example",
        "publisher@affnet.example",
    ]:
        assert email in first.stdout
    count = await User.count()
    assert count == 5
    # The demo publisher already holds a working link in the demo advertiser's campaign.
    link = await Link.select(Link.code, Link.publisher.email.as_alias("email")).first()
    assert link["email"] == "publisher@affnet.example"
    assert affnet(["demo"], settings, module="dev.cli").returncode == 0
    assert await User.count() == count
    # The shop's sale (links) and its banners (the demo blog's ad slot), each joined by the publisher.
    assert await Campaign.count() == 2 and await Link.count() == 2


def test_production_refuses_to_start_without_a_real_secret(settings):
    for secret in ["", "change-me", "short"]:
        result = affnet(
            ["serve", "--port", "1"], settings, extra_env={"AFFNET_ENV": "production", "SECRET_KEY": secret}
        )
        assert result.returncode != 0
        assert "SECRET_KEY must be set" in result.stderr


def test_mail_check_sends_through_smtp_url_and_says_when_it_cannot(settings, mailbox):
    result = affnet(["mail", "check", "--to", "ops@example.com"], settings, extra_env={"SMTP_URL": mailbox.url})
    assert result.returncode == 0, result.stderr
    assert f"{mailbox.url} accepted a test message to ops@example.com" in result.stdout
    [caught] = mailbox.catcher.to("ops@example.com")
    assert caught.subject == "affnet: test message"
    mailbox.stop()
    result = affnet(["mail", "check", "--to", "ops@example.com"], settings, extra_env={"SMTP_URL": mailbox.url})
    assert result.returncode == 1 and "did not take the message" in result.stderr
    result = affnet(["mail", "check", "--to", "x@example.com"], settings, extra_env={"SMTP_URL": "http://nope"})
    assert result.returncode == 1 and "SMTP_URL must start with smtp://" in result.stderr
