"""Start an MLflow tracking server backed by PostgreSQL, on 127.0.0.1, with artifacts served by it.

    python scripts/tracking_server.py [--dir DIR] [--port 5000] [--backend-store-uri postgresql://...]

Without ``--backend-store-uri`` a local PostgreSQL cluster is created in ``DIR/postgres``
(``initdb``, trust auth, loopback only) with two databases: ``mlflow`` for the server and
``optuna`` for studies. Artifacts are stored in ``DIR/artifacts`` and go through the server
(``--serve-artifacts``), so workers need no shared disk. It prints the URIs to use and the
commands that stop everything, then leaves the services running. For other machines,
reach the server through an SSH tunnel or a reverse proxy: it only listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import sqlalchemy
from services import start_mlflow_server, start_postgres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("sweeper-server"), help="where data and artifacts live")
    parser.add_argument("--port", type=int, default=5000, help="the tracking server's port on 127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=None, help="PostgreSQL's port on 127.0.0.1 (default: free)")
    parser.add_argument("--backend-store-uri", default=None, help="an existing database instead of a new cluster")
    args = parser.parse_args()
    root = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    stops = []
    optuna_url = None
    backend = args.backend_store_uri
    if backend is None:
        cluster = start_postgres(port=args.pg_port, root=root / "postgres")
        backend, optuna_url = cluster.create_database("mlflow"), cluster.create_database("optuna")
        stops.append(cluster.stop_command())
        print(f"PostgreSQL: {cluster.url('postgres')} (data in {cluster.data_dir})")
    server = start_mlflow_server(backend, root / "artifacts", port=args.port, log_path=root / "mlflow-server.log")
    stops.insert(0, f"kill -TERM -{os.getpgid(server.process.pid)}")
    shown_backend = sqlalchemy.engine.make_url(backend).render_as_string(hide_password=True)
    print(
        f"MLflow tracking server: {server.uri} (pid {server.process.pid}, backend {shown_backend}, "
        f"artifacts {server.artifacts}, log {server.log_path})"
    )
    print("use it with:")
    print(f"  export MLFLOW_TRACKING_URI={server.uri}")
    if optuna_url:
        print(f"  python -m sweeper -m search=lr hydra.sweeper.storage={optuna_url} tracking.uri={server.uri}")
    print("stop with:")
    for command in stops:
        print(f"  {command}")


if __name__ == "__main__":
    main()
