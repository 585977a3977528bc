"""The fixtures and hooks the integration and chaos suites share (their
conftest.py files import them all): real sandbard processes against the
real PostgreSQL (a fresh database per server) and the real dockerd.

  server          a started sandbard with default settings
  server_factory  make(env={...}, start=True) -> Server, for custom settings
  client          an HTTP client of `server`
  pg_cluster      stop()/start() of the private PostgreSQL cluster
  nginx_front     front(server) -> Nginx running tools/nginx/sandbar.conf before it
  run             the Session (run id, databases, clean-up)"""

import os

import pytest

from . import docker, paths, pg
from . import nginx as nginx_mod
from .need import need, unprovided_skip
from .server import SandbardMissing, ServerError
from .session import Session, safe_name

__all__ = [
    "pytest_report_header", "pytest_runtest_makereport",
    "run", "server_factory", "server", "client", "pg_cluster", "nginx_front", "docker_cli",
]


def pytest_report_header(config):
    return [
        f"sandbard: {paths.sandbard_binary()}",
        f"database: {os.environ.get('DATABASE_URL', '(DATABASE_URL unset)')}",
    ]


@pytest.fixture(scope="session")
def run():
    if not os.environ.get("DATABASE_URL"):
        pytest.exit(
            "DATABASE_URL is not set: run the integration tests through tools/test "
            "(it starts the private PostgreSQL cluster)",
            returncode=4,
        )
    s = Session()
    yield s
    for srv in s.servers:
        if srv.alive():
            srv.kill()
    left_c, left_v = s.cleanup()
    s.drop_databases()
    left_n = getattr(s, "left_networks", [])
    assert not left_c and not left_v and not left_n, (
        f"left behind: containers {left_c}, volumes {left_v}, networks {left_n}"
    )


@pytest.fixture
def server_factory(run, request):
    made = []
    request.node._sandbar_servers = made

    def make(env=None, start=True, name=None, **kw):
        srv = run.new_server(
            name=name or f"{run.run_id}_{safe_name(request.node.name)}_{len(made) + 1}", env=env, **kw
        )
        made.append(srv)
        if start:
            err = None
            try:
                srv.start()
            except (SandbardMissing, ServerError) as e:
                err = str(e)
            if err:
                pytest.fail(err, pytrace=False)
        return srv

    yield make
    errors = []
    for srv in made:
        try:
            # SIGTERM, must exit 0 within 15 s; a server that died on its own
            # (a sanitizer abort after the last request) fails the test here
            srv.stop()
        except ServerError as e:
            errors.append(str(e))
    dbs = [srv.database for srv in made]
    left_c, left_v = run.cleanup(dbs)
    run.drop_databases(dbs)
    if left_c or left_v:
        errors.append(f"left behind: containers {left_c}, volumes {left_v}")
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def server(server_factory):
    return server_factory()


@pytest.fixture
def client(server):
    c = server.client()
    yield c
    c.close()


class _Cluster:
    """The private PostgreSQL cluster, for tests that take it away."""

    def stop(self):
        pg.stop()

    def start(self):
        pg.start()

    def running(self):
        return pg.running()


@pytest.fixture
def pg_cluster():
    if not pg.managed():
        need("pg-cluster", "PostgreSQL is not the private cluster (DATABASE_URL set from outside)")
    c = _Cluster()
    yield c
    if not c.running():
        c.start()


@pytest.fixture
def nginx_front(request):
    """front(server): Debian's nginx on a free loopback port running the
    shipped tools/nginx/sandbar.conf with server as its upstream (folder
    .data/test-nginx/<test>); stopped after the test, which fails if it
    had died meanwhile. Without nginx: need("nginx"), which tools/test provides."""
    started = []

    def front(srv):
        if nginx_mod.binary() is None:
            need("nginx", "nginx is not installed (Debian's nginx)")
        n = nginx_mod.Nginx(os.path.join(paths.DATA, "test-nginx", safe_name(request.node.name)))
        started.append(n)
        try:
            n.start(nginx_mod.sandbar_conf(n.port, f"{srv.host}:{srv.port}"))
        except nginx_mod.NginxError as e:
            pytest.fail(str(e), pytrace=False)
        return n

    yield front
    died = [n for n in started if n.proc is not None and not n.stop()]
    if died:
        pytest.fail(f"nginx died during the test:\n{died[0].log_tail()}", pytrace=False)


@pytest.fixture
def docker_cli():
    return docker


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and isinstance(rep.longrepr, tuple):
        why = unprovided_skip(rep.longrepr[2])
        if why:
            rep.outcome = "failed"
            rep.longrepr = why
        else:  # listed (-rs) by the test's own place and name, not need()'s
            path, line, _ = item.location
            rep.longrepr = (path, line, f"{item.name}: {rep.longrepr[2].removeprefix('Skipped: ')}")
    if rep.failed:
        for srv in getattr(item, "_sandbar_servers", []):
            if srv.starts:
                rep.sections.append((f"sandbard log: {srv.log_path}", srv.log_tail(80)))
