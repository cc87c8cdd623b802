"""The `affnet` command: serve, worker, migrate, users create, ledger check, reports rebuild,
datacenter-ranges refresh. The local-only
commands (dev, demo, stripe-local) are `affnet-dev`, in dev/cli.py."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

os.environ.setdefault("PICCOLO_CONF", "server.piccolo_conf")

from server import piccolo_app
from server.accounts.tables import Role  # noqa: E402
from server.core import db  # noqa: E402
from server.core.settings import ConfigError, load_settings  # noqa: E402


def _settings():
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


async def _with_db(coro_fn):
    from server.mail import outbox

    settings = _settings()
    outbox.configure(settings)  # a command that signs someone up writes their mail too
    engine = piccolo_app.bind(db.engine_for(settings.database_url))
    await db.start(engine)
    try:
        return await coro_fn(settings)
    finally:
        await db.stop(engine)


@click.group()
def main() -> None:
    """affnet: an affiliate network."""


# The HTTP servers `affnet serve` can run the app under; the first is the default. bench/servers.py
# measured both on the whole app (README "Benchmarks"), and uvicorn stays: with one worker on two
# cores granian answered pages, the ad decision and Litestar's routes 1.2-1.6x faster (its I/O
# thread used the idle core) and clicks and postbacks alike; with a worker per core, as production
# runs it, granian spent more CPU on every request (a click 72-77 us under uvicorn, 82-87 under
# granian) and was 0.83-1.18x uvicorn on clicks, 0.56-0.64x on a bare ASGI app.
SERVERS = ("uvicorn", "granian")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--access-log", is_flag=True, help="Log every request (each click too: it costs the redirect a tenth).")
@click.option(
    "--server",
    "server_name",
    type=click.Choice(SERVERS),
    default=SERVERS[0],
    show_default=True,
    help="The HTTP server the app runs under.",
)
@click.option(
    "--click-writer",
    type=click.Choice(["process", "inline"]),
    default=None,
    help="Who stores the clicks each server process journals: a click writer process of its own "
    "(the default, or AFFNET_CLICK_WRITER), or the server process itself between requests.",
)
def serve(host: str, port: int, workers: int, access_log: bool, server_name: str, click_writer: str | None) -> None:
    """Run the web server. SIGTERM or SIGINT stops it gracefully: requests in flight are answered, then
    every process stores what it buffered (clicks, impressions, conversions) before it exits."""
    # Each server process's clicks are stored by a click writer process of its own unless
    # AFFNET_CLICK_WRITER or --click-writer says inline (server/tracking/writer_process.py).
    os.environ["AFFNET_CLICK_WRITER"] = click_writer or os.environ.get("AFFNET_CLICK_WRITER") or "process"
    settings = _settings()  # fails fast on an unsafe production configuration
    if workers < 1:
        raise click.BadParameter("at least 1", param_hint="--workers")
    run = _serve_granian if server_name == "granian" else _serve_uvicorn
    run(settings, host, port, workers, access_log)


def _serve_uvicorn(settings, host: str, port: int, workers: int, access_log: bool) -> None:
    import uvicorn

    from server.http.transport import CoalescingProtocol

    proxies = ",".join(settings.trusted_proxies) or "127.0.0.1"
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        http=CoalescingProtocol,  # one socket write per response (server/http/transport.py)
        host=host,
        port=port,
        workers=workers,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=proxies,
        # uvicorn logs requests at info, and sets its access logger to this level too: info whenever
        # --access-log asks for them (at warning it printed none outside production).
        log_level="info" if settings.production or access_log else "warning",
        server_header=False,
        access_log=access_log,  # clicks are recorded in the database; a log line each is paid per click
    )


def _serve_granian(settings, host: str, port: int, workers: int, access_log: bool) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        "server.cli:granian_app",
        factory=True,  # each worker process builds its own app, and runs its lifespan
        address=host,
        port=port,
        interface=Interfaces.ASGI,  # with the lifespan: startup and shutdown (the flush) in every worker
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,  # as uvicorn: HTTP/1.1 (a proxy in front speaks it to its upstreams)
        websockets=False,
        log_level=LogLevels.info if settings.production else LogLevels.warning,
        # Clicks are recorded in the database; a log line each is paid per click. Granian's access
        # logger logs at info whatever log_level says.
        log_access=access_log,
        # A worker that dies (a crash, the OOM killer) is started again, as uvicorn's supervisor does;
        # its journal is replayed by the next one. Granian stops if they die in a loop.
        respawn_failed_workers=True,
    ).serve()


def granian_app():
    """The app as a granian worker builds it (`affnet serve --server granian`). Granian has no proxy
    option of its own: X-Forwarded-For is believed from TRUSTED_PROXIES only, as uvicorn's
    proxy_headers does (the rightmost address not of a trusted proxy becomes scope["client"])."""
    from server.app import create_app

    settings = load_settings()
    app = create_app(settings)
    if not settings.trusted_proxies:
        return app
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    return wrap_asgi_with_proxy_headers(app, list(settings.trusted_proxies))


@main.command()
def worker() -> None:
    """Run the arq worker (background jobs and cron); it reconnects after Redis outages instead of exiting."""
    from workers import supervisor
    from workers.settings import WorkerSettings

    _settings()
    supervisor.run(WorkerSettings)


async def migrate_database() -> None:
    from piccolo.apps.migrations.commands.forwards import run_forwards

    settings = _settings()
    piccolo_app.bind(db.engine_for(settings.database_url))
    result = await run_forwards(app_name="affnet")
    if not result.success:
        raise click.ClickException(f"migration failed: {result.message}")
    await db.start(db.engine())
    await db.stop(db.engine())


@main.command()
def migrate() -> None:
    """Apply every pending database migration."""
    asyncio.run(migrate_database())


@main.group()
def users() -> None:
    """Manage users."""


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\n")


@users.command("create")
@click.option("--role", type=click.Choice([r.value for r in (Role.finance, Role.admin)]), required=True)
@click.option("--email", required=True)
def users_create(role: str, email: str) -> None:
    """Create a finance or admin user. The password is read from a prompt, or from stdin when piped."""
    from server.accounts import service as accounts
    from server.core.errors import DomainError

    password = _read_password()

    async def run(settings):
        return await accounts.create_user(email, password, Role(role))

    try:
        user_id = asyncio.run(_with_db(run))
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created {role} user {email} (id {user_id})")


@main.group()
def ledger() -> None:
    """Inspect the double-entry ledger."""


@ledger.command("check")
def ledger_check() -> None:
    """Check every ledger invariant; print any drift and exit 1 if there is some."""
    from server.ledger import service as ledger_service

    async def run(settings):
        return await ledger_service.check(), await ledger_service.summary()

    problems, summary = asyncio.run(_with_db(run))
    click.echo(f"ledger: {summary['transactions']} transactions, {summary['entries']} entries")
    for row in summary["balances"]:
        click.echo(f"  {row['kind']:<22} {row['currency']} {row['total']:>16}")
    if problems:
        for problem in problems:
            click.echo(f"DRIFT {problem}", err=True)
        raise SystemExit(1)
    click.echo("ledger check: every invariant holds")


@main.group()
def mail() -> None:
    """The mail affnet sends (SMTP_URL, MAIL_FROM)."""


@mail.command("check")
@click.option("--to", "address", required=True, help="Where the test message goes.")
def mail_check(address: str) -> None:
    """Send one test message straight through SMTP_URL (not the outbox) and say what the server answered."""
    from email.message import EmailMessage

    from server.mail import smtp

    settings = _settings()
    try:
        target = smtp.parse(settings.smtp_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.mail_from, address, "affnet: test message"
    message.set_content(f"This message was sent by `affnet mail check` through {target.describe()}.\n")

    async def send() -> None:
        async with smtp.Connection(target) as connection:
            await connection.send(message)

    try:
        asyncio.run(send())
    except smtp.UNREACHABLE as exc:
        raise click.ClickException(
            f"{target.describe()} did not take the message: {type(exc).__name__}: {exc}"
        ) from None
    click.echo(f"{target.describe()} accepted a test message to {address}")


@main.group()
def reports() -> None:
    """Maintain the reports' hourly rollups."""


