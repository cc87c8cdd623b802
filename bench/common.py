"""Shared parts of the benchmarks: the machine, a throwaway affnet server on loopback, load tools.

Every benchmark sends traffic to 127.0.0.1 only, bounded in time and request count."""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
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

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """Graceful shutdown (SIGINT, as Ctrl-C): the server flushes its buffers before exiting."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        self.redis.stop()
        return code

    def kill9(self) -> None:
        """The process dies at once, as under `kill -9` or the OOM killer: no shutdown hook runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def restart(self, workdir: Path) -> float:
        """Start the server again on the same port, database, Redis and data directory; returns
        the seconds until it answered (startup includes replaying what a killed process left)."""
        started = time.monotonic()
        self.proc = _serve(workdir, self.env, int(self.url.rsplit(":", 1)[1]))
        return time.monotonic() - started


@contextmanager
def asgi_302(workdir: Path, app: str = "raw302:app") -> Iterator[Server]:
    """An ASGI app of bench/ under uvicorn with `affnet serve`'s options (one worker, no proxy headers,
    no server header, warning logs): bench/raw302.py, the true ceiling a redirect on this server is
    compared with, or bench/litestar302.py, a bare Litestar route answering 302 (GET /__bench/302)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-proxy-headers",
            "--no-server-header",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parent,
        stdout=open(workdir / f"{app.split(':')[0]}.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield Server(f"http://127.0.0.1:{port}", {}, proc, None)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _serve(workdir: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=open(workdir / "server.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, timeout=30, proc=proc)
    return proc


def start_server(workdir: Path, database_url: str | None = None) -> Server:
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
    subprocess.run([sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    return Server(f"http://127.0.0.1:{port}", env, _serve(workdir, env, port), redis)


BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


@dataclass
class Load:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    counts: dict[str, int] = field(default_factory=dict)  # what a wrk script printed as "COUNTS k=v ..."


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
    return Load(requests, rps, p50, p99, counts)


def hey(url: str, seconds: int, rate: float, workers: int = 8) -> Load:
    """Open-loop-ish load at a fixed rate (hey's per-worker QPS limit), for latency at a set rate."""
    per_worker = max(1, int(rate / workers))
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
    return Load(requests, rps, p50, p99)


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
    try:
        yield cluster.url
    finally:
        cluster.stop()
