"""Crashes and outages: sandbard killed with -9 in the middle of creates
leaves nothing stuck after a restart; PostgreSQL going away gives 503s, not
crashes, and service comes back with it."""
import threading
import time

from harness import docker, pg
from sandboxes import templates_env


def test_kill_during_creates_then_reconcile(server_factory):
    """Three creates answered, then seven in flight when sandbard is killed:
    the acknowledged three survive running with their containers, the ones
    in flight are made `error` by the reconciler with nothing of theirs left."""
    srv = server_factory(env=templates_env())
    c = srv.client()
    cluster = f"sandbar.cluster={srv.database}"
    acked = []
    for i in range(3):
        r = c.post("/api/sandboxes", json={"template": "plain", "name": f"done{i}"}, timeout=60)
        assert r.status == 201, r
        acked.append(r.json["id"])
    answers = []

    def create(i):
        try:
            r = srv.client().post("/api/sandboxes", json={"template": "plain", "name": f"c{i}"}, timeout=60)
            answers.append((r.status, r.json["id"] if r.status == 201 else None))
        except OSError:
            answers.append(("dropped", None))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    # kill once the new creates have rows and at least one has its container
    deadline = time.monotonic() + 30
    while (len(docker.ps(cluster)) < 4 or
           pg.psql("SELECT count(*) FROM sandboxes WHERE status = 'creating'", url=srv.database_url).strip() == "0"):
        assert time.monotonic() < deadline, "no create in flight with a container within 30 s"
        time.sleep(0.02)
    srv.kill()
    for t in threads:
        t.join(60)
    assert len(answers) == 7, answers
    # creates were in flight at the kill: rows left in `creating`, answers lost
    stuck = pg.psql("SELECT id FROM sandboxes WHERE status = 'creating'", url=srv.database_url).split()
    assert stuck, "no create was in flight when sandbard was killed"
    assert ("dropped", None) in answers, answers
    acked += [sid for status, sid in answers if status == 201]
    srv.start()
    out = pg.psql("SELECT status, count(*) FROM sandboxes GROUP BY status", url=srv.database_url)
    counts = dict(l.split("|") for l in out.splitlines() if l)
    assert "creating" not in counts, counts
    live = pg.psql("SELECT id FROM sandboxes WHERE status = 'running'", url=srv.database_url).split()
    # nothing acknowledged is lost; what was in flight is an error now
    assert set(acked) <= set(live), (acked, live)
    failed = pg.psql("SELECT id FROM sandboxes WHERE status = 'error'", url=srv.database_url).split()
    assert set(stuck) <= set(failed), (stuck, failed)
    # every labelled container belongs to a running row, and every running row has its container
    owners = sorted(docker.labels(cid)["sandbar.sandbox"] for cid in docker.ps(cluster))
    assert owners == sorted(live), (owners, live, counts)
    for cid in docker.ps(cluster):
        assert docker.running(cid)
    vols = docker.volumes(cluster)
    assert sorted(docker.volume_labels(v)["sandbar.sandbox"] for v in vols) == sorted(live)
    assert srv.wait_log(f"reconcile: {len(stuck)} stale create(s)")
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


def test_reconciler_removes_a_volume_left_without_its_container(server_factory):
    """A delete cut off between its container's removal and its volume's (a
    kill -9): the volume alone is an orphan, removed at the next start."""
    srv = server_factory(env=templates_env())
    c = srv.client()
    sb = c.post("/api/sandboxes", json={"template": "plain"}).json
    srv.stop()
    pg.psql(f"UPDATE sandboxes SET status = 'deleted', deleted_at = now() WHERE id = '{sb['id']}'",
            url=srv.database_url)
    docker.remove_containers([sb["container_id"]])
    assert docker.volumes(f"sandbar.sandbox={sb['id']}") != []
    srv.start()
    assert docker.volumes(f"sandbar.sandbox={sb['id']}") == []


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