@reports.command("rebuild")
def reports_rebuild() -> None:
    """Rebuild every hour of the rollups from the raw events (after a restore, or a fix)."""
    from server.reports import rollup

    async def run(settings):
        return await rollup.rebuild_all()

    done = asyncio.run(_with_db(run))
    click.echo(f"reports: {done.traffic_hours} hours of traffic and {done.conversion_hours} of conversions rebuilt")


@main.group("datacenter-ranges")
def datacenter_ranges() -> None:
    """The bundled snapshot of cloud and hosting networks (server/tracking/datacenter.py)."""


@datacenter_ranges.command("refresh")
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("node_modules/@ip-location-db/asn"),
    show_default=True,
    help="An unpacked @ip-location-db/asn npm package (npm pack @ip-location-db/asn, then untar it).",
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: the bundled file."
)
def datacenter_ranges_refresh(source: Path, output: Path | None) -> None:
    """Regenerate the snapshot from the package's ASN tables and HOSTING_ASNS; commit the file."""
    from server.tracking import datacenter

    try:
        name, day, ranges = datacenter.build(source)
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"{source} is not an unpacked {datacenter.SOURCE_PACKAGE} package: {exc}") from None
    path = output or datacenter.SNAPSHOT
    count = datacenter.write(path, name, day, ranges)
    click.echo(f"datacenter-ranges: {count} ranges from {name} ({day.isoformat()}) written to {path}")


if __name__ == "__main__":
    main()
