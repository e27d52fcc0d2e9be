"""Real PostgreSQL (and later Redis) servers for the tests, started in a temp directory.

`initdb` refuses to run as root, so as root the server runs as the `postgres` user. Under
CI=true a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin"), Path("/usr/bin")]


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_tool(name: str) -> str:
    for directory in PG_BIN_DIRS:
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL tool {name!r} not found; install postgresql-15")
    return found


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1."""

    directory: Path
    port: int
    _as_postgres: bool

    @classmethod
    def start(cls) -> PostgresServer:
        as_postgres = os.geteuid() == 0
        directory = Path(tempfile.mkdtemp(prefix="fleetwatch-pg-"))
        if as_postgres:
            shutil.chown(directory, "postgres", "postgres")
        server = cls(directory=directory, port=free_port(), _as_postgres=as_postgres)
        data = directory / "data"
        server._run(
            [_pg_tool("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        )
        server.resume()
        return server

    def resume(self) -> None:
        """Start the server (again, after `halt`) on its port, with its data."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run(
            [
                _pg_tool("pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-o",
                options,
                "-l",
                str(self.directory / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def halt(self) -> None:
        """Stop the server at once, as a crash would, keeping its data (see `resume`)."""
        self._run(
            [_pg_tool("pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop"]
        )

    def _run(self, argv: list[str]) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}\n{result.stderr}")

    def url(self, database: str = "postgres") -> str:
        """A plain postgresql:// URL (the form users pass to --database-url)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import asyncio

        import asyncpg  # the driver fleetwatch itself uses

        async def create() -> None:
            conn = await asyncpg.connect(self.url())
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(
                [_pg_tool("pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop"]
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def postgres_available() -> bool:
    """Whether initdb can be found (CI installs it; a developer machine may not have it)."""
    try:
        _pg_tool("initdb")
    except RuntimeError:
        return False
    return True


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class RedisServer:
    """A throwaway Redis listening on 127.0.0.1, in memory only; it can be restarted."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; scripts/install --dev installs it")
        server = cls(directory=Path(tempfile.mkdtemp(prefix="fleetwatch-redis-")), port=free_port())
        server.restart()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        """(Re)start the server on the same port, empty (no persistence, as after a crash)."""
        self.kill()
        binary = shutil.which("redis-server") or "redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
