"""A test run: its id, a fresh database per server, and the clean-up of every
container, volume and network the run's servers created. The dockerd is shared, so
only what is provably ours is removed: containers named in our databases or
labelled with one of our clusters (SANDBAR_CLUSTER = the database), and what they point at."""
import contextlib
import itertools
import os
import re
import time

from . import docker
from . import pg
from .server import Server, default_env


class Session:
    def __init__(self, prefix="sandbar_test"):
        self.run_id = f"{prefix}_{os.getpid()}_{int(time.time()) % 100000}"
        self.databases = []
        self.servers = []
        self._n = itertools.count(1)
        self.keep = os.environ.get("SANDBAR_TEST_KEEP") == "1"
        # Where the dockerd is ours alone (a CI machine), everything managed
        # that appears during the run may be removed at the end.
        self.clean_all = os.environ.get("SANDBAR_TEST_CLEAN_ALL") == "1"
        self.preexisting = set(docker.ps(docker.MANAGED)) if self.clean_all else set()

    def new_database(self):
        name = f"{self.run_id}_{next(self._n)}"
        url = pg.create_database(name)
        self.databases.append(name)
        return name, url

    def new_server(self, name=None, env=None, **kw):
        """A Server (not started) with its own fresh database; env overrides
        the defaults (a None value unsets)."""
        db, url = self.new_database()
        srv = Server(name or db, {}, **kw)
        base = default_env(url, srv.port, self.run_id)
        # one installation per database: the reconciler of one test server
        # never touches another's containers on the shared dockerd
        base["SANDBAR_CLUSTER"] = db
        base.update(env or {})
        srv.env_overrides = base
        srv.database = db
        srv.database_url = url
        self.servers.append(srv)
        return srv

    # ------------------------------------------------------------ clean-up
    def _sandbox_rows(self, db):
        """(sandbox id, container id) pairs recorded in one of our databases."""
        out = pg.psql(
            "SELECT id, coalesce(container_id, '') FROM sandboxes", url=pg.url_with_db(pg.base_url(), db), check=False
        )
        rows = []
        for line in out.splitlines():
            sid, _, cid = line.partition("|")
            rows.append((sid.strip(), cid.strip()))
        return rows

    def owned(self, databases=None):
        """(container ids, volume names) that belong to this run (or to the
        given databases only)."""
        dbs = self.databases if databases is None else databases
        sandbox_ids, container_ids = set(), set()
        for db in dbs:
            for sid, cid in self._sandbox_rows(db):
                if sid:
                    sandbox_ids.add(sid)
                if cid:
                    container_ids.add(cid)
        # containers are labelled sandbar.cluster=<database> (SANDBAR_CLUSTER)
        marks = sandbox_ids | set(dbs) | ({self.run_id} if databases is None else set())

        def ours(name, labels):
            vals = set(labels.values()) | {name}
            return bool(vals & marks) or any(m in name for m in sandbox_ids)

        containers = set()
        for cid in docker.ps(docker.MANAGED):
            if cid in container_ids or any(cid.startswith(c) for c in container_ids if len(c) >= 12):
                containers.add(cid)
                continue
            d = docker.inspect(cid)
            if d is None:
                continue
            name = d.get("Name", "").lstrip("/")
            if ours(name, d.get("Config", {}).get("Labels") or {}):
                containers.add(cid)
            elif self.clean_all and databases is None and cid not in self.preexisting:
                containers.add(cid)
        # containers the database names but that lost their label
        for cid in container_ids:
            if docker.exists(cid):
                containers.add(docker.inspect(cid)["Id"])
        volumes = set()
        for v in docker.volumes(docker.MANAGED):
            if ours(v, docker.volume_labels(v)):
                volumes.add(v)
        return containers, volumes

    def cleanup(self, databases=None):
        """Removes what belongs to the run (or to some databases); returns what
        is still there afterwards (should be nothing)."""
        containers, volumes = self.owned(databases)
        docker.remove_containers(sorted(containers))
        docker.remove_volumes(sorted(volumes))
        if databases is None:
            # the run's bridge network (SANDBAR_NETWORK = the run id), once its containers are gone
            nets = [n for n in docker.networks(docker.MANAGED) if n == self.run_id]
            docker.remove_networks(nets)
            self.left_networks = [n for n in nets if docker.inspect(n, kind="network") is not None]
        left_c = [c for c in containers if docker.exists(c)]
        left_v = [v for v in volumes if docker.inspect(v, kind="volume") is not None]
        return left_c, left_v

    @contextlib.contextmanager
    def own_server(self, name, env=None):
        """A started server of its own for a module or a test (not the
        server_factory's): stopped at the end (exit 0 on SIGTERM, or the
        server died on its own), then what it made is removed and must be
        all there was."""
        srv = self.new_server(name=name, env=env)
        srv.start()
        try:
            yield srv
            srv.stop()
        finally:
            if srv.alive():
                srv.kill()
            left_c, left_v = self.cleanup([srv.database])
            self.drop_databases([srv.database])
        assert not left_c and not left_v, f"left behind: containers {left_c}, volumes {left_v}"

    def drop_databases(self, databases=None):
        if self.keep:
            return
        for db in list(self.databases if databases is None else databases):
            pg.drop_database(db)
            if db in self.databases:
                self.databases.remove(db)


def safe_name(text):
    return re.sub(r"[^a-z0-9_]+", "_", text.lower())[:40]
