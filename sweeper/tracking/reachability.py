"""Fast checks of a shared Optuna storage or MLflow tracking URI, before the first trial.

An unreachable PostgreSQL server or tracking server otherwise shows up as a hang (MLflow's
HTTP client retries for minutes) or as a long traceback from a driver. These checks fail in
a few seconds with a :class:`~sweeper.errors.ConfigError` that names the URL (password
hidden), and a missing database driver with the command that installs it.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from sweeper.errors import ConfigError

__all__ = ["INSTALL_HINT", "TIMEOUT_SECONDS", "check_database_url", "check_tracking_uri"]

TIMEOUT_SECONDS = 5
INSTALL_HINT = 'pip install -e ".[dist]" (or pip install "psycopg[binary]")'
_TIMEOUT_ARGS = {"postgresql": {"connect_timeout": TIMEOUT_SECONDS}, "mysql": {"connect_timeout": TIMEOUT_SECONDS}}


def check_database_url(url: str, *, key: str) -> None:
    """Connect once to the database ``url`` (not SQLite: a local file needs no check).

    Args:
        url: an SQLAlchemy URL such as ``postgresql://user:pw@127.0.0.1:5432/optuna``.
        key: the config key that gave it, named in the message.

    Raises:
        ConfigError: the driver is not installed, or the server cannot be reached in time.
    """
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"{key}={url}: not a database URL ({exc})") from exc
    if parsed.get_backend_name() == "sqlite":
        return
    shown = parsed.render_as_string(hide_password=True)
    try:
        engine = sqlalchemy.create_engine(
            parsed, connect_args=_TIMEOUT_ARGS.get(parsed.get_backend_name(), {}), poolclass=sqlalchemy.pool.NullPool
        )
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise ConfigError(f"{key}={shown}: the database driver is missing ({exc}); install it: {INSTALL_HINT}") from exc
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise ConfigError(f"{key}={shown}: cannot connect to the database: {reason}") from exc
    finally:
        engine.dispose()


def check_tracking_uri(uri: str, *, key: str = "tracking.uri") -> None:
    """Check that the MLflow tracking store at ``uri`` answers.

    ``http(s)://`` servers must answer an HTTP request within :data:`TIMEOUT_SECONDS` (any HTTP
    status counts: the server is there); database URIs are checked like a storage; a
    ``sqlite:///`` file must be writable (or creatable) where it is; other schemes are left to MLflow.

    Raises:
        ConfigError: the server or database cannot be reached, the driver is missing, or the
            SQLite file cannot be written.
    """
    if uri.startswith("sqlite:///"):
        _check_writable(Path(uri.removeprefix("sqlite:///")), key=key, uri=uri)
    elif uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=TIMEOUT_SECONDS).close()
        except urllib.error.HTTPError:
            return  # an answer, even an error status, means a server is listening
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"{key}={uri}: the MLflow tracking server does not answer ({reason})") from exc
    elif uri.startswith(("postgresql", "mysql", "mssql")):
        check_database_url(uri, key=key)


def _check_writable(path: Path, *, key: str, uri: str) -> None:
    """``ConfigError`` unless ``path`` is a writable file or could be created (its nearest existing folder writable)."""
    if path.exists():
        ok, where = os.access(path, os.W_OK) and path.is_file(), path
    else:
        where = path.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        ok = where.is_dir() and os.access(where, os.W_OK | os.X_OK)
        try:  # os.access trusts the mode bits; a pseudo file system such as /proc refuses anyway
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            ok = False
    if not ok:
        raise ConfigError(f"{key}={uri}: cannot write the MLflow store there ({where} is not writable)")
