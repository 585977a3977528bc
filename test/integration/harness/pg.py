"""PostgreSQL helpers: psql, a fresh database per server, and stopping and
starting the private cluster of tools/lib/setup.sh under a running server."""
import os
import re
import subprocess
import urllib.parse

from . import paths


def base_url():
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError(
            "DATABASE_URL is not set: run the tests through tools/test, or "
            "`eval $(tools/lib/setup.sh pg-start >/dev/null; echo export DATABASE_URL=$(tools/lib/setup.sh pg-url))`"
        )
    return url


def url_with_db(url, dbname):
    """The same connection string, pointing at another database."""
    if "://" in url:
        u = urllib.parse.urlsplit(url)
        return f"{u.scheme}://{u.netloc}/{dbname}" + (f"?{u.query}" if u.query else "")
    # key=value form: a later dbname wins
    return f"{url} dbname={dbname}"


def psql(sql, url=None, check=True, timeout=60):
    """Runs SQL with psql; returns stdout (tuples only, unaligned, '|' separated)."""
    r = subprocess.run(
        ["psql", url or base_url(), "-XtAq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"psql failed ({r.returncode}): {sql[:200]}\n{r.stderr.strip()}")
    return r.stdout


def psql_file(path, url=None, variables=None, timeout=120):
    """Runs a SQL file with psql (variables as -v name=value, usable as :'name')."""
    args = ["psql", url or base_url(), "-XtAq", "-v", "ON_ERROR_STOP=1"]
    for k, v in (variables or {}).items():
        args += ["-v", f"{k}={v}"]
    r = subprocess.run(args + ["-f", path], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"psql -f {path} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def _ident(name):
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"bad database name {name!r}")
    return name


def create_database(name):
    """Creates database `name` (dropping a leftover of the same name); returns its URL."""
    admin = url_with_db(base_url(), "postgres")
    psql(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)", url=admin)
    psql(f"CREATE DATABASE {_ident(name)}", url=admin)
    return url_with_db(base_url(), name)


def drop_database(name):
    admin = url_with_db(base_url(), "postgres")
    psql(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)", url=admin, check=False)


def list_databases(prefix):
    admin = url_with_db(base_url(), "postgres")
    out = psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{_ident(prefix)}%'", url=admin, check=False)
    return [l for l in out.split() if l]


def managed():
    """True when the tests may stop and start PostgreSQL (our private cluster)."""
    return os.environ.get("SANDBAR_PG_MANAGED") == "1"


def _setup(cmd):
    r = subprocess.run(
        ["bash", paths.SETUP_SH, cmd], capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )
    if r.returncode != 0:
        raise RuntimeError(f"setup.sh {cmd} failed: {r.stdout}{r.stderr}")


def stop():
    """Stops the private cluster (fast shutdown: sessions are cut)."""
    if not managed():
        raise RuntimeError("PostgreSQL is not the private cluster (DATABASE_URL set from outside)")
    _setup("pg-stop")


def start():
    if not managed():
        raise RuntimeError("PostgreSQL is not the private cluster (DATABASE_URL set from outside)")
    _setup("pg-start")


def running():
    r = subprocess.run(["bash", paths.SETUP_SH, "pg-status"], capture_output=True, stdin=subprocess.DEVNULL)
    return r.returncode == 0
