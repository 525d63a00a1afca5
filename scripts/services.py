"""Local services for distributed sweeps: a PostgreSQL cluster, an MLflow tracking server, sweep workers.

Both bind 127.0.0.1 only. ``scripts/tracking_server.py`` starts them for a user; the
integration tests start them the same way. PostgreSQL refuses to run as root, so as root the
cluster runs as the ``postgres`` user (``runuser``) in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MlflowServer",
    "PostgresCluster",
    "find_pg_bin",
    "free_port",
    "start_mlflow_server",
    "start_postgres",
    "start_workers",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_pg_bin() -> Path | None:
    """The directory holding PostgreSQL's ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.insert(0, str(Path(on_path).resolve().parent))
    for directory in candidates:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresCluster:
    """A running cluster; ``url(db)`` is the SQLAlchemy URL of one of its databases."""

    root: Path
    port: int
    bin_dir: Path
    user: str = "sweeper"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its URL."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def stop_command(self) -> str:
        prefix = "runuser -u postgres -- " if os.geteuid() == 0 else ""
        return f"{prefix}{self.bin_dir / 'pg_ctl'} stop -D {self.data_dir} -m fast"

    def stop(self) -> None:
        """Stop the server and delete its files."""
        subprocess.run(
            _as_postgres_user([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, port: int | None = None, root: Path | None = None, timeout: float = 60) -> PostgresCluster:
    """``initdb`` a new cluster (trust auth, loopback only) and start it.

    Args:
        port: TCP port on 127.0.0.1 (default: a free one).
        root: directory for the data, socket and log (default: a new temporary directory,
            readable by the ``postgres`` user when running as root).
        timeout: seconds to wait for the server.

    Raises:
        RuntimeError: no PostgreSQL binaries, or the server did not start (with its log).
    """
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
    root = Path(root or tempfile.mkdtemp(prefix="sweeper-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PostgresCluster(root=root, port=port or free_port(), bin_dir=bin_dir)
    steps = [
        [str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "-U", cluster.user, "--auth=trust", "-E", "UTF8"],
        [
            str(bin_dir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            str(cluster.data_dir),
            "-l",
            str(root / "postgres.log"),
            "-o",
            f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        ],
    ]
    for cmd in steps:
        proc = subprocess.run(_as_postgres_user(cmd), capture_output=True, text=True, timeout=timeout + 30)
        if proc.returncode != 0:
            log = (root / "postgres.log").read_text() if (root / "postgres.log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {proc.stderr.strip()} {log[-2000:]}")
    return cluster


@dataclass
class MlflowServer:
    """A running ``mlflow server``; ``uri`` is its tracking URI."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    artifacts: Path
    _log: object = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server and its worker processes (its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow_server(
    backend_store_uri: str,
    artifacts: Path,
    *,
    port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 180,
) -> MlflowServer:
    """Start ``mlflow server`` on 127.0.0.1 with artifacts served through it; wait for ``/health``.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` seconds (with its log).
    """
    port = port or free_port()
    artifacts.mkdir(parents=True, exist_ok=True)
    log_path = log_path or artifacts.parent / "mlflow-server.log"
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the server's lifetime
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner: faster start
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    server = MlflowServer(process, port, log_path, artifacts, log)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers(f"{server.uri}/health"):
                return server
            time.sleep(0.5)
    except BaseException:  # interrupted while waiting: leave no server behind
        server.stop()
        raise
    server.stop()
    raise RuntimeError(f"mlflow server did not start on port {port}: {log_path.read_text()[-3000:]}")


def start_workers(
    n: int, overrides: list[str], workdir: Path, *, env: dict[str, str] | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` sweep workers (``python -m sweeper -m OVERRIDES hydra.sweeper.n_jobs=1``).

    Each runs in ``workdir/worker<i>`` (its own outputs, no shared disk needed) and writes its
    output to ``worker.log`` there; they share the study through ``hydra.sweeper.storage``.
    ``env`` replaces the environment (default: this process's).
    """
    cmd = [sys.executable, "-m", "sweeper", "-m", *overrides, "hydra.sweeper.n_jobs=1"]
    procs = []
    for i in range(n):
        cwd = workdir / f"worker{i}"
        cwd.mkdir(parents=True, exist_ok=True)
        with open(cwd / "worker.log", "ab") as log:
            procs.append(subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env))
    return procs
