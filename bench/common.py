"""Shared parts of the benchmarks: the machine, a throwaway affnet server on loopback, load tools.

Every benchmark sends traffic to 127.0.0.1 only, bounded in time and request count."""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dev.services import free_port, start_redis, wait_for_port  # noqa: E402
from server.cli import SERVERS  # noqa: E402

DEFAULT_SERVER = SERVERS[0]  # the HTTP server `affnet serve` runs by default (uvicorn or granian)

SECRET = "bench-secret-key-0123456789-0123456789-0123456789"
# What --postgres runs on, for every bench's output.
POSTGRES_DURABILITY = "throwaway cluster, production durability: fsync, synchronous_commit and full_page_writes on"


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # exited meanwhile


def process_tree(root: int) -> list[int]:
    """`root` and every live process descending from it (uvicorn's workers are its children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time used so far by `root` and its live descendants (Linux /proc). A
    process that exited during a phase takes its time with it: none of the measured ones do."""
    total = 0
    for pid in process_tree(root):
        if (fields := _stat_fields(pid)) is not None:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (the load generators, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The PostgreSQL clusters bench_database started, by URL: their postmaster's pid file, so a bench
# can count the database's CPU (every backend is a child of the postmaster).
CLUSTER_DIRS: dict[str, Path] = {}


def database_cpu_seconds(database_url: str) -> float | None:
    """CPU time of the bench's own PostgreSQL cluster so far (None: SQLite, whose work is done in
    the server's process and counted there, or a database this bench did not start)."""
    data_dir = CLUSTER_DIRS.get(database_url)
    if data_dir is None:
        return None
    pid = int((data_dir / "db" / "postmaster.pid").read_text().split()[0])
    return tree_cpu_seconds(pid)


def durability(database_url: str) -> str:
    """The durability settings the database really runs with, read from it (not assumed)."""
    if database_url.startswith("sqlite"):
        path = database_url.split("sqlite:///", 1)[1]
        conn = sqlite3.connect(path)
        try:
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            conn.close()
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return f"SQLite {sqlite3.sqlite_version}, journal_mode={journal}, synchronous={names.get(sync, sync)}"
    import asyncio

    import asyncpg

    async def read() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            version = (await conn.fetchval("SHOW server_version")).split()[0]
            names = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "commit_delay")
            values = [f"{n}={await conn.fetchval(f'SHOW {n}')}" for n in names]
        finally:
            await conn.close()
        return f"PostgreSQL {version}, " + ", ".join(values)

    return asyncio.run(read())


def ensure_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"install {' '.join(missing)} first (Debian packages)")
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, capture_output=True)


@dataclass
class Server:
    url: str
    env: dict[str, str]
    proc: subprocess.Popen
    redis: object

    workers: int = 1
    server: str = DEFAULT_SERVER  # the HTTP server it runs under

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far: its process and, with several
        workers, uvicorn's worker processes (Linux /proc)."""
        return tree_cpu_seconds(self.proc.pid)

    def redis_cpu_seconds(self) -> float | None:
        """CPU time of the server's Redis so far (None for the bare apps, which have none)."""
        return None if self.redis is None else tree_cpu_seconds(self.redis.proc.pid)

    def redis_commandstats(self) -> dict[str, tuple[int, int]]:
        """Redis's INFO commandstats: command -> (calls, microseconds), since it started."""
        if self.redis is None:
            return {}
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}

    def stop(self) -> int:
        """Graceful shutdown (SIGINT, as Ctrl-C): the server flushes its buffers before exiting."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _stop(self.proc, signal.SIGKILL, timeout=10)
                return self.proc.returncode
        finally:
            self.redis.stop()

    def kill9(self) -> None:
        """The process dies at once, as under `kill -9` or the OOM killer: no shutdown hook runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def restart(self, workdir: Path) -> float:
        """Start the server again on the same port, database, Redis and data directory; returns
        the seconds until it answered (startup includes replaying what a killed process left)."""
        started = time.monotonic()
        self.proc = _serve(workdir, self.env, int(self.url.rsplit(":", 1)[1]), self.workers, self.server)
        return time.monotonic() - started


