"""Crashes and outages: sandbard killed with -9 in the middle of creates
leaves nothing stuck after a restart; PostgreSQL going away gives 503s, not
crashes, and service comes back with it."""
import threading
import time

from harness import docker, pg
from sandboxes import templates_env


def test_kill_during_creates_then_reconcile(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    answers = []

    def create(i):
        try:
            answers.append(srv.client().post("/api/sandboxes", json={"template": "plain", "name": f"c{i}"},
                                             timeout=60).status)
        except OSError:
            answers.append("dropped")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    # kill once a few containers exist and others are still on their way
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(docker.ps(f"sandbar.cluster={srv.database}")) < 3:
        time.sleep(0.02)
    srv.kill()
    for t in threads:
        t.join(60)
    srv.start()
    out = pg.psql("SELECT status, count(*) FROM sandboxes GROUP BY status", url=srv.database_url)
    counts = dict(l.split("|") for l in out.splitlines() if l)
    assert "creating" not in counts, counts
    live = pg.psql("SELECT id FROM sandboxes WHERE status = 'running'", url=srv.database_url).split()
    # every labelled container belongs to a running row, and every running row has its container
    cluster = docker.ps(f"sandbar.cluster={srv.database}")
    owners = sorted(docker.labels(cid)["sandbar.sandbox"] for cid in cluster)
    assert owners == sorted(live), (owners, live, counts)
    for cid in cluster:
        assert docker.running(cid)
    vols = docker.volumes(f"sandbar.cluster={srv.database}")
    assert sorted(docker.volume_labels(v)["sandbar.sandbox"] for v in vols) == sorted(live)
    assert srv.wait_log("reconcile:")
    for sid in live:
        assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_reconciler_removes_orphans_and_flags_lost_containers(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    a = c.post("/api/sandboxes", json={"template": "plain"}).json
    b = c.post("/api/sandboxes", json={"template": "plain"}).json
    srv.stop()
    # a's container vanishes behind our back; b's row is removed behind our back
    docker.remove_containers([a["container_id"]])
    pg.psql(f"DELETE FROM sandboxes WHERE id = '{b['id']}'", url=srv.database_url)
    srv.start()
    lost = c.get(f"/api/sandboxes/{a['id']}").json
    assert lost["status"] == "error" and "disappeared" in lost["status_reason"]
    assert not docker.exists(b["container_id"])
    assert docker.volumes(f"sandbar.sandbox={b['id']}") == []
    assert docker.volumes(f"sandbar.sandbox={a['id']}") == []


def test_postgres_outage_gives_503_then_recovers(server, client, pg_cluster):
    assert client.get("/api/sandboxes").status == 200
    pg_cluster.stop()
    try:
        statuses = set()
        for _ in range(5):
            r = client.get("/api/sandboxes", timeout=10)
            statuses.add(r.status)
            if r.status == 503:
                assert r.json["error"]["code"] == "database_unavailable"
                assert r.header("retry-after") == "1"
        assert statuses == {503}, statuses
        assert client.get("/health").status == 200
    finally:
        pg_cluster.start()
    deadline = time.monotonic() + 30
    while True:
        r = client.get("/api/sandboxes", timeout=10)
        if r.status == 200:
            break
        assert time.monotonic() < deadline, r
        time.sleep(0.2)
    assert r.json == []
    assert server.alive()
