"""Stop, start and restart against the real dockerd: every transition checked
with docker inspect, the workspace kept, postStartCommand run again (its
server answers on the published port), the transitions recorded, a wrong
status refused with 409 and the current status, racing requests settled by
the compare-and-set, and a sandbard killed in the middle leaving nothing
half-way."""
import concurrent.futures
import threading
import time

import pytest

from commands_util import execute
from harness import docker, pg
from harness.wait import until
from sandboxes import http_get, templates_env


def create(c, template="plain", **body):
    r = c.post("/api/sandboxes", json={"template": template, **body}, timeout=120)
    assert r.status == 201, r
    return r.json


def events(srv, sid):
    out = pg.psql(f"SELECT coalesce(from_status, '-'), to_status, coalesce(actor, '-') FROM sandbox_events "
                  f"WHERE sandbox_id = '{sid}' ORDER BY id", url=srv.database_url)
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def test_stop_start_keeps_the_workspace(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sb = create(c)
    sid, cid = sb["id"], sb["container_id"]
    assert execute(c, sid, "echo kept > keep.txt && pwd").status == 200
    volume = docker.inspect("sandbar-ws-" + sid, kind="volume")
    assert volume is not None

    r = c.post(f"/api/sandboxes/{sid}/stop")
    assert r.status == 200 and r.json["status"] == "stopped", r
    assert r.json["id"] == sid and r.json["container_id"] == cid
    assert docker.exists(cid) and not docker.running(cid)
    assert docker.inspect("sandbar-ws-" + sid, kind="volume")["CreatedAt"] == volume["CreatedAt"]
    assert c.get(f"/api/sandboxes/{sid}").json["status"] == "stopped"
    r = execute(c, sid, "true")
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running"
    r = c.post(f"/api/sandboxes/{sid}/stop")
    assert r.status == 409 and r.json["error"] == {"code": "invalid_state", "message": "sandbox is stopped, not running",
                                                   "status": "stopped"}, r
    r = c.post(f"/api/sandboxes/{sid}/restart")
    assert r.status == 409 and r.json["error"]["status"] == "stopped"

    r = c.post(f"/api/sandboxes/{sid}/start")
    assert r.status == 200 and r.json["status"] == "running", r
    assert docker.running(cid)
    r = execute(c, sid, "cat keep.txt")
    assert r.status == 200 and r.json["stdout"] == "kept\n", r
    r = c.post(f"/api/sandboxes/{sid}/start")
    assert r.status == 409 and r.json["error"]["status"] == "running"

    actors = [e for e in events(srv, sid)]
    assert [(f, t) for f, t, _ in actors] == [
        ("-", "creating"), ("creating", "running"), ("running", "stopping"), ("stopping", "stopped"),
        ("stopped", "starting"), ("starting", "running")]
    assert all(a != "-" for _, _, a in actors)
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
    assert not docker.exists(cid) and docker.inspect("sandbar-ws-" + sid, kind="volume") is None


def test_restart_runs_post_start_again_on_the_published_port(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sb = create(c, "web")
    sid, cid = sb["id"], sb["container_id"]
    port = {p["container_port"]: p["host_port"] for p in sb["port_mappings"]}[8080]
    until(lambda: http_get(port).startswith(b"HTTP/1.0 200"), what="the web server at create")
    started = docker.inspect(cid)["State"]["StartedAt"]

    r = c.post(f"/api/sandboxes/{sid}/restart")
    assert r.status == 200 and r.json["status"] == "running", r
    assert docker.inspect(cid)["State"]["StartedAt"] != started
    ports = {p["container_port"]: p["host_port"] for p in r.json["port_mappings"]}
    published = docker.inspect(cid)["NetworkSettings"]["Ports"]
    assert ports == {8080: int(published["8080/tcp"][0]["HostPort"]), 9090: int(published["9090/tcp"][0]["HostPort"])}
    assert r.json["status_reason"] is None
    until(lambda: http_get(ports[8080]).startswith(b"HTTP/1.0 200"), what="the web server after the restart")
    assert [t for _, t, _ in events(srv, sid)][-4:] == ["stopping", "stopped", "starting", "running"]
    assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_bad_input(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    for verb in ("stop", "start", "restart"):
        r = c.post(f"/api/sandboxes/not-a-uuid/{verb}")
        assert r.status == 400 and r.json["error"]["code"] == "invalid_id"
        r = c.post(f"/api/sandboxes/00000000-0000-4000-8000-000000000000/{verb}")
        assert r.status == 404 and r.json["error"]["code"] == "not_found"
        r = c.get(f"/api/sandboxes/00000000-0000-4000-8000-000000000000/{verb}")
        assert r.status == 405
    sid = create(c)["id"]
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
    r = c.post(f"/api/sandboxes/{sid}/start")
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_live"


def test_racing_stops_and_starts_one_wins(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_STOP_GRACE="2s"))
    c = srv.client()
    sid = create(c)["id"]

    def fire(verb, n):
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            rs = list(pool.map(lambda _: srv.client().post(f"/api/sandboxes/{sid}/{verb}", timeout=60), range(n)))
        return sorted(r.status for r in rs), rs

    statuses, rs = fire("stop", 5)
    assert statuses == [200, 409, 409, 409, 409], statuses
    assert all(r.json["error"]["code"] == "invalid_state" for r in rs if r.status == 409)
    assert c.get(f"/api/sandboxes/{sid}").json["status"] == "stopped"
    statuses, _ = fire("start", 5)
    assert statuses == [200, 409, 409, 409, 409], statuses
    assert c.get(f"/api/sandboxes/{sid}").json["status"] == "running"
    # a start while a stop is under way (a process that ignores SIGTERM holds
    # the stop for SANDBAR_STOP_GRACE): refused with the status of the moment
    r = c.post(f"/api/sandboxes/{sid}/commands", json={"command": "trap '' TERM; sleep 100"})
    assert r.status == 201, r
    stopping = concurrent.futures.ThreadPoolExecutor(1).submit(
        lambda: srv.client().post(f"/api/sandboxes/{sid}/stop", timeout=60))
    until(lambda: c.get(f"/api/sandboxes/{sid}").json["status"] == "stopping", interval=0.01,
          what="the stop under way")
    r = c.post(f"/api/sandboxes/{sid}/start")
    assert r.status == 409 and r.json["error"]["status"] == "stopping", r
    assert stopping.result().status == 200
    assert c.get(f"/api/sandboxes/{sid}").json["status"] == "stopped"
    assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_two_instances_race_and_the_compare_and_set_holds(server_factory):
    a = server_factory(env=templates_env())
    b = server_factory(env=templates_env(DATABASE_URL=a.database_url, SANDBAR_CLUSTER=a.database))
    ca = a.client()
    sids = [create(ca)["id"] for _ in range(3)]
    for verb, want in (("stop", "stopped"), ("start", "running")):
        results = []

        def go(srv, sid):
            results.append((sid, srv.client().post(f"/api/sandboxes/{sid}/{verb}", timeout=60).status))

        threads = [threading.Thread(target=go, args=(srv, sid)) for sid in sids for srv in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for sid in sids:
            got = sorted(s for i, s in results if i == sid)
            assert got == [200, 409, 409, 409], (verb, sid, got)
            assert ca.get(f"/api/sandboxes/{sid}").json["status"] == want
            assert b.client().get(f"/api/sandboxes/{sid}").json["status"] == want
            moves = [t for _, t, _ in events(a, sid)]
            assert moves.count("stopping" if verb == "stop" else "starting") == 1, moves
    for sid in sids:
        assert ca.delete(f"/api/sandboxes/{sid}").status == 204


def test_kill_during_stops_and_starts_leaves_nothing_half_way(server_factory):
    # the restarted server is the same instance (SANDBAR_INSTANCE_ID): it
    # settles its own half-way moves at once, not after a create timeout
    srv = server_factory(env={**templates_env(), "SANDBAR_CREATE_TIMEOUT": "10m"})
    c = srv.client()
    sids = [create(c)["id"] for _ in range(10)]
    for sid in sids[5:]:
        assert c.post(f"/api/sandboxes/{sid}/stop").status == 200

    def flip(sid, verb):
        try:
            srv.client().post(f"/api/sandboxes/{sid}/{verb}", timeout=60)
        except OSError:
            pass

    threads = [threading.Thread(target=flip, args=(sid, "stop" if i < 5 else "start")) for i, sid in enumerate(sids)]
    for t in threads:
        t.start()
    # kill once some are provably half-way
    until(lambda: pg.psql("SELECT count(*) FROM sandboxes WHERE status IN ('starting', 'stopping')",
                          url=srv.database_url).strip() != "0", timeout=30, interval=0.005,
          what="a stop or start under way")
    srv.kill()
    for t in threads:
        t.join(60)
    srv.start()
    events = pg.psql("SELECT DISTINCT instance FROM sandbox_events", url=srv.database_url).split()
    assert len(events) == 1 and events[0], events  # every move names the instance that made it
    rows = pg.psql("SELECT id, status FROM sandboxes", url=srv.database_url)
    status = dict(line.split("|") for line in rows.splitlines() if line)
    assert set(status.values()) <= {"running", "stopped"}, status
    for sid in sids:
        cid = docker.inspect(f"sandbar-{sid}")
        assert cid is not None, sid
        assert cid["State"]["Running"] == (status[sid] == "running"), (sid, status[sid])
    for sid in sids:
        assert c.delete(f"/api/sandboxes/{sid}").status == 204