@contextmanager
def asgi_302(
    workdir: Path,
    app: str = "raw302:app",
    workers: int = 1,
    proxy_headers: bool = False,
    server: str = DEFAULT_SERVER,
) -> Iterator[Server]:
    """An ASGI app of bench/ under `server` (uvicorn or granian) with `affnet serve`'s options
    (`workers` processes, no access log, warning logs; uvicorn without its server header, granian
    HTTP/1 only, uvloop, no websockets): bench/raw302.py, the true ceiling a redirect on this server
    is compared with, or bench/litestar302.py, a bare Litestar route answering 302 (GET
    /__bench/302). Several workers are the server's, as `affnet serve --workers N` runs them: one
    listening socket bound by the parent, shared by its worker processes. `proxy_headers`: read
    X-Forwarded-For from loopback, as `affnet serve` does with TRUSTED_PROXIES=127.0.0.1 (under
    granian through the same wrapper `affnet serve` uses, the module's `proxied` factory)."""
    port = free_port()
    module = app.split(":")[0]
    if server == "granian":
        command = [
            *("-m", "granian", "--interface", "asgi", "--http", "1", "--no-ws", "--loop", "uvloop"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"),
            *("--workers", str(workers)),
            *(("--factory", f"{module}:proxied") if proxy_headers else (app,)),
        ]
    else:
        command = [
            *("-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
            *(["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"] if proxy_headers else ["--no-proxy-headers"]),
            *("--no-server-header", "--no-access-log", "--log-level", "warning"),
            *(["--workers", str(workers)] if workers > 1 else []),
        ]
    proc = subprocess.Popen(
        [sys.executable, *command],
        cwd=Path(__file__).resolve().parent,
        stdout=open(workdir / f"{module}-{server}.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        wait_for_workers(proc, workers, server)
        yield Server(f"http://127.0.0.1:{port}", {}, proc, None, workers, server)
    finally:
        _stop(proc, signal.SIGINT)


NGINX_CONF = """
daemon off;
master_process on;
worker_processes %(workers)d;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        location / { return 302 https://shop.example.com/landing; }
    }
}
"""


@contextmanager
def nginx_302(workdir: Path, workers: int = 1) -> Iterator[Server]:
    """nginx answering every request with `return 302` (`workers` worker processes, no access log):
    the ceiling of any redirect on this machine, below which every Python server sits. Only when
    nginx is installed (`shutil.which("nginx")`); it is not needed for anything else."""
    port = free_port()
    conf_dir = workdir / "nginx"
    conf_dir.mkdir(exist_ok=True)
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF % {"workers": workers, "dir": conf_dir, "port": port})
    proc = subprocess.Popen(  # noqa: S603
        [shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(conf_dir)],
        stdout=open(conf_dir / "stdout.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=10, proc=proc)
        yield Server(f"http://127.0.0.1:{port}", {}, proc, None, workers)
    finally:
        _stop(proc, signal.SIGQUIT)  # nginx's graceful shutdown


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop a server gracefully, and kill it (and its workers) if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in reversed(process_tree(proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=timeout)


def wait_for_workers(proc: subprocess.Popen, workers: int, server: str = DEFAULT_SERVER, timeout: float = 60) -> None:
    """With several workers (granian: always, its one worker is a child too) the parent listens
    before its workers are up: wait until `workers` children have started and their CPU use has
    settled (imports and the lifespan's startup done), so no phase measures a worker's start-up."""
    if workers <= 1 and server != "granian":
        return
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        children = [pid for pid in process_tree(proc.pid)[1:] if _is_python(pid)]
        used = tree_cpu_seconds(proc.pid)
        if len(children) >= workers and used - last < 0.02:
            return
        last = used
        time.sleep(0.5)
    raise TimeoutError(f"{workers} {server} workers did not settle within {timeout}s")


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


def _serve(
    workdir: Path, env: dict[str, str], port: int, workers: int = 1, server: str = DEFAULT_SERVER
) -> subprocess.Popen:
    """`affnet serve --workers N --server S`, as production runs it."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "server.cli", "serve", "--port", str(port)),
            *("--workers", str(workers), "--server", server),
        ],
        cwd=ROOT,
        env=env,
        stdout=open(workdir / "server.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        wait_for_workers(proc, workers, server)
    except BaseException:
        _stop(proc)  # a server that did not come up is not left behind
        raise
    return proc


def start_server(
    workdir: Path, database_url: str | None = None, workers: int = 1, server: str = DEFAULT_SERVER
) -> Server:
    redis = start_redis(workdir / "redis")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url or f"sqlite:///{workdir / 'bench.sqlite3'}",
        "REDIS_URL": redis.url,
        "SECRET_KEY": SECRET,
        "BASE_URL": f"http://127.0.0.1:{port}",
        "AFFNET_DATA_DIR": str(workdir / "data"),
    }
    try:
        subprocess.run(
            [sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        return Server(
            f"http://127.0.0.1:{port}", env, _serve(workdir, env, port, workers, server), redis, workers, server
        )
    except BaseException:
        redis.stop()  # a failed migration or start leaves no Redis behind
        raise


BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


@dataclass
class Load:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    counts: dict[str, int] = field(default_factory=dict)  # what a wrk script printed as "COUNTS k=v ..."
    client_cpu: float = 0.0  # CPU seconds the load generator itself used (it shares the machine's cores)
    seconds: float = 0.0  # the phase's length


def phase_line(name: str, top: Load, half: Load, width: int = 28) -> str:
    """One row of a bench's result: the maximum rate, and latency at about half of it."""
    return (
        f"{name:<{width}} max {top.rps:>8.0f} req/s (p50 {top.p50_ms:.2f} ms, p99 {top.p99_ms:.2f} ms)   "
        f"at {half.rps:.0f} req/s: p50 {half.p50_ms:.2f} ms, p99 {half.p99_ms:.2f} ms"
    )


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> Load:
    """Closed-loop load at the maximum rate the server sustains (through a Lua `script` if given)."""
    lua = ["-s", str(script)] if script else []
    cpu_before = children_cpu_seconds()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *lua, "-H", f"User-Agent: {BROWSER_UA}", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))
    counts = {}
    if match := re.search(r"COUNTS (.*)", out):
        counts = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    return Load(requests, rps, p50, p99, counts, children_cpu_seconds() - cpu_before, seconds)


def hey(url: str, seconds: int, rate: float, workers: int = 8) -> Load:
    """Open-loop-ish load at a fixed rate (hey's per-worker QPS limit), for latency at a set rate."""
    per_worker = max(1, int(rate / workers))
    cpu_before = children_cpu_seconds()
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(workers),
            "-q",
            str(per_worker),
            "-disable-redirects",
            "-H",
            f"User-Agent: {BROWSER_UA}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000
    requests = sum(int(n) for n in re.findall(r"\[\d{3}\]\s+(\d+) responses", out))
    return Load(requests, rps, p50, p99, client_cpu=children_cpu_seconds() - cpu_before, seconds=seconds)


@contextmanager
def bench_database(workdir: Path, args: argparse.Namespace) -> Iterator[str | None]:
    """The database a bench runs on: with `--postgres` a throwaway PostgreSQL cluster on loopback
    with production's durability (fsync, synchronous_commit, full_page_writes on; stopped
    afterwards), else `--database-url` or None (the bench's own default, SQLite)."""
    if not args.postgres:
        yield args.database_url
        return
    from dev.services import start_postgres

    cluster = start_postgres(workdir / "pg", durable=True)
    CLUSTER_DIRS[cluster.url] = workdir / "pg"
    try:
        yield cluster.url
    finally:
        CLUSTER_DIRS.pop(cluster.url, None)
        cluster.stop()


async def approved_publisher(settings, *, blog_url: str) -> int:
    """The benches' publisher, pub@bench.example: signed up as a blogger does (which writes their
    verification mail: nothing delivers it here), address confirmed and approved as an admin would."""
    from datetime import UTC, datetime

    from server.accounts import service as accounts
    from server.accounts.tables import Publisher, PublisherStatus, User
    from server.mail import outbox

    outbox.configure(settings)
    pub_id = await accounts.signup_publisher(
        {
            "email": "pub@bench.example",
            "password": "bench password 1",
            "display_name": "Bench",
            "blog_url": blog_url,
            "audience": "bench",
        },
        settings,
    )
    await User.update({User.email_verified_at: datetime.now(UTC)}).where(User.id == pub_id)
    await Publisher.update({Publisher.status: PublisherStatus.approved.value}).where(Publisher.user == pub_id)
    return pub_id
