"""The `affnet-dev` command (also `python -m dev.cli`): dev (what `make run` starts), demo, stripe-local. Local
use only; the product's `affnet` command is server/cli.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

os.environ.setdefault("PICCOLO_CONF", "server.piccolo_conf")

from dev.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo, seed_demo_ads  # noqa: E402
from server.cli import _settings, _with_db  # noqa: E402
from server.core.settings import DATA_DIR, ROOT  # noqa: E402


@click.group()
def main() -> None:
    """affnet-dev: run affnet locally with demo data and a Stripe stand-in."""


@main.command()
def demo() -> None:
    """Seed a demo admin, finance users, advertiser and publisher, and print their logins."""
    if _settings().production:
        raise click.ClickException("refusing to create demo accounts with known passwords in production")
    logins = asyncio.run(_with_db(seed_demo))
    _print_logins(logins)


def _print_logins(logins: list[tuple[str, str]]) -> None:
    click.echo(f"Demo logins (password for all: {DEMO_PASSWORD}):")
    for role, email in logins:
        click.echo(f"  {role:<11} {email}")


@main.command()
@click.option("--into", default="messages", show_default=True, help="The catalogue file (NAME.po) new entries go to.")
@click.option("--under", multiple=True, help="Only sentences used in files under this path (repeatable).")
def translations(into: str, under: tuple[str, ...]) -> None:
    """Add the sentences each language's catalogue lacks (found as pybabel extract finds them)."""
    from dev.translations import extract, gaps, update

    added = update(into=into, under=under)
    for language, count in added.items():
        click.echo(f"{language}: {count} new sentence(s) in server/locale/{language}/LC_MESSAGES/{into}.po")
    messages = [m for m in extract().values() if not under or any(f.startswith(u) for f in m.files for u in under)]
    for language in added:
        missing = gaps(language, messages)
        click.echo(f"{language}: {len(missing)} sentence(s) without a translation")
        for line in missing[:20]:
            click.echo(f"  {line}")


@main.command("mailcatcher")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--smtp-port", default=1025, show_default=True, type=int, help="Where affnet sends its mail (SMTP_URL).")
@click.option("--web-port", default=8025, show_default=True, type=int, help="Where you read it in a browser.")
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Also write each message here as .eml.")
def mailcatcher(host: str, smtp_port: int, web_port: int, keep: Path | None) -> None:
    """Run a local SMTP server that keeps every message, and a page to read them (nothing is delivered)."""
    from dev.mailcatcher import serve

    click.echo(f"mail catcher: SMTP on {host}:{smtp_port}, read the mail at http://{host}:{web_port}/")
    try:
        serve(smtp_port, web_port, keep, host=host)
    except KeyboardInterrupt:
        pass


@main.command("wordpress")
@click.option(
    "--affnet-url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="affnet's address, as the plugin is told it (`make run`'s by default).",
)
@click.option("--api-key", default="", help="A publisher's read-and-write API key to save in the plugin's settings.")
@click.option(
    "--locale", default="", help="WordPress's language, such as fr_FR or it_IT (its packs must be installed)."
)
def wordpress_site(affnet_url: str, api_key: str, locale: str) -> None:
    """A throwaway WordPress on loopback with the affnet plugin installed and active (Debian's wordpress,
    MariaDB and Apache; dev/wordpress.py), to try the plugin by hand. Ctrl-C stops it and deletes it."""
    import secrets

    from dev import wordpress
    from server.ads.wordpress import build_zip

    missing = wordpress.missing()
    if missing:
        raise click.ClickException(
            "Debian's packages are missing: sudo apt-get install --no-install-recommends " + " ".join(missing)
        )
    site = wordpress.start(locale=locale)
    try:
        site.install_plugin(build_zip())
        site.activate("affnet/affnet.php")
        site.set_options(affnet_base_url=affnet_url.rstrip("/"), **({"affnet_api_key": api_key} if api_key else {}))
        author_password = secrets.token_urlsafe(12)
        site.php(
            "wp_insert_user(['user_login' => 'author', 'user_email' => 'author@blog.example.test',"
            f" 'user_pass' => {json.dumps(author_password)}, 'role' => 'author']);"
        )
        click.echo(f"WordPress with the affnet plugin is running at {site.url}/  (Ctrl-C stops and deletes it)")
        settings_page = f"{site.url}/wp-admin/options-general.php?page=affnet"
        click.echo(f"  administrator: {site.admin_user} / {site.admin_password}   {settings_page}")
        click.echo(f"  author (no unfiltered_html): author / {author_password}   {site.url}/wp-admin/post-new.php")
        click.echo(f"  affnet: {affnet_url}; list 127.0.0.1 among the ad slot's site domains")
        click.echo(f"  files: {site.root} (deleted when it stops)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        site.stop()


@main.command("stripe-local")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=12111, show_default=True, type=int)
@click.option("--public-url", default=None, help="Where a browser reaches it (default: http://HOST:PORT).")
@click.option(
    "--secret-key",
    envvar="STRIPE_SECRET_KEY",
    default=None,
    help="The one API key accepted (env STRIPE_SECRET_KEY; default: any sk_test_ key).",
)
@click.option("--webhook-url", default=None, help="Where events are POSTed (none: they are only listed).")
@click.option(
    "--webhook-secret",
    envvar="STRIPE_WEBHOOK_SECRET",
    default=None,
    help="The whsec_ secret events are signed with (env STRIPE_WEBHOOK_SECRET; default: a new one).",
)
@click.option(
    "--connect-webhook-url",
    envvar="STRIPE_LOCAL_CONNECT_WEBHOOK_URL",
    default=None,
    help="Where connected accounts' events are POSTed (Stripe's Connect endpoint; none: only listed).",
)
@click.option(
    "--connect-webhook-secret",
    envvar="STRIPE_CONNECT_WEBHOOK_SECRET",
    default=None,
    help="The Connect endpoint's own whsec_ secret (env STRIPE_CONNECT_WEBHOOK_SECRET; default: a new one).",
)
@click.option(
    "--available-delay",
    default=2 * 86400,
    show_default=True,
    type=int,
    help="Seconds a card payment's funds stay pending before transfers may use them.",
)
@click.option("--webhook-attempts", default=8, show_default=True, type=int)
@click.option(
    "--webhook-retry-delay",
    default=1.0,
    show_default=True,
    type=float,
    help="Seconds before the first retry, doubled after each failure up to 60.",
)
@click.option("--fee-bps", default=150, show_default=True, type=int, help="Card fee, basis points of the amount.")
@click.option("--fee-fixed", default=25, show_default=True, type=int, help="Card fee, fixed part in minor units.")
def stripe_local(
    host: str,
    port: int,
    public_url: str | None,
    secret_key: str | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    connect_webhook_url: str | None,
    connect_webhook_secret: str | None,
    available_delay: int,
    webhook_attempts: int,
    webhook_retry_delay: float,
    fee_bps: int,
    fee_fixed: int,
) -> None:
    """Run the local Stripe stand-in (Checkout, refunds, disputes, Connect). Its state lives in memory."""
    import secrets

    import uvicorn

    from dev.stripe_local.app import create_app
    from dev.stripe_local.store import Config

    if not webhook_secret:
        webhook_secret = "whsec_" + secrets.token_hex(24)
        click.echo(f"stripe-local: signing webhooks with {webhook_secret}")
    if not connect_webhook_secret:
        connect_webhook_secret = "whsec_" + secrets.token_hex(24)
        click.echo(f"stripe-local: signing Connect webhooks with {connect_webhook_secret}")
    config = Config(
        public_url=(public_url or f"http://{host}:{port}").rstrip("/"),
        secret_key=secret_key or None,
        webhook_url=webhook_url or None,
        webhook_secret=webhook_secret,
        connect_webhook_url=connect_webhook_url or None,
        connect_webhook_secret=connect_webhook_secret,
        available_delay=available_delay,
        fee_bps=fee_bps,
        fee_fixed_minor=fee_fixed,
        webhook_attempts=webhook_attempts,
        webhook_retry_delay=webhook_retry_delay,
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", server_header=False)


def _stripe_local_keys() -> dict[str, str]:
    """The stand-in's secret key and webhook secret for `affnet-dev dev`, generated once into .data/ (mode 0600)."""
    import json
    import secrets

    path = DATA_DIR / "stripe-local-keys.json"
    keys = json.loads(path.read_text()) if path.exists() else {}
    if "connect_webhook_secret" in keys:
        return keys
    keys = {
        "secret_key": "sk_test_local" + secrets.token_hex(16),
        "webhook_secret": "whsec_" + secrets.token_hex(24),
        **keys,
        "connect_webhook_secret": "whsec_" + secrets.token_hex(24),
    }  # (files of older affnets lack it)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(keys) + "\n")
    return keys


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--redis-port", default=6390, show_default=True, type=int)
@click.option(
    "--mail-port",
    default=1025,
    show_default=True,
    type=int,
    help="The local mail catcher's SMTP port (unless SMTP_URL is set); its page is on --mail-web-port.",
)
@click.option("--mail-web-port", default=8025, show_default=True, type=int)
@click.option(
    "--stripe-port",
    default=12111,
    show_default=True,
    type=int,
    help="Port of the local Stripe stand-in, started when STRIPE_SECRET_KEY is not set.",
)
def dev(port: int, redis_port: int, mail_port: int, mail_web_port: int, stripe_port: int) -> None:
    """Start everything for local use: Redis, migrations, demo data, the Stripe stand-in, the worker and the web
    server."""
    from dev.services import Child, Service, port_open, start_redis, wait_for_port

    env = dict(os.environ)
    services = []
    if "REDIS_URL" not in env:
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        if not port_open(redis_port):
            services.append(start_redis(DATA_DIR / "redis", port=redis_port, persist=True))
    env.setdefault("BASE_URL", f"http://127.0.0.1:{port}")
    env.setdefault("WEBHOOKS_ALLOW_LOOPBACK", "true")  # webhooks to a receiver on this machine
    local_mail = not env.get("SMTP_URL")
    if local_mail:
        # No mail server configured: mail goes to the local catcher, read in a browser.
        for taken in (mail_port, mail_web_port):
            if port_open(taken):
                raise click.ClickException(f"port {taken} is taken; choose others with --mail-port/--mail-web-port")
        env["SMTP_URL"] = f"smtp://127.0.0.1:{mail_port}"
    local_stripe = not env.get("STRIPE_SECRET_KEY")
    if local_stripe:
        # No Stripe account configured: the server and the worker talk to the local stand-in instead.
        if port_open(stripe_port):
            raise click.ClickException(f"port {stripe_port} is taken; choose another with --stripe-port")
        keys = _stripe_local_keys()
        env.update(
            STRIPE_SECRET_KEY=keys["secret_key"],
            STRIPE_WEBHOOK_SECRET=keys["webhook_secret"],
            STRIPE_CONNECT_WEBHOOK_SECRET=keys["connect_webhook_secret"],
            STRIPE_PUBLISHABLE_KEY="pk_test_local",
            STRIPE_API_BASE=f"http://127.0.0.1:{stripe_port}",
            # Connected accounts' events go to the Connect endpoint, as Stripe sends them.
            STRIPE_LOCAL_CONNECT_WEBHOOK_URL=env["BASE_URL"].rstrip("/") + "/stripe/connect-webhook",
        )
    os.environ.update(env)
    _settings()
    exe = [sys.executable, "-m", "server.cli"]
    subprocess.run([*exe, "migrate"], check=True, env=env)  # noqa: S603
    first_run = not (DATA_DIR / "demo-seeded").exists()
    if first_run:
        asyncio.run(_with_db(seed_demo))
        (DATA_DIR / "demo-seeded").write_text("yes\n")
    else:
        asyncio.run(_with_db(seed_demo_ads))  # demo data added to affnet since the first run
    # Every process is a Child: when one exits (a crash, a Redis outage it did not survive) it is started
    # again with backoff and the others keep running; Ctrl-C stops them all.
    children: list[Child] = [
        Child("redis", lambda: start_redis(DATA_DIR / "redis", port=redis_port, persist=True), handle=s)
        for s in services
    ]
    if local_stripe:
        # Keys reach it through the environment (STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET), not argv. Its own
        # session: Ctrl-C reaches it once, from stop_all (a second SIGINT makes uvicorn exit with a traceback).
        # Restarted, it starts empty (its state is in memory): pending Checkout sessions are gone.
        stand_in = Child(
            "Stripe stand-in",
            lambda: subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "dev.cli",
                    "stripe-local",
                    "--port",
                    str(stripe_port),
                    "--webhook-url",
                    env["BASE_URL"].rstrip("/") + "/stripe/webhook",
                ],
                env=env,
                cwd=ROOT,
                start_new_session=True,
            ),
        )
        wait_for_port(stripe_port, timeout=30, proc=stand_in.proc)
        children.append(stand_in)
    if local_mail:
        catcher = Child(
            "mail catcher",
            lambda: subprocess.Popen(  # noqa: S603
                [*exe[:2], "dev.cli", "mailcatcher", "--smtp-port", str(mail_port), "--web-port", str(mail_web_port)],
                env=env,
                cwd=ROOT,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
            ),
        )
        wait_for_port(mail_port, timeout=30, proc=catcher.proc)
        children.append(catcher)
    children += [
        Child("worker", lambda: subprocess.Popen([*exe, "worker"], env=env, cwd=ROOT)),  # noqa: S603
        Child(
            "web server",
            lambda: subprocess.Popen(  # noqa: S603
                [*exe, "serve", "--port", str(port)],
                env=env,
                cwd=ROOT,
            ),
        ),
    ]

    def stop_all(*_):
        processes = [c for c in children if not isinstance(c.handle, Service)]
        for c in processes:
            c.stop(signal.SIGINT)
        deadline = time.monotonic() + 10
        for c in processes:
            try:
                c.handle.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                c.handle.kill()
        for c in children:
            if isinstance(c.handle, Service):
                c.stop()

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        wait_for_port(port, timeout=60, proc=children[-1].proc)
        click.echo("")
        click.echo(f"affnet is running at http://127.0.0.1:{port}/  (Ctrl-C stops everything)")
        click.echo(f"  health: http://127.0.0.1:{port}/healthz   API docs: http://127.0.0.1:{port}/schema")
        click.echo(f"  demo blog with an ad slot: http://127.0.0.1:{port}/demo/blog")
        if local_stripe:
            click.echo(
                f"  Stripe: local stand-in at {env['STRIPE_API_BASE']}/ (test mode, state in memory; "
                f"webhooks to {env['BASE_URL']}/stripe/webhook)"
            )
        if local_mail:
            click.echo(
                f"  mail: every message affnet sends is caught, read it at http://127.0.0.1:{mail_web_port}/ "
                "(set SMTP_URL to send for real)"
            )
        _print_logins([(role.value, email) for role, email in DEMO_USERS])
        while True:
            time.sleep(0.5)
            for c in children:
                c.tend(time.monotonic(), lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
